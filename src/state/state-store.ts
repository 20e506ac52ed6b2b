import {
  TERMINAL_STATUSES,
  type ClaimedJob,
  type ContextTier,
  type ControlState,
  type Dialect,
  type Envelope,
  type JobInput,
  type NodeCapabilities,
  type NodeOrigin,
  type NodeSummary,
  type NodeView,
  type StoreStats,
  type TerminalReason,
  type TerminalStatus,
  type TransitionCounts,
} from './state.types';
import type { StopSignal } from '../common/wait-signal';

/** Injection token of the one {@link StateStore} the process uses. */
export const STATE_STORE = Symbol('STATE_STORE');

/** The result of a transition that answers a status and nothing more, with the counts it reports. */
export interface StatusOnlyResult<S extends string> {
  status: S;
  transitions: TransitionCounts;
}

export interface UpsertNodeCommand {
  nodeId: string;
  dialect: Dialect;
  /** Replace the capabilities (v1); `undefined` keeps what is stored. */
  capabilities?: NodeCapabilities | null;
  /** Digest to store when the node has none yet (first v1 registration). */
  newCredentialDigest?: string;
  /** Fail with `not_found` instead of creating (API v1 poll). */
  requireExisting?: boolean;
  /** Mark the node as long-polling until this instant (protects it from eviction). */
  pollingUntil?: number;
  /**
   * A fallback node (the demo node): the scheduler offers it only when no other fresh node can
   * take the request, like a lapsed one. Stored on every v1 upsert that sets it; `undefined` keeps.
   */
  fallback?: boolean;
  /**
   * Where the call came from. A new node is bound to `origin.owner` and counted in
   * `origin.group`; a live node takes a call without a credential only from its owner (`forbidden`
   * otherwise). Absent: nothing is bound or counted (in-process callers).
   */
  origin?: NodeOrigin;
  /**
   * SHA-256 hex of the control credential the caller showed. It must match the live node's
   * (`forbidden` otherwise), and then the call is accepted from anywhere and the node is bound to
   * the caller's address. Undefined: none shown.
   */
  presentedDigest?: string;
  /** Open registration: most live nodes one origin group may hold (a new key beyond: `group_full`). */
  maxPerGroup?: number;
  now: number;
}

export const UPSERT_NODE_STATUSES = [
  'created',
  'renewed',
  'not_found',
  'nodes_full',
  'group_full',
  'dialect_conflict',
  'forbidden',
] as const;
export type UpsertNodeStatus = (typeof UPSERT_NODE_STATUSES)[number];
type NodeAdmitted = Extract<UpsertNodeStatus, 'created' | 'renewed'>;

export type UpsertNodeResult =
  | { status: NodeAdmitted; credentialIssued: boolean; transitions: TransitionCounts }
  | { status: Exclude<UpsertNodeStatus, NodeAdmitted>; transitions: TransitionCounts };

export interface SummarizeNodesCommand {
  /** Most nodes listed in each list of the summary. */
  limit: number;
  now: number;
}

export interface UnregisterNodeCommand {
  nodeId: string;
  /** SHA-256 hex of the credential the caller presented, or null when none was sent. */
  credentialDigest: string | null;
  /** Operator removal: skips the ownership check. */
  force?: boolean;
  now: number;
}

export const UNREGISTER_NODE_STATUSES = ['removed', 'absent', 'forbidden'] as const;

export type UnregisterNodeResult = StatusOnlyResult<(typeof UNREGISTER_NODE_STATUSES)[number]>;

export const AT_CAPACITY_POLICIES = ['refuse', 'least_loaded'] as const;
/** What {@link StateStore.selectNode} does when every matching node is at capacity. */
export type AtCapacityPolicy = (typeof AT_CAPACITY_POLICIES)[number];

export interface SelectNodeCommand {
  model: string;
  tier: ContextTier;
  maxQueueDepth: number;
  /**
   * Nodes never to offer, as if they were not registered (the nodes a request already failed on).
   * A few at most: each one is an argument of the script.
   */
  exclude?: readonly string[];
  /**
   * Every matching node is at capacity: `refuse` (the default) answers `no_capacity`;
   * `least_loaded` selects, by the same rule and tiers, among the nodes that are only busy
   * (at `max_concurrency`) and still have queue room, so the request waits in the shortest line.
   */
  atCapacity?: AtCapacityPolicy;
  now: number;
}

export interface SelectionCandidate {
  nodeId: string;
  tier: ContextTier;
  modelSupport: string[];
  queueDepth: number;
  inFlightCount: number;
  loadScore: number;
}

export const SELECT_NODE_STATUSES = ['no_nodes', 'no_match', 'no_capacity', 'selected'] as const;
export type SelectNodeStatus = (typeof SELECT_NODE_STATUSES)[number];
/** Statuses of a selection that found nodes but none to take the request. */
export type SelectionMissStatus = Extract<SelectNodeStatus, 'no_match' | 'no_capacity'>;

