/**
 * Housekeeping: sweep, stats and rate-limit windows; the twin of upkeep.redis.lua (one function per
 * script, same order). Due entries are handled in the order Redis lists a sorted set (expiry, then
 * key bytes), so both stores expire, evict and cap in the same order.
 */
import type { RateLimitCommand, RateLimitResult } from '../state-store';
import type { TransitionCounts } from '../state.types';
import { takeDue, TtlIndex } from '../ttl-index';
import { workKey } from '../waiters';
import {
  clearTerminal,
  dropLegacyHanded,
  dropLegacyResponse,
  dropStream,
  dropUntracked,
  endJob,
  evictAt,
  forget,
  isGone,
  isLapsed,
  leaseMs,
  pairKey,
  removeNode,
  storedCount,
  writeTerminal,
} from './lifecycle.memory';
import { begin, type JobRec, type MemoryState, type NodeRec } from './memory-state';
import type { StatsSnapshot } from './stats-snapshot';

/** tpSweep: expires everything due at `now` and evicts gone nodes. */
export function sweep(s: MemoryState, now: number): TransitionCounts {
  const tx = begin(s, now);
  for (const [pk] of takeDue(now, false, s.terminalTtl)) {
    clearTerminal(s, pk);
  }
  takeDue(now, false, s.completedTtl);
  for (const [tk] of takeDue(now, false, s.tombstoneTtl)) {
    s.tombstones.delete(tk);
  }
  for (const [jobId] of takeDue(now, false, s.deadlines.legacy, s.deadlines.v1)) {
    const job = s.jobs.get(jobId);
    if (job && job.state !== 'answered') {
      // Spec §4.6: a deadline the sweep finds, queued or in flight, is
      // `expired/pending_request_ttl_exceeded`; the node learns it from its tombstone.
      endJob(tx, job, 'expired', 'pending_request_ttl_exceeded', true);
    }
  }
  for (const [jobId] of takeDue(now, false, s.claimLeases)) {
    const job = s.jobs.get(jobId);
    const node = job ? s.nodes.get(job.nodeId) : undefined;
    node?.activeClaims.delete(jobId);
    if (job && node && job.state === 'inflight' && !job.acked && job.deadlineAt > now) {
      redeliver(s, job, node);
    }
  }
  for (const [jobId] of takeDue(now, false, s.answered)) {
    const job = s.jobs.get(jobId);
    if (job && job.state === 'answered') {
      forget(s, job);
      if (job.requestId !== null && job.clientKey !== null) {
        writeTerminal(
          tx,
          pairKey(job.clientKey, job.requestId),
          'expired',
          'response_ttl_exceeded',
        );
      }
    }
  }
  for (const [jobId] of takeDue(now, false, s.handed)) {
    const job = s.jobs.get(jobId);
    if (job && job.state === 'answered' && job.handed) {
      forget(s, job);
    }
  }
  for (const [client] of takeDue(now, false, s.legacyHandedTtl)) {
    dropLegacyHanded(s, client);
  }
  for (const [id] of takeDue(now, false, s.untrackedTtl)) {
    dropUntracked(s, id);
  }
  for (const [client] of takeDue(now, false, s.legacyResponseTtl)) {
    dropLegacyResponse(s, client);
  }
  for (const [sessionId] of takeDue(now, false, s.streamTtl)) {
    dropStream(s, sessionId);
  }
  const leases = takeDue(now, true, s.leases.legacy, s.leases.v1, s.rechecks.legacy, s.rechecks.v1);
  for (const [id] of leases) {
    const node = s.nodes.get(id);
    if (!node) {
      continue;
    }
    if (isGone(s, node, now)) {
      removeNode(tx, node, 'stale_lease', true);
    } else {
      // Long-polling or working nodes are not lapsed; check them again one lease later.
      s.rechecks[node.dialect].set(id, Math.max(now + leaseMs(s, node.dialect), evictAt(s, node)));
    }
  }
  expireRateBuckets(s, now);
  return tx.t;
}

/**
 * Puts a claim its node never confirmed back at the head of the node's queue. Today's nodes call
 * `/servers/control` right after claiming, so silence for a whole in-flight lease means the poll
 * answer never reached them (node crashed, connection cut, replica killed mid-answer). A claim
 * whose answer was refused `answers_full` (API v1 or legacy) comes here `answerRetryMs` later.
 */
