import { Logger } from '@nestjs/common';
import { Redis, type RedisOptions } from 'ioredis';
import type { Clock } from '../common/clock';
import type { RelayConfig } from '../config/relay-config';
import { SCHEMA_VERSION } from './redis/prelude.script';
import { toStoreError } from './redis/redis-error.mapper';
import { scriptSource, RELAY_SCRIPTS, type RelayScriptName } from './redis/script.registry';
import { WakeChannel } from './redis/wake.channel';
import type {
  CancelCommand,
  ConfirmDeliveryCommand,
  CancelResult,
  ClaimCommand,
  ClaimResult,
  CompleteCommand,
  CompleteResult,
  ControlCommand,
  ControlResult,
  EnqueueCommand,
  EnqueueResult,
  ProgressCommand,
  ProgressResult,
  RateLimitCommand,
  RateLimitResult,
  SelectNodeCommand,
  SelectNodeResult,
  StateStore,
  StreamChunkCommand,
  StreamChunkResult,
  StreamTakeResult,
  TakeResponseCommand,
  TakeResponseResult,
  UnregisterNodeCommand,
  UnregisterNodeResult,
  UpsertNodeCommand,
  UpsertNodeResult,
} from './state-store';
import {
  CONTEXT_TIERS,
  REQUEST_OUTCOMES,
  type ClaimedJob,
  type ContextTier,
  type ControlState,
  type Dialect,
  type Envelope,
  type EvictionReason,
  type NodeCapabilities,
  type NodeView,
  type RequestOutcome,
  type StoreLimits,
  type StoreStats,
  type TerminalReason,
  type TerminalStatus,
  type TransitionCounts,
} from './state.types';
import { StoreUnavailableError } from './store-unavailable.error';
import { responseKey, workKey } from './waiters';

export interface RedisStoreOptions {
  /** redis:// or rediss:// URL (password and db included). */
  url: string;
  /** Prefix of every key and of the wake-up channel. */
  keyPrefix: string;
  /** A command slower than this fails with 503 (the store reports itself unavailable). */
  commandTimeoutMs: number;
  limits: StoreLimits;
  /** How long `open` waits for a first connection before starting degraded (default 3000). */
  connectWaitMs?: number;
}

/** Where the store reports connection changes (Nest's Logger in the app). */
export interface StoreLog {
  log(message: object): void;
  warn(message: object): void;
  error(message: object): void;
}

type ScriptArg = string | number;
type ScriptHost = Partial<Record<RelayScriptName, (...args: ScriptArg[]) => Promise<unknown>>>;

/** At most this many entries per index per sweep script; the sweep loops while more are due. */
const SWEEP_BATCH = 500;
const SWEEP_MAX_ROUNDS = 20;
/** How often readiness re-reads the server's eviction policy. */
const SERVER_RECHECK_MS = 30_000;
const RECHECK_WHEN_REFUSED_MS = 1_000;
const LOG_REPEAT_MS = 10_000;
const QUIT_TIMEOUT_MS = 1_000;

const OUTCOMES: ReadonlySet<string> = new Set(REQUEST_OUTCOMES);

function isOutcome(name: string): name is RequestOutcome {
  return OUTCOMES.has(name);
}

function parseTransitions(encoded: unknown): TransitionCounts {
  const t: TransitionCounts = { outcomes: {}, evictions: {} };
  if (typeof encoded !== 'string' || encoded === '') {
    return t;
  }
  for (const part of encoded.split(',')) {
    const at = part.indexOf('=');
    const name = part.slice(0, at);
    const count = Number(part.slice(at + 1));
    if (isOutcome(name)) {
      t.outcomes[name] = count;
    } else {
      t.evictions[name as EvictionReason] = count;
    }
  }
  return t;
}

function list(reply: unknown): unknown[] {
  if (!Array.isArray(reply)) {
    throw new Error(`unexpected redis reply: ${typeof reply}`);
  }
  return reply as unknown[];
}

function text(value: unknown): string {
  if (typeof value === 'string') {
    return value;
  }
  if (typeof value === 'number') {
    return String(value);
  }
  if (Buffer.isBuffer(value)) {
    return value.toString('utf8');
  }
  throw new Error(`unexpected redis value: ${typeof value}`);
}

