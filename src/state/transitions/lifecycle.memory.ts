/**
 * Helpers every in-memory transition shares; the twin of lifecycle.redis.lua (same names, same
 * order). Plain synchronous functions over the one {@link MemoryState}, each given the running
 * transition ({@link Tx}: the state, `now`, and the counts it reports).
 */
import { constantTimeEquals } from '../../common/ids';
import {
  outcomeOf,
  type Dialect,
  type Envelope,
  type EvictionReason,
  type NodeView,
  type RequestOutcome,
  type TerminalReason,
  type TerminalStatus,
} from '../state.types';
import type { TtlIndex } from '../ttl-index';
import { responseKey, workKey } from '../waiters';
import type { JobRec, MemoryState, NodeRec, Tx } from './memory-state';

export const pairKey = (clientKey: string, requestId: string): string =>
  `${clientKey}\n${requestId}`;
export const tombKey = (nodeId: string, requestId: string): string => `${nodeId}\n${requestId}`;

export function outcome(tx: Tx, name: RequestOutcome): void {
  tx.t.outcomes[name] = (tx.t.outcomes[name] ?? 0) + 1;
}

export function evicted(tx: Tx, reason: EvictionReason): void {
  tx.t.evictions[reason] = (tx.t.evictions[reason] ?? 0) + 1;
}

export function leaseMs(s: MemoryState, dialect: Dialect): number {
  return dialect === 'v1' ? s.limits.v1LeaseMs : s.limits.legacyLeaseMs;
}

/** A node as the read transitions list it. */
export function nodeView(s: MemoryState, node: NodeRec): NodeView {
  return {
    nodeId: node.nodeId,
    dialect: node.dialect,
    lastPingAt: node.lastPingAt,
    leaseMs: leaseMs(s, node.dialect),
    queueDepth: node.queue.size,
    inFlightCount: node.activeClaims.size,
    capabilities: node.capabilities,
    fallback: node.fallback,
    keyUnusable: node.keyUnusable,
  };
}

/** Past its lease and not protected by a held poll or an active claim: late, maybe gone. */
export function isLapsed(s: MemoryState, node: NodeRec, now: number): boolean {
  if (now - node.lastPingAt <= leaseMs(s, node.dialect)) {
    return false;
  }
  return node.pollingUntil <= now && node.activeClaims.size === 0;
}

/** Lapsed for longer than the grace: evicted, its work ends `cancelled/server_unregistered`. */
export function isGone(s: MemoryState, node: NodeRec, now: number): boolean {
  return (
    isLapsed(s, node, now) &&
    now - node.lastPingAt > leaseMs(s, node.dialect) + s.limits.lapseGraceMs
  );
}

/** The earliest instant a node that stays silent from now on could be gone. */
export function evictAt(s: MemoryState, node: NodeRec): number {
  return node.lastPingAt + leaseMs(s, node.dialect) + s.limits.lapseGraceMs;
}

/** A sign of life: the lease runs from now; the eviction check moves to lease + grace later. */
export function touch(tx: Tx, node: NodeRec): void {
  node.lastPingAt = Math.max(node.lastPingAt, tx.now);
  tx.s.rechecks[node.dialect].delete(node.nodeId);
  tx.s.leases[node.dialect].set(node.nodeId, evictAt(tx.s, node));
}

/** Touches a node that is not gone yet (a gone one is left to the sweep). */
export function touchId(tx: Tx, nodeId: string): void {
  const node = tx.s.nodes.get(nodeId);
  if (node && !isGone(tx.s, node, tx.now)) {
    touch(tx, node);
  }
}

export function credentialMatches(stored: string | null, presented: string | null): boolean {
  return stored !== null && presented !== null && constantTimeEquals(stored, presented);
}

export function unqueue(s: MemoryState, job: JobRec, node: NodeRec | undefined): void {
  if (s.queued.delete(job.jobId)) {
    s.queuedBytes -= job.bytes;
  }
  node?.queue.delete(job.jobId);
}

/** Drops a claimed job from its node's accounting and from the in-flight indexes. */
export function detach(s: MemoryState, job: JobRec): void {
  if (job.state === 'queued') {
    unqueue(s, job, s.nodes.get(job.nodeId));
    return;
  }
  s.claimed.delete(job.jobId);
  s.claimLeases.delete(job.jobId);
  const node = s.nodes.get(job.nodeId);
  if (node && job.requestId !== null && node.claims.get(job.requestId) === job.jobId) {
    node.claims.delete(job.requestId);
  }
  node?.activeClaims.delete(job.jobId);
  if (job.dialect === 'legacy' && job.clientKey !== null) {
    const set = s.legacyClaimsByClient.get(job.clientKey);
    set?.delete(job.jobId);
    if (set && set.size === 0) {
      s.legacyClaimsByClient.delete(job.clientKey);
    }
  }
}

