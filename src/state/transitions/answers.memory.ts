/**
 * Request transitions on the client side: answers, retrieval, delivery, legacy streams; the twin
 * of answers.redis.lua (one function per script, same order).
 */
import type {
  CompleteCommand,
  CompleteResult,
  ConfirmDeliveryCommand,
  StreamChunkCommand,
  StreamChunkResult,
  StreamTakeResult,
  TakeResponseCommand,
  TakeResponseResult,
} from '../state-store';
import { answerBytes, type Envelope } from '../state.types';
import { responseKey } from '../waiters';
import {
  answerFits,
  completeLegacyClaim,
  dropLegacyHanded,
  dropLegacyResponse,
  detach,
  dropStream,
  dropUntracked,
  endJob,
  forget,
  outcome,
  pairKey,
  retryClaimLater,
  storedCount,
  touchId,
} from './lifecycle.memory';
import { begin, type JobRec, type MemoryState, type NodeRec, type Tx } from './memory-state';

/** tpComplete */
export function complete(s: MemoryState, cmd: CompleteCommand): CompleteResult {
  const tx = begin(s, cmd.now);
  if (cmd.dialect === 'legacy') {
    return completeLegacy(tx, cmd);
  }
  if (cmd.requestId === null) {
    return storeUntracked(tx, cmd);
  }
  const pk = pairKey(cmd.clientKey, cmd.requestId);
  const terminal = s.terminals.get(pk);
  if (terminal) {
    return { status: 'gone', code: terminal.status, transitions: tx.t };
  }
  const jobId = s.pairs.get(pk);
  const job = jobId !== undefined ? s.jobs.get(jobId) : undefined;
  if (!job) {
    const code = s.completedTtl.has(pk) ? 'completed' : 'gone';
    return { status: 'gone', code, transitions: tx.t };
  }
  if (job.state === 'answered') {
    return { status: 'duplicate', transitions: tx.t };
  }
  if (!heldBy(s, job, cmd.answerer)) {
    return { status: 'not_holder', transitions: tx.t };
  }
  if (job.deadlineAt <= tx.now) {
    endJob(tx, job, 'expired', 'pending_request_ttl_exceeded', true);
    return { status: 'gone', code: 'expired', transitions: tx.t };
  }
  const bytes = answerBytes(cmd.envelope, cmd.clientKey);
  if (!answerFits(s, bytes, true)) {
    // Its work stays in the node's hands; unless the node confirms it again, it is queued again.
    retryClaimLater(tx, job);
    return { status: 'answers_full', transitions: tx.t };
  }
  if (job.state === 'inflight') {
    touchId(tx, job.nodeId);
    recordServiceTime(s, job, tx.now);
  }
  detach(s, job);
  s.deadlines[job.dialect].delete(job.jobId);
  job.state = 'answered';
  job.response = cmd.envelope;
  job.responseBytes = bytes;
  s.answerBytes += bytes;
  job.progress = null;
  s.answered.set(job.jobId, tx.now + s.limits.responseTtlMs);
  if (!s.completedTtl.has(pk) && s.completedTtl.size >= s.limits.maxTerminalRecords) {
    // Capped like terminal records: the oldest completion marker goes first (a very late
    // duplicate answer then reads 410 `gone` instead of `completed`).
    const oldest = s.completedTtl.oldest();
    if (oldest) {
      s.completedTtl.delete(oldest[0]);
    }
  }
  s.completedTtl.set(pk, tx.now + s.limits.terminalTtlMs);
  outcome(tx, 'completed');
  s.wake(responseKey(cmd.clientKey, cmd.requestId));
  return { status: 'stored', transitions: tx.t };
}

/**
 * Whether the answerer may answer this live job: a node must have claimed it, and the caller must
 * be at the address that node is bound to (an unknown answerer or an unbound node passes that part).
 */
function heldBy(s: MemoryState, job: JobRec, answerer: string | undefined): boolean {
  if (job.state !== 'inflight') {
    return false;
  }
  const owner = s.nodes.get(job.nodeId)?.owner ?? null;
  return answerer === undefined || owner === null || owner === answerer;
}

function completeLegacy(tx: Tx, cmd: CompleteCommand): CompleteResult {
  const { s } = tx;
  if (!s.legacyResponses.has(cmd.clientKey) && storedCount(s) >= s.limits.maxStoredResponses) {
    return { status: 'responses_full', transitions: tx.t };
  }
  const bytes = answerBytes(cmd.envelope, cmd.clientKey);
  // The answer to a claimed request may use the reserve; one nobody is waiting for may not.
  const claims = s.legacyClaimsByClient.get(cmd.clientKey);
  const replacing = s.legacyResponseBytes.get(cmd.clientKey) ?? 0;
  if (!answerFits(s, bytes, claims !== undefined, replacing)) {
    const oldest = claims?.values().next().value;
    const job = oldest !== undefined ? s.jobs.get(oldest) : undefined;
    if (job) {
      retryClaimLater(tx, job);
    }
    return { status: 'answers_full', transitions: tx.t };
  }
  s.answerBytes += bytes - replacing;
  s.legacyResponses.set(cmd.clientKey, cmd.envelope);
  s.legacyResponseBytes.set(cmd.clientKey, bytes);
  s.legacyResponseTtl.set(cmd.clientKey, tx.now + s.limits.responseTtlMs);
  completeLegacyClaim(tx, cmd.clientKey, null);
  s.wake(responseKey(cmd.clientKey, null));
  return { status: 'stored', transitions: tx.t };
}

