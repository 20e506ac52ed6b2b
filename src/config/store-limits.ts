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
  /**
   * Bytes of answers waiting for their clients (as `answerBytes()` in state.types.ts counts them;
   * handed out and unconfirmed ones included) plus buffered legacy stream chunks. The answer of
   * accepted work (a claimed request, an open stream) beyond is refused `answers_full`, and its
   * work stays answerable (see {@link answerRetryMs}).
   */
  maxAnswerBytes: number;
  /**
   * The last part of {@link maxAnswerBytes} kept for the answers of work already accepted: while
   * answers hold more than `maxAnswerBytes - answerReserveBytes`, new requests are refused
   * (`queue_full`) and answers nobody asked for (untracked API v1, a legacy answer for a client
   * with no claimed request) are refused `answers_full`.
   */
  answerReserveBytes: number;
  /**
   * A claim whose answer was refused `answers_full` goes back to the head of its node's queue
   * after this long unless its node confirms it again (`/servers/control`): today's nodes do not
   * send a refused answer again, so the request is claimed and answered again instead.
   */
  answerRetryMs: number;
  /** Sanity ceiling on the count of waiting answers (the bytes are the budget). */
  maxStoredResponses: number;
  maxTerminalRecords: number;
  /** Sanity ceiling on open legacy stream sessions (their chunks count in {@link maxAnswerBytes}). */
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
