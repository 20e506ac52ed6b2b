import type { QueueOrder } from '../queue-order';
import type { CursorState } from '../scheduler';
import type {
  Dialect,
  Envelope,
  JobInput,
  NodeCapabilities,
  StoreLimits,
  TerminalReason,
  TerminalStatus,
  TransitionCounts,
} from '../state.types';
import { TtlIndex } from '../ttl-index';

/**
 * The in-memory store's one state record: every collection the `*.memory.ts` transitions read
 * and write, as plain data. Each collection has its Redis twin in the key table of docs/redis.md
 * (named in the comments), so a change to one side names the key to change on the other.
 */
export interface MemoryState {
  readonly limits: StoreLimits;
  /** Wakes local waiters (Lua: `wake(k)`, which publishes on the wake channel). */
  readonly wake: (key: string) => void;

  /** `n:<node>` (+ `q:`, `c:`, `a:`); iteration order is registration order (`nodes`). */
  readonly nodes: Map<string, NodeRec>;
  /**
   * `lease`: eviction check instants per dialect, split in two so each index keeps one fixed
   * offset and stays in expiry order: `leases` (last sign of life + lease + grace) and `rechecks`
   * (nodes the sweep found long-polling or working: checked again one lease later).
   */
  readonly leases: Record<Dialect, TtlIndex<string>>;
  readonly rechecks: Record<Dialect, TtlIndex<string>>;
  /** `legacy`: legacy node ids, with each id's position for O(1) removal. */
  readonly legacyIds: string[];
  readonly legacyPos: Map<string, number>;
  /** `ctr:node`. */
  nodeSeq: number;
  /**
   * `gz` + `g:<group>`: origin group → its nodes in registration order (open registration's
   * per-address share, and the fair share when the registry is full).
   */
  readonly groups: Map<string, Set<string>>;

  /** `j:<job>`. */
  readonly jobs: Map<string, JobRec>;
  /** `dl`. */
  readonly deadlines: Record<Dialect, TtlIndex<string>>;
  /** `queued`: job id → queued-at, ordered by queued-at (head = oldest queued). */
  queued: Map<string, number>;
  /** `claimed`: job id → claimed-at, in claim order (head = oldest in flight). */
  readonly claimed: Map<string, number>;
  /** `cl`. */
  readonly claimLeases: TtlIndex<string>;
  /** `qbytes`. */
  queuedBytes: number;
  /** `pairs`: (client, request_id) → live job id. */
  readonly pairs: Map<string, string>;
  /** `live`: client → live jobs (queued, in flight or answered) for the per-client cap. */
  readonly liveByClient: Map<string, number>;
  /** `lc:<client>`: legacy jobs claimed by a `/sink` and not yet answered, oldest first. */
  readonly legacyClaimsByClient: Map<string, Set<string>>;

  /** `answered`. */
  readonly answered: TtlIndex<string>;
  /** `u:<id>`, `ut`, `uc:<client>`, `ctr:u`: untracked API v1 answers. */
  readonly untracked: Map<string, UntrackedRec>;
  readonly untrackedTtl: TtlIndex<string>;
  readonly untrackedByClient: Map<string, Set<string>>;
  untrackedSeq: number;
  /** `lr:<client>`, `lrt`: the legacy mailbox (`lrb`: each answer's counted bytes). */
  readonly legacyResponses: Map<string, Envelope>;
  readonly legacyResponseBytes: Map<string, number>;
  readonly legacyResponseTtl: TtlIndex<string>;
  /** `handed`: tracked answers handed out and not yet confirmed delivered. */
  readonly handed: TtlIndex<string>;
  /** `lh:<client>`, `lht`: legacy answers handed out and not yet confirmed delivered (`lhb`: bytes). */
  readonly legacyHanded: Map<string, Envelope>;
  readonly legacyHandedBytes: Map<string, number>;
  /**
   * `abytes`: bytes of every answer held for a client (tracked, untracked, legacy, handed out or
   * not) and of buffered stream chunks, as `answerBytes()` (state.types.ts) counts them.
   */
  answerBytes: number;
  readonly legacyHandedTtl: TtlIndex<string>;

  /** `term` + `termt`. */
  readonly terminals: Map<string, TerminalRec>;
  readonly terminalTtl: TtlIndex<string>;
  /** `done`. */
  readonly completedTtl: TtlIndex<string>;
  /** `tomb` + `tombt`. */
  readonly tombstones: Map<string, TombstoneRec>;
  readonly tombstoneTtl: TtlIndex<string>;

  /** `s:<session>`, `sc:<session>`, `sbc`, `stt`. */
  readonly streams: Map<string, StreamRec>;
  readonly streamByClient: Map<string, string>;
  readonly streamTtl: TtlIndex<string>;