export type SelectNodeResult =
  | { status: Extract<SelectNodeStatus, 'no_nodes'> }
  | {
      status: SelectionMissStatus;
      eligibleTierCounts: Partial<Record<ContextTier, number>>;
      eligibleCount: number;
      capacityLimitedCount: number;
      capacityLimitedTierCounts: Partial<Record<ContextTier, number>>;
    }
  | {
      status: Extract<SelectNodeStatus, 'selected'>;
      selected: SelectionCandidate;
      eligibleTierCounts: Partial<Record<ContextTier, number>>;
      eligibleCount: number;
    };

export interface EnqueueCommand {
  job: JobInput;
  now: number;
  /**
   * Most live requests the job's client key may have, instead of `maxPendingPerClient`. Only the
   * gateway sets it, for its own process-wide client key: its chats are bounded by its own caps
   * (per-address rate limits, `TOKENPLACE_GATEWAY_MAX_CONCURRENT`), not as one client. A stranger
   * naming that key on the public routes still gets `maxPendingPerClient`, counted with them.
   */
  clientCap?: number;
}

export const ENQUEUE_STATUSES = [
  'queued',
  'node_not_found',
  'node_queue_full',
  'queue_full',
  'client_pending_full',
  'request_in_use',
] as const;
export type EnqueueStatus = (typeof ENQUEUE_STATUSES)[number];

export type EnqueueResult =
  | { status: Extract<EnqueueStatus, 'queued'>; deadlineAt: number; transitions: TransitionCounts }
  | { status: Exclude<EnqueueStatus, 'queued'>; transitions: TransitionCounts };

/** What a waiting poll would claim: its dialect and how many jobs it takes. */
export type PollClaim = Pick<ClaimCommand, 'dialect' | 'max'>;

export interface ClaimCommand {
  nodeId: string;
  dialect: Dialect;
  /** Most jobs to hand out (legacy `max_batch_size`; API v1 always 1). */
  max: number;
  now: number;
}

export const CLAIM_STATUSES = ['ok', 'not_found', 'dialect_conflict'] as const;
export type ClaimStatus = (typeof CLAIM_STATUSES)[number];

export type ClaimResult =
  | { status: Exclude<ClaimStatus, 'ok'>; transitions: TransitionCounts }
  | { status: Extract<ClaimStatus, 'ok'>; jobs: ClaimedJob[]; transitions: TransitionCounts };

export interface ControlCommand {
  nodeId: string;
  requestId: string;
  credentialDigest: string;
  acknowledge: boolean;
  now: number;
}

/** `/servers/control` and cancel: the caller's proof held, or it did not. */
export const PROOF_STATUSES = ['ok', 'forbidden'] as const;
export type ProofStatus = (typeof PROOF_STATUSES)[number];

export type ControlResult =
  | { status: Extract<ProofStatus, 'forbidden'>; transitions: TransitionCounts }
  | {
      status: Extract<ProofStatus, 'ok'>;
      state: ControlState;
      /** Deadline of the request when known (for the deadline fields). */
      deadlineAt: number | null;
      transitions: TransitionCounts;
    };

export interface CompleteCommand {
  dialect: Dialect;
  clientKey: string;
  /** API v1 request id; null for untracked v1 responses and for legacy `/source`. */
  requestId: string | null;
  envelope: Envelope;
  /**
   * The answering caller's owner address ({@link NodeOrigin.owner}): a tracked API v1 answer is
   * taken only from the address the holding node is bound to. Undefined: not checked.
   */
  answerer?: string;
  now: number;
}

/**
 * `responses_full`: a count cap (per client, or the ceiling). `answers_full`: the answer bytes
 * budget (`StoreLimits.maxAnswerBytes`); the work stays answerable.
 */
export const COMPLETE_STATUSES = [
  'stored',
  'duplicate',
  'not_holder',
  'responses_full',
  'answers_full',
  'gone',
] as const;
export type CompleteStatus = (typeof COMPLETE_STATUSES)[number];
/** Why an answer came too late: the request ended, was answered, or is unknown. */
export const GONE_CODES = [...TERMINAL_STATUSES, 'completed', 'gone'] as const;
export type GoneCode = (typeof GONE_CODES)[number];

export type CompleteResult =
  | { status: Exclude<CompleteStatus, 'gone'>; transitions: TransitionCounts }
  | { status: Extract<CompleteStatus, 'gone'>; code: GoneCode; transitions: TransitionCounts };

export interface TakeResponseCommand {
  dialect: Dialect;
  clientKey: string;
  requestId: string | null;
  now: number;
}

