import { Logger } from '@nestjs/common';
import type { Clock } from '../common/clock';
import type { StopSignal } from '../common/wait-signal';
import type { RedisTopology, RelayConfig } from '../config/relay-config';
import { ConnectionSupervisor, ReadOnlyReply, type StoreLog } from './redis/connection.supervisor';
import { ReplicaAcks, ReplicationTimeoutError } from './redis/replica-acks';
import { toStoreError } from './redis/redis-error.mapper';
import { RELAY_SCRIPTS, relayScripts } from './redis/script.registry';
import type { RedisScript } from './redis/script-call';
import type { WakeChannel } from './redis/wake.channel';
import { NO_TRANSITION_SINK, type TransitionSink } from './transition.sink';
import type * as store from './state-store';
import type {
  ClaimedJob,
  NodeSummary,
  NodeView,
  StoreLimits,
  StoreStats,
  TransitionCounts,
} from './state.types';
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

export type { StoreLog } from './redis/connection.supervisor';

/** Most a READONLY retry waits for the connection to come back on the new primary. */
const FAILOVER_RETRY_WAIT_MS = 5_000;

/**
 * The shared store for several replicas: every transition is one Lua script (prelude + body, see
 * src/state/redis/) run atomically by Redis, with `now` from the injected clock. Each operation
 * runs the script its group declares (`transitions/<group>.redis.ts`: arguments, reply); this
 * class sends it, retries it after a failover when it may, and waits for the replicas when it is
 * acknowledged. Long-poll wake-ups cross replicas over one pub/sub channel ({@link WakeChannel}).
 *
 * Outages never crash the process: it starts and reconnects on its own, every operation fails
 * fast with a StoreUnavailableError (503 + Retry-After) while Redis is unreachable, slow,
 * evicting or speaking another data layout, and `ping` (readiness) says why
 * ({@link ConnectionSupervisor}).
 */
export class RedisStateStore implements store.StateStore {
  private readonly connections: ConnectionSupervisor;
  private readonly wake: WakeChannel;
  private readonly acks: ReplicaAcks;
  private readonly prefix: string;
  private readonly commandTimeoutMs: number;
  private readonly limitsJson: string;
  private readonly sink: TransitionSink;

  static connect(
    config: RelayConfig,
    clock: Clock,
    sink?: TransitionSink,
  ): Promise<store.StateStore> {
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
    await store.connections.start(options.connectWaitMs ?? 3000);
    return store;
  }

  private constructor(
    options: RedisStoreOptions,
    private readonly clock: Clock,
    private readonly log: StoreLog,
  ) {
    this.prefix = options.keyPrefix;
    this.commandTimeoutMs = options.commandTimeoutMs;
    this.limitsJson = JSON.stringify(options.limits);
    this.sink = options.sink ?? NO_TRANSITION_SINK;
    this.connections = new ConnectionSupervisor(
      {
        url: options.url,
        topology: options.topology ?? { kind: 'standalone' },
        password: options.password,
        tls: options.tls,
        tlsCaFile: options.tlsCaFile,
        commandTimeoutMs: options.commandTimeoutMs,
      },
      options.keyPrefix,
      options.migrateFromPrefix ?? null,
      clock,
      log,
      {
        handedOver: (jobs, taken) => {
          if (taken) {
            this.sink.handOff('taken');
          } else {
            this.giveBack(jobs);
          }
        },
        unreadable: (error) => {
          this.sink.handOff('left_to_lease');
          this.log.warn({
            msg: 'redis: an unreadable hand-off; its job waits for its in-flight lease',
            reason: error.message,
          });
        },
      },
    );
    for (const [name, lua] of Object.entries(relayScripts())) {
      this.connections.define(name, lua, RELAY_SCRIPTS.get(name)?.lane === true);
    }
    this.wake = this.connections.wake;
    this.acks = new ReplicaAcks(options.waitReplicas ?? 0, options.waitTimeoutMs ?? 500, () =>
      this.connections.primary(),
    );
  }

  // ---------------------------------------------------------------- nodes (nodes.redis.ts)

  upsertNode(cmd: store.UpsertNodeCommand): Promise<store.UpsertNodeResult> {
    return this.run(nodes.upsertNode, cmd.now, cmd);
  }

  unregisterNode(cmd: store.UnregisterNodeCommand): Promise<store.UnregisterNodeResult> {
    return this.run(nodes.unregisterNode, cmd.now, cmd);
  }

  listNodes(now: number): Promise<NodeView[]> {
    return this.run(nodes.listNodes, now, undefined);
  }

  summarizeNodes(cmd: store.SummarizeNodesCommand): Promise<NodeSummary> {
    return this.run(nodes.summarizeNodes, cmd.now, cmd);
  }

  markKeyUnusable(nodeId: string, now: number): Promise<boolean> {
    return this.run(nodes.markKeyUnusable, now, nodeId);
  }

  selectNode(cmd: store.SelectNodeCommand): Promise<store.SelectNodeResult> {
    return this.run(nodes.selectNode, cmd.now, cmd);
  }

