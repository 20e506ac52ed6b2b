import { randomInt } from 'node:crypto';
import type { Clock } from '../common/clock';
import { constantTimeEquals } from '../common/ids';
import { scheduleFreshFirst, type CursorState, type SchedulableNode } from './scheduler';
import type {
  CancelCommand,
  CancelResult,
  ConfirmDeliveryCommand,
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
import type {
  ClaimedJob,
  Dialect,
  Envelope,
  EvictionReason,
  JobInput,
  NodeCapabilities,
  NodeView,
  RequestOutcome,
  StoreLimits,
  StoreStats,
  TerminalReason,
  TerminalStatus,
  TransitionCounts,
} from './state.types';
import { takeDue, TtlIndex } from './ttl-index';
import { responseKey, Waiters, workKey } from './waiters';

interface NodeRec {
  nodeId: string;
  dialect: Dialect;
  seq: number;
  lastPingAt: number;
  pollingUntil: number;
  capabilities: NodeCapabilities | null;
  credentialDigest: string | null;
  /** Job ids in FIFO order (a Set keeps insertion order and removes from the middle in O(1)). */
  queue: Set<string>;
  /** request_id → job id of v1 work this node claimed and has not answered. */
  claims: Map<string, string>;
  /** Claims whose accounting lease is active (counted for load and eviction protection). */
  activeClaims: Set<string>;
}

type JobState = 'queued' | 'inflight' | 'answered';

interface JobRec extends JobInput {
  state: JobState;
  queuedAt: number;
  deadlineAt: number;
  claimedAt: number;
  response: Envelope | null;
  progress: Envelope | null;
  /** The claiming node has confirmed it holds the work (a `/servers/control` or progress call). */
  acked: boolean;
  /** The answer was handed to the client; kept until the delivery is confirmed or the grace ends. */
  handed: boolean;
}

interface TerminalRec {
  status: TerminalStatus;
  reason: TerminalReason;
}

interface TombstoneRec {
  status: TerminalStatus;
  digest: string | null;
  deadlineAt: number | null;
}

interface StreamRec {
  clientKey: string;
  nodeId: string;
  chunks: unknown[];
  bytes: number;
  final: boolean;
}

interface UntrackedRec {
  clientKey: string;
  envelope: Envelope;
}

const pairKey = (clientKey: string, requestId: string): string => `${clientKey}\n${requestId}`;
const tombKey = (nodeId: string, requestId: string): string => `${nodeId}\n${requestId}`;

function emptyCounts(): TransitionCounts {
  return { outcomes: {}, evictions: {} };
}

function bump<K extends string>(rec: Partial<Record<K, number>>, key: K, by = 1): void {
  rec[key] = (rec[key] ?? 0) + by;
}

/** Outcome label of a terminal transition (metrics vocabulary of spec §5.5). */
export function outcomeOf(status: TerminalStatus, reason: TerminalReason): RequestOutcome {
  if (status === 'cancelled') {
    return 'cancelled';
  }
  return reason === 'provider_timeout' ? 'timed_out' : 'expired';
}

/**
 * The default store: all state in this process. Every method runs synchronously to completion
 * inside one turn of the event loop, which makes each transition atomic. Expiry uses one
 * {@link TtlIndex} per fixed-TTL category, so sweeps cost O(expired).
 */
export class InMemoryStateStore implements StateStore {
  private readonly nodes = new Map<string, NodeRec>();
  private readonly leases: Record<Dialect, TtlIndex<string>> = {
    legacy: new TtlIndex(),
    v1: new TtlIndex(),
  };
  /**
   * Re-check instants of nodes the sweep found protected (long-polling or working): one lease
   * from then. Apart from `leases`, so each index keeps one fixed offset and stays in order.
   */
  private readonly rechecks: Record<Dialect, TtlIndex<string>> = {
    legacy: new TtlIndex(),
    v1: new TtlIndex(),
  };
  private readonly legacyIds: string[] = [];
  private readonly legacyPos = new Map<string, number>();
  private nodeSeq = 0;

  private readonly jobs = new Map<string, JobRec>();
  private readonly deadlines: Record<Dialect, TtlIndex<string>> = {
    legacy: new TtlIndex(),
    v1: new TtlIndex(),
  };
  /** Queued job ids in arrival order (head = oldest queued). */
  private queued = new Map<string, number>();
  /** Claimed job ids in claim order (head = oldest in flight). */
  private readonly claimed = new Map<string, number>();
  private readonly claimLeases = new TtlIndex<string>();
  private queuedBytes = 0;
  /** (client, request_id) → live job id. */
  private readonly pairs = new Map<string, string>();
  /** client → live jobs (queued, in flight or answered) for the per-client cap. */
  private readonly liveByClient = new Map<string, number>();
  /** client → legacy jobs claimed by a `/sink` and not yet answered, oldest first. */
  private readonly legacyClaimsByClient = new Map<string, Set<string>>();

  private readonly answered = new TtlIndex<string>();
  private readonly untracked = new Map<string, UntrackedRec>();
  private readonly untrackedTtl = new TtlIndex<string>();
  private readonly untrackedByClient = new Map<string, Set<string>>();
  private untrackedSeq = 0;
  private readonly legacyResponses = new Map<string, Envelope>();
  private readonly legacyResponseTtl = new TtlIndex<string>();
  /** Answers handed out and not yet confirmed delivered: tracked jobs, and legacy by client. */
  private readonly handed = new TtlIndex<string>();
  private readonly legacyHanded = new Map<string, Envelope>();
  private readonly legacyHandedTtl = new TtlIndex<string>();

  private readonly terminals = new Map<string, TerminalRec>();
  private readonly terminalTtl = new TtlIndex<string>();
  private readonly completedTtl = new TtlIndex<string>();
  private readonly tombstones = new Map<string, TombstoneRec>();
  private readonly tombstoneTtl = new TtlIndex<string>();

  private readonly streams = new Map<string, StreamRec>();
  private readonly streamByClient = new Map<string, string>();
  private readonly streamTtl = new TtlIndex<string>();

  private readonly rateBuckets = new Map<string, number>();
  private readonly rateWindows = new Map<number, TtlIndex<string>>();

  private readonly cursors: CursorState = { globalCursor: 0, tieCursors: new Map() };
  private readonly waiters: Waiters;

  constructor(
    private readonly limits: StoreLimits,
    private readonly clock: Clock,
  ) {
    this.waiters = new Waiters(clock);
  }

  // ---------------------------------------------------------------- nodes

  upsertNode(cmd: UpsertNodeCommand): Promise<UpsertNodeResult> {
    const t = emptyCounts();
    let node = this.nodes.get(cmd.nodeId);
    if (node && this.isGone(node, cmd.now)) {
      this.removeNode(node, 'stale_lease', t);
      node = undefined;
    }
    if (!node) {
      if (cmd.requireExisting) {
        return Promise.resolve({ status: 'not_found', transitions: t });
      }
      if (this.nodes.size >= this.limits.maxNodes) {
        return Promise.resolve({ status: 'nodes_full', transitions: t });
      }
      node = this.createNode(cmd);
      const issued = cmd.dialect === 'v1' && cmd.newCredentialDigest !== undefined;
      return Promise.resolve({ status: 'created', credentialIssued: issued, transitions: t });
    }
    if (node.dialect !== cmd.dialect) {
      if (cmd.dialect === 'legacy' || cmd.requireExisting) {
        return Promise.resolve({ status: 'dialect_conflict', transitions: t });
      }
      // A `/sink` node re-registering through API v1 becomes a v1 node: its legacy work cannot
      // be served by a v1 node, so it ends as cancelled; it moves to the end of the registry.
      this.removeNode(node, 'unregistered', t, false);
      node = this.createNode(cmd);
      const issued = cmd.newCredentialDigest !== undefined;
      return Promise.resolve({ status: 'created', credentialIssued: issued, transitions: t });
    }
    this.touch(node, cmd.now);
    if (cmd.pollingUntil !== undefined) {
      node.pollingUntil = cmd.pollingUntil;
    }
    if (cmd.capabilities !== undefined) {
      node.capabilities = cmd.capabilities;
    }
    let issued = false;
    if (node.dialect === 'v1' && node.credentialDigest === null && cmd.newCredentialDigest) {
      node.credentialDigest = cmd.newCredentialDigest;
      issued = true;
    }
    return Promise.resolve({ status: 'renewed', credentialIssued: issued, transitions: t });
  }

  unregisterNode(cmd: UnregisterNodeCommand): Promise<UnregisterNodeResult> {
    const t = emptyCounts();
    const node = this.nodes.get(cmd.nodeId);
    if (!node) {
      return Promise.resolve({ status: 'absent', transitions: t });
    }
    if (
      node.dialect === 'v1' &&
      cmd.force !== true &&
      !this.credentialMatches(node.credentialDigest, cmd.credentialDigest)
    ) {
      return Promise.resolve({ status: 'forbidden', transitions: t });
    }
    this.removeNode(node, 'unregistered', t);
    return Promise.resolve({ status: 'removed', transitions: t });
  }

  listNodes(now: number): Promise<NodeView[]> {
    const out: NodeView[] = [];
    for (const node of this.nodes.values()) {
      if (this.isGone(node, now)) {
        continue;
      }
      out.push({
        nodeId: node.nodeId,
        dialect: node.dialect,
        lastPingAt: node.lastPingAt,
        leaseMs: this.leaseMs(node.dialect),
        queueDepth: node.queue.size,
        inFlightCount: node.activeClaims.size,
        capabilities: node.capabilities,
      });
    }
    return Promise.resolve(out);
  }

  selectNode(cmd: SelectNodeCommand): Promise<SelectNodeResult> {
    const fresh: SchedulableNode[] = [];
    const lapsed: SchedulableNode[] = [];
    for (const node of this.nodes.values()) {
      if (node.dialect !== 'v1' || this.isGone(node, cmd.now)) {
        continue;
      }
      (this.isLapsed(node, cmd.now) ? lapsed : fresh).push({
        nodeId: node.nodeId,
        seq: node.seq,
        capabilities: node.capabilities,
        queueDepth: node.queue.size,
        inFlightCount: node.activeClaims.size,
      });
    }
    return Promise.resolve(
      scheduleFreshFirst(fresh, lapsed, cmd.model, cmd.tier, cmd.maxQueueDepth, this.cursors),
    );
  }

  pickLegacyNode(now: number): Promise<string | null> {
    // Random among fresh nodes (start anywhere, take the first fresh one), else among lapsed
    // ones. Gone nodes are left to the sweep, which evicts and counts them.
    const count = this.legacyIds.length;
    const start = count > 0 ? randomInt(count) : 0;
    let lapsed: string | null = null;
    for (let i = 0; i < count; i += 1) {
      const id = this.legacyIds[(start + i) % count] as string;
      const node = this.nodes.get(id);
      if (!node || this.isGone(node, now)) {
        continue;
      }
      if (!this.isLapsed(node, now)) {
        return Promise.resolve(id);
      }
      lapsed ??= id;
    }
    return Promise.resolve(lapsed);
  }

  // ---------------------------------------------------------------- work

  enqueue(cmd: EnqueueCommand): Promise<EnqueueResult> {
    const t = emptyCounts();
    const { job, now } = cmd;
    const node = this.nodes.get(job.nodeId);
    if (!node || node.dialect !== job.dialect || this.isGone(node, now)) {
      return Promise.resolve({ status: 'node_not_found', transitions: t });
    }
    const pk =
      job.requestId !== null && job.clientKey !== null
        ? pairKey(job.clientKey, job.requestId)
        : null;
    const supersedes = pk !== null ? this.pairs.get(pk) : undefined;
    if (node.queue.size >= this.limits.maxQueuePerNode) {
      return Promise.resolve({ status: 'node_queue_full', transitions: t });
    }
    if (
      this.queued.size >= this.limits.maxQueuedTotal ||
      this.queuedBytes + job.bytes > this.limits.maxQueuedBytes
    ) {
      return Promise.resolve({ status: 'queue_full', transitions: t });
    }
    if (
      job.clientKey !== null &&
      supersedes === undefined &&
      (this.liveByClient.get(job.clientKey) ?? 0) >= this.limits.maxPendingPerClient
    ) {
      return Promise.resolve({ status: 'client_pending_full', transitions: t });
    }
    if (supersedes !== undefined) {
      const old = this.jobs.get(supersedes);
      if (old?.state === 'answered') {
        // Already counted as completed: drop the unretrieved answer, count nothing more.
        this.forgetJob(old);
      } else if (old) {
        this.endJob(old, 'cancelled', 'requester_cancelled', t, { terminal: false });
      }
    }
    if (pk !== null) {
      this.clearTerminal(pk);
      this.completedTtl.delete(pk);
    }
    const deadlineAt = now + this.deadlineMs(job.dialect);
    const rec: JobRec = {
      ...job,
      state: 'queued',
      queuedAt: now,
      deadlineAt,
      claimedAt: 0,
      response: null,
      progress: null,
      acked: false,
      handed: false,
    };
    this.jobs.set(job.jobId, rec);
    this.deadlines[job.dialect].set(job.jobId, deadlineAt);
    this.queued.set(job.jobId, now);
    this.queuedBytes += job.bytes;
    node.queue.add(job.jobId);
    if (pk !== null) {
      this.pairs.set(pk, job.jobId);
    }
    if (job.clientKey !== null) {
      this.liveByClient.set(job.clientKey, (this.liveByClient.get(job.clientKey) ?? 0) + 1);
    }
    this.waiters.notify(workKey(job.nodeId));
    return Promise.resolve({ status: 'queued', deadlineAt, transitions: t });
  }

  claimNext(cmd: ClaimCommand): Promise<ClaimResult> {
    const t = emptyCounts();
    const node = this.nodes.get(cmd.nodeId);
    if (!node) {
      return Promise.resolve({ status: 'not_found', transitions: t });
    }
    if (node.dialect !== cmd.dialect) {
      return Promise.resolve({ status: 'dialect_conflict', transitions: t });
    }
    const jobs: ClaimedJob[] = [];
    for (const jobId of node.queue) {
      if (jobs.length >= cmd.max) {
        break;
      }
      const job = this.jobs.get(jobId);
      if (!job) {
        node.queue.delete(jobId);
        continue;
      }
      if (job.deadlineAt <= cmd.now) {
        this.endJob(job, 'expired', 'provider_timeout', t);
        continue;
      }
      this.unqueue(job, node);
      job.state = 'inflight';
      job.claimedAt = cmd.now;
      job.progress = null;
      if (job.dialect === 'v1') {
        if (job.requestId === null) {
          // Untracked API v1 work: handed over once, nothing to account for afterwards.
          this.forgetJob(job);
        } else {
          this.claimed.set(job.jobId, cmd.now);
          node.claims.set(job.requestId, job.jobId);
          node.activeClaims.add(job.jobId);
          this.claimLeases.set(
            job.jobId,
            Math.min(cmd.now + this.limits.inFlightTtlMs, job.deadlineAt),
          );
        }
      } else {
        this.claimed.set(job.jobId, cmd.now);
        if (job.clientKey !== null) {
          let set = this.legacyClaimsByClient.get(job.clientKey);
          if (!set) {
            set = new Set();
            this.legacyClaimsByClient.set(job.clientKey, set);
          }
          set.add(job.jobId);
        }
        if (job.stream && job.clientKey !== null) {
          this.openStream(job.jobId, job.clientKey, node.nodeId, cmd.now);
        }
      }
      jobs.push({
        jobId: job.jobId,
        clientKey: job.clientKey,
        requestId: job.requestId,
        cancelToken: job.cancelToken,
        stream: job.stream,
        envelope: job.envelope,
        deadlineAt: job.deadlineAt,
      });
    }
    return Promise.resolve({ status: 'ok', jobs, transitions: t });
  }

  control(cmd: ControlCommand): Promise<ControlResult> {
    const t = emptyCounts();
    const node = this.liveNode(cmd.nodeId, cmd.now, t);
    const liveV1 = node !== undefined && node.dialect === 'v1';
    if (liveV1 && !this.credentialMatches(node.credentialDigest, cmd.credentialDigest)) {
      return Promise.resolve({ status: 'forbidden', transitions: t });
    }
    if (liveV1) {
      this.touch(node, cmd.now);
      const jobId = node.claims.get(cmd.requestId);
      const job = jobId !== undefined ? this.jobs.get(jobId) : undefined;
      if (job && job.state === 'inflight') {
        if (job.deadlineAt <= cmd.now) {
          this.endJob(job, 'expired', 'provider_timeout', t);
        } else {
          job.acked = true;
          node.activeClaims.add(job.jobId);
          this.claimLeases.set(
            job.jobId,
            Math.min(cmd.now + this.limits.inFlightTtlMs, job.deadlineAt),
          );
          return Promise.resolve({
            status: 'ok',
            state: 'active',
            deadlineAt: job.deadlineAt,
            transitions: t,
          });
        }
      }
    }
    const tk = tombKey(cmd.nodeId, cmd.requestId);
    const tomb = this.tombstones.get(tk);
    if (tomb) {
      if (!this.credentialMatches(tomb.digest, cmd.credentialDigest)) {
        return Promise.resolve({ status: 'forbidden', transitions: t });
      }
      if (cmd.acknowledge) {
        this.tombstones.delete(tk);
        this.tombstoneTtl.delete(tk);
      }
      return Promise.resolve({
        status: 'ok',
        state: tomb.status,
        deadlineAt: tomb.deadlineAt,
        transitions: t,
      });
    }
    if (liveV1) {
      return Promise.resolve({
        status: 'ok',
        state: 'completed_unavailable',
        deadlineAt: null,
        transitions: t,
      });
    }
    return Promise.resolve({ status: 'forbidden', transitions: t });
  }

  complete(cmd: CompleteCommand): Promise<CompleteResult> {
    const t = emptyCounts();
    if (cmd.dialect === 'legacy') {
      return Promise.resolve(this.completeLegacy(cmd, t));
    }
    if (cmd.requestId === null) {
      return Promise.resolve(this.storeUntracked(cmd, t));
    }
    const pk = pairKey(cmd.clientKey, cmd.requestId);
    const terminal = this.terminals.get(pk);
    if (terminal) {
      return Promise.resolve({ status: 'gone', code: terminal.status, transitions: t });
    }
    const jobId = this.pairs.get(pk);
    const job = jobId !== undefined ? this.jobs.get(jobId) : undefined;
    if (!job) {
      const code = this.completedTtl.has(pk) ? 'completed' : 'gone';
      return Promise.resolve({ status: 'gone', code, transitions: t });
    }
    if (job.state === 'answered') {
      return Promise.resolve({ status: 'duplicate', transitions: t });
    }
    if (job.deadlineAt <= cmd.now) {
      this.endJob(job, 'expired', 'pending_request_ttl_exceeded', t);
      return Promise.resolve({ status: 'gone', code: 'expired', transitions: t });
    }
    if (job.state === 'inflight') {
      this.touchById(job.nodeId, cmd.now);
    }
    this.detachFromNode(job);
    this.deadlines[job.dialect].delete(job.jobId);
    job.state = 'answered';
    job.response = cmd.envelope;
    job.progress = null;
    this.answered.set(job.jobId, cmd.now + this.limits.responseTtlMs);
    if (!this.completedTtl.has(pk) && this.completedTtl.size >= this.limits.maxTerminalRecords) {
      // Capped like terminal records: the oldest completion marker goes first (a very late
      // duplicate answer then reads 410 `gone` instead of `completed`).
      const oldest = this.completedTtl.oldest();
      if (oldest) {
        this.completedTtl.delete(oldest[0]);
      }
    }
    this.completedTtl.set(pk, cmd.now + this.limits.terminalTtlMs);
    bump(t.outcomes, 'completed');
    this.waiters.notify(responseKey(cmd.clientKey, cmd.requestId));
    return Promise.resolve({ status: 'stored', transitions: t });
  }

  takeResponse(cmd: TakeResponseCommand): Promise<TakeResponseResult> {
    const t = emptyCounts();
    if (cmd.dialect === 'legacy') {
      const fresh = this.legacyResponses.get(cmd.clientKey);
      if (fresh) {
        this.legacyResponses.delete(cmd.clientKey);
        this.legacyResponseTtl.delete(cmd.clientKey);
        this.legacyHanded.set(cmd.clientKey, fresh);
        this.legacyHandedTtl.set(cmd.clientKey, cmd.now + this.limits.deliveryGraceMs);
        return Promise.resolve({ status: 'ok', envelope: fresh, transitions: t });
      }
      const again = this.legacyHanded.get(cmd.clientKey);
      return Promise.resolve(
        again
          ? { status: 'ok', envelope: again, transitions: t }
          : { status: 'unknown', transitions: t },
      );
    }
    if (cmd.requestId === null) {
      const ids = this.untrackedByClient.get(cmd.clientKey);
      const first = ids?.values().next();
      if (!ids || !first || first.done) {
        return Promise.resolve({ status: 'unknown', transitions: t });
      }
      const rec = this.untracked.get(first.value) as UntrackedRec;
      this.dropUntracked(first.value);
      return Promise.resolve({ status: 'ok', envelope: rec.envelope, transitions: t });
    }
    const pk = pairKey(cmd.clientKey, cmd.requestId);
    const terminal = this.terminals.get(pk);
    if (terminal) {
      return Promise.resolve({
        status: 'terminal',
        terminal: terminal.status,
        reason: terminal.reason,
        transitions: t,
      });
    }
    const jobId = this.pairs.get(pk);
    const job = jobId !== undefined ? this.jobs.get(jobId) : undefined;
    if (!job) {
      return Promise.resolve({ status: 'unknown', transitions: t });
    }
    if (job.state === 'answered') {
      if (!job.handed) {
        job.handed = true;
        this.answered.delete(job.jobId);
        this.handed.set(job.jobId, cmd.now + this.limits.deliveryGraceMs);
      }
      return Promise.resolve({ status: 'ok', envelope: job.response as Envelope, transitions: t });
    }
    if (job.deadlineAt <= cmd.now) {
      this.endJob(job, 'expired', 'pending_request_ttl_exceeded', t);
      return Promise.resolve({
        status: 'terminal',
        terminal: 'expired',
        reason: 'pending_request_ttl_exceeded',
        transitions: t,
      });
    }
    const progress = job.progress;
    job.progress = null;
    return Promise.resolve({
      status: 'pending',
      deadlineAt: job.deadlineAt,
      progress,
      transitions: t,
    });
  }

  confirmDelivery(cmd: ConfirmDeliveryCommand): Promise<void> {
    if (cmd.dialect === 'legacy') {
      this.legacyHanded.delete(cmd.clientKey);
      this.legacyHandedTtl.delete(cmd.clientKey);
      return Promise.resolve();
    }
    if (cmd.requestId !== null) {
      const jobId = this.pairs.get(pairKey(cmd.clientKey, cmd.requestId));
      const job = jobId !== undefined ? this.jobs.get(jobId) : undefined;
      if (job && job.state === 'answered' && job.handed) {
        this.forgetJob(job);
      }
    }
    return Promise.resolve();
  }

  cancel(cmd: CancelCommand): Promise<CancelResult> {
    const t = emptyCounts();
    const pk = pairKey(cmd.clientKey, cmd.requestId);
    const jobId = this.pairs.get(pk);
    const job = jobId !== undefined ? this.jobs.get(jobId) : undefined;
    if (
      !job ||
      job.state === 'answered' ||
      job.cancelToken === null ||
      !constantTimeEquals(job.cancelToken, cmd.cancelToken)
    ) {
      return Promise.resolve({ status: 'forbidden', transitions: t });
    }
    const removedFromQueue = job.state === 'queued' ? 1 : 0;
    this.endJob(job, cmd.status, cmd.reason, t);
    return Promise.resolve({ status: 'ok', removedFromQueue, transitions: t });
  }

  putProgress(cmd: ProgressCommand): Promise<ProgressResult> {
    const t = emptyCounts();
    const node = this.liveNode(cmd.nodeId, cmd.now, t);
    if (
      !node ||
      node.dialect !== 'v1' ||
      !this.credentialMatches(node.credentialDigest, cmd.credentialDigest)
    ) {
      return Promise.resolve({ status: 'forbidden', transitions: t });
    }
    this.touch(node, cmd.now);
    const jobId = node.claims.get(cmd.requestId);
    const job = jobId !== undefined ? this.jobs.get(jobId) : undefined;
    if (!job || job.state !== 'inflight' || job.clientKey !== cmd.clientKey) {
      return Promise.resolve({ status: 'not_active', transitions: t });
    }
    if (job.deadlineAt <= cmd.now) {
      this.endJob(job, 'expired', 'provider_timeout', t);
      return Promise.resolve({ status: 'expired', transitions: t });
    }
    job.progress = cmd.envelope;
    job.acked = true;
    this.waiters.notify(responseKey(cmd.clientKey, cmd.requestId));
    return Promise.resolve({ status: 'accepted', transitions: t });
  }

  // ---------------------------------------------------------------- legacy streams

  appendStreamChunk(cmd: StreamChunkCommand): Promise<StreamChunkResult> {
    const session = this.streams.get(cmd.sessionId);
    if (!session) {
      return Promise.resolve({ status: 'unknown', transitions: emptyCounts() });
    }
    if (
      session.chunks.length >= this.limits.maxStreamChunks ||
      session.bytes + cmd.chunkBytes > this.limits.maxStreamBytes
    ) {
      return Promise.resolve({ status: 'full', transitions: emptyCounts() });
    }
    session.chunks.push(cmd.chunk);
    session.bytes += cmd.chunkBytes;
    session.final = session.final || cmd.final;
    this.streamTtl.set(cmd.sessionId, cmd.now + this.limits.streamTtlMs);
    const t = emptyCounts();
    if (cmd.final) {
      this.completeLegacyClaim(session.clientKey, cmd.sessionId, cmd.now, t);
    }
    this.waiters.notify(responseKey(session.clientKey, null));
    return Promise.resolve({ status: 'stored', transitions: t });
  }

  takeStream(clientKey: string, now: number): Promise<StreamTakeResult> {
    const sessionId = this.streamByClient.get(clientKey);
    const session = sessionId !== undefined ? this.streams.get(sessionId) : undefined;
    if (sessionId === undefined || !session) {
      return Promise.resolve({ status: 'none' });
    }
    const chunks = session.chunks;
    session.chunks = [];
    session.bytes = 0;
    if (session.final) {
      this.dropStream(sessionId);
    } else {
      this.streamTtl.set(sessionId, now + this.limits.streamTtlMs);
    }
    return Promise.resolve({ status: 'ok', sessionId, chunks, final: session.final });
  }

  // ---------------------------------------------------------------- rate limits

  hitRateLimit(cmd: RateLimitCommand): Promise<RateLimitResult> {
    let index = this.rateWindows.get(cmd.windowMs);
    if (!index) {
      index = new TtlIndex();
      this.rateWindows.set(cmd.windowMs, index);
    }
    const bucketKey = `${cmd.windowMs}\n${cmd.key}`;
    let resetAt = index.get(bucketKey);
    let count = this.rateBuckets.get(bucketKey) ?? 0;
    if (resetAt === undefined || resetAt <= cmd.now) {
      if (resetAt === undefined && this.rateBuckets.size >= this.limits.maxRateLimitBuckets) {
        this.expireRateBuckets(cmd.now);
        if (this.rateBuckets.size >= this.limits.maxRateLimitBuckets) {
          // Refuse rather than forget: dropping buckets would reset other callers' limits.
          return Promise.resolve({ allowed: false, resetSeconds: 1 });
        }
      }
      resetAt = cmd.now + cmd.windowMs;
      count = 0;
      index.set(bucketKey, resetAt);
    }
    const resetSeconds = Math.max(1, Math.ceil((resetAt - cmd.now) / 1000));
    if (count >= cmd.limit) {
      return Promise.resolve({ allowed: false, resetSeconds });
    }
    this.rateBuckets.set(bucketKey, count + 1);
    return Promise.resolve({ allowed: true, resetSeconds });
  }

  // ---------------------------------------------------------------- housekeeping

  sweep(now: number): Promise<TransitionCounts> {
    const t = emptyCounts();
    for (const pk of this.terminalTtl.takeExpired(now)) {
      this.terminals.delete(pk);
    }
    this.completedTtl.takeExpired(now);
    for (const tk of this.tombstoneTtl.takeExpired(now)) {
      this.tombstones.delete(tk);
    }
    for (const [jobId] of takeDue(now, false, this.deadlines.legacy, this.deadlines.v1)) {
      const job = this.jobs.get(jobId);
      if (job && job.state !== 'answered') {
        // Spec §4.6: a deadline the sweep finds, queued or in flight, is
        // `expired/pending_request_ttl_exceeded`; the node learns it from its tombstone.
        this.endJob(job, 'expired', 'pending_request_ttl_exceeded', t);
      }
    }
    for (const jobId of this.claimLeases.takeExpired(now)) {
      const job = this.jobs.get(jobId);
      const node = job ? this.nodes.get(job.nodeId) : undefined;
      node?.activeClaims.delete(jobId);
      if (job && node && job.state === 'inflight' && !job.acked && job.deadlineAt > now) {
        this.requeue(job, node);
      }
    }
    for (const jobId of this.answered.takeExpired(now)) {
      const job = this.jobs.get(jobId);
      if (job && job.state === 'answered') {
        this.forgetJob(job);
        if (job.requestId !== null && job.clientKey !== null) {
          this.writeTerminal(
            pairKey(job.clientKey, job.requestId),
            'expired',
            'response_ttl_exceeded',
            now,
          );
        }
      }
    }
    for (const jobId of this.handed.takeExpired(now)) {
      const job = this.jobs.get(jobId);
      if (job && job.state === 'answered' && job.handed) {
        this.forgetJob(job);
      }
    }
    for (const client of this.legacyHandedTtl.takeExpired(now)) {
      this.legacyHanded.delete(client);
    }
    for (const id of this.untrackedTtl.takeExpired(now)) {
      this.dropUntracked(id);
    }
    for (const client of this.legacyResponseTtl.takeExpired(now)) {
      this.legacyResponses.delete(client);
    }
    for (const sessionId of this.streamTtl.takeExpired(now)) {
      this.dropStream(sessionId);
    }
    this.evictStale(now, t);
    this.expireRateBuckets(now);
    return Promise.resolve(t);
  }

  stats(now: number): Promise<StoreStats> {
    let v1Registered = 0;
    let v1Healthy = 0;
    let maxLeaseAge = 0;
    for (const node of this.nodes.values()) {
      if (node.dialect === 'v1') {
        v1Registered += 1;
        v1Healthy += this.isLapsed(node, now) ? 0 : 1;
      }
      maxLeaseAge = Math.max(maxLeaseAge, (now - node.lastPingAt) / 1000);
    }
    const oldestQueued = this.queued.values().next();
    const oldestClaimed = this.claimed.values().next();
    return Promise.resolve({
      queueDepth: this.queued.size,
      oldestQueuedAgeSeconds: oldestQueued.done
        ? 0
        : Math.max(0, (now - oldestQueued.value) / 1000),
      inFlight: this.claimed.size,
      oldestInFlightAgeSeconds: oldestClaimed.done
        ? 0
        : Math.max(0, (now - oldestClaimed.value) / 1000),
      nodesRegistered: this.nodes.size,
      v1NodesRegistered: v1Registered,
      v1NodesHealthy: v1Healthy,
      maxLeaseAgeSeconds: maxLeaseAge,
      queuedBytes: this.queuedBytes,
      storedResponses: this.storedResponseCount() + this.handed.size + this.legacyHanded.size,
      terminalRecords: this.terminals.size + this.completedTtl.size,
      tombstones: this.tombstones.size,
      streamSessions: this.streams.size,
      rateLimitBuckets: this.rateBuckets.size,
    });
  }

  ping(): Promise<void> {
    return Promise.resolve();
  }

  /** What a work wait re-checks: the node has queued work, or is gone. */
  hasWork(nodeId: string, _now: number): Promise<boolean> {
    return Promise.resolve(this.workReady(nodeId));
  }

  private workReady(nodeId: string): boolean {
    const node = this.nodes.get(nodeId);
    return !node || node.queue.size > 0;
  }

  /**
   * What a response wait re-checks: a take would not just report "pending without progress"
   * (answer, progress, terminal, gone or past deadline); without a request id, the mailbox.
   */
  hasResponse(clientKey: string, requestId: string | null, now: number): Promise<boolean> {
    return Promise.resolve(this.responseReady(clientKey, requestId, now));
  }

  private responseReady(clientKey: string, requestId: string | null, now: number): boolean {
    if (requestId === null) {
      return this.legacyResponses.has(clientKey) || this.legacyHanded.has(clientKey);
    }
    const pk = pairKey(clientKey, requestId);
    if (this.terminals.has(pk)) {
      return true;
    }
    const jobId = this.pairs.get(pk);
    const job = jobId !== undefined ? this.jobs.get(jobId) : undefined;
    return !job || job.state === 'answered' || job.deadlineAt <= now || job.progress !== null;
  }

  waitForWork(nodeId: string, until: number, signal: AbortSignal): Promise<void> {
    if (this.workReady(nodeId)) {
      return Promise.resolve();
    }
    return this.waiters.wait(workKey(nodeId), until, signal);
  }

  waitForResponse(
    clientKey: string,
    requestId: string | null,
    until: number,
    signal: AbortSignal,
  ): Promise<void> {
    if (this.responseReady(clientKey, requestId, this.clock.now())) {
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

  // ---------------------------------------------------------------- internals

  private leaseMs(dialect: Dialect): number {
    return dialect === 'v1' ? this.limits.v1LeaseMs : this.limits.legacyLeaseMs;
  }

  private deadlineMs(dialect: Dialect): number {
    return dialect === 'v1' ? this.limits.v1DeadlineMs : this.limits.legacyRequestTtlMs;
  }

  /** Past its lease and not protected by a held poll or an active claim: late, maybe gone. */
  private isLapsed(node: NodeRec, now: number): boolean {
    if (now - node.lastPingAt <= this.leaseMs(node.dialect)) {
      return false;
    }
    return node.pollingUntil <= now && node.activeClaims.size === 0;
  }

  /** Lapsed for longer than the grace: evicted, its work ends `cancelled/server_unregistered`. */
  private isGone(node: NodeRec, now: number): boolean {
    return (
      this.isLapsed(node, now) &&
      now - node.lastPingAt > this.leaseMs(node.dialect) + this.limits.lapseGraceMs
    );
  }

  /** A sign of life: the lease runs from now; the eviction check moves to lease + grace later. */
  private touch(node: NodeRec, now: number): void {
    node.lastPingAt = Math.max(node.lastPingAt, now);
    this.rechecks[node.dialect].delete(node.nodeId);
    this.leases[node.dialect].set(node.nodeId, this.evictAt(node));
  }

  /** Touches a node that is not gone yet (a gone one is left to the sweep). */
  private touchById(nodeId: string, now: number): void {
    const node = this.nodes.get(nodeId);
    if (node && !this.isGone(node, now)) {
      this.touch(node, now);
    }
  }

  /** The node, unless it is gone: then it is evicted here (as the sweep would) and undefined. */
  private liveNode(nodeId: string, now: number, t: TransitionCounts): NodeRec | undefined {
    const node = this.nodes.get(nodeId);
    if (node && this.isGone(node, now)) {
      this.removeNode(node, 'stale_lease', t);
      return undefined;
    }
    return node;
  }

  /** The earliest instant a node that stays silent from now on could be gone. */
  private evictAt(node: NodeRec): number {
    return node.lastPingAt + this.leaseMs(node.dialect) + this.limits.lapseGraceMs;
  }

  private credentialMatches(stored: string | null, presented: string | null): boolean {
    return stored !== null && presented !== null && constantTimeEquals(stored, presented);
  }

  private createNode(cmd: UpsertNodeCommand): NodeRec {
    const node: NodeRec = {
      nodeId: cmd.nodeId,
      dialect: cmd.dialect,
      seq: this.nodeSeq++,
      lastPingAt: cmd.now,
      pollingUntil: cmd.pollingUntil ?? 0,
      capabilities: cmd.dialect === 'v1' ? (cmd.capabilities ?? null) : null,
      credentialDigest: cmd.dialect === 'v1' ? (cmd.newCredentialDigest ?? null) : null,
      queue: new Set(),
      claims: new Map(),
      activeClaims: new Set(),
    };
    this.nodes.set(node.nodeId, node);
    this.leases[node.dialect].set(node.nodeId, this.evictAt(node));
    if (node.dialect === 'legacy') {
      this.legacyPos.set(node.nodeId, this.legacyIds.length);
      this.legacyIds.push(node.nodeId);
    }
    return node;
  }

  private evictStale(now: number, t: TransitionCounts): void {
    const due = takeDue(
      now,
      true,
      this.leases.legacy,
      this.leases.v1,
      this.rechecks.legacy,
      this.rechecks.v1,
    );
    for (const [id] of due) {
      const node = this.nodes.get(id);
      if (!node) {
        continue;
      }
      if (this.isGone(node, now)) {
        this.removeNode(node, 'stale_lease', t);
      } else {
        // Long-polling or working nodes are not lapsed; check them again one lease later.
        this.rechecks[node.dialect].set(
          id,
          Math.max(now + this.leaseMs(node.dialect), this.evictAt(node)),
        );
      }
    }
  }

  private removeNode(
    node: NodeRec,
    reason: EvictionReason,
    t: TransitionCounts,
    count = true,
  ): void {
    for (const jobId of [...node.queue]) {
      const job = this.jobs.get(jobId);
      if (job) {
        this.endJob(job, 'cancelled', 'server_unregistered', t);
      }
    }
    for (const jobId of [...node.claims.values()]) {
      const job = this.jobs.get(jobId);
      if (job) {
        this.endJob(job, 'cancelled', 'server_unregistered', t);
      }
    }
    for (const [sessionId, session] of this.streams) {
      if (session.nodeId === node.nodeId && !session.final) {
        this.dropStream(sessionId);
      }
    }
    this.nodes.delete(node.nodeId);
    this.leases[node.dialect].delete(node.nodeId);
    this.rechecks[node.dialect].delete(node.nodeId);
    const pos = this.legacyPos.get(node.nodeId);
    if (pos !== undefined) {
      const last = this.legacyIds.pop() as string;
      if (last !== node.nodeId) {
        this.legacyIds[pos] = last;
        this.legacyPos.set(last, pos);
      }
      this.legacyPos.delete(node.nodeId);
    }
    if (count) {
      bump(t.evictions, reason);
    }
    this.waiters.notify(workKey(node.nodeId));
  }

  /**
   * Ends a live job as cancelled or expired: takes it out of every queue and index, leaves a
   * control tombstone when a node holds it, and a terminal record for the client when tracked.
   */
  private endJob(
    job: JobRec,
    status: TerminalStatus,
    reason: TerminalReason,
    t: TransitionCounts,
    opts: { terminal: boolean } = { terminal: true },
  ): void {
    const now = this.clock.now();
    if (job.state === 'inflight' && job.dialect === 'v1' && job.requestId !== null) {
      const node = this.nodes.get(job.nodeId);
      const tk = tombKey(job.nodeId, job.requestId);
      this.tombstones.set(tk, {
        status,
        digest: node?.credentialDigest ?? null,
        deadlineAt: job.deadlineAt,
      });
      this.tombstoneTtl.set(tk, now + this.limits.tombstoneTtlMs);
    }
    this.forgetJob(job);
    bump(t.outcomes, outcomeOf(status, reason));
    if (job.clientKey !== null && job.requestId !== null) {
      if (opts.terminal) {
        this.writeTerminal(pairKey(job.clientKey, job.requestId), status, reason, now);
      }
      this.waiters.notify(responseKey(job.clientKey, job.requestId));
    }
  }

  /**
   * Puts a claim its node never confirmed back at the head of the node's queue. Today's nodes call
   * `/servers/control` right after claiming, so silence for a whole in-flight lease means the poll
   * answer never reached them (node crashed, connection cut, replica killed mid-answer).
   */
  private requeue(job: JobRec, node: NodeRec): void {
    this.claimed.delete(job.jobId);
    if (job.requestId !== null && node.claims.get(job.requestId) === job.jobId) {
      node.claims.delete(job.requestId);
    }
    job.state = 'queued';
    job.claimedAt = 0;
    // Keep the index ordered by queued-at (its head is the oldest queued): the redelivered job
    // is older than most. Rare (a lost poll answer), so an O(queued) rebuild is fine.
    this.queued.set(job.jobId, job.queuedAt);
    this.queued = new Map([...this.queued].sort((a, b) => a[1] - b[1]));
    this.queuedBytes += job.bytes;
    node.queue = new Set([job.jobId, ...node.queue]);
    this.waiters.notify(workKey(node.nodeId));
  }

  /** Removes every trace of a job except terminal records and tombstones. */
  private forgetJob(job: JobRec): void {
    if (job.state === 'queued') {
      this.unqueue(job, this.nodes.get(job.nodeId));
    }
    this.detachFromNode(job);
    this.deadlines[job.dialect].delete(job.jobId);
    this.answered.delete(job.jobId);
    this.handed.delete(job.jobId);
    this.jobs.delete(job.jobId);
    if (job.clientKey !== null) {
      if (job.requestId !== null) {
        const pk = pairKey(job.clientKey, job.requestId);
        if (this.pairs.get(pk) === job.jobId) {
          this.pairs.delete(pk);
        }
      }
      const live = (this.liveByClient.get(job.clientKey) ?? 1) - 1;
      if (live <= 0) {
        this.liveByClient.delete(job.clientKey);
      } else {
        this.liveByClient.set(job.clientKey, live);
      }
    }
  }

  private unqueue(job: JobRec, node: NodeRec | undefined): void {
    if (this.queued.delete(job.jobId)) {
      this.queuedBytes -= job.bytes;
    }
    node?.queue.delete(job.jobId);
  }

  /** Drops a claimed job from its node's accounting and from the in-flight indexes. */
  private detachFromNode(job: JobRec): void {
    if (job.state === 'queued') {
      this.unqueue(job, this.nodes.get(job.nodeId));
      return;
    }
    this.claimed.delete(job.jobId);
    this.claimLeases.delete(job.jobId);
    const node = this.nodes.get(job.nodeId);
    if (node && job.requestId !== null && node.claims.get(job.requestId) === job.jobId) {
      node.claims.delete(job.requestId);
    }
    node?.activeClaims.delete(job.jobId);
    if (job.dialect === 'legacy' && job.clientKey !== null) {
      const set = this.legacyClaimsByClient.get(job.clientKey);
      set?.delete(job.jobId);
      if (set && set.size === 0) {
        this.legacyClaimsByClient.delete(job.clientKey);
      }
    }
  }

  private writeTerminal(
    pk: string,
    status: TerminalStatus,
    reason: TerminalReason,
    now: number,
  ): void {
    if (!this.terminals.has(pk) && this.terminals.size >= this.limits.maxTerminalRecords) {
      const oldest = this.terminalTtl.oldest();
      if (oldest) {
        this.clearTerminal(oldest[0]);
      }
    }
    this.terminals.set(pk, { status, reason });
    this.terminalTtl.set(pk, now + this.limits.terminalTtlMs);
  }

  private clearTerminal(pk: string): void {
    this.terminals.delete(pk);
    this.terminalTtl.delete(pk);
  }

  private completeLegacy(cmd: CompleteCommand, t: TransitionCounts): CompleteResult {
    if (
      !this.legacyResponses.has(cmd.clientKey) &&
      this.storedResponseCount() >= this.limits.maxStoredResponses
    ) {
      return { status: 'responses_full', transitions: t };
    }
    this.legacyResponses.set(cmd.clientKey, cmd.envelope);
    this.legacyResponseTtl.set(cmd.clientKey, cmd.now + this.limits.responseTtlMs);
    this.completeLegacyClaim(cmd.clientKey, null, cmd.now, t);
    this.waiters.notify(responseKey(cmd.clientKey, null));
    return { status: 'stored', transitions: t };
  }

  /** Marks the client's oldest (or the given) legacy claim answered. */
  private completeLegacyClaim(
    clientKey: string,
    jobId: string | null,
    now: number,
    t: TransitionCounts,
  ): void {
    const set = this.legacyClaimsByClient.get(clientKey);
    if (!set) {
      return;
    }
    const id = jobId !== null ? (set.has(jobId) ? jobId : undefined) : set.values().next().value;
    const job = id !== undefined ? this.jobs.get(id) : undefined;
    if (job) {
      this.touchById(job.nodeId, now);
      this.forgetJob(job);
      bump(t.outcomes, 'completed');
    }
  }

  private storeUntracked(cmd: CompleteCommand, t: TransitionCounts): CompleteResult {
    const mine = this.untrackedByClient.get(cmd.clientKey);
    if (
      (mine?.size ?? 0) >= this.limits.maxResponsesPerClient ||
      this.storedResponseCount() >= this.limits.maxStoredResponses
    ) {
      return { status: 'responses_full', transitions: t };
    }
    const id = String(this.untrackedSeq++);
    this.untracked.set(id, { clientKey: cmd.clientKey, envelope: cmd.envelope });
    this.untrackedTtl.set(id, cmd.now + this.limits.responseTtlMs);
    const set = mine ?? new Set<string>();
    set.add(id);
    this.untrackedByClient.set(cmd.clientKey, set);
    this.waiters.notify(responseKey(cmd.clientKey, null));
    return { status: 'stored', transitions: t };
  }

  private dropUntracked(id: string): void {
    const rec = this.untracked.get(id);
    if (!rec) {
      return;
    }
    this.untracked.delete(id);
    this.untrackedTtl.delete(id);
    const set = this.untrackedByClient.get(rec.clientKey);
    set?.delete(id);
    if (set && set.size === 0) {
      this.untrackedByClient.delete(rec.clientKey);
    }
  }

  private storedResponseCount(): number {
    return this.answered.size + this.untracked.size + this.legacyResponses.size;
  }

  private openStream(sessionId: string, clientKey: string, nodeId: string, now: number): void {
    const previous = this.streamByClient.get(clientKey);
    if (previous !== undefined) {
      this.dropStream(previous);
    }
    if (this.streams.size >= this.limits.maxStreamSessions) {
      const oldest = this.streamTtl.oldest();
      if (oldest) {
        this.dropStream(oldest[0]);
      }
    }
    this.streams.set(sessionId, { clientKey, nodeId, chunks: [], bytes: 0, final: false });
    this.streamByClient.set(clientKey, sessionId);
    this.streamTtl.set(sessionId, now + this.limits.streamTtlMs);
  }

  private dropStream(sessionId: string): void {
    const session = this.streams.get(sessionId);
    this.streams.delete(sessionId);
    this.streamTtl.delete(sessionId);
    if (session && this.streamByClient.get(session.clientKey) === sessionId) {
      this.streamByClient.delete(session.clientKey);
    }
  }

  private expireRateBuckets(now: number): void {
    for (const index of this.rateWindows.values()) {
      for (const key of index.takeExpired(now)) {
        this.rateBuckets.delete(key);
      }
    }
  }
}