/** Removes every trace of a job except terminal records and tombstones. */
export function forget(s: MemoryState, job: JobRec): void {
  detach(s, job);
  s.answerBytes -= job.responseBytes;
  job.responseBytes = 0;
  s.deadlines[job.dialect].delete(job.jobId);
  s.answered.delete(job.jobId);
  s.handed.delete(job.jobId);
  s.jobs.delete(job.jobId);
  if (job.clientKey !== null) {
    if (job.requestId !== null) {
      const pk = pairKey(job.clientKey, job.requestId);
      if (s.pairs.get(pk) === job.jobId) {
        s.pairs.delete(pk);
      }
    }
    const live = (s.liveByClient.get(job.clientKey) ?? 1) - 1;
    if (live <= 0) {
      s.liveByClient.delete(job.clientKey);
    } else {
      s.liveByClient.set(job.clientKey, live);
    }
  }
}

export function clearTerminal(s: MemoryState, pk: string): void {
  s.terminals.delete(pk);
  s.terminalTtl.delete(pk);
}

export function writeTerminal(
  tx: Tx,
  pk: string,
  status: TerminalStatus,
  reason: TerminalReason,
): void {
  const { s } = tx;
  if (!s.terminals.has(pk) && s.terminals.size >= s.limits.maxTerminalRecords) {
    const oldest = s.terminalTtl.oldest();
    if (oldest) {
      clearTerminal(s, oldest[0]);
    }
  }
  s.terminals.set(pk, { status, reason });
  s.terminalTtl.set(pk, tx.now + s.limits.terminalTtlMs);
}

/**
 * Ends a live job as cancelled or expired: takes it out of every queue and index, leaves a
 * control tombstone when a node holds it, and a terminal record for the client when tracked.
 */
export function endJob(
  tx: Tx,
  job: JobRec,
  status: TerminalStatus,
  reason: TerminalReason,
  terminal: boolean,
): void {
  const { s } = tx;
  if (job.state === 'inflight' && job.dialect === 'v1' && job.requestId !== null) {
    const node = s.nodes.get(job.nodeId);
    const tk = tombKey(job.nodeId, job.requestId);
    s.tombstones.set(tk, {
      status,
      digest: node?.credentialDigest ?? null,
      deadlineAt: job.deadlineAt,
    });
    s.tombstoneTtl.set(tk, tx.now + s.limits.tombstoneTtlMs);
  }
  forget(s, job);
  outcome(tx, outcomeOf(status, reason));
  if (job.clientKey !== null && job.requestId !== null) {
    if (terminal) {
      writeTerminal(tx, pairKey(job.clientKey, job.requestId), status, reason);
    }
    s.wake(responseKey(job.clientKey, job.requestId));
  }
}

export function dropStream(s: MemoryState, sessionId: string): void {
  const session = s.streams.get(sessionId);
  s.answerBytes -= session?.bytes ?? 0;
  s.streams.delete(sessionId);
  s.streamTtl.delete(sessionId);
  if (session && s.streamByClient.get(session.clientKey) === sessionId) {
    s.streamByClient.delete(session.clientKey);
  }
}

export function openStream(tx: Tx, sessionId: string, clientKey: string, nodeId: string): void {
  const { s } = tx;
  const previous = s.streamByClient.get(clientKey);
  if (previous !== undefined) {
    dropStream(s, previous);
  }
  if (s.streams.size >= s.limits.maxStreamSessions) {
    const oldest = s.streamTtl.oldest();
    if (oldest) {
      dropStream(s, oldest[0]);
    }
  }
  s.streams.set(sessionId, { clientKey, nodeId, chunks: [], bytes: 0, final: false });
  s.streamByClient.set(clientKey, sessionId);
  s.streamTtl.set(sessionId, tx.now + s.limits.streamTtlMs);
}

/**
 * Removes a node: queued and claimed work ends `cancelled/server_unregistered` (the eviction is
 * counted when `count`), its open stream sessions are dropped, and its waiters are woken.
 */