function redeliver(s: MemoryState, job: JobRec, node: NodeRec): void {
  s.claimed.delete(job.jobId);
  if (job.requestId !== null && node.claims.get(job.requestId) === job.jobId) {
    node.claims.delete(job.requestId);
  }
  if (job.dialect === 'legacy' && job.clientKey !== null) {
    const set = s.legacyClaimsByClient.get(job.clientKey);
    set?.delete(job.jobId);
    if (set?.size === 0) {
      s.legacyClaimsByClient.delete(job.clientKey);
    }
    if (job.stream) {
      dropStream(s, job.jobId);
    }
  }
  job.state = 'queued';
  job.claimedAt = 0;
  // Keep `queued` ordered by queued-at (its head is the oldest queued, as the Redis zset's is):
  // the redelivered job is older than most. Rare, so an O(queued) rebuild is fine.
  s.queued.set(job.jobId, job.queuedAt);
  s.queued = new Map([...s.queued].sort((a, b) => a[1] - b[1]));
  s.queuedBytes += job.bytes;
  node.queue.prepend(job.jobId);
  s.wake(workKey(node.nodeId));
}

function expireRateBuckets(s: MemoryState, now: number): void {
  for (const [key] of takeDue(now, false, ...s.rateWindows.values())) {
    s.rateBuckets.delete(key);
    s.rateUsed.delete(key);
  }
}

/** Forgets the bucket hit longest ago (ties: smallest key, as `ZRANGE rlu 0 0`). */
function evictLeastRecentlyUsed(s: MemoryState): void {
  const oldest = s.rateUsed.oldest();
  if (oldest === undefined) {
    return;
  }
  const [key] = oldest;
  s.rateUsed.delete(key);
  s.rateBuckets.delete(key);
  s.rateWindows.get(Number(key.slice(0, key.indexOf('\n'))))?.delete(key);
}

/** tpStats, before ages are computed (statsFromSnapshot). */
export function stats(s: MemoryState, now: number): StatsSnapshot {
  let v1Registered = 0;
  let v1Healthy = 0;
  let oldestPingAt: number | null = null;
  for (const node of s.nodes.values()) {
    if (node.dialect === 'v1') {
      v1Registered += 1;
      v1Healthy += isLapsed(s, node, now) ? 0 : 1;
    }
    oldestPingAt =
      oldestPingAt === null ? node.lastPingAt : Math.min(oldestPingAt, node.lastPingAt);
  }
  const oldestQueued = s.queued.values().next();
  const oldestClaimed = s.claimed.values().next();
  return {
    queueDepth: s.queued.size,
    oldestQueuedAt: oldestQueued.done ? null : oldestQueued.value,
    inFlight: s.claimed.size,
    oldestClaimedAt: oldestClaimed.done ? null : oldestClaimed.value,
    nodesRegistered: s.nodes.size,
    v1NodesRegistered: v1Registered,
    v1NodesHealthy: v1Healthy,
    oldestPingAt,
    queuedBytes: s.queuedBytes,
    storedResponses: storedCount(s) + s.handed.size + s.legacyHanded.size,
    answerBytes: s.answerBytes,
    terminalRecords: s.terminals.size + s.completedTtl.size,
    tombstones: s.tombstones.size,
    streamSessions: s.streams.size,
    rateLimitBuckets: s.rateBuckets.size,
  };
}

/**
 * tpHitRateLimit: one hit in a fixed window; refuses past the limit. A full table forgets its
 * least recently used bucket rather than refuse a newcomer. A refund takes back one hit of the
 * current window (a request that failed authentication after its identity was charged).
 */
export function hitRateLimit(s: MemoryState, cmd: RateLimitCommand): RateLimitResult {
  let index = s.rateWindows.get(cmd.windowMs);
  if (!index) {
    index = new TtlIndex();
    s.rateWindows.set(cmd.windowMs, index);
  }
  const bucketKey = `${cmd.windowMs}\n${cmd.key}`;
  let resetAt = index.get(bucketKey);
  let count = s.rateBuckets.get(bucketKey) ?? 0;
  if (cmd.refund === true) {
    const live = resetAt !== undefined && resetAt > cmd.now;
    if (live && count > 0) {
      s.rateBuckets.set(bucketKey, count - 1);
    }
    const seconds = live ? Math.ceil(((resetAt as number) - cmd.now) / 1000) : 1;
    return { allowed: true, resetSeconds: Math.max(1, seconds) };
  }
  if (resetAt === undefined || resetAt <= cmd.now) {
    if (resetAt === undefined && s.rateBuckets.size >= s.limits.maxRateLimitBuckets) {
      expireRateBuckets(s, cmd.now);
      if (s.rateBuckets.size >= s.limits.maxRateLimitBuckets) {
        // Never refuse a newcomer because strangers filled the table: the bucket idle longest
        // goes (its caller starts a fresh window if it comes back).
        evictLeastRecentlyUsed(s);
      }
    }
    resetAt = cmd.now + cmd.windowMs;
    count = 0;
    index.set(bucketKey, resetAt);
    s.rateBuckets.set(bucketKey, 0);
  }
  s.rateUsed.set(bucketKey, cmd.now);
  const resetSeconds = Math.max(1, Math.ceil((resetAt - cmd.now) / 1000));
  if (count >= cmd.limit) {
    return { allowed: false, resetSeconds };
  }
  s.rateBuckets.set(bucketKey, count + 1);
  return { allowed: true, resetSeconds };
}