export const TAKE_RESPONSE_STATUSES = ['ok', 'pending', 'terminal', 'unknown'] as const;
export type TakeResponseStatus = (typeof TAKE_RESPONSE_STATUSES)[number];

export type TakeResponseResult =
  | { status: Extract<TakeResponseStatus, 'ok'>; envelope: Envelope; transitions: TransitionCounts }
  | {
      status: Extract<TakeResponseStatus, 'pending'>;
      deadlineAt: number;
      progress: Envelope | null;
      /** Requests ahead of this one in its node's queue; 0 once the node has claimed it. */
      queuePosition: number;
      /**
       * Seconds until the answer is expected, from the node's recent service time (see
       * `estimateWaitMs` in answers.memory.ts); null while the node has answered nothing yet.
       */
      estimatedWaitSeconds: number | null;
      transitions: TransitionCounts;
    }
  | {
      status: Extract<TakeResponseStatus, 'terminal'>;
      terminal: TerminalStatus;
      reason: TerminalReason;
      transitions: TransitionCounts;
    }
  | { status: Extract<TakeResponseStatus, 'unknown'>; transitions: TransitionCounts };

export interface ConfirmDeliveryCommand {
  dialect: Dialect;
  clientKey: string;
  requestId: string | null;
  now: number;
}

export interface CancelCommand {
  clientKey: string;
  requestId: string;
  cancelToken: string;
  status: TerminalStatus;
  reason: TerminalReason;
  now: number;
}

export type CancelResult =
  | { status: Extract<ProofStatus, 'forbidden'>; transitions: TransitionCounts }
  | { status: Extract<ProofStatus, 'ok'>; removedFromQueue: number; transitions: TransitionCounts };

export interface ProgressCommand {
  nodeId: string;
  credentialDigest: string;
  clientKey: string;
  requestId: string;
  envelope: Envelope;
  now: number;
}

export const PROGRESS_STATUSES = ['accepted', 'forbidden', 'not_active', 'expired'] as const;

export type ProgressResult = StatusOnlyResult<(typeof PROGRESS_STATUSES)[number]>;

export interface StreamChunkCommand {
  sessionId: string;
  /** The chunk as JSON text: stored and handed back as text, never as an object graph. */
  chunk: string;
  chunkBytes: number;
  final: boolean;
  now: number;
}

/** `full`: the session's own caps. `answers_full`: the answer bytes budget (503, retry). */
export const STREAM_CHUNK_STATUSES = ['stored', 'unknown', 'full', 'answers_full'] as const;

/** A final chunk completes the legacy request (outcome `completed` in its transitions). */
export type StreamChunkResult = StatusOnlyResult<(typeof STREAM_CHUNK_STATUSES)[number]>;

export const STREAM_TAKE_STATUSES = ['ok', 'none'] as const;
export type StreamTakeStatus = (typeof STREAM_TAKE_STATUSES)[number];

export type StreamTakeResult =
  | { status: Extract<StreamTakeStatus, 'none'> }
  | {
      status: Extract<StreamTakeStatus, 'ok'>;
      sessionId: string;
      /** The chunks as the JSON texts they were stored as, in order. */
      chunks: string[];
      final: boolean;
    };

export interface RateLimitCommand {
  key: string;
  limit: number;
  windowMs: number;
  now: number;
  /** Take back one hit of the current window instead of counting one (always allowed). */
  refund?: boolean;
}

export interface RateLimitResult {
  allowed: boolean;
  /** Seconds until the window resets (at least 1). */
  resetSeconds: number;
}

/**
 * The relay's state, behind one seam with an in-memory and a Redis implementation.
 *
 * Every method is one atomic transition: it reads and writes in one step (one Lua script or
 * MULTI/EXEC in Redis, one synchronous section in memory), so several replicas can share a store.
 * Every stored thing has a cap and a TTL or an explicit removal path. Methods that end requests or
 * remove nodes report what they did in `transitions`, so each outcome is counted exactly once, by
 * whichever replica performed it. The store never knows HTTP.
 */