  pickLegacyNode(now: number): Promise<string | null> {
    return this.run(nodes.pickLegacyNode, now, undefined);
  }

  // ---------------------------------------------------------------- work (work.redis.ts)

  async enqueue(cmd: store.EnqueueCommand): Promise<store.EnqueueResult> {
    const result = await this.run(work.enqueue, cmd.now, { ...cmd, caller: this.wake.self });
    if (result.status !== 'queued') {
      return result;
    }
    if (result.handOff) {
      // A poll of this process was held for the node: the script claimed the job for it.
      this.wake.handOver(result.handOff.token, result.handOff.jobs);
    } else {
      this.wake.notifyLocal(workKey(cmd.job.nodeId));
    }
    return {
      status: result.status,
      deadlineAt: result.deadlineAt,
      transitions: result.transitions,
    };
  }

  claimNext(cmd: store.ClaimCommand): Promise<store.ClaimResult> {
    return this.run(work.claimNext, cmd.now, cmd);
  }

  control(cmd: store.ControlCommand): Promise<store.ControlResult> {
    return this.run(work.control, cmd.now, cmd);
  }

  cancel(cmd: store.CancelCommand): Promise<store.CancelResult> {
    return this.run(work.cancel, cmd.now, cmd);
  }

  async putProgress(cmd: store.ProgressCommand): Promise<store.ProgressResult> {
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

  async complete(cmd: store.CompleteCommand): Promise<store.CompleteResult> {
    const result = await this.run(answers.complete, cmd.now, cmd);
    if (result.status === 'stored') {
      this.wake.notifyLocal(responseKey(cmd.clientKey, cmd.requestId));
    }
    return result;
  }

  takeResponse(cmd: store.TakeResponseCommand): Promise<store.TakeResponseResult> {
    return this.run(answers.takeResponse, cmd.now, cmd);
  }

  /** What a response wait re-checks (see the in-memory twin, answers.memory.ts). */
  hasResponse(clientKey: string, requestId: string | null, now: number): Promise<boolean> {
    return this.run(answers.hasResponse, now, { clientKey, requestId });
  }

  confirmDelivery(cmd: store.ConfirmDeliveryCommand): Promise<void> {
    return this.run(answers.confirmDelivery, cmd.now, cmd);
  }

  appendStreamChunk(cmd: store.StreamChunkCommand): Promise<store.StreamChunkResult> {
    return this.run(answers.appendStreamChunk, cmd.now, cmd);
  }

  takeStream(clientKey: string, now: number): Promise<store.StreamTakeResult> {
    return this.run(answers.takeStream, now, clientKey);
  }

  // ---------------------------------------------------------------- upkeep (upkeep.redis.ts)

  hitRateLimit(cmd: store.RateLimitCommand): Promise<store.RateLimitResult> {
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

  /** Readiness: see {@link ConnectionSupervisor.ping}. */
  ping(): Promise<void> {
    return this.connections.ping();
  }

  /** While subscribed: a hand-off needs the wake-up channel (else waits re-check, then claim). */
  get claimsWhileWaiting(): boolean {
    return this.wake.ready;
  }

  async waitForWork(
    nodeId: string,
    until: number,
    signal: StopSignal,
    poll?: store.PollClaim,
  ): Promise<ClaimedJob[] | null> {
    if (poll?.dialect === 'v1' && this.wake.ready) {
      return this.wake.hold(workKey(nodeId), until, signal, async (holder) => {
        const cmd = { nodeId, ...poll, hold: { holder, until }, now: this.clock.now() };
        const result = await this.run(work.claimNext, cmd.now, cmd);
        return result.status === 'ok' ? result.jobs : null;
      });
    }
    await this.wake.wait(workKey(nodeId), until, signal, () =>
      this.hasWork(nodeId, this.clock.now()),
    );
    return null;
  }

  /**
   * Jobs claimed for a held poll that had ended when they arrived: each back to the head of its
   * queue. One that fails stays claimed until its in-flight lease lapses, as a lost poll answer.
   */
  private giveBack(jobs: ClaimedJob[]): void {
    for (const job of jobs) {
      this.run(work.giveBack, this.clock.now(), job.jobId).then(
        (requeued) => this.sink.handOff(requeued ? 'given_back' : 'already_ended'),
        (error: Error) => {
          this.sink.handOff('left_to_lease');
          this.log.warn({
            msg: 'redis: a claim made for an ended poll waits for its in-flight lease',
            reason: error.message,
          });
        },
      );
    }
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

  close(): Promise<void> {
    return this.connections.close();
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
    const argv = [this.prefix, this.limitsJson, now, ...args];
    const send = () => this.connections.send(script.name, script.lane, argv);
    let reply: unknown;
    try {
      reply = await this.replicated(script.name, acknowledged, await send());
    } catch (error) {
      if (!script.idempotent(cmd) || !(error instanceof ReadOnlyReply)) {
        throw error;
      }
      await this.connections.afterDemotion(
        error.message,
        Math.min(FAILOVER_RETRY_WAIT_MS, this.commandTimeoutMs),
      );
      reply = await this.replicated(script.name, acknowledged, await send());
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
}