function storeUntracked(tx: Tx, cmd: CompleteCommand): CompleteResult {
  const { s } = tx;
  const mine = s.untrackedByClient.get(cmd.clientKey);
  if (
    (mine?.size ?? 0) >= s.limits.maxResponsesPerClient ||
    storedCount(s) >= s.limits.maxStoredResponses
  ) {
    return { status: 'responses_full', transitions: tx.t };
  }
  const bytes = answerBytes(cmd.envelope, cmd.clientKey);
  if (!answerFits(s, bytes, false)) {
    return { status: 'answers_full', transitions: tx.t };
  }
  s.answerBytes += bytes;
  s.untrackedSeq += 1;
  const id = String(s.untrackedSeq);
  s.untracked.set(id, { clientKey: cmd.clientKey, envelope: cmd.envelope, bytes });
  s.untrackedTtl.set(id, tx.now + s.limits.responseTtlMs);
  const set = mine ?? new Set<string>();
  set.add(id);
  s.untrackedByClient.set(cmd.clientKey, set);
  s.wake(responseKey(cmd.clientKey, null));
  return { status: 'stored', transitions: tx.t };
}

/** tpTakeResponse */
export function takeResponse(s: MemoryState, cmd: TakeResponseCommand): TakeResponseResult {
  const tx = begin(s, cmd.now);
  if (cmd.dialect === 'legacy') {
    const fresh = s.legacyResponses.get(cmd.clientKey);
    if (!fresh) {
      // Handed out before and not yet confirmed delivered: hand it out again.
      const again = s.legacyHanded.get(cmd.clientKey);
      return again
        ? { status: 'ok', envelope: again, transitions: tx.t }
        : { status: 'unknown', transitions: tx.t };
    }
    const bytes = s.legacyResponseBytes.get(cmd.clientKey) ?? 0;
    dropLegacyResponse(s, cmd.clientKey);
    dropLegacyHanded(s, cmd.clientKey);
    s.answerBytes += bytes;
    s.legacyHanded.set(cmd.clientKey, fresh);
    s.legacyHandedBytes.set(cmd.clientKey, bytes);
    s.legacyHandedTtl.set(cmd.clientKey, tx.now + s.limits.deliveryGraceMs);
    return { status: 'ok', envelope: fresh, transitions: tx.t };
  }
  if (cmd.requestId === null) {
    const first = s.untrackedByClient.get(cmd.clientKey)?.values().next();
    if (!first || first.done) {
      return { status: 'unknown', transitions: tx.t };
    }
    const rec = s.untracked.get(first.value);
    dropUntracked(s, first.value);
    return rec
      ? { status: 'ok', envelope: rec.envelope, transitions: tx.t }
      : { status: 'unknown', transitions: tx.t };
  }
  const pk = pairKey(cmd.clientKey, cmd.requestId);
  const terminal = s.terminals.get(pk);
  if (terminal) {
    return {
      status: 'terminal',
      terminal: terminal.status,
      reason: terminal.reason,
      transitions: tx.t,
    };
  }
  const jobId = s.pairs.get(pk);
  const job = jobId !== undefined ? s.jobs.get(jobId) : undefined;
  if (!job) {
    return { status: 'unknown', transitions: tx.t };
  }
  if (job.state === 'answered') {
    if (!job.handed) {
      // Handed out, kept until the delivery is confirmed or the grace ends.
      job.handed = true;
      s.answered.delete(job.jobId);
      s.handed.set(job.jobId, tx.now + s.limits.deliveryGraceMs);
    }
    return { status: 'ok', envelope: job.response as Envelope, transitions: tx.t };
  }
  if (job.deadlineAt <= tx.now) {
    endJob(tx, job, 'expired', 'pending_request_ttl_exceeded', true);
    return {
      status: 'terminal',
      terminal: 'expired',
      reason: 'pending_request_ttl_exceeded',
      transitions: tx.t,
    };
  }
  const progress = job.progress;
  job.progress = null;
  const node = s.nodes.get(job.nodeId);
  const queuePosition = job.state === 'queued' ? (node?.queue.rank(job.jobId) ?? 0) : 0;
  const waitMs = node ? estimateWaitMs(node, job, queuePosition, tx.now) : null;
  return {
    status: 'pending',
    deadlineAt: job.deadlineAt,
    progress,
    queuePosition,
    estimatedWaitSeconds: waitMs === null ? null : Math.ceil(waitMs / 1000),
    transitions: tx.t,
  };
}