function maybeText(value: unknown): string | null {
  return value === null || value === undefined ? null : text(value);
}

function numeric(value: unknown): number {
  return Number(text(value));
}

/** Nullable strings travel as '' (null) or '=' + value, so an empty string stays distinct. */
function opt(value: string | null | undefined | number): string {
  return value === null || value === undefined ? '' : `=${value}`;
}

function parseJson<T>(value: unknown): T {
  const parsed: unknown = JSON.parse(text(value));
  return parsed as T;
}

function seconds(ms: number): number {
  return Math.max(0, ms / 1000);
}

/**
 * The shared store for several replicas: every transition is one Lua script (prelude + body, see
 * src/state/redis/) run atomically by Redis, with `now` from the injected clock. Long-poll
 * wake-ups cross replicas over one pub/sub channel ({@link WakeChannel}).
 *
 * Outages never crash the process: it starts and reconnects on its own, every operation fails
 * fast with {@link StoreUnavailableError} (503 + Retry-After) while Redis is unreachable, slow,
 * evicting or speaking another data layout, and `ping` (readiness) says why.
 */
export class RedisStateStore implements StateStore {
  private readonly cmd: Redis;
  private readonly sub: Redis;
  private readonly wake: WakeChannel;
  private readonly prefix: string;
  private readonly limitsJson: string;
  private usable = false;
  private closed = false;
  private problem = 'connecting to redis';
  private lastError = '';
  private checkedAt = 0;
  private readonly logged = new Map<string, number>();
  private readyListeners: Array<() => void> = [];

  static connect(config: RelayConfig, clock: Clock): Promise<StateStore> {
    return RedisStateStore.open(
      {
        url: config.redisUrl,
        keyPrefix: config.redisKeyPrefix,
        commandTimeoutMs: config.redisCommandTimeoutMs,
        limits: config.limits,
        connectWaitMs: Math.min(5000, Math.max(1000, config.redisCommandTimeoutMs)),
      },
      clock,
    );
  }

  /** Connects (or starts degraded after `connectWaitMs`), ready to serve when Redis is. */
  static async open(
    options: RedisStoreOptions,
    clock: Clock,
    log: StoreLog = new Logger(RedisStateStore.name),
  ): Promise<RedisStateStore> {
    const store = new RedisStateStore(options, clock, log);
    await store.start(options.connectWaitMs ?? 3000);
    return store;
  }

  private constructor(
    options: RedisStoreOptions,
    private readonly clock: Clock,
    private readonly log: StoreLog,
  ) {
    this.prefix = options.keyPrefix;
    this.limitsJson = JSON.stringify(options.limits);
    const base: RedisOptions = {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResendUnfulfilledCommands: false,
      autoResubscribe: false,
      enableReadyCheck: true,
      commandTimeout: options.commandTimeoutMs,
      connectTimeout: Math.max(1000, options.commandTimeoutMs),
      keepAlive: 10_000,
      disconnectTimeout: 200,
      retryStrategy: (times: number) => Math.min(100 * 2 ** Math.min(times, 5), 2000),
    };
    this.cmd = new Redis(options.url, { ...base, connectionName: 'tokenplace-relay' });
    this.sub = new Redis(options.url, { ...base, connectionName: 'tokenplace-relay-wake' });
    for (const name of Object.keys(RELAY_SCRIPTS) as RelayScriptName[]) {
      this.cmd.defineCommand(name, { numberOfKeys: 0, lua: scriptSource(name) });
    }
    this.wake = new WakeChannel(this.sub, `${this.prefix}wake`, clock);
    this.watch();
  }

  // ---------------------------------------------------------------- nodes

