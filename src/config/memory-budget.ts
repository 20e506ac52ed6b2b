import { totalmem } from 'node:os';
import { getHeapStatistics } from 'node:v8';

const MiB = 1024 * 1024;

/** What the process can find out about its memory at boot. */
export interface RuntimeMemory {
  /** The cgroup (v1 or v2) memory limit libuv reports, or null when there is none. */
  constrainedBytes: number | null;
  /** V8's heap limit (`heap_size_limit`): where the process dies with "heap out of memory". */
  heapLimitBytes: number;
}

/** Reads the cgroup limit (through libuv, `process.constrainedMemory()`) and V8's heap limit. */
export function runtimeMemory(): RuntimeMemory {
  const constrained = process.constrainedMemory();
  // libuv reports "no limit" as 0 or as a huge number (cgroup v1 max, 2^64).
  const limited = constrained > 0 && constrained < totalmem();
  return {
    constrainedBytes: limited ? constrained : null,
    heapLimitBytes: getHeapStatistics().heap_size_limit,
  };
}

/**
 * The sizing model (docs/decisions.md, "OOM-safe caps"; figures from `bench/memory.mjs`).
 * Ciphertext is held as V8 strings, so the heap limit binds first: measured 1.02-1.05 heap bytes
 * per queued or stored byte on Node 20 and 24, an idle heap of 23-29 MiB and 63-80 MiB of RSS
 * outside the heap. The constants keep a margin over those figures.
 */
export const MEMORY_MODEL = {
  /** RSS outside the V8 heap (code, buffers, stacks): subtracted from the container limit. */
  nativeReserveBytes: 96 * MiB,
  /**
   * RSS of one gateway worker thread once started (its own V8 isolate; 14-17 MiB measured on
   * Node 20 and 24 with the unwrap module loaded): outside the main heap, like the reserve.
   */
  workerThreadBytes: 16 * MiB,
  /** The relay's own live heap under load (modules, metrics, sockets). */
  heapBaselineBytes: 48 * MiB,
  /**
   * Default bound of request bodies being read at once, in bodies of TOKENPLACE_RELAY_MAX_BODY_BYTES
   * (TOKENPLACE_RELAY_MAX_BODY_BYTES_IN_FLIGHT; the body admission refuses what goes beyond).
   */
  concurrentBodies: 32,
  /** Share of the heap limit live data may use: V8 fails well before 100% ("ineffective mark-compacts"). */
  heapUsable: 0.8,
  /** Heap bytes per counted ciphertext byte (measured 1.02-1.05). */
  amplification: 1.1,
  /**
   * How the data budget is split. `queued`: request ciphertext waiting in queues. `answers`:
   * answers waiting for their clients and buffered legacy stream chunks, counted in bytes as they
   * really are (`answerBytes()` in state.types.ts). `inFlight` is headroom: claimed requests keep
   * their ciphertext. `held`: requests held open waiting (long-polls, `Prefer: wait` retrieves,
   * gateway chats), counted at {@link heldWaitBytes} each. With the Redis store the queue and the
   * answers live in Redis, and their shares go to held waits too.
   */
  shares: { queued: 0.2, answers: 0.32, inFlight: 0.1, held: 0.38 },
  /**
   * Heap one held wait keeps (its request, response and socket objects in Node, Express and Nest,
   * the waiter record): measured 10.9 KiB per held `/servers/poll` and 12.0 per held retrieve at
   * 1,024 held, 15.8 per gateway chat of which 1.8 is its sealed request (counted in flight), after
   * a forced GC with the chart's `--max-semi-space-size=1` (`bench/held.mjs`, Node 24).
   */
  heldWaitBytes: 12 * 1024,
  /**
   * The part of the answer budget kept for the answers of work already accepted: above
   * `1 - answerReserve` of it, new requests and answers nobody asked for are refused.
   */
  answerReserve: 0.25,
  /** Ceilings of the derived caps: the defaults of a relay without a memory limit. */
  maxQueuedBytes: 512 * MiB,
  maxAnswerBytes: 512 * MiB,
  /** Sanity ceilings on counts: the bytes above are the budget. */
  maxStoredResponses: 50000,
  maxStreamSessions: 1024,
  /** Ceiling of the derived held-wait budget (a relay without a memory limit). */
  maxHeldWaits: 100000,
  /**
   * Share of the held-wait budget one client address may hold by default (at least
   * {@link minHeldWaitsPerAddress}): one stranger cannot take every place.
   */
  heldPerAddressShare: 1 / 8,
  minHeldWaitsPerAddress: 64,
  /** A budget below this cannot hold a useful queue. */
  minimumDataBytes: 16 * MiB,
} as const;

