/** Vocabulary of the relay's domain, shared by both protocol dialects and both stores. */

export const DIALECTS = ['legacy', 'v1'] as const;
/** Which protocol a node registered with; work never crosses dialects. */
export type Dialect = (typeof DIALECTS)[number];

export const CONTEXT_TIERS = { '8k-fast': 8192, '64k-full': 65536 } as const;
export type ContextTier = keyof typeof CONTEXT_TIERS;

export const TERMINAL_STATUSES = ['cancelled', 'expired'] as const;
export type TerminalStatus = (typeof TERMINAL_STATUSES)[number];

export const TERMINAL_REASONS = [
  'cancelled',
  'client_timeout',
  'expired',
  'requester_cancelled',
  'requester_gave_up',
  'provider_timeout',
  'pending_request_ttl_exceeded',
  'server_unregistered',
  'response_ttl_exceeded',
] as const;
export type TerminalReason = (typeof TERMINAL_REASONS)[number];

export const REQUEST_OUTCOMES = [
  'completed',
  'cancelled',
  'expired',
  'timed_out',
  'rate_limited',
  'dependency_failure',
  'failed',
] as const;
export type RequestOutcome = (typeof REQUEST_OUTCOMES)[number];

export const EVICTION_REASONS = ['stale_lease', 'unregistered', 'capacity_loss'] as const;
export type EvictionReason = (typeof EVICTION_REASONS)[number];

/** Outcome label of a terminal transition (metrics vocabulary of spec §5.5). */
export function outcomeOf(status: TerminalStatus, reason: TerminalReason): RequestOutcome {
  if (status === 'cancelled') {
    return 'cancelled';
  }
  return reason === 'provider_timeout' ? 'timed_out' : 'expired';
}

export const CONTROL_STATES = [
  'active',
  'cancelled',
  'expired',
  'acknowledged',
  'completed_unavailable',
] as const;
export type ControlState = (typeof CONTROL_STATES)[number];

/** Normalised API v1 node capabilities (exactly these eight keys). */
export interface NodeCapabilities {
  api_version: 'v1';
  supported_model_ids: string[];
  active_context_tier: ContextTier;
  maximum_total_context_tokens: number;
  default_output_token_reservation: number;
  maximum_output_tokens: number;
  max_concurrency: number;
  backend_class: string;
}

/**
 * The opaque envelope fields a request or response carries. The relay stores them and hands them
 * on byte for byte; it never parses them.
 */
export interface Envelope {
  ciphertext: string;
  cipherkey: string;
  iv: string;
  /** Allowlisted pass-through fields (`protocol`, `version`, `request_id`, ...), copied verbatim. */
  extra: Record<string, string | number>;
}

/** What a client submits, after validation. */
export interface JobInput {
  jobId: string;
  dialect: Dialect;
  nodeId: string;
  clientKey: string | null;
  /** API v1 `request_id`; requests with one get full lifecycle tracking. */
  requestId: string | null;
  cancelToken: string | null;
  /** Legacy streaming request. */
  stream: boolean;
  envelope: Envelope;
  /** Size in bytes used for the total-bytes cap. */
  bytes: number;
}

/** A job handed to a node by `claimNext`. */
export interface ClaimedJob {
  jobId: string;
  clientKey: string | null;
  requestId: string | null;
  cancelToken: string | null;
  stream: boolean;
  envelope: Envelope;
  deadlineAt: number;
}

/**
 * Where a compute-node call came from, as the registry keys it (src/registry/node-address.ts): a
 * live node is bound to its `owner` address, and new keys are counted per `group` of addresses.
 */
export interface NodeOrigin {
  /** The IPv4 address, or the IPv6 /64: who may act for a live node without its credential. */
  owner: string;
  /** The IPv4 address, or the IPv6 /56: whose share of the registry a new key takes. */
  group: string;
}

/** Snapshot of a node for the scheduler, diagnostics and health. */
export interface NodeView {
  nodeId: string;
  dialect: Dialect;
  lastPingAt: number;
  leaseMs: number;
  queueDepth: number;
  inFlightCount: number;
  capabilities: NodeCapabilities | null;
  /** A fallback node (the demo node), offered only when no other fresh node can take the work. */
  fallback: boolean;
  /** Its key was found unusable (nothing can be encrypted to it): never offered to clients. */
  keyUnusable: boolean;
}

/** The registry in a bounded answer, for the public read routes (`/healthz`, diagnostics). */
export interface NodeSummary {
  /** Live legacy nodes. */
  legacy: number;
  /** Live API v1 nodes, fallback nodes apart. */
  v1: number;
  /** Live fallback nodes (the demo node). */
  fallback: number;
  /** Live API v1 nodes (fallback ones apart) whose key is marked unusable. */
  unusable: number;
  /** The first `limit` live nodes that are not fallback nodes, in registration order. */
  listed: NodeView[];
  /** The first `limit` live fallback nodes, in registration order. */
  fallbackListed: NodeView[];
}

/** Counts of transitions an operation caused, so the caller can record each once. */
export interface TransitionCounts {
  outcomes: Partial<Record<RequestOutcome, number>>;
  evictions: Partial<Record<EvictionReason, number>>;
}

export interface StoreStats {
  queueDepth: number;
  oldestQueuedAgeSeconds: number;
  inFlight: number;
  oldestInFlightAgeSeconds: number;
  nodesRegistered: number;
  v1NodesRegistered: number;
  v1NodesHealthy: number;
  maxLeaseAgeSeconds: number;
  queuedBytes: number;
  /**
   * Answer bytes held for clients ({@link answerBytes}): waiting answers (handed out and
   * unconfirmed ones included) and buffered legacy stream chunks.
   */
  answerBytes: number;
  storedResponses: number;
  terminalRecords: number;
  tombstones: number;
  streamSessions: number;
  rateLimitBuckets: number;
}

/** Limits the store enforces: config builds them (the bottom of the module graph owns the type). */
export type { StoreLimits } from '../config/store-limits';

/** Heap a stored answer costs besides its envelope strings: its records and index entries. */
export const ANSWER_RECORD_BYTES = 256;

/**
 * What a stored answer counts against `StoreLimits.maxAnswerBytes`: its envelope strings,
 * the client key it is filed under, and its records. Both stores count with this one function.
 */
export function answerBytes(envelope: Envelope, clientKey: string): number {
  return (
    envelope.ciphertext.length +
    envelope.cipherkey.length +
    envelope.iv.length +
    clientKey.length +
    ANSWER_RECORD_BYTES
  );
}

/** The API v1 E2EE protocol id, declared with the rest of the wire vocabulary. */
export { PROTOCOL_ID } from '../peer/relay.protocol';