  async upsertNode(cmd: UpsertNodeCommand): Promise<UpsertNodeResult> {
    const caps = cmd.capabilities;
    const mode = caps === undefined ? 'keep' : caps === null ? 'null' : 'set';
    const reply = list(
      await this.call('tpUpsertNode', cmd.now, [
        cmd.nodeId,
        cmd.dialect,
        mode,
        caps ? JSON.stringify(caps) : '',
        caps ? caps.active_context_tier : '',
        caps ? caps.maximum_total_context_tokens : 0,
        caps ? caps.max_concurrency : 0,
        caps ? `\n${caps.supported_model_ids.join('\n')}\n` : '',
        caps ? JSON.stringify(caps.supported_model_ids) : '',
        opt(cmd.newCredentialDigest),
        cmd.requireExisting === true ? '1' : '0',
        opt(cmd.pollingUntil),
      ]),
    );
    const status = text(reply[0]);
    const transitions = parseTransitions(reply[1]);
    switch (status) {
      case 'created':
      case 'renewed':
        return { status, credentialIssued: numeric(reply[2]) === 1, transitions };
      case 'not_found':
      case 'nodes_full':
      case 'dialect_conflict':
        return { status, transitions };
      default:
        throw new Error(`unexpected upsert status ${status}`);
    }
  }

  async unregisterNode(cmd: UnregisterNodeCommand): Promise<UnregisterNodeResult> {
    const reply = list(
      await this.call('tpUnregisterNode', cmd.now, [
        cmd.nodeId,
        opt(cmd.credentialDigest),
        cmd.force === true ? '1' : '0',
      ]),
    );
    const status = text(reply[0]);
    if (status !== 'removed' && status !== 'absent' && status !== 'forbidden') {
      throw new Error(`unexpected unregister status ${status}`);
    }
    return { status, transitions: parseTransitions(reply[1]) };
  }

  async listNodes(now: number): Promise<NodeView[]> {
    const reply = list(await this.call('tpListNodes', now, []));
    const nodes: NodeView[] = [];
    for (let i = 0; i + 6 < reply.length; i += 7) {
      const caps = maybeText(reply[i + 6]);
      nodes.push({
        nodeId: text(reply[i]),
        dialect: text(reply[i + 1]) as Dialect,
        lastPingAt: numeric(reply[i + 2]),
        leaseMs: numeric(reply[i + 3]),
        queueDepth: numeric(reply[i + 4]),
        inFlightCount: numeric(reply[i + 5]),
        capabilities: caps === null ? null : parseJson<NodeCapabilities>(caps),
      });
    }
    return nodes;
  }

  async selectNode(cmd: SelectNodeCommand): Promise<SelectNodeResult> {
    const reply = list(
      await this.call('tpSelectNode', cmd.now, [
        cmd.model,
        CONTEXT_TIERS[cmd.tier],
        cmd.maxQueueDepth,
      ]),
    );
    const status = text(reply[0]);
    switch (status) {
      case 'no_nodes':
        return { status };
      case 'no_match':
      case 'no_capacity': {
        const d = parseJson<{
          eligibleTierCounts: Partial<Record<ContextTier, number>>;
          eligibleCount: number;
          capacityLimitedCount: number;
          capacityLimitedTierCounts: Partial<Record<ContextTier, number>>;
        }>(reply[1]);
        return {
          status,
          eligibleTierCounts: d.eligibleTierCounts,
          eligibleCount: d.eligibleCount,
          capacityLimitedCount: d.capacityLimitedCount,
          capacityLimitedTierCounts: d.capacityLimitedTierCounts,
        };
      }
      case 'selected': {
        const d = parseJson<{
          nodeId: string;
          tier: ContextTier;
          queueDepth: number;
          inFlightCount: number;
          loadScore: number;
          eligibleTierCounts: Partial<Record<ContextTier, number>>;
          eligibleCount: number;
        }>(reply[1]);
        return {
          status,
          selected: {
            nodeId: d.nodeId,
            tier: d.tier,
            modelSupport: parseJson<string[]>(reply[2]),
            queueDepth: d.queueDepth,
            inFlightCount: d.inFlightCount,
            loadScore: d.loadScore,
          },
          eligibleTierCounts: d.eligibleTierCounts,
          eligibleCount: d.eligibleCount,
        };
      }
      default:
        throw new Error(`unexpected select status ${status}`);
    }
  }

  async pickLegacyNode(now: number): Promise<string | null> {
    return maybeText(await this.call('tpPickLegacyNode', now, [Math.random()]));
  }

  // ---------------------------------------------------------------- work

