import { Logger } from '@nestjs/common';
import { Redis } from 'ioredis';
import type { Clock } from '../common/clock';
import type { RedisTopology, RelayConfig } from '../config/relay-config';
import {
  createClient,
  createSubscriber,
  primaryFor,
  type RedisClient,
  type WakeSubscriber,
} from './redis/connection';
import { migratePrefix } from './redis/prefix-migration';
import { ReplicaAcks, ReplicationTimeoutError } from './redis/replica-acks';
import { toStoreError } from './redis/redis-error.mapper';
import {
  RELAY_SCRIPT_NAMES,
  relayScripts,
  SCHEMA_VERSION,
  type RelayScriptName,
} from './redis/script.registry';
import {
  envelopeSchema,
  flagReply,
  MalformedReplyError,
  nodeListSchema,
  nodeSummarySchema,
  nullableTextReply,
  parseJson,
  ScriptReply,
  selectionSchema,
  statsSchema,
} from './redis/script-reply';
import { WakeChannel } from './redis/wake.channel';
import { NO_TRANSITION_SINK, type TransitionSink } from './transition.sink';
import {
  CLAIM_STATUSES,
  COMPLETE_STATUSES,
  ENQUEUE_STATUSES,
  GONE_CODES,
  PROGRESS_STATUSES,
  PROOF_STATUSES,
  STREAM_CHUNK_STATUSES,
  STREAM_TAKE_STATUSES,
  TAKE_RESPONSE_STATUSES,
  UNREGISTER_NODE_STATUSES,
  UPSERT_NODE_STATUSES,
  type CancelCommand,
  type ConfirmDeliveryCommand,
  type CancelResult,
  type ClaimCommand,
  type ClaimResult,
  type CompleteCommand,
  type CompleteResult,
  type ControlCommand,
  type ControlResult,
  type EnqueueCommand,
  type EnqueueResult,
  type ProgressCommand,
  type ProgressResult,
  type RateLimitCommand,
  type RateLimitResult,
  type SelectNodeCommand,
  type SelectNodeResult,
  type StateStore,
  type StreamChunkCommand,
  type StreamChunkResult,
  type StreamTakeResult,
  type SummarizeNodesCommand,
  type TakeResponseCommand,
  type TakeResponseResult,
  type UnregisterNodeCommand,
  type UnregisterNodeResult,
  type UpsertNodeCommand,
  type UpsertNodeResult,
} from './state-store';
import {
  answerBytes,
  CONTROL_STATES,
  TERMINAL_REASONS,
  TERMINAL_STATUSES,
  type ClaimedJob,
  type NodeSummary,
  type NodeView,
  type StoreLimits,
  type StoreStats,
  type TransitionCounts,
} from './state.types';
import { StoreUnavailableError } from './store-unavailable.error';
import { statsFromSnapshot } from './transitions/stats-snapshot';
import type { StopSignal } from '../common/wait-signal';
import { responseKey, workKey } from './waiters';