  /** `rl` + `rlt`: bucket → count, and one expiry index per window length. */
  readonly rateBuckets: Map<string, number>;
  readonly rateWindows: Map<number, TtlIndex<string>>;
  /** `rlu`: bucket → last hit, for evicting the least recently used one when the table is full. */
  readonly rateUsed: TtlIndex<string>;

  /** `rr` + `rro`. */
  readonly cursors: CursorState;
}

export interface NodeRec {
  nodeId: string;
  /** The id's name in tie sets (the placement view's digest): {@link tieName}. */
  readonly tieName: string;
  dialect: Dialect;
  seq: number;
  lastPingAt: number;
  pollingUntil: number;
  capabilities: NodeCapabilities | null;
  credentialDigest: string | null;
  /** `fb`: scheduled only when no other fresh node can take the request (the demo node). */
  fallback: boolean;
  /** `q:<node>`: job ids in FIFO order, with each one's place in line in O(log n). */
  readonly queue: QueueOrder;
  /**
   * `svc` in `n:<node>`: the node's recent service time in ms (claim → answer), a moving average
   * weighting the newest answer 1/4 (integer ms); absent until the node has answered once.
   */
  serviceMs?: number;
  /** `own`: the owner address a call without the credential must come from (null: unbound). */
  owner: string | null;
  /** `grp`: the origin group the node is counted in (null: not counted). */
  group: string | null;
  /** `bad`: its key was found unusable; never offered to clients. */
  keyUnusable: boolean;
  /** request_id → job id of v1 work this node claimed and has not answered. */
  claims: Map<string, string>;
  /** Claims whose accounting lease is active (counted for load and eviction protection). */
  activeClaims: Set<string>;
}

export type JobState = 'queued' | 'inflight' | 'answered';

export interface JobRec extends JobInput {
  state: JobState;
  queuedAt: number;
  deadlineAt: number;
  claimedAt: number;
  response: Envelope | null;
  /** `rb`: the stored answer's counted bytes (0 until answered). */
  responseBytes: number;
  progress: Envelope | null;
  /** The claiming node has confirmed it holds the work (a `/servers/control` or progress call). */
  acked: boolean;
  /** The answer was handed to the client; kept until the delivery is confirmed or the grace ends. */
  handed: boolean;
}

export interface TerminalRec {
  status: TerminalStatus;
  reason: TerminalReason;
}

export interface TombstoneRec {
  status: TerminalStatus;
  digest: string | null;
  deadlineAt: number | null;
}

export interface StreamRec {
  clientKey: string;
  nodeId: string;
  /** JSON texts (see StreamChunkCommand). */
  chunks: string[];
  bytes: number;
  final: boolean;
}

export interface UntrackedRec {
  clientKey: string;
  envelope: Envelope;
  bytes: number;
}

/**
 * One transition in progress: the state, the instant it runs at and what it counts. The twin of
 * the Lua globals every script starts with (`NOW`, and `T` behind `outcome()`/`evicted()`).
 */
export interface Tx {
  readonly s: MemoryState;
  readonly now: number;
  readonly t: TransitionCounts;
}

export function begin(s: MemoryState, now: number): Tx {
  return { s, now, t: { outcomes: {}, evictions: {} } };
}

export function createMemoryState(limits: StoreLimits, wake: (key: string) => void): MemoryState {
  return {
    limits,
    wake,
    nodes: new Map(),
    leases: { legacy: new TtlIndex(), v1: new TtlIndex() },
    rechecks: { legacy: new TtlIndex(), v1: new TtlIndex() },
    legacyIds: [],
    legacyPos: new Map(),
    nodeSeq: 0,
    groups: new Map(),
    jobs: new Map(),
    deadlines: { legacy: new TtlIndex(), v1: new TtlIndex() },
    queued: new Map(),
    claimed: new Map(),
    claimLeases: new TtlIndex(),
    queuedBytes: 0,
    pairs: new Map(),
    liveByClient: new Map(),
    legacyClaimsByClient: new Map(),
    answered: new TtlIndex(),
    untracked: new Map(),
    untrackedTtl: new TtlIndex(),
    untrackedByClient: new Map(),
    untrackedSeq: 0,
    legacyResponses: new Map(),
    legacyResponseBytes: new Map(),
    legacyResponseTtl: new TtlIndex(),
    handed: new TtlIndex(),
    legacyHanded: new Map(),
    legacyHandedBytes: new Map(),
    answerBytes: 0,
    legacyHandedTtl: new TtlIndex(),
    terminals: new Map(),
    terminalTtl: new TtlIndex(),
    completedTtl: new TtlIndex(),
    tombstones: new Map(),
    tombstoneTtl: new TtlIndex(),
    streams: new Map(),
    streamByClient: new Map(),
    streamTtl: new TtlIndex(),
    rateBuckets: new Map(),
    rateWindows: new Map(),
    rateUsed: new TtlIndex(),
    cursors: { globalCursor: 0, tieCursors: new Map(), limit: limits.maxTieCursors },
  };
}