  async enqueue(cmd: EnqueueCommand): Promise<EnqueueResult> {
    const { job } = cmd;
    const reply = list(
      await this.call('tpEnqueue', cmd.now, [
        job.jobId,
        job.dialect,
        job.nodeId,
        opt(job.clientKey),
        opt(job.requestId),
        opt(job.cancelToken),
        job.stream ? '1' : '0',
        JSON.stringify(job.envelope),
        job.bytes,
      ]),
    );
    const status = text(reply[0]);
    const transitions = parseTransitions(reply[1]);
    switch (status) {
      case 'queued':
        this.wake.notifyLocal(workKey(job.nodeId));
        return { status, deadlineAt: numeric(reply[2]), transitions };
      case 'node_not_found':
      case 'node_queue_full':
      case 'queue_full':
      case 'client_pending_full':
        return { status, transitions };
      default:
        throw new Error(`unexpected enqueue status ${status}`);
    }
  }

  async claimNext(cmd: ClaimCommand): Promise<ClaimResult> {
    const reply = list(await this.call('tpClaimNext', cmd.now, [cmd.nodeId, cmd.dialect, cmd.max]));
    const status = text(reply[0]);
    const transitions = parseTransitions(reply[1]);
    if (status === 'not_found' || status === 'dialect_conflict') {
      return { status, transitions };
    }
    const jobs: ClaimedJob[] = [];
    for (let i = 2; i + 6 < reply.length; i += 7) {
      jobs.push({
        jobId: text(reply[i]),
        clientKey: maybeText(reply[i + 1]),
        requestId: maybeText(reply[i + 2]),
        cancelToken: maybeText(reply[i + 3]),
        stream: text(reply[i + 4]) === '1',
        envelope: parseJson<Envelope>(reply[i + 5]),
        deadlineAt: numeric(reply[i + 6]),
      });
    }
    return { status: 'ok', jobs, transitions };
  }

  async control(cmd: ControlCommand): Promise<ControlResult> {
    const reply = list(
      await this.call('tpControl', cmd.now, [
        cmd.nodeId,
        cmd.requestId,
        cmd.credentialDigest,
        cmd.acknowledge ? '1' : '0',
      ]),
    );
    const transitions = parseTransitions(reply[1]);
    if (text(reply[0]) === 'forbidden') {
      return { status: 'forbidden', transitions };
    }
    const deadline = maybeText(reply[3]);
    return {
      status: 'ok',
      state: text(reply[2]) as ControlState,
      deadlineAt: deadline === null ? null : Number(deadline),
      transitions,
    };
  }

  async complete(cmd: CompleteCommand): Promise<CompleteResult> {
    const reply = list(
      await this.call('tpComplete', cmd.now, [
        cmd.dialect,
        cmd.clientKey,
        opt(cmd.requestId),
        JSON.stringify(cmd.envelope),
      ]),
    );
    const status = text(reply[0]);
    const transitions = parseTransitions(reply[1]);
    switch (status) {
      case 'stored':
        this.wake.notifyLocal(responseKey(cmd.clientKey, cmd.requestId));
        return { status, transitions };
      case 'duplicate':
      case 'responses_full':
        return { status, transitions };
      case 'gone':
        return {
          status,
          code: text(reply[2]) as TerminalStatus | 'completed' | 'gone',
          transitions,
        };
      default:
        throw new Error(`unexpected complete status ${status}`);
    }
  }

  async takeResponse(cmd: TakeResponseCommand): Promise<TakeResponseResult> {
    const reply = list(
      await this.call('tpTakeResponse', cmd.now, [cmd.dialect, cmd.clientKey, opt(cmd.requestId)]),
    );
    const status = text(reply[0]);
    const transitions = parseTransitions(reply[1]);
    switch (status) {
      case 'ok':
        return { status, envelope: parseJson<Envelope>(reply[2]), transitions };
      case 'pending': {
        const progress = maybeText(reply[3]);
        return {
          status,
          deadlineAt: numeric(reply[2]),
          progress: progress === null ? null : parseJson<Envelope>(progress),
          transitions,
        };
      }
      case 'terminal':
        return {
          status,
          terminal: text(reply[2]) as TerminalStatus,
          reason: text(reply[3]) as TerminalReason,
          transitions,
        };
      case 'unknown':
        return { status, transitions };
      default:
        throw new Error(`unexpected take status ${status}`);
    }
  }

  async confirmDelivery(cmd: ConfirmDeliveryCommand): Promise<void> {
    await this.call('tpConfirmDelivery', cmd.now, [cmd.dialect, cmd.clientKey, opt(cmd.requestId)]);
  }