export interface MemoryPlanInput {
  /** TOKENPLACE_RELAY_MEMORY_LIMIT_BYTES, when set. */
  configuredLimitBytes?: number;
  runtime: RuntimeMemory;
  maxBodyBytes: number;
  /** TOKENPLACE_RELAY_MAX_BODY_BYTES_IN_FLIGHT: the request-body bytes read at once, at most. */
  bodyBytesInFlight: number;
  /** Caps the operator set explicitly; unset ones are derived. */
  maxQueuedBytes?: number;
  maxAnswerBytes?: number;
  maxStoredResponses?: number;
  maxStreamSessions?: number;
  /** TOKENPLACE_RELAY_MAX_HELD_WAITS, when set. */
  maxHeldWaits?: number;
  /** TOKENPLACE_RELAY_MAX_HELD_WAITS_PER_ADDRESS, when set. */
  maxHeldWaitsPerAddress?: number;
  /** With Redis the queue and the answers live in Redis, not in this process. */
  store: 'memory' | 'redis';
  /** Worker threads the process may start (TOKENPLACE_GATEWAY_UNWRAP_THREADS); none when unset. */
  workerThreads?: number;
}

/** The caps the relay runs with and how they were reached (logged at boot). */
export interface MemoryPlan {
  limitBytes: number | null;
  limitSource: 'TOKENPLACE_RELAY_MEMORY_LIMIT_BYTES' | 'cgroup' | 'none';
  heapLimitBytes: number;
  /** Heap bytes relay state may use: the smaller of the usable heap and the limit minus native RSS, minus the runtime and in-flight bodies. */
  dataBytes: number;
  maxQueuedBytes: number;
  /** Bytes of answers (and buffered stream chunks) held for clients. */
  maxAnswerBytes: number;
  /** Of {@link maxAnswerBytes}, the part kept for the answers of work already accepted. */
  answerReserveBytes: number;
  /** Count ceilings (sanity bounds; the bytes are the budget). */
  maxStoredResponses: number;
  maxStreamSessions: number;
  /**
   * Requests this process holds open waiting at once (long-polls, `Prefer: wait` retrieves,
   * gateway chats): past it a retrieve is answered at once, a poll or a chat refused 503.
   */
  maxHeldWaits: number;
  /** Of {@link maxHeldWaits}, the most one client address (IPv4, or IPv6 /64) may hold at once. */
  maxHeldWaitsPerAddress: number;
  derived: Array<'maxQueuedBytes' | 'maxAnswerBytes' | 'maxHeldWaits'>;
}

export interface MemoryPlanResult {
  plan: MemoryPlan | null;
  problems: string[];
  warnings: string[];
}

const mib = (bytes: number): string => `${Math.round(bytes / MiB)} MiB`;

/**
 * Sizes the in-memory store's byte-holding caps, and the waits held open (with either store), from
 * the memory the process really has, so a full queue is refused with 503 and a wait past the budget
 * is not held, instead of the heap (or the container) running out. Explicit caps that cannot fit
 * are refused at boot; unset caps share what the explicit ones leave.
 */