export interface StateStore {
  /**
   * Registers or renews a node; replaces capabilities when given; issues a credential digest once.
   * A live node is renewed only for its owner (its address, or its credential); a new key is
   * admitted within the node cap and its origin group's share.
   */
  upsertNode(cmd: UpsertNodeCommand): Promise<UpsertNodeResult>;
  /**
   * Removes a node: queued work becomes `cancelled/server_unregistered`, in-flight work leaves a
   * control tombstone. A v1 node needs the matching credential digest (`forbidden` otherwise).
   */
  unregisterNode(cmd: UnregisterNodeCommand): Promise<UnregisterNodeResult>;
  /** Live nodes in registration order. */
  listNodes(now: number): Promise<NodeView[]>;
  /** Counts of the live nodes and the first few of them: a reply bounded whatever registered. */
  summarizeNodes(cmd: SummarizeNodesCommand): Promise<NodeSummary>;
  /**
   * Marks a node's key unusable (nothing could be encrypted to it): the scheduler never offers it
   * again. False when the node is not registered.
   */
  markKeyUnusable(nodeId: string, now: number): Promise<boolean>;
  /**
   * Runs the `best_fit_smallest_capable_least_loaded_v1` scheduler and advances its cursors. The one
   * place a node is chosen, with every tier applied here: nodes gone past their grace, with an
   * unusable key, or in `exclude` are never offered; fresh nodes first, lapsed and fallback nodes
   * (the demo node) only when no fresh node can take the request; then, with `atCapacity:
   * 'least_loaded'`, the same two tiers again among nodes that are busy but have queue room.
   */
  selectNode(cmd: SelectNodeCommand): Promise<SelectNodeResult>;
  /** A uniformly random live legacy node, or null. */
  pickLegacyNode(now: number): Promise<string | null>;
  /**
   * Admits a job to a node's FIFO within every cap. A v1 job with a `(client, request_id)` that is
   * still live supersedes the old one only with the old one's cancel token (`request_in_use`
   * otherwise); a terminal record for the pair is cleared.
   */
  enqueue(cmd: EnqueueCommand): Promise<EnqueueResult>;
  /** Hands out up to `max` jobs of the node's dialect; past-deadline jobs expire instead. */
  claimNext(cmd: ClaimCommand): Promise<ClaimResult>;
  /** `/servers/control`: renews an in-flight lease or reports the request's fate. */
  control(cmd: ControlCommand): Promise<ControlResult>;
  /**
   * Stores a node's answer (first answer wins; late answers to ended requests are refused). A
   * tracked API v1 answer needs the request in a node's hands, and the answerer at that node's
   * address (`not_holder` otherwise).
   */
  complete(cmd: CompleteCommand): Promise<CompleteResult>;
  /**
   * Hands out a stored answer, or reports pending (with progress, once), terminal or unknown. A
   * handed-out answer is handed out again to the same (client, request) until
   * {@link confirmDelivery} or the delivery grace ends, so a replica dying mid-answer loses nothing.
   */
  takeResponse(cmd: TakeResponseCommand): Promise<TakeResponseResult>;
  /** The answer was written out to the client: forget it (a later retrieve is 404). */
  confirmDelivery(cmd: ConfirmDeliveryCommand): Promise<void>;
  /** Cancels a request with the client's proof. */
  cancel(cmd: CancelCommand): Promise<CancelResult>;
  /** Stores the latest encrypted progress of an in-flight request (one per request). */
  putProgress(cmd: ProgressCommand): Promise<ProgressResult>;
  /** Appends a chunk to a legacy stream session. */
  appendStreamChunk(cmd: StreamChunkCommand): Promise<StreamChunkResult>;
  /** Drains a client's legacy stream session; removes it once final. */
  takeStream(clientKey: string, now: number): Promise<StreamTakeResult>;
  /**
   * Counts one hit in a fixed window; refuses past `limit`. A full table evicts its least recently
   * used bucket. With `refund`, takes one hit of the current window back.
   */
  hitRateLimit(cmd: RateLimitCommand): Promise<RateLimitResult>;
  /** Expires deadlines and TTLs and evicts stale nodes. Safe to run on every replica at once. */
  sweep(now: number): Promise<TransitionCounts>;
  /** Gauges for `/metrics`, `/healthz` and benchmarks. */
  stats(now: number): Promise<StoreStats>;
  /** Throws when the store cannot serve requests. */
  ping(): Promise<void>;
  /**
   * Resolves when work may be available for `nodeId`, when `until` passes, or when `signal`
   * aborts; whichever comes first. Wake-ups reach waiters on every replica. Given the `poll`'s
   * claim, a store may claim for this wait, work queued now or enqueued meanwhile, and resolve
   * with the jobs (the Redis store, for API v1 polls: one-turn delivery); otherwise, and always
   * in memory, null: the caller claims.
   */
  waitForWork(
    nodeId: string,
    until: number,
    signal: StopSignal,
    poll?: PollClaim,
  ): Promise<ClaimedJob[] | null>;
  /**
   * True when {@link waitForWork} given an API v1 `poll` claims what is queued before it waits
   * (so a poll that may wait need not claim first): the Redis store.
   */
  readonly claimsWhileWaiting: boolean;
  /** Resolves when an answer for the client (and request id) may be available, or as above. */
  waitForResponse(
    clientKey: string,
    requestId: string | null,
    until: number,
    signal: StopSignal,
  ): Promise<void>;
  /** Wakes every waiter at once (used when draining). */
  wakeAll(): void;
  /** Releases connections and timers. */
  close(): Promise<void>;
}
