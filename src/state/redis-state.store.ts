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
import { RELAY_SCRIPTS, relayScripts, SCHEMA_VERSION } from './redis/script.registry';
import type { RedisScript, ScriptArg } from './redis/script-call';
import { WakeChannel } from './redis/wake.channel';
import { NO_TRANSITION_SINK, type TransitionSink } from './transition.sink';
import type {
  CancelCommand,
  CancelResult,
  ClaimCommand,
  ClaimResult,
  CompleteCommand,
  CompleteResult,
  ConfirmDeliveryCommand,
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
  SummarizeNodesCommand,
  TakeResponseCommand,
  TakeResponseResult,
  UnregisterNodeCommand,
  UnregisterNodeResult,
  UpsertNodeCommand,
  UpsertNodeResult,
} from './state-store';
import type {
  NodeSummary,
  NodeView,
  StoreLimits,
  StoreStats,
  TransitionCounts,
} from './state.types';
import { StoreUnavailableError } from './store-unavailable.error';
import * as answers from './transitions/answers.redis';
import * as nodes from './transitions/nodes.redis';
import { statsFromSnapshot } from './transitions/stats-snapshot';
import * as upkeep from './transitions/upkeep.redis';
import * as work from './transitions/work.redis';
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

/** How ioredis refuses a call it did not send (its offline queue is off). */
const NOT_SENT = "Stream isn't writeable";

/** Most a READONLY retry waits for the connection to come back on the new primary. */
const FAILOVER_RETRY_WAIT_MS = 5_000;
type ScriptHost = Partial<Record<string, (...args: ScriptArg[]) => Promise<unknown>>>;

