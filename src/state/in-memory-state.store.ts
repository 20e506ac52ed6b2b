import type { Clock } from '../common/clock';
import type * as store from './state-store';
import type {
  NodeSummary,
  NodeView,
  StoreLimits,
  StoreStats,
  TransitionCounts,
} from './state.types';
import { NO_TRANSITION_SINK, type TransitionSink } from './transition.sink';
import * as answers from './transitions/answers.memory';
import { createMemoryState, type MemoryState } from './transitions/memory-state';
import * as nodes from './transitions/nodes.memory';
import { statsFromSnapshot } from './transitions/stats-snapshot';
import * as upkeep from './transitions/upkeep.memory';
import * as work from './transitions/work.memory';
import type { StopSignal } from '../common/wait-signal';
import { responseKey, Waiters, workKey } from './waiters';

/**
 * The default store: all state in this process. A thin class over the synchronous transitions of
 * `transitions/*.memory.ts` (the twins of the Redis store's `*.redis.lua`): each runs to completion
 * inside one turn of the event loop, which makes it atomic. Expiry uses one {@link TtlIndex} per
 * fixed-TTL category, so sweeps cost O(expired).
 */
export class InMemoryStateStore implements store.StateStore {
  /** A wake-up resolves a poll in the enqueue's own turn here; the poll claims. */
  readonly claimsWhileWaiting = false;
  private readonly state: MemoryState;
  private readonly waiters: Waiters;

  constructor(
    limits: StoreLimits,
    private readonly clock: Clock,
    private readonly sink: TransitionSink = NO_TRANSITION_SINK,
  ) {
    this.waiters = new Waiters(clock);
    this.state = createMemoryState(limits, (key) => this.waiters.notify(key));
  }

  upsertNode(cmd: store.UpsertNodeCommand): Promise<store.UpsertNodeResult> {
    return this.reported(nodes.upsertNode(this.state, cmd));
  }

  unregisterNode(cmd: store.UnregisterNodeCommand): Promise<store.UnregisterNodeResult> {
    return this.reported(nodes.unregisterNode(this.state, cmd));
  }

  listNodes(now: number): Promise<NodeView[]> {
    return Promise.resolve(nodes.listNodes(this.state, now));
  }

  summarizeNodes(cmd: store.SummarizeNodesCommand): Promise<NodeSummary> {
    return Promise.resolve(nodes.summarizeNodes(this.state, cmd));
  }

  markKeyUnusable(nodeId: string, _now: number): Promise<boolean> {
    return Promise.resolve(nodes.markKeyUnusable(this.state, nodeId));
  }

  selectNode(cmd: store.SelectNodeCommand): Promise<store.SelectNodeResult> {
    return Promise.resolve(nodes.selectNode(this.state, cmd));
  }

  pickLegacyNode(now: number): Promise<string | null> {
    return Promise.resolve(nodes.pickLegacyNode(this.state, now));
  }

  enqueue(cmd: store.EnqueueCommand): Promise<store.EnqueueResult> {
    return this.reported(work.enqueue(this.state, cmd));
  }

  claimNext(cmd: store.ClaimCommand): Promise<store.ClaimResult> {
    return this.reported(work.claimNext(this.state, cmd));
  }

  control(cmd: store.ControlCommand): Promise<store.ControlResult> {
    return this.reported(work.control(this.state, cmd));
  }

  cancel(cmd: store.CancelCommand): Promise<store.CancelResult> {
    return this.reported(work.cancel(this.state, cmd));
  }

  putProgress(cmd: store.ProgressCommand): Promise<store.ProgressResult> {
    return this.reported(work.putProgress(this.state, cmd));
  }

  complete(cmd: store.CompleteCommand): Promise<store.CompleteResult> {
    return this.reported(answers.complete(this.state, cmd));
  }

  takeResponse(cmd: store.TakeResponseCommand): Promise<store.TakeResponseResult> {
    return this.reported(answers.takeResponse(this.state, cmd));
  }

  confirmDelivery(cmd: store.ConfirmDeliveryCommand): Promise<void> {
    answers.confirmDelivery(this.state, cmd);
    return Promise.resolve();
  }

  appendStreamChunk(cmd: store.StreamChunkCommand): Promise<store.StreamChunkResult> {
    return this.reported(answers.appendStreamChunk(this.state, cmd));
  }

  takeStream(clientKey: string, now: number): Promise<store.StreamTakeResult> {
    return Promise.resolve(answers.takeStream(this.state, clientKey, now));
  }

  hitRateLimit(cmd: store.RateLimitCommand): Promise<store.RateLimitResult> {
    return Promise.resolve(upkeep.hitRateLimit(this.state, cmd));
  }

  sweep(now: number): Promise<TransitionCounts> {
    const counts = upkeep.sweep(this.state, now);
    this.sink.transitions(counts);
    return Promise.resolve(counts);
  }

  stats(now: number): Promise<StoreStats> {
    return Promise.resolve(statsFromSnapshot(upkeep.stats(this.state, now), now));
  }

  ping(): Promise<void> {
    return Promise.resolve();
  }

  /** What a work wait re-checks: the node has queued work, or is gone. */
  hasWork(nodeId: string, _now: number): Promise<boolean> {
    return Promise.resolve(work.hasWork(this.state, nodeId));
  }

  /** What a response wait re-checks (see {@link answers.hasResponse}). */
  hasResponse(clientKey: string, requestId: string | null, now: number): Promise<boolean> {
    return Promise.resolve(answers.hasResponse(this.state, clientKey, requestId, now));
  }

  /** Always null: a wake-up here resolves the poll in the enqueue's own turn, and it claims. */
  async waitForWork(nodeId: string, until: number, signal: StopSignal): Promise<null> {
    // The check and the registration run in one synchronous step: no wake-up falls between.
    if (!work.hasWork(this.state, nodeId)) {
      await this.waiters.wait(workKey(nodeId), until, signal);
    }
    return null;
  }

  waitForResponse(
    clientKey: string,
    requestId: string | null,
    until: number,
    signal: StopSignal,
  ): Promise<void> {
    if (answers.hasResponse(this.state, clientKey, requestId, this.clock.now())) {
      return Promise.resolve();
    }
    return this.waiters.wait(responseKey(clientKey, requestId), until, signal);
  }

  wakeAll(): void {
    this.waiters.notifyAll();
  }

  close(): Promise<void> {
    this.waiters.notifyAll();
    return Promise.resolve();
  }

  /** A transition's result, its counts reported to the sink first. */
  private reported<R extends { transitions: TransitionCounts }>(result: R): Promise<R> {
    this.sink.transitions(result.transitions);
    return Promise.resolve(result);
  }
}
