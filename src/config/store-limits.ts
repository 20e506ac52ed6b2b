/**
 * Limits the state store enforces; every stored thing is capped and expires. Built by
 * {@link RelayConfig} from the environment (and the memory plan), read by both stores.
 */
export interface StoreLimits {
  maxNodes: number;
  maxQueuePerNode: number;
  maxQueuedTotal: number;
  maxQueuedBytes: number;
  maxPendingPerClient: number;
  maxResponsesPerClient: number;
  maxStoredResponses: number;
  maxTerminalRecords: number;
  maxStreamSessions: number;
  maxStreamChunks: number;
  maxStreamBytes: number;
  maxRateLimitBuckets: number;
  /** Scheduler round-robin cursors kept, one per tie set; the least recently used goes first. */
  maxTieCursors: number;
  /** Staleness window of a `/sink` node. */
  legacyLeaseMs: number;
  /** API v1 node lease. */
  v1LeaseMs: number;
  /**
   * How long a node past its lease (a "lapsed" node) keeps its queue and claims before it is
   * evicted. Lapsed nodes are only offered to clients when no fresh node can serve them.
   */
  lapseGraceMs: number;
  /** API v1 in-flight accounting lease, renewed by `/servers/control`. */
  inFlightTtlMs: number;
  /** Authoritative API v1 deadline. */
  v1DeadlineMs: number;
  /** How long a legacy request may wait in a queue or in a node's hands. */
  legacyRequestTtlMs: number;
  responseTtlMs: number;
  /**
   * How long an answer handed to a client stays retrievable until the relay saw it written out
   * (a replica killed mid-answer must not lose it); a confirmed delivery removes it at once.
   */
  deliveryGraceMs: number;
  terminalTtlMs: number;
  tombstoneTtlMs: number;
  streamTtlMs: number;
}