export function planMemory(input: MemoryPlanInput): MemoryPlanResult {
  const m = MEMORY_MODEL;
  const problems: string[] = [];
  const warnings: string[] = [];
  const { runtime } = input;
  const limitBytes = input.configuredLimitBytes ?? runtime.constrainedBytes;
  const limitSource =
    input.configuredLimitBytes !== undefined
      ? 'TOKENPLACE_RELAY_MEMORY_LIMIT_BYTES'
      : runtime.constrainedBytes !== null
        ? 'cgroup'
        : 'none';

  const heapSide = runtime.heapLimitBytes * m.heapUsable;
  const outsideHeap = m.nativeReserveBytes + (input.workerThreads ?? 0) * m.workerThreadBytes;
  const limitSide = limitBytes === null ? Infinity : limitBytes - outsideHeap;
  const bodies = input.bodyBytesInFlight;
  const dataBytes = Math.floor(Math.min(heapSide, limitSide) - m.heapBaselineBytes - bodies);
  const where =
    limitBytes === null
      ? `heap limit ${mib(runtime.heapLimitBytes)}, no memory limit`
      : `memory limit ${mib(limitBytes)} from ${limitSource === 'cgroup' ? 'the cgroup' : limitSource}, heap limit ${mib(runtime.heapLimitBytes)}`;

  if (limitBytes !== null && runtime.heapLimitBytes + m.nativeReserveBytes > limitBytes) {
    warnings.push(
      `the V8 heap limit (${mib(runtime.heapLimitBytes)}) plus ${mib(m.nativeReserveBytes)} outside the heap exceeds the memory limit (${mib(limitBytes)}): garbage may grow past the limit before V8 collects it; set --max-old-space-size to at most ${Math.floor((limitBytes - m.nativeReserveBytes) / MiB)} (the chart does)`,
    );
  }
  if (dataBytes < m.minimumDataBytes) {
    problems.push(
      `memory budget too small: ${where} leave ${mib(Math.max(dataBytes, 0))} for relay state after the runtime (${mib(m.heapBaselineBytes)}) and request bodies being read (TOKENPLACE_RELAY_MAX_BODY_BYTES_IN_FLIGHT, ${mib(bodies)}); at least ${mib(m.minimumDataBytes)} is needed: raise the memory limit or lower TOKENPLACE_RELAY_MAX_BODY_BYTES or TOKENPLACE_RELAY_MAX_BODY_BYTES_IN_FLIGHT`,
    );
    return { plan: null, problems, warnings };
  }

  // Held waits live in this process whatever the store: their share of the budget, per wait.
  const heldShare =
    input.store === 'redis' ? m.shares.held + m.shares.queued + m.shares.answers : m.shares.held;
  const heldBytes = dataBytes * heldShare;
  const heldFits = Math.floor(heldBytes / m.heldWaitBytes);
  if (input.maxHeldWaits !== undefined && input.maxHeldWaits > heldFits) {
    problems.push(
      `TOKENPLACE_RELAY_MAX_HELD_WAITS=${input.maxHeldWaits} needs about ${mib(input.maxHeldWaits * m.heldWaitBytes)} of heap with every wait held, more than the ${mib(heldBytes)} the memory budget gives held waits (${where}): lower it, or leave it unset to derive it from the budget`,
    );
    return { plan: null, problems, warnings };
  }
  const maxHeldWaits = input.maxHeldWaits ?? Math.min(m.maxHeldWaits, heldFits);
  const ceilings = {
    maxStoredResponses: input.maxStoredResponses ?? m.maxStoredResponses,
    maxStreamSessions: input.maxStreamSessions ?? m.maxStreamSessions,
    maxHeldWaits,
    maxHeldWaitsPerAddress: Math.min(
      maxHeldWaits,
      input.maxHeldWaitsPerAddress ??
        Math.max(m.minHeldWaitsPerAddress, Math.floor(maxHeldWaits * m.heldPerAddressShare)),
    ),
  };
  const heldDerived: MemoryPlan['derived'] =
    input.maxHeldWaits === undefined ? ['maxHeldWaits'] : [];
  if (input.store === 'redis') {
    const maxAnswerBytes = input.maxAnswerBytes ?? m.maxAnswerBytes;
    return {
      plan: {
        limitBytes,
        limitSource,
        heapLimitBytes: runtime.heapLimitBytes,
        dataBytes,
        maxQueuedBytes: input.maxQueuedBytes ?? m.maxQueuedBytes,
        maxAnswerBytes,
        answerReserveBytes: Math.floor(maxAnswerBytes * m.answerReserve),
        ...ceilings,
        derived: heldDerived,
      },
      problems,
      warnings,
    };
  }

  // Queued requests and waiting answers share what the budget gives them, each in real bytes.
  const capacity = dataBytes * (m.shares.queued + m.shares.answers);
  const explicitCost =
    ((input.maxQueuedBytes ?? 0) + (input.maxAnswerBytes ?? 0)) * m.amplification;
  if (explicitCost > capacity) {
    const set = [
      input.maxQueuedBytes !== undefined
        ? `TOKENPLACE_RELAY_MAX_QUEUED_BYTES=${input.maxQueuedBytes}`
        : null,
      input.maxAnswerBytes !== undefined
        ? `TOKENPLACE_RELAY_MAX_ANSWER_BYTES=${input.maxAnswerBytes}`
        : null,
    ].filter(Boolean);
    problems.push(
      `${set.join(' and ')} need about ${mib(explicitCost)} of heap when full, more than the ${mib(capacity)} the memory budget gives queued requests and waiting answers (${where}): lower them, or leave them unset to derive them from the budget`,
    );
    return { plan: null, problems, warnings };
  }

  const remaining = capacity - explicitCost;
  const queuedDerived = input.maxQueuedBytes === undefined;
  const answersDerived = input.maxAnswerBytes === undefined;
  const shareOf = (share: number): number =>
    remaining *
    (share /
      ((queuedDerived ? m.shares.queued : 0) + (answersDerived ? m.shares.answers : 0) || 1));
  const maxQueuedBytes =
    input.maxQueuedBytes ??
    Math.min(m.maxQueuedBytes, Math.floor(shareOf(m.shares.queued) / m.amplification));
  const maxAnswerBytes =
    input.maxAnswerBytes ??
    Math.min(m.maxAnswerBytes, Math.floor(shareOf(m.shares.answers) / m.amplification));
  if (queuedDerived && maxQueuedBytes < MiB) {
    problems.push(
      `the memory budget (${where}) leaves less than 1 MiB for queued ciphertext: raise the memory limit or lower TOKENPLACE_RELAY_MAX_ANSWER_BYTES`,
    );
  }
  if (answersDerived && maxAnswerBytes < input.maxBodyBytes) {
    problems.push(
      `the memory budget (${where}) leaves no room for one answer of TOKENPLACE_RELAY_MAX_BODY_BYTES=${input.maxBodyBytes}: raise the memory limit or lower TOKENPLACE_RELAY_MAX_QUEUED_BYTES or TOKENPLACE_RELAY_MAX_BODY_BYTES`,
    );
  }
  const derived: MemoryPlan['derived'] = [];
  if (queuedDerived) {
    derived.push('maxQueuedBytes');
  }
  if (answersDerived) {
    derived.push('maxAnswerBytes');
  }
  derived.push(...heldDerived);
  return {
    plan:
      problems.length > 0
        ? null
        : {
            limitBytes,
            limitSource,
            heapLimitBytes: runtime.heapLimitBytes,
            dataBytes,
            maxQueuedBytes,
            maxAnswerBytes,
            answerReserveBytes: Math.floor(maxAnswerBytes * m.answerReserve),
            ...ceilings,
            derived,
          },
    problems,
    warnings,
  };
}