/**
 * A node's service time: from its claim of an API v1 request to its answer, folded into a moving
 * average that weights the newest answer 1/4, in integer ms (both stores compute it exactly alike).
 */
function recordServiceTime(s: MemoryState, job: JobRec, now: number): void {
  const node = s.nodes.get(job.nodeId);
  if (!node || job.dialect !== 'v1' || job.claimedAt <= 0) {
    return;
  }
  const took = Math.max(0, now - job.claimedAt);
  node.serviceMs =
    node.serviceMs === undefined ? took : Math.floor((3 * node.serviceMs + took) / 4);
}

/**
 * How long until a pending request's answer, from its node's service time S, in ms (null without
 * one). Queued with `p` requests ahead and `a` in flight on a node serving `c` at once: the
 * requests ahead drain c at a time, S each round, then this one takes S:
 * `S × (⌊(p + a) / c⌋ + 1)`. In flight: what is left of S since the claim, at least 0.
 */
function estimateWaitMs(
  node: NodeRec,
  job: JobRec,
  queuePosition: number,
  now: number,
): number | null {
  const serviceMs = node.serviceMs;
  if (serviceMs === undefined) {
    return null;
  }
  if (job.state !== 'queued') {
    return Math.max(0, serviceMs - (now - job.claimedAt));
  }
  const slots = Math.max(1, node.capabilities?.max_concurrency ?? 1);
  return serviceMs * (Math.floor((queuePosition + node.claims.size) / slots) + 1);
}

/**
 * tpHasResponse: what a response wait re-checks. True when a take would not just report "pending
 * without progress" (answer, progress, terminal, unknown or past deadline); without a request id,
 * when the legacy mailbox holds a new or a handed-out answer.
 */
export function hasResponse(
  s: MemoryState,
  clientKey: string,
  requestId: string | null,
  now: number,
): boolean {
  if (requestId === null) {
    return s.legacyResponses.has(clientKey) || s.legacyHanded.has(clientKey);
  }
  const pk = pairKey(clientKey, requestId);
  if (s.terminals.has(pk)) {
    return true;
  }
  const jobId = s.pairs.get(pk);
  const job = jobId !== undefined ? s.jobs.get(jobId) : undefined;
  return !job || job.state === 'answered' || job.deadlineAt <= now || job.progress !== null;
}

/** tpConfirmDelivery: the answer was written out, forget it. */
export function confirmDelivery(s: MemoryState, cmd: ConfirmDeliveryCommand): void {
  if (cmd.dialect === 'legacy') {
    dropLegacyHanded(s, cmd.clientKey);
    return;
  }
  if (cmd.requestId === null) {
    return;
  }
  const jobId = s.pairs.get(pairKey(cmd.clientKey, cmd.requestId));
  const job = jobId !== undefined ? s.jobs.get(jobId) : undefined;
  if (job && job.state === 'answered' && job.handed) {
    forget(s, job);
  }
}

/** tpAppendStreamChunk */
export function appendStreamChunk(s: MemoryState, cmd: StreamChunkCommand): StreamChunkResult {
  const tx = begin(s, cmd.now);
  const session = s.streams.get(cmd.sessionId);
  if (!session) {
    return { status: 'unknown', transitions: tx.t };
  }
  if (
    session.chunks.length >= s.limits.maxStreamChunks ||
    session.bytes + cmd.chunkBytes > s.limits.maxStreamBytes
  ) {
    return { status: 'full', transitions: tx.t };
  }
  if (!answerFits(s, cmd.chunkBytes, true)) {
    return { status: 'answers_full', transitions: tx.t };
  }
  session.chunks.push(cmd.chunk);
  session.bytes += cmd.chunkBytes;
  s.answerBytes += cmd.chunkBytes;
  session.final = session.final || cmd.final;
  s.streamTtl.set(cmd.sessionId, tx.now + s.limits.streamTtlMs);
  if (cmd.final) {
    completeLegacyClaim(tx, session.clientKey, cmd.sessionId);
  }
  s.wake(responseKey(session.clientKey, null));
  return { status: 'stored', transitions: tx.t };
}

/** tpTakeStream */
export function takeStream(s: MemoryState, clientKey: string, now: number): StreamTakeResult {
  const sessionId = s.streamByClient.get(clientKey);
  const session = sessionId !== undefined ? s.streams.get(sessionId) : undefined;
  if (sessionId === undefined || !session) {
    return { status: 'none' };
  }
  const chunks = session.chunks;
  s.answerBytes -= session.bytes;
  session.chunks = [];
  session.bytes = 0;
  if (session.final) {
    dropStream(s, sessionId);
  } else {
    s.streamTtl.set(sessionId, now + s.limits.streamTtlMs);
  }
  return { status: 'ok', sessionId, chunks, final: session.final };
}