/** How often readiness re-reads the server's eviction policy. */
const SERVER_RECHECK_MS = 30_000;
const RECHECK_WHEN_REFUSED_MS = 1_000;
const LOG_REPEAT_MS = 10_000;
const QUIT_TIMEOUT_MS = 1_000;

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
    for (const [name, lua] of Object.entries(relayScripts())) {
      // One declared key (the layout key, under the prefix): a Cluster routes the script to the
      // slot of the prefix's hash tag, where every key it builds from the prefix lives.
      this.cmd.defineCommand(name, { numberOfKeys: 1, lua });
      if (RELAY_SCRIPTS.get(name)?.lane === true) {
        this.lane.defineCommand(name, { numberOfKeys: 1, lua });
      }
    }
    this.wake = new WakeChannel(this.sub, `${this.prefix}wake`, clock);
    this.watch();
  }

  // ---------------------------------------------------------------- nodes (nodes.redis.ts)

  upsertNode(cmd: UpsertNodeCommand): Promise<UpsertNodeResult> {
    return this.run(nodes.upsertNode, cmd.now, cmd);
  }

  unregisterNode(cmd: UnregisterNodeCommand): Promise<UnregisterNodeResult> {
    return this.run(nodes.unregisterNode, cmd.now, cmd);
  }

  listNodes(now: number): Promise<NodeView[]> {
    return this.run(nodes.listNodes, now, undefined);
  }

  summarizeNodes(cmd: SummarizeNodesCommand): Promise<NodeSummary> {
    return this.run(nodes.summarizeNodes, cmd.now, cmd);
  }

  markKeyUnusable(nodeId: string, now: number): Promise<boolean> {
    return this.run(nodes.markKeyUnusable, now, nodeId);
  }

  selectNode(cmd: SelectNodeCommand): Promise<SelectNodeResult> {
    return this.run(nodes.selectNode, cmd.now, cmd);
  }

  pickLegacyNode(now: number): Promise<string | null> {
    return this.run(nodes.pickLegacyNode, now, undefined);
  }

  // ---------------------------------------------------------------- work (work.redis.ts)

  async enqueue(cmd: EnqueueCommand): Promise<EnqueueResult> {
    const result = await this.run(work.enqueue, cmd.now, cmd);
    if (result.status === 'queued') {
      this.wake.notifyLocal(workKey(cmd.job.nodeId));
    }
    return result;
  }

  claimNext(cmd: ClaimCommand): Promise<ClaimResult> {
    return this.run(work.claimNext, cmd.now, cmd);
  }

  control(cmd: ControlCommand): Promise<ControlResult> {
    return this.run(work.control, cmd.now, cmd);
  }

  cancel(cmd: CancelCommand): Promise<CancelResult> {
    return this.run(work.cancel, cmd.now, cmd);
  }

  async putProgress(cmd: ProgressCommand): Promise<ProgressResult> {
    const result = await this.run(work.putProgress, cmd.now, cmd);
    if (result.status === 'accepted') {
      this.wake.notifyLocal(responseKey(cmd.clientKey, cmd.requestId));
    }
    return result;
  }

  /** What a work wait re-checks: the node has queued work, or is gone. */
  hasWork(nodeId: string, now: number): Promise<boolean> {
    return this.run(work.hasWork, now, nodeId);
  }

  // ---------------------------------------------------------------- answers (answers.redis.ts)

  async complete(cmd: CompleteCommand): Promise<CompleteResult> {
    const result = await this.run(answers.complete, cmd.now, cmd);
    if (result.status === 'stored') {
      this.wake.notifyLocal(responseKey(cmd.clientKey, cmd.requestId));
    }
    return result;
  }

  takeResponse(cmd: TakeResponseCommand): Promise<TakeResponseResult> {
    return this.run(answers.takeResponse, cmd.now, cmd);
  }

  /** What a response wait re-checks (see the in-memory twin, answers.memory.ts). */
  hasResponse(clientKey: string, requestId: string | null, now: number): Promise<boolean> {
    return this.run(answers.hasResponse, now, { clientKey, requestId });
  }

  confirmDelivery(cmd: ConfirmDeliveryCommand): Promise<void> {
    return this.run(answers.confirmDelivery, cmd.now, cmd);
  }

  appendStreamChunk(cmd: StreamChunkCommand): Promise<StreamChunkResult> {
    return this.run(answers.appendStreamChunk, cmd.now, cmd);
  }

  takeStream(clientKey: string, now: number): Promise<StreamTakeResult> {
    return this.run(answers.takeStream, now, clientKey);
  }

  // ---------------------------------------------------------------- upkeep (upkeep.redis.ts)

  hitRateLimit(cmd: RateLimitCommand): Promise<RateLimitResult> {
    return this.run(upkeep.hitRateLimit, cmd.now, cmd);
  }

  async sweep(now: number): Promise<TransitionCounts> {
    const total: TransitionCounts = { outcomes: {}, evictions: {} };
    for (let round = 0; round < upkeep.SWEEP_MAX_ROUNDS; round += 1) {
      const { transitions, more } = await this.run(upkeep.sweep, now, upkeep.SWEEP_BATCH);
      upkeep.addCounts(total, transitions);
      if (!more) {
        break;
      }
    }
    return total;
  }

  async stats(now: number): Promise<StoreStats> {
    return statsFromSnapshot(await this.run(upkeep.stats, now, undefined), now);
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

  waitForWork(nodeId: string, until: number, signal: AbortSignal): Promise<void> {
    return this.wake.wait(workKey(nodeId), until, signal, () =>
      this.hasWork(nodeId, this.clock.now()),
    );
  }

  waitForResponse(
    clientKey: string,
    requestId: string | null,
    until: number,
    signal: AbortSignal,
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

  /**
   * One script call: its arguments encoded and its reply decoded by the script's declaration
   * (`transitions/<group>.redis.ts`); a malformed reply is logged and fails with 503. A call
   * refused with READONLY (the primary was demoted under us: the connection is already
   * reconnecting to the new one) is sent once more when it is idempotent, and otherwise fails
   * with 503. With WAIT_REPLICAS, an acknowledged transition resolves only once its replicas have
   * it (503 when they do not answer in time).
   */
  private async run<C, R>(script: RedisScript<C, R>, now: number, cmd: C): Promise<R> {
    const args = script.encode(cmd);
    const acknowledged = script.acknowledged(cmd);
    let reply: unknown;
    try {
      reply = await this.replicated(script.name, acknowledged, await this.send(script, now, args));
    } catch (error) {
      if (!script.idempotent(cmd) || !(error instanceof ReadOnlyReply)) {
        throw error;
      }
      this.usable = false;
      this.problem = error.message;
      await this.whenUsable(Math.min(FAILOVER_RETRY_WAIT_MS, this.commandTimeoutMs));
      reply = await this.replicated(script.name, acknowledged, await this.send(script, now, args));
    }
    return script.decode(reply, cmd, this.sink);
  }

  private async replicated(name: string, acknowledged: boolean, reply: unknown): Promise<unknown> {
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

  private async send(script: RedisScript<never>, now: number, args: ScriptArg[]): Promise<unknown> {
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
      if (script.lane && this.lane.status === 'ready') {
        try {
          return await this.sendOn(this.lane, script.name, now, args);
        } catch (error) {
          // The lane dropped before the call left (nothing reached Redis): the command
          // connection takes it. A call lost in flight is not re-sent (a claim is not idempotent).
          if (!(error instanceof Error) || !error.message.startsWith(NOT_SENT)) {
            throw error;
          }
        }
      }
      return await this.sendOn(this.cmd, script.name, now, args);
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
    name: string,
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