export function removeNode(tx: Tx, node: NodeRec, reason: EvictionReason, count: boolean): void {
  const { s } = tx;
  for (const jobId of [...node.queue, ...node.claims.values()]) {
    const job = s.jobs.get(jobId);
    if (job) {
      endJob(tx, job, 'cancelled', 'server_unregistered', true);
    }
  }
  for (const [sessionId, session] of s.streams) {
    if (session.nodeId === node.nodeId && !session.final) {
      dropStream(s, sessionId);
    }
  }
  s.nodes.delete(node.nodeId);
  const group = node.group === null ? undefined : s.groups.get(node.group);
  group?.delete(node.nodeId);
  if (node.group !== null && group?.size === 0) {
    s.groups.delete(node.group);
  }
  s.leases[node.dialect].delete(node.nodeId);
  s.rechecks[node.dialect].delete(node.nodeId);
  const pos = s.legacyPos.get(node.nodeId);
  if (pos !== undefined) {
    const last = s.legacyIds.pop() as string;
    if (last !== node.nodeId) {
      s.legacyIds[pos] = last;
      s.legacyPos.set(last, pos);
    }
    s.legacyPos.delete(node.nodeId);
  }
  if (count) {
    evicted(tx, reason);
  }
  s.wake(workKey(node.nodeId));
}

/** The node, unless it is gone: then it is evicted here (as the sweep would) and undefined. */
export function liveNode(tx: Tx, nodeId: string): NodeRec | undefined {
  const node = tx.s.nodes.get(nodeId);
  if (node && isGone(tx.s, node, tx.now)) {
    removeNode(tx, node, 'stale_lease', true);
    return undefined;
  }
  return node;
}

export function storedCount(s: MemoryState): number {
  return s.answered.size + s.untracked.size + s.legacyResponses.size;
}

/** Marks the client's oldest (or the given) legacy claim answered. */
export function completeLegacyClaim(tx: Tx, clientKey: string, jobId: string | null): void {
  const set = tx.s.legacyClaimsByClient.get(clientKey);
  if (!set) {
    return;
  }
  const id = jobId !== null ? (set.has(jobId) ? jobId : undefined) : set.values().next().value;
  const job = id !== undefined ? tx.s.jobs.get(id) : undefined;
  if (job) {
    touchId(tx, job.nodeId);
    forget(tx.s, job);
    outcome(tx, 'completed');
  }
}

export function dropUntracked(s: MemoryState, id: string): void {
  const rec = s.untracked.get(id);
  if (!rec) {
    return;
  }
  s.answerBytes -= rec.bytes;
  s.untracked.delete(id);
  s.untrackedTtl.delete(id);
  const set = s.untrackedByClient.get(rec.clientKey);
  set?.delete(id);
  if (set && set.size === 0) {
    s.untrackedByClient.delete(rec.clientKey);
  }
}

/** Forgets a client's legacy answer held in one of two alike places: answers, bytes, TTL index. */
function dropLegacyAnswer(
  s: MemoryState,
  clientKey: string,
  answers: Map<string, Envelope>,
  bytes: Map<string, number>,
  ttl: TtlIndex<string>,
): void {
  s.answerBytes -= bytes.get(clientKey) ?? 0;
  answers.delete(clientKey);
  bytes.delete(clientKey);
  ttl.delete(clientKey);
}

/** Empties a client's legacy mailbox (a new answer not handed out yet). */
export function dropLegacyResponse(s: MemoryState, clientKey: string): void {
  dropLegacyAnswer(s, clientKey, s.legacyResponses, s.legacyResponseBytes, s.legacyResponseTtl);
}

/** Forgets a client's legacy answer handed out and not confirmed delivered. */
export function dropLegacyHanded(s: MemoryState, clientKey: string): void {
  dropLegacyAnswer(s, clientKey, s.legacyHanded, s.legacyHandedBytes, s.legacyHandedTtl);
}

/**
 * Whether an answer of `bytes` fits the answer budget: up to `maxAnswerBytes` for accepted work
 * (`forAcceptedWork`), below the reserve for anything else. `replacing`: bytes it takes the
 * place of.
 */
export function answerFits(
  s: MemoryState,
  bytes: number,
  forAcceptedWork: boolean,
  replacing = 0,
): boolean {
  const limit = s.limits.maxAnswerBytes - (forAcceptedWork ? 0 : s.limits.answerReserveBytes);
  return s.answerBytes - replacing + bytes <= limit;
}

/**
 * An answer of this claim was refused for capacity: unless its node confirms the claim again
 * (`/servers/control`), it goes back to the head of the node's queue `answerRetryMs` from now
 * (the sweep's redelivery), so it is claimed and answered again rather than lost.
 */
export function retryClaimLater(tx: Tx, job: JobRec): void {
  job.acked = false;
  tx.s.claimLeases.set(job.jobId, Math.min(tx.now + tx.s.limits.answerRetryMs, job.deadlineAt));
}