  async cancel(cmd: CancelCommand): Promise<CancelResult> {
    const reply = list(
      await this.call('tpCancel', cmd.now, [
        cmd.clientKey,
        cmd.requestId,
        cmd.cancelToken,
        cmd.status,
        cmd.reason,
      ]),
    );
    const transitions = parseTransitions(reply[1]);
    if (text(reply[0]) === 'forbidden') {
      return { status: 'forbidden', transitions };
    }
    return { status: 'ok', removedFromQueue: numeric(reply[2]), transitions };
  }

  async putProgress(cmd: ProgressCommand): Promise<ProgressResult> {
    const reply = list(
      await this.call('tpPutProgress', cmd.now, [
        cmd.nodeId,
        cmd.credentialDigest,
        cmd.clientKey,
        cmd.requestId,
        JSON.stringify(cmd.envelope),
      ]),
    );
    const status = text(reply[0]);
    if (
      status !== 'accepted' &&
      status !== 'forbidden' &&
      status !== 'not_active' &&
      status !== 'expired'
    ) {
      throw new Error(`unexpected progress status ${status}`);
    }
    if (status === 'accepted') {
      this.wake.notifyLocal(responseKey(cmd.clientKey, cmd.requestId));
    }
    return { status, transitions: parseTransitions(reply[1]) };
  }

  // ---------------------------------------------------------------- legacy streams

  async appendStreamChunk(cmd: StreamChunkCommand): Promise<StreamChunkResult> {
    const reply = list(
      await this.call('tpAppendStreamChunk', cmd.now, [
        cmd.sessionId,
        JSON.stringify(cmd.chunk) ?? 'null',
        cmd.chunkBytes,
        cmd.final ? '1' : '0',
      ]),
    );
    const status = text(reply[0]);
    if (status !== 'stored' && status !== 'unknown' && status !== 'full') {
      throw new Error(`unexpected stream status ${status}`);
    }
    return { status, transitions: parseTransitions(reply[1]) };
  }

  async takeStream(clientKey: string, now: number): Promise<StreamTakeResult> {
    const reply = list(await this.call('tpTakeStream', now, [clientKey]));
    if (text(reply[0]) === 'none') {
      return { status: 'none' };
    }
    return {
      status: 'ok',
      sessionId: text(reply[1]),
      final: numeric(reply[2]) === 1,
      chunks: reply.slice(3).map((c) => parseJson<unknown>(c)),
    };
  }

  // ---------------------------------------------------------------- rate limits

  async hitRateLimit(cmd: RateLimitCommand): Promise<RateLimitResult> {
    const reply = list(
      await this.call('tpHitRateLimit', cmd.now, [cmd.key, cmd.limit, cmd.windowMs]),
    );
    return { allowed: numeric(reply[0]) === 1, resetSeconds: numeric(reply[1]) };
  }

  // ---------------------------------------------------------------- housekeeping

  async sweep(now: number): Promise<TransitionCounts> {
    const total: TransitionCounts = { outcomes: {}, evictions: {} };
    for (let round = 0; round < SWEEP_MAX_ROUNDS; round += 1) {
      const reply = list(await this.call('tpSweep', now, [SWEEP_BATCH]));
      const t = parseTransitions(reply[0]);
      for (const [k, v] of Object.entries(t.outcomes)) {
        const name = k as RequestOutcome;
        total.outcomes[name] = (total.outcomes[name] ?? 0) + v;
      }
      for (const [k, v] of Object.entries(t.evictions)) {
        const name = k as EvictionReason;
        total.evictions[name] = (total.evictions[name] ?? 0) + v;
      }
      if (numeric(reply[1]) !== 1) {
        break;
      }
    }
    return total;
  }

