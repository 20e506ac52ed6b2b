import type { RelayMetrics } from '../metrics/relay-metrics';
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
import type { NodeSummary, NodeView, StoreStats, TransitionCounts } from './state.types';

/**
 * The store the services get: the real one, with every transition's outcome and eviction counts
 * recorded in the metrics here, once, so no service can forget to (or count twice). Results pass
 * through unchanged.
 */
export class MeteredStateStore implements StateStore {
  constructor(
    private readonly inner: StateStore,
    private readonly metrics: RelayMetrics,
  ) {}

  private async counted<R extends { transitions: TransitionCounts }>(
    result: Promise<R>,
  ): Promise<R> {
    const r = await result;
    this.metrics.recordTransitions(r.transitions);
    return r;
  }

  upsertNode(cmd: UpsertNodeCommand): Promise<UpsertNodeResult> {
    return this.counted(this.inner.upsertNode(cmd));
  }

  unregisterNode(cmd: UnregisterNodeCommand): Promise<UnregisterNodeResult> {
    return this.counted(this.inner.unregisterNode(cmd));
  }

  listNodes(now: number): Promise<NodeView[]> {
    return this.inner.listNodes(now);
  }

  summarizeNodes(cmd: SummarizeNodesCommand): Promise<NodeSummary> {
    return this.inner.summarizeNodes(cmd);
  }

  markKeyUnusable(nodeId: string, now: number): Promise<boolean> {
    return this.inner.markKeyUnusable(nodeId, now);
  }

  selectNode(cmd: SelectNodeCommand): Promise<SelectNodeResult> {
    return this.inner.selectNode(cmd);
  }

  pickLegacyNode(now: number): Promise<string | null> {
    return this.inner.pickLegacyNode(now);
  }

  enqueue(cmd: EnqueueCommand): Promise<EnqueueResult> {
    return this.counted(this.inner.enqueue(cmd));
  }

  claimNext(cmd: ClaimCommand): Promise<ClaimResult> {
    return this.counted(this.inner.claimNext(cmd));
  }

  control(cmd: ControlCommand): Promise<ControlResult> {
    return this.counted(this.inner.control(cmd));
  }

  complete(cmd: CompleteCommand): Promise<CompleteResult> {
    return this.counted(this.inner.complete(cmd));
  }

  takeResponse(cmd: TakeResponseCommand): Promise<TakeResponseResult> {
    return this.counted(this.inner.takeResponse(cmd));
  }

  confirmDelivery(cmd: ConfirmDeliveryCommand): Promise<void> {
    return this.inner.confirmDelivery(cmd);
  }

  cancel(cmd: CancelCommand): Promise<CancelResult> {
    return this.counted(this.inner.cancel(cmd));
  }

  putProgress(cmd: ProgressCommand): Promise<ProgressResult> {
    return this.counted(this.inner.putProgress(cmd));
  }

  appendStreamChunk(cmd: StreamChunkCommand): Promise<StreamChunkResult> {
    return this.counted(this.inner.appendStreamChunk(cmd));
  }

  takeStream(clientKey: string, now: number): Promise<StreamTakeResult> {
    return this.inner.takeStream(clientKey, now);
  }

  hitRateLimit(cmd: RateLimitCommand): Promise<RateLimitResult> {
    return this.inner.hitRateLimit(cmd);
  }

  async sweep(now: number): Promise<TransitionCounts> {
    const t = await this.inner.sweep(now);
    this.metrics.recordTransitions(t);
    return t;
  }

  stats(now: number): Promise<StoreStats> {
    return this.inner.stats(now);
  }

  ping(): Promise<void> {
    return this.inner.ping();
  }

  waitForWork(nodeId: string, until: number, signal: AbortSignal): Promise<void> {
    return this.inner.waitForWork(nodeId, until, signal);
  }

  waitForResponse(
    clientKey: string,
    requestId: string | null,
    until: number,
    signal: AbortSignal,
  ): Promise<void> {
    return this.inner.waitForResponse(clientKey, requestId, until, signal);
  }

  wakeAll(): void {
    this.inner.wakeAll();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
