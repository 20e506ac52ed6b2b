import { bodyLimits, type EdgeEnv } from './edge.config';
import { IntEnv } from './env-kinds';
import { planMemory, type MemoryPlanResult, type RuntimeMemory } from './memory-budget';
import type { GatewayEnv } from './gateway.config';
import { storeKind, type RedisEnv } from './redis.config';
import type { StoreEnv } from './store.config';

/** The memory the relay may use: the caps left unset are sized from it (memory-budget.ts). */
export class MemoryEnv {
  @IntEnv(
    'TOKENPLACE_RELAY_MEMORY_LIMIT_BYTES',
    "The container's memory limit in bytes (the chart sets it from resources.limits.memory); unset: the cgroup limit. Unset caps are derived from it and the V8 heap limit; explicit caps that cannot fit stop the relay at boot",
    64 * 1024 * 1024,
    2 ** 50,
    { optional: true },
  )
  memoryLimitBytes?: number;

  @IntEnv(
    'TOKENPLACE_RELAY_MAX_HELD_WAITS',
    'Most requests held open waiting at once in this process (node polls, held /sink, Prefer: wait retrieves, gateway chats); beyond, a retrieve is answered at once (as with Prefer: wait=0), a poll or a chat gets 503 + Retry-After; unset: derived from the memory budget (12 KiB of heap each), at most 100000',
    1,
    1_000_000,
    { optional: true },
  )
  maxHeldWaits?: number;

  @IntEnv(
    'TOKENPLACE_RELAY_MAX_HELD_WAITS_PER_ADDRESS',
    'Most requests one address (an IPv4 address or an IPv6 /64) may hold open waiting at once: client waits, and node polls while registration is open (nodes vouched for by a node token are bounded by the budget alone); beyond, its waits are treated as past TOKENPLACE_RELAY_MAX_HELD_WAITS; unset: an eighth of the held-wait budget, at least 64',
    1,
    1_000_000,
    { optional: true },
  )
  maxHeldWaitsPerAddress?: number;
}

/** Sizes the byte-holding caps from the memory limit, the body bounds and the caps set. */
export function memoryPlanOf(
  s: MemoryEnv & EdgeEnv & StoreEnv & RedisEnv & GatewayEnv,
  runtime: RuntimeMemory,
): MemoryPlanResult {
  return planMemory({
    configuredLimitBytes: s.memoryLimitBytes,
    runtime,
    maxBodyBytes: s.maxBodyBytes,
    bodyBytesInFlight: bodyLimits(s).maxInFlightBytes,
    maxQueuedBytes: s.maxQueuedBytes,
    maxAnswerBytes: s.maxAnswerBytes,
    maxStoredResponses: s.maxStoredResponses,
    maxStreamSessions: s.maxStreamSessions,
    maxHeldWaits: s.maxHeldWaits,
    maxHeldWaitsPerAddress: s.maxHeldWaitsPerAddress,
    store: storeKind(s),
    workerThreads: s.gatewayEnabled ? s.gatewayUnwrapThreads : 0,
  });
}