export interface RedisStoreOptions {
  /** redis:// or rediss:// URL (password and db included); with Sentinel or Cluster, '' or credentials. */
  url: string;
  /** Sentinels or Cluster nodes (default: the one server of the URL). */
  topology?: RedisTopology;
  /** Data-node password overriding the URL's. */
  password?: string;
  tls?: boolean;
  tlsCaFile?: string | null;
  /** Prefix of every key and of the wake-up channel. */
  keyPrefix: string;
  /** Replicas an acknowledged transition waits for (Redis WAIT), and for how long (ms). */
  waitReplicas?: number;
  waitTimeoutMs?: number;
  /** Told each transition's counts, and each acknowledged transition not replicated in time. */
  sink?: TransitionSink;
  /** An earlier prefix whose keys move under `keyPrefix` once at boot (see prefix-migration.ts). */
  migrateFromPrefix?: string | null;
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

/**
 * Transitions whose success the relay acknowledges to a caller (2xx) and whose loss in a failover
 * would lose or resurrect something: with TOKENPLACE_RELAY_REDIS_WAIT_REPLICAS they wait for the
 * replicas before the reply. Taking an answer waits too where a retry hands the same answer out
 * again (legacy, and API v1 with a request id), see `takeResponse`.
 *
 * Left out on purpose: claims and stream drains (a lost claim re-queues the work, delivered again:
 * at-least-once; a claim answered 503 after it was applied would instead hide the work until its
 * lease lapses), rate-limit hits, sweeps, the scheduler cursor and the read-only scripts.
 */
const ACKNOWLEDGED: ReadonlySet<RelayScriptName> = new Set<RelayScriptName>([
  'tpUpsertNode',
  'tpUnregisterNode',
  'tpEnqueue',
  'tpControl',
  'tpCancel',
  'tpPutProgress',
  'tpComplete',
  'tpConfirmDelivery',
  'tpAppendStreamChunk',
]);

interface CallOptions {
  /** Sent again once after READONLY (default: {@link IDEMPOTENT}). */
  idempotent?: boolean;
  /** Waits for the replicas (default: {@link ACKNOWLEDGED}). */
  acknowledged?: boolean;
}

/**
 * Scripts whose repetition leaves the same state and reply, so a call refused with READONLY (a
 * demoted primary) is sent again once the connection has found the new primary. Enqueue, complete
 * and take are idempotent only with a request id (API v1) and say so per call; the rest (claims,
 * rate-limit hits, legacy streams) answer 503 and leave the retry to the caller.
 */
const IDEMPOTENT: ReadonlySet<RelayScriptName> = new Set<RelayScriptName>([
  'tpUpsertNode',
  'tpUnregisterNode',
  'tpListNodes',
  'tpSummarizeNodes',
  'tpMarkKeyUnusable',
  'tpPickLegacyNode',
  'tpSelectNode',
  'tpControl',
  'tpCancel',
  'tpPutProgress',
  'tpHasWork',
  'tpHasResponse',
  'tpConfirmDelivery',
  'tpSweep',
  'tpStats',
]);

/** The scripts sent on the delivery lane (see {@link RedisStateStore.lane}). */
const LANE_SCRIPTS: ReadonlySet<RelayScriptName> = new Set<RelayScriptName>(['tpClaimNext']);

/** How ioredis refuses a call it did not send (its offline queue is off). */
const NOT_SENT = "Stream isn't writeable";

/** Most a READONLY retry waits for the connection to come back on the new primary. */
const FAILOVER_RETRY_WAIT_MS = 5_000;
type ScriptHost = Partial<Record<RelayScriptName, (...args: ScriptArg[]) => Promise<unknown>>>;

/** At most this many entries per index per sweep script; the sweep loops while more are due. */
const SWEEP_BATCH = 500;
const SWEEP_MAX_ROUNDS = 20;
/** How often readiness re-reads the server's eviction policy. */
const SERVER_RECHECK_MS = 30_000;
const RECHECK_WHEN_REFUSED_MS = 1_000;
const LOG_REPEAT_MS = 10_000;
const QUIT_TIMEOUT_MS = 1_000;

/** Nullable strings travel as '' (null) or '=' + value, so an empty string stays distinct. */
function opt(value: string | null | undefined | number): string {
  return value === null || value === undefined ? '' : `=${value}`;
}

function addCounts(total: TransitionCounts, t: TransitionCounts): void {
  for (const [k, v] of Object.entries(t.outcomes) as Array<
    [keyof TransitionCounts['outcomes'], number]
  >) {
    total.outcomes[k] = (total.outcomes[k] ?? 0) + v;
  }
  for (const [k, v] of Object.entries(t.evictions) as Array<
    [keyof TransitionCounts['evictions'], number]
  >) {
    total.evictions[k] = (total.evictions[k] ?? 0) + v;
  }
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
  private readonly cmd: RedisClient;
  /**
   * The delivery lane: a second command connection that carries only claims, the call a woken
   * long-poll makes. Behind the bulk of a busy replica's commands on `cmd` (enqueues, answers,
   * renewals), a claim would wait for every command already in flight there; on its own socket
   * Redis serves it in its next turn. Claims are not acknowledged transitions (no WAIT), and a
   * later acknowledged transition on `cmd` has a larger replication offset, so WAIT still covers
   * them. When the lane is not ready, claims fall back to `cmd`.
   */
  private readonly lane: RedisClient;
  private readonly sub: WakeSubscriber;
  private readonly wake: WakeChannel;
  private readonly acks: ReplicaAcks;
  private readonly prefix: string;
  /** The key every script declares, so a Cluster routes it to the slot of the prefix's hash tag. */
  private readonly routingKey: string;
  private readonly migrateFrom: string | null;
  private readonly commandTimeoutMs: number;
  /** False once ROLE was refused (ACL): readiness then checks writability by PING alone. */
  private roleAllowed = true;
  private readonly limitsJson: string;
  private usable = false;
  private closed = false;
  private problem = 'connecting to redis';
  private lastError = '';
  private checkedAt = 0;
  private readonly logged = new Map<string, number>();
  private readyListeners: Array<() => void> = [];
  /** Calls waiting for the store to be usable again (a READONLY retry). */
  private usableListeners: Array<() => void> = [];
  private readonly sink: TransitionSink;

  static connect(config: RelayConfig, clock: Clock, sink?: TransitionSink): Promise<StateStore> {
    return RedisStateStore.open(
      {
        url: config.redisUrl,
        topology: config.redisTopology,
        password: config.redisPassword,
        tls: config.redisTls,
        tlsCaFile: config.redisTlsCaFile,
        keyPrefix: config.redisKeyPrefix,
        commandTimeoutMs: config.redisCommandTimeoutMs,
        waitReplicas: config.redisWaitReplicas,
        waitTimeoutMs: config.redisWaitTimeoutMs,
        sink,
        migrateFromPrefix: config.redisMigrateFromPrefix,
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
    this.routingKey = `${options.keyPrefix}schema`;
    this.migrateFrom = options.migrateFromPrefix ?? null;
    this.commandTimeoutMs = options.commandTimeoutMs;
    this.limitsJson = JSON.stringify(options.limits);
    const settings = {
      url: options.url,
      topology: options.topology ?? { kind: 'standalone' },
      password: options.password,
      tls: options.tls,
      tlsCaFile: options.tlsCaFile,
      commandTimeoutMs: options.commandTimeoutMs,
    };
    this.cmd = createClient(settings, 'tokenplace-relay');
    this.lane = createClient(settings, 'tokenplace-relay-delivery');
    this.sub = createSubscriber(settings, 'tokenplace-relay-wake');
    this.acks = new ReplicaAcks(options.waitReplicas ?? 0, options.waitTimeoutMs ?? 500, () =>
      primaryFor(this.cmd, this.routingKey),
    );
    this.sink = options.sink ?? NO_TRANSITION_SINK;
    const scripts = relayScripts();
    for (const name of RELAY_SCRIPT_NAMES) {
      // One declared key (the layout key, under the prefix): a Cluster routes the script to the
      // slot of the prefix's hash tag, where every key it builds from the prefix lives.
      this.cmd.defineCommand(name, { numberOfKeys: 1, lua: scripts[name] });
    }
    for (const name of LANE_SCRIPTS) {
      this.lane.defineCommand(name, { numberOfKeys: 1, lua: scripts[name] });
    }
    this.wake = new WakeChannel(this.sub, `${this.prefix}wake`, clock);
    this.watch();
  }

  // ---------------------------------------------------------------- nodes (nodes.redis.lua)

  async upsertNode(cmd: UpsertNodeCommand): Promise<UpsertNodeResult> {
    const caps = cmd.capabilities;
    const mode = caps === undefined ? 'keep' : caps === null ? 'null' : 'set';
    const r = await this.reply('tpUpsertNode', cmd.now, [
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
      opt(cmd.fallback === undefined ? undefined : cmd.fallback ? '1' : '0'),
      opt(cmd.origin?.owner),
      opt(cmd.origin?.group),
      opt(cmd.presentedDigest),
      opt(cmd.maxPerGroup),
    ]);
    const status = r.oneOf(UPSERT_NODE_STATUSES, 'status');
    const transitions = r.transitions();
    if (status === 'created' || status === 'renewed') {
      const credentialIssued = r.flag('credential issued');
      r.end();
      return { status, credentialIssued, transitions };
    }
    r.end();
    return { status, transitions };
  }

  async unregisterNode(cmd: UnregisterNodeCommand): Promise<UnregisterNodeResult> {
    const r = await this.reply('tpUnregisterNode', cmd.now, [
      cmd.nodeId,
      opt(cmd.credentialDigest),
      cmd.force === true ? '1' : '0',
    ]);
    const status = r.oneOf(UNREGISTER_NODE_STATUSES, 'status');
    const transitions = r.transitions();
    r.end();
    return { status, transitions };
  }

  async listNodes(now: number): Promise<NodeView[]> {
    const raw = await this.call('tpListNodes', now, []);
    return parseJson('tpListNodes', nodeListSchema, raw, 'node list');
  }

  async summarizeNodes(cmd: SummarizeNodesCommand): Promise<NodeSummary> {
    const raw = await this.call('tpSummarizeNodes', cmd.now, [cmd.limit]);
    return parseJson('tpSummarizeNodes', nodeSummarySchema, raw, 'node summary');
  }

  async markKeyUnusable(nodeId: string, now: number): Promise<boolean> {
    return flagReply('tpMarkKeyUnusable', await this.call('tpMarkKeyUnusable', now, [nodeId]));
  }

  async selectNode(cmd: SelectNodeCommand): Promise<SelectNodeResult> {
    const raw = await this.call('tpSelectNode', cmd.now, [
      cmd.model,
      cmd.tier,
      cmd.maxQueueDepth,
      cmd.atCapacity ?? 'refuse',
      ...(cmd.exclude ?? []),
    ]);
    return parseJson('tpSelectNode', selectionSchema, raw, 'selection');
  }

  async pickLegacyNode(now: number): Promise<string | null> {
    return nullableTextReply(
      'tpPickLegacyNode',
      await this.call('tpPickLegacyNode', now, [Math.random()]),
    );
  }

  // ---------------------------------------------------------------- work (work.redis.lua)

  async enqueue(cmd: EnqueueCommand): Promise<EnqueueResult> {
    const { job } = cmd;
    const r = await this.reply(
      'tpEnqueue',
      cmd.now,
      [
        job.jobId,
        job.dialect,
        job.nodeId,
        opt(job.clientKey),
        opt(job.requestId),
        opt(job.cancelToken),
        job.stream ? '1' : '0',
        JSON.stringify(job.envelope),
        job.bytes,
        opt(cmd.clientCap),
      ],
      { idempotent: job.requestId !== null },
    );
    const status = r.oneOf(ENQUEUE_STATUSES, 'status');
    const transitions = r.transitions();
    if (status === 'queued') {
      const deadlineAt = r.number('deadline');
      r.end();
      this.wake.notifyLocal(workKey(job.nodeId));
      return { status, deadlineAt, transitions };
    }
    r.end();
    return { status, transitions };
  }

  async claimNext(cmd: ClaimCommand): Promise<ClaimResult> {
    const r = await this.reply('tpClaimNext', cmd.now, [cmd.nodeId, cmd.dialect, cmd.max]);
    const status = r.oneOf(CLAIM_STATUSES, 'status');
    const transitions = r.transitions();
    if (status !== 'ok') {
      r.end();
      return { status, transitions };
    }
    if (r.remaining % 7 !== 0 || r.remaining / 7 > cmd.max) {
      r.fail(`${r.remaining} claim fields are not 7 per job for at most ${cmd.max}`);
    }
    const jobs: ClaimedJob[] = [];
    while (r.remaining > 0) {
      jobs.push({
        jobId: r.text('job id'),
        clientKey: r.nullableText('client'),
        requestId: r.nullableText('request id'),
        cancelToken: r.nullableText('cancel token'),
        stream: r.flag('stream'),
        envelope: r.json(envelopeSchema, 'envelope'),
        deadlineAt: r.number('deadline'),
      });
    }
    return { status, jobs, transitions };
  }

  async control(cmd: ControlCommand): Promise<ControlResult> {
    const r = await this.reply('tpControl', cmd.now, [
      cmd.nodeId,
      cmd.requestId,
      cmd.credentialDigest,
      cmd.acknowledge ? '1' : '0',
    ]);
    const status = r.oneOf(PROOF_STATUSES, 'status');
    const transitions = r.transitions();
    if (status === 'forbidden') {
      r.end();
      return { status, transitions };
    }
    const state = r.oneOf(CONTROL_STATES, 'control state');
    const deadlineAt = r.nullableNumber('deadline');
    r.end();
    return { status, state, deadlineAt, transitions };
  }

  async cancel(cmd: CancelCommand): Promise<CancelResult> {
    const r = await this.reply('tpCancel', cmd.now, [
      cmd.clientKey,
      cmd.requestId,
      cmd.cancelToken,
      cmd.status,
      cmd.reason,
    ]);
    const status = r.oneOf(PROOF_STATUSES, 'status');
    const transitions = r.transitions();
    if (status === 'forbidden') {
      r.end();
      return { status, transitions };
    }
    const removedFromQueue = r.integer('removed from queue');
    r.end();
    return { status, removedFromQueue, transitions };
  }

  async putProgress(cmd: ProgressCommand): Promise<ProgressResult> {
    const r = await this.reply('tpPutProgress', cmd.now, [
      cmd.nodeId,
      cmd.credentialDigest,
      cmd.clientKey,
      cmd.requestId,
      JSON.stringify(cmd.envelope),
    ]);
    const status = r.oneOf(PROGRESS_STATUSES, 'status');
    const transitions = r.transitions();
    r.end();
    if (status === 'accepted') {
      this.wake.notifyLocal(responseKey(cmd.clientKey, cmd.requestId));
    }
    return { status, transitions };
  }

  /** What a work wait re-checks: the node has queued work, or is gone. */
  async hasWork(nodeId: string, now: number): Promise<boolean> {
    return flagReply('tpHasWork', await this.call('tpHasWork', now, [nodeId]));
  }

  // ---------------------------------------------------------------- answers (answers.redis.lua)

  async complete(cmd: CompleteCommand): Promise<CompleteResult> {
    const r = await this.reply(
      'tpComplete',
      cmd.now,
      [
        cmd.dialect,
        cmd.clientKey,
        opt(cmd.requestId),
        JSON.stringify(cmd.envelope),
        opt(cmd.answerer),
        String(answerBytes(cmd.envelope, cmd.clientKey)),
      ],
      { idempotent: cmd.requestId !== null },
    );
    const status = r.oneOf(COMPLETE_STATUSES, 'status');
    const transitions = r.transitions();
    if (status === 'gone') {
      const code = r.oneOf(GONE_CODES, 'code');
      r.end();
      return { status, code, transitions };
    }
    r.end();
    if (status === 'stored') {
      this.wake.notifyLocal(responseKey(cmd.clientKey, cmd.requestId));
    }
    return { status, transitions };
  }

  async takeResponse(cmd: TakeResponseCommand): Promise<TakeResponseResult> {
    // Repeatable (the answer stays handed out until delivery is confirmed) except an untracked
    // API v1 answer, which the take removes: only a repeatable take may answer 503 after it ran.
    const repeatable = cmd.dialect === 'legacy' || cmd.requestId !== null;
    const r = await this.reply(
      'tpTakeResponse',
      cmd.now,
      [cmd.dialect, cmd.clientKey, opt(cmd.requestId)],
      { idempotent: repeatable, acknowledged: repeatable },
    );
    const status = r.oneOf(TAKE_RESPONSE_STATUSES, 'status');
    const transitions = r.transitions();
    let result: TakeResponseResult;
    switch (status) {
      case 'ok':
        result = { status, envelope: r.json(envelopeSchema, 'envelope'), transitions };
        break;
      case 'pending': {
        const deadlineAt = r.number('deadline');
        const progress = r.nullableText('progress');
        const queuePosition = r.integer('queue position');
        const estimatedWaitSeconds = r.nullableNumber('estimated wait');
        result = {
          status,
          deadlineAt,
          progress:
            progress === null ? null : parseJson(r.script, envelopeSchema, progress, 'progress'),
          queuePosition,
          estimatedWaitSeconds,
          transitions,
        };
        break;
      }
      case 'terminal':
        result = {
          status,
          terminal: r.oneOf(TERMINAL_STATUSES, 'terminal status'),
          reason: r.oneOf(TERMINAL_REASONS, 'terminal reason'),
          transitions,
        };
        break;
      case 'unknown':
        result = { status, transitions };
        break;
      default: {
        const never: never = status;
        return never;
      }
    }
    r.end();
    return result;
  }

  /** What a response wait re-checks (see the in-memory twin, answers.memory.ts). */
  async hasResponse(clientKey: string, requestId: string | null, now: number): Promise<boolean> {
    const reply = await this.call('tpHasResponse', now, [clientKey, opt(requestId)]);
    return flagReply('tpHasResponse', reply);
  }

  async confirmDelivery(cmd: ConfirmDeliveryCommand): Promise<void> {
    const reply = await this.call('tpConfirmDelivery', cmd.now, [
      cmd.dialect,
      cmd.clientKey,
      opt(cmd.requestId),
    ]);
    if (reply !== 1) {
      throw new MalformedReplyError('tpConfirmDelivery', `expected 1, got ${typeof reply}`);
    }
  }

  async appendStreamChunk(cmd: StreamChunkCommand): Promise<StreamChunkResult> {
    const r = await this.reply('tpAppendStreamChunk', cmd.now, [
      cmd.sessionId,
      cmd.chunk,
      cmd.chunkBytes,
      cmd.final ? '1' : '0',
    ]);
    const status = r.oneOf(STREAM_CHUNK_STATUSES, 'status');
    const transitions = r.transitions();
    r.end();
    return { status, transitions };
  }

  async takeStream(clientKey: string, now: number): Promise<StreamTakeResult> {
    const r = await this.reply('tpTakeStream', now, [clientKey]);
    if (r.oneOf(STREAM_TAKE_STATUSES, 'status') === 'none') {
      r.end();
      return { status: 'none' };
    }
    const sessionId = r.text('session id');
    const final = r.flag('final');
    const chunks: string[] = [];
    while (r.remaining > 0) {
      chunks.push(r.text('chunk'));
    }
    return { status: 'ok', sessionId, final, chunks };
  }

  // ---------------------------------------------------------------- upkeep (upkeep.redis.lua)

  async hitRateLimit(cmd: RateLimitCommand): Promise<RateLimitResult> {
    const r = await this.reply('tpHitRateLimit', cmd.now, [
      cmd.key,
      cmd.limit,
      cmd.windowMs,
      cmd.refund === true ? '1' : '0',
    ]);
    const allowed = r.flag('allowed');
    const resetSeconds = r.integer('reset seconds');
    r.end();
    return { allowed, resetSeconds };
  }

  async sweep(now: number): Promise<TransitionCounts> {
    const total: TransitionCounts = { outcomes: {}, evictions: {} };
    for (let round = 0; round < SWEEP_MAX_ROUNDS; round += 1) {
      const r = await this.reply('tpSweep', now, [SWEEP_BATCH]);
      addCounts(total, r.transitions());
      const more = r.flag('more');
      r.end();
      if (!more) {
        break;
      }
    }
    return total;
  }

  async stats(now: number): Promise<StoreStats> {
    const raw = await this.call('tpStats', now, []);
    return statsFromSnapshot(parseJson('tpStats', statsSchema, raw, 'stats'), now);
  }

  /**
   * Readiness: the store is usable and the server it writes to is a writable primary (ROLE; a
   * demoted primary makes the connection look for the new one, and readiness fails until found).
   */
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
      await this.checkWritable();
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

  waitForWork(nodeId: string, until: number, signal: StopSignal): Promise<void> {
    return this.wake.wait(workKey(nodeId), until, signal, () =>
      this.hasWork(nodeId, this.clock.now()),
    );
  }

  waitForResponse(
    clientKey: string,
    requestId: string | null,
    until: number,
    signal: StopSignal,
  ): Promise<void> {
    return this.wake.wait(responseKey(clientKey, requestId), until, signal, () =>
      this.hasResponse(clientKey, requestId, this.clock.now()),
    );
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
    await Promise.all([quit(this.cmd), quit(this.lane), quit(this.sub)]);
  }

  // ---------------------------------------------------------------- connection

  /** A positional reply, read with its checks; a malformed one is logged and fails with 503. */
  private async reply(
    name: RelayScriptName,
    now: number,
    args: ScriptArg[],
    options: CallOptions = {},
  ): Promise<ScriptReply> {
    return ScriptReply.of(name, await this.call(name, now, args, options), this.sink);
  }

  /**
   * One script call. A call refused with READONLY (the primary was demoted under us: the
   * connection is already reconnecting to the new one) is sent once more when it is idempotent,
   * and otherwise fails with 503. With WAIT_REPLICAS, an acknowledged transition resolves only
   * once its replicas have it (503 when they do not answer in time).
   */
  private async call(
    name: RelayScriptName,
    now: number,
    args: ScriptArg[],
    options: CallOptions = {},
  ): Promise<unknown> {
    const idempotent = options.idempotent ?? IDEMPOTENT.has(name);
    const acknowledged = options.acknowledged ?? ACKNOWLEDGED.has(name);
    try {
      return await this.replicated(name, acknowledged, await this.send(name, now, args));
    } catch (error) {
      if (!idempotent || !(error instanceof ReadOnlyReply)) {
        throw error;
      }
      this.usable = false;
      this.problem = error.message;
      await this.whenUsable(Math.min(FAILOVER_RETRY_WAIT_MS, this.commandTimeoutMs));
      return this.replicated(name, acknowledged, await this.send(name, now, args));
    }
  }

  private async replicated(
    name: RelayScriptName,
    acknowledged: boolean,
    reply: unknown,
  ): Promise<unknown> {
    if (acknowledged && this.acks.enabled) {
      try {
        await this.acks.after();
      } catch (error) {
        if (error instanceof ReplicationTimeoutError) {
          this.sink.replicationTimeout(name);
        }
        throw toStoreError(error);
      }
    }
    return reply;
  }

  /** Resolves when the store is usable again, or after `ms` (the next call then reports why not). */
  private whenUsable(ms: number): Promise<void> {
    if (this.usable) {
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.usableListeners = this.usableListeners.filter((l) => l !== done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      timer.unref();
      this.usableListeners.push(done);
    });
  }

  private async send(name: RelayScriptName, now: number, args: ScriptArg[]): Promise<unknown> {
    if (!this.usable && !this.closed && this.cmd.status === 'ready') {
      // Connected but refused earlier (policy, layout, a failed check): look again, at most 1/s.
      if (Date.now() - this.checkedAt > RECHECK_WHEN_REFUSED_MS) {
        await this.checkServer();
      }
    }
    if (!this.usable) {
      throw new StoreUnavailableError(this.problem);
    }
    try {
      if (LANE_SCRIPTS.has(name) && this.lane.status === 'ready') {
        try {
          return await this.sendOn(this.lane, name, now, args);
        } catch (error) {
          // The lane dropped before the call left (nothing reached Redis): the command
          // connection takes it. A call lost in flight is not re-sent (a claim is not idempotent).
          if (!(error instanceof Error) || !error.message.startsWith(NOT_SENT)) {
            throw error;
          }
        }
      }
      return await this.sendOn(this.cmd, name, now, args);
    } catch (error) {
      const mapped = toStoreError(error);
      if (mapped.message.startsWith('redis: TPSCHEMA')) {
        this.refuse(mapped.message);
      }
      // Only a reply of the server itself counts as a demotion seen (not a fast refusal that
      // repeats the last problem): that one call may be retried once the primary is found.
      throw mapped.message.startsWith('redis: READONLY')
        ? new ReadOnlyReply(mapped.message)
        : mapped;
    }
  }

  private sendOn(
    connection: RedisClient,
    name: RelayScriptName,
    now: number,
    args: ScriptArg[],
  ): Promise<unknown> {
    const fn = (connection as unknown as ScriptHost)[name];
    if (!fn) {
      throw new Error(`script ${name} is not defined`);
    }
    return fn.call(connection, this.routingKey, this.prefix, this.limitsJson, now, ...args);
  }

  private async start(waitMs: number): Promise<void> {
    const ready = new Promise<void>((resolve) => this.readyListeners.push(resolve));
    this.cmd.connect().catch(() => undefined);
    this.lane.connect().catch(() => undefined);
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
    this.lane.on('error', (error: Error) => {
      this.warnOnce('redis delivery connection error', error.message);
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
      await this.checkWritable();
      const policy = await this.evictionPolicy();
      if (policy !== null && policy !== 'noeviction') {
        this.refuse(
          `redis: maxmemory-policy is ${policy}, which may evict relay state; set maxmemory-policy noeviction`,
        );
        return;
      }
      const schemaKey = this.routingKey;
      await this.migrate();
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
      const waiting = this.usableListeners;
      this.usableListeners = [];
      for (const listener of waiting) {
        listener();
      }
    } catch (error) {
      this.usable = false;
      this.problem = toStoreError(error).message;
    }
  }

  /**
   * The server this store writes to must be a primary: ROLE (one round trip, as cheap as PING).
   * A replica there (a demoted primary, or a URL naming a replica) refuses service; with Sentinel
   * the connection is dropped so that it asks the Sentinels for the current primary.
   */
  private async checkWritable(): Promise<void> {
    const server = await primaryFor(this.cmd, this.routingKey);
    if (!this.roleAllowed) {
      await server.ping();
      return;
    }
    let role: string;
    try {
      role = String(((await server.call('ROLE')) as unknown[])[0]);
    } catch (error) {
      const mapped = toStoreError(error);
      if (!mapped.message.includes('NOPERM')) {
        throw error;
      }
      this.roleAllowed = false;
      this.warnOnce(
        'cannot read the redis role (ROLE not permitted); readiness uses PING',
        mapped.message,
      );
      await server.ping();
      return;
    }
    if (role !== 'master') {
      const reason = `redis: READONLY the server is a ${role === 'slave' ? 'replica' : role}, not a writable primary`;
      this.refuse(reason);
      if (this.cmd instanceof Redis && this.cmd.options.sentinels) {
        this.cmd.disconnect(true);
      }
      throw new StoreUnavailableError(reason);
    }
  }

  /** Renames an earlier prefix's keys under this one, once (see prefix-migration.ts). */
  private async migrate(): Promise<void> {
    if (this.migrateFrom === null || !(this.cmd instanceof Redis)) {
      return;
    }
    const result = await migratePrefix(this.cmd, this.migrateFrom, this.prefix, SCHEMA_VERSION);
    if (result.status === 'moved') {
      this.log.warn({
        msg: 'redis: moved the relay state to the new key prefix; replicas of earlier releases now refuse to serve',
        from: this.migrateFrom,
        to: this.prefix,
        keys: result.keys,
      });
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

/** The server answered READONLY: the connection reached a replica (a demoted primary). */
class ReadOnlyReply extends StoreUnavailableError {}

async function quit(connection: RedisClient | WakeSubscriber): Promise<void> {
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
