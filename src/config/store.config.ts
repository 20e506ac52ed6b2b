import { IntEnv, NumberEnv } from './env-kinds';
import type { MemoryPlan } from './memory-budget';
import { protocolTimings, type ProtocolEnv } from './protocol.config';
import type { RegistryEnv } from './registry.config';
import type { StoreLimits } from './store-limits';

/**
 * How much the state store holds (state/, through {@link StoreLimits}): queues, answers, records,
 * stream sessions, rate-limit buckets. The byte caps left unset are sized from the memory budget.
 */
export class StoreEnv {
  @IntEnv(
    'TOKEN_PLACE_API_V1_MAX_QUEUE_DEPTH_PER_NODE',
    'Most queued requests per node: the scheduler skips a full node and admission answers 429',
    1,
    1_000_000,
  )
  maxQueuePerNode = 1024;

  @IntEnv(
    'TOKENPLACE_RELAY_MAX_QUEUED_REQUESTS',
    'Most queued requests over all nodes (503 beyond)',
    1,
    10_000_000,
  )
  maxQueuedTotal = 20000;

  @IntEnv(
    'TOKENPLACE_RELAY_MAX_QUEUED_BYTES',
    'Most bytes of queued ciphertext over all nodes (503 beyond); unset: derived from the memory budget, at most 536870912',
    1024 * 1024,
    64 * 1024 * 1024 * 1024,
    { optional: true },
  )
  maxQueuedBytes?: number;

  @IntEnv(
    'TOKENPLACE_RELAY_MAX_PENDING_PER_CLIENT',
    'Most live requests (queued, in flight or answered) per client key (429 beyond)',
    1,
    100_000,
  )
  maxPendingPerClient = 16;

  @IntEnv(
    'TOKENPLACE_RELAY_MAX_RESPONSES_PER_CLIENT',
    'Most stored untracked answers per client key (429 beyond)',
    1,
    100_000,
  )
  maxResponsesPerClient = 8;

  @IntEnv(
    'TOKENPLACE_RELAY_MAX_STORED_RESPONSES',
    'Sanity ceiling on the count of answers waiting to be retrieved over all clients (503 beyond); their bytes are the budget (TOKENPLACE_RELAY_MAX_ANSWER_BYTES)',
    1,
    10_000_000,
    { optional: true },
  )
  maxStoredResponses?: number;

  @IntEnv(
    'TOKENPLACE_RELAY_MAX_ANSWER_BYTES',
    'Most bytes of answers waiting for their clients and of buffered legacy stream chunks, as held (503 + Retry-After beyond; the last quarter is kept for the answers of accepted requests); unset: derived from the memory budget, at most 536870912',
    1024 * 1024,
    64 * 1024 * 1024 * 1024,
    { optional: true },
  )
  maxAnswerBytes?: number;

  @NumberEnv(
    'TOKENPLACE_RELAY_RESPONSE_TTL_SECONDS',
    'An answer nobody retrieves is dropped after this long',
    1,
    86400,
  )
  responseTtlSeconds = 300;

  @NumberEnv(
    'TOKENPLACE_RELAY_DELIVERY_GRACE_SECONDS',
    'An answer handed to a client stays retrievable this long until its delivery is confirmed (survives a replica dying mid-answer)',
    1,
    600,
  )
  deliveryGraceSeconds = 30;

  @IntEnv(
    'TOKENPLACE_RELAY_MAX_TERMINAL_RECORDS',
    'Most remembered cancelled/expired request records (oldest dropped first)',
    1,
    10_000_000,
  )
  maxTerminalRecords = 50000;

  @IntEnv(
    'TOKENPLACE_RELAY_MAX_STREAM_SESSIONS',
    'Sanity ceiling on open legacy stream sessions (oldest dropped first); their buffered bytes count in TOKENPLACE_RELAY_MAX_ANSWER_BYTES',
    1,
    1_000_000,
    { optional: true },
  )
  maxStreamSessions?: number;

  @IntEnv(
    'TOKENPLACE_RELAY_MAX_STREAM_BYTES',
    'Most buffered bytes per legacy stream session (chunks beyond get 413)',
    1024,
    1024 * 1024 * 1024,
  )
  maxStreamBytes = 1024 * 1024;

  @IntEnv(
    'TOKENPLACE_RELAY_MAX_RATE_LIMIT_BUCKETS',
    'Most rate-limit buckets held at once (new callers get 429 beyond)',
    100,
    100_000_000,
  )
  maxRateLimitBuckets = 200000;
}

/**
 * How long a claim whose answer was refused `answers_full` waits for its node to confirm it before
 * it is queued again (the Retry-After the refusal carries; see StoreLimits.answerRetryMs).
 */
export const ANSWER_RETRY_MS = 5000;

export interface StoreSettings {
  readonly maxQueuePerNode: number;
  readonly limits: StoreLimits;
  /** How the byte-holding caps were sized from the memory limit (logged at boot). */
  readonly memory: MemoryPlan;
}

export function storeSettings(
  s: StoreEnv & RegistryEnv & ProtocolEnv,
  memory: MemoryPlan,
): StoreSettings {
  return {
    maxQueuePerNode: s.maxQueuePerNode,
    limits: {
      maxNodes: s.maxNodes,
      maxQueuePerNode: s.maxQueuePerNode,
      maxQueuedTotal: s.maxQueuedTotal,
      maxQueuedBytes: memory.maxQueuedBytes,
      maxPendingPerClient: s.maxPendingPerClient,
      maxResponsesPerClient: s.maxResponsesPerClient,
      maxAnswerBytes: memory.maxAnswerBytes,
      answerReserveBytes: memory.answerReserveBytes,
      answerRetryMs: ANSWER_RETRY_MS,
      maxStoredResponses: memory.maxStoredResponses,
      maxTerminalRecords: s.maxTerminalRecords,
      maxStreamSessions: memory.maxStreamSessions,
      maxStreamChunks: 4096,
      maxStreamBytes: s.maxStreamBytes,
      maxRateLimitBuckets: s.maxRateLimitBuckets,
      maxTieCursors: 1024,
      responseTtlMs: s.responseTtlSeconds * 1000,
      deliveryGraceMs: s.deliveryGraceSeconds * 1000,
      ...protocolTimings(s),
    },
    memory,
  };
}