  async stats(now: number): Promise<StoreStats> {
    const r = list(await this.call('tpStats', now, []));
    const oldestQueued = maybeText(r[1]);
    const oldestClaimed = maybeText(r[3]);
    return {
      queueDepth: numeric(r[0]),
      oldestQueuedAgeSeconds: oldestQueued === null ? 0 : seconds(now - Number(oldestQueued)),
      inFlight: numeric(r[2]),
      oldestInFlightAgeSeconds: oldestClaimed === null ? 0 : seconds(now - Number(oldestClaimed)),
      nodesRegistered: numeric(r[4]),
      v1NodesRegistered: numeric(r[5]),
      v1NodesHealthy: numeric(r[6]),
      maxLeaseAgeSeconds: numeric(r[7]),
      queuedBytes: numeric(r[8]),
      storedResponses: numeric(r[9]),
      terminalRecords: numeric(r[10]),
      tombstones: numeric(r[11]),
      streamSessions: numeric(r[12]),
      rateLimitBuckets: numeric(r[13]),
    };
  }

  async ping(): Promise<void> {
    if (this.closed) {
      throw new StoreUnavailableError('redis: store closed');
    }
    if (!this.usable && this.cmd.status === 'ready') {
      await this.checkServer();
    }
    if (!this.usable) {
      throw new StoreUnavailableError(this.problem);
    }
    try {
      await this.cmd.ping();
    } catch (error) {
      throw toStoreError(error);
    }
    if (Date.now() - this.checkedAt > SERVER_RECHECK_MS) {
      await this.checkServer();
      if (!this.usable) {
        throw new StoreUnavailableError(this.problem);
      }
    }
  }

  /** What a work wait re-checks: the node has queued work, or is gone. */
  async hasWork(nodeId: string, now: number): Promise<boolean> {
    return numeric(await this.call('tpHasWork', now, [nodeId])) === 1;
  }

  /** What a response wait re-checks (see the in-memory twin). */
  async hasResponse(clientKey: string, requestId: string | null, now: number): Promise<boolean> {
    return numeric(await this.call('tpHasResponse', now, [clientKey, opt(requestId)])) === 1;
  }

  waitForWork(nodeId: string, until: number, signal: AbortSignal): Promise<void> {
    return this.wake.wait(workKey(nodeId), until, signal, async () => {
      const reply = await this.call('tpHasWork', this.clock.now(), [nodeId]);
      return numeric(reply) === 1;
    });
  }

  waitForResponse(
    clientKey: string,
    requestId: string | null,
    until: number,
    signal: AbortSignal,
  ): Promise<void> {
    return this.wake.wait(responseKey(clientKey, requestId), until, signal, async () => {
      const reply = await this.call('tpHasResponse', this.clock.now(), [clientKey, opt(requestId)]);
      return numeric(reply) === 1;
    });
  }

  wakeAll(): void {
    this.wake.wakeAll();
  }

  async close(): Promise<void> {
    if (this.closed) {
      return;
    }
    this.closed = true;
    this.usable = false;
    this.problem = 'redis: store closed';
    this.wake.wakeAll();
    await Promise.all([quit(this.cmd), quit(this.sub)]);
  }

  // ---------------------------------------------------------------- connection

  private async call(name: RelayScriptName, now: number, args: ScriptArg[]): Promise<unknown> {
    if (!this.usable && !this.closed && this.cmd.status === 'ready') {
      // Connected but refused earlier (policy, layout, a failed check): look again, at most 1/s.
      if (Date.now() - this.checkedAt > RECHECK_WHEN_REFUSED_MS) {
        await this.checkServer();
      }
    }
    if (!this.usable) {
      throw new StoreUnavailableError(this.problem);
    }
    const fn = (this.cmd as unknown as ScriptHost)[name];
    if (!fn) {
      throw new Error(`script ${name} is not defined`);
    }
    try {
      return await fn.call(this.cmd, this.prefix, this.limitsJson, now, ...args);
    } catch (error) {
      const mapped = toStoreError(error);
      if (mapped.message.startsWith('redis: TPSCHEMA')) {
        this.refuse(mapped.message);
      }
      throw mapped;
    }
  }

  private async start(waitMs: number): Promise<void> {
    const ready = new Promise<void>((resolve) => this.readyListeners.push(resolve));
    this.cmd.connect().catch(() => undefined);
    this.sub.connect().catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, waitMs);
    });
    await Promise.race([ready, timeout]);
    clearTimeout(timer);
    if (!this.usable) {
      this.log.warn({
        msg: 'redis state store unreachable at boot: serving degraded (503) until it connects',
        reason: this.problem,
      });
    }
  }

  private watch(): void {
    this.cmd.on('ready', () => {
      void this.checkServer();
    });
    this.cmd.on('error', (error: Error) => {
      this.lastError = error.message;
      this.warnOnce('redis connection error', error.message);
    });
    this.cmd.on('close', () => {
      if (this.closed) {
        return;
      }
      if (this.usable) {
        this.log.warn({ msg: 'redis connection lost', reason: this.lastError || 'closed' });
      }
      this.usable = false;
      this.problem = `redis: connection lost${this.lastError ? ` (${this.lastError})` : ''}`;
      this.wake.wakeAll();
    });
    this.cmd.on('reconnecting', () => {
      if (!this.closed) {
        this.problem = `redis: reconnecting${this.lastError ? ` (${this.lastError})` : ''}`;
      }
    });
    this.sub.on('ready', () => {
      void this.subscribe();
    });
    this.sub.on('error', (error: Error) => {
      this.warnOnce('redis wake-up connection error', error.message);
    });
    this.sub.on('close', () => {
      this.wake.lost();
    });
  }

  private async subscribe(): Promise<void> {
    while (!this.closed && this.sub.status === 'ready' && !this.wake.ready) {
      try {
        await this.wake.subscribe();
        this.notifyReady();
      } catch (error) {
        this.warnOnce('redis wake-up subscription failed', (error as Error).message);
        await new Promise((r) => setTimeout(r, 250).unref());
      }
    }
  }

  /**
   * Runs on every (re)connection and from readiness: the server must not evict keys (that would
   * silently drop accepted requests) and must hold this replica's data layout.
   */
  private async checkServer(): Promise<void> {
    this.checkedAt = Date.now();
    try {
      const policy = await this.evictionPolicy();
      if (policy !== null && policy !== 'noeviction') {
        this.refuse(
          `redis: maxmemory-policy is ${policy}, which may evict relay state; set maxmemory-policy noeviction`,
        );
        return;
      }
      const schemaKey = `${this.prefix}schema`;
      await this.cmd.set(schemaKey, SCHEMA_VERSION, 'NX');
      const schema = await this.cmd.get(schemaKey);
      if (schema !== SCHEMA_VERSION) {
        this.refuse(
          `redis: TPSCHEMA Redis holds relay state of layout ${String(schema)}; this replica speaks ${SCHEMA_VERSION}`,
        );
        return;
      }
      if (!this.usable) {
        this.log.log({ msg: 'redis state store ready' });
      }
      this.usable = true;
      this.problem = '';
      this.notifyReady();
    } catch (error) {
      this.usable = false;
      this.problem = toStoreError(error).message;
    }
  }

  /** The server's maxmemory-policy, or null when INFO is not allowed (managed services). */
  private async evictionPolicy(): Promise<string | null> {
    try {
      const info = await this.cmd.info('memory');
      return /maxmemory_policy:(\S+)/.exec(info)?.[1] ?? null;
    } catch (error) {
      const mapped = toStoreError(error);
      if (mapped.message.includes('NOPERM')) {
        this.warnOnce('cannot read redis maxmemory-policy (INFO not permitted)', mapped.message);
        return null;
      }
      throw error;
    }
  }

  private refuse(reason: string): void {
    if (this.usable || this.problem !== reason) {
      this.log.error({ msg: 'redis state store refused', reason });
    }
    this.usable = false;
    this.problem = reason;
  }

  private notifyReady(): void {
    if (this.usable && this.wake.ready) {
      const listeners = this.readyListeners;
      this.readyListeners = [];
      for (const listener of listeners) {
        listener();
      }
    }
  }

  private warnOnce(msg: string, reason: string): void {
    const now = Date.now();
    const key = `${msg}\n${reason}`;
    if (now - (this.logged.get(key) ?? 0) < LOG_REPEAT_MS) {
      return;
    }
    if (this.logged.size > 100) {
      this.logged.clear();
    }
    this.logged.set(key, now);
    this.log.warn({ msg, reason });
  }
}

async function quit(connection: Redis): Promise<void> {
  if (connection.status !== 'ready') {
    connection.disconnect();
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  const quitted = await Promise.race([
    connection.quit().then(
      () => true,
      () => false,
    ),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), QUIT_TIMEOUT_MS);
    }),
  ]);
  clearTimeout(timer);
  if (!quitted) {
    connection.disconnect();
  }
}
