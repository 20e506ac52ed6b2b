/**
 * Request transitions on the node side: admission, claiming, control, cancel, progress; the twin
 * of work.redis.lua (one function per script, same order).
 */
import { constantTimeEquals } from '../../common/ids';
import type {
  CancelCommand,
  CancelResult,
  ClaimCommand,
  ClaimResult,
  ControlCommand,
  ControlResult,
  EnqueueCommand,
  EnqueueResult,
  ProgressCommand,
  ProgressResult,
} from '../state-store';
import type { ClaimedJob } from '../state.types';
import { responseKey, workKey } from '../waiters';
import {
  clearTerminal,
  credentialMatches,
  endJob,
  forget,
  isGone,
  liveNode,
  openStream,
  pairKey,
  tombKey,
  touch,
  unqueue,
} from './lifecycle.memory';
import { begin, type JobRec, type MemoryState } from './memory-state';

/** tpEnqueue */
export function enqueue(s: MemoryState, cmd: EnqueueCommand): EnqueueResult {
  const tx = begin(s, cmd.now);
  const { job } = cmd;
  const node = s.nodes.get(job.nodeId);
  if (!node || node.dialect !== job.dialect || isGone(s, node, tx.now)) {
    return { status: 'node_not_found', transitions: tx.t };
  }
  const pk =
    job.requestId !== null && job.clientKey !== null ? pairKey(job.clientKey, job.requestId) : null;
  const supersedes = pk !== null ? s.pairs.get(pk) : undefined;
  if (supersedes !== undefined) {
    // A live request is only replaced by its client, who alone knows its cancel token.
    const token = s.jobs.get(supersedes)?.cancelToken ?? null;
    if (token === null || job.cancelToken === null || !constantTimeEquals(token, job.cancelToken)) {
      return { status: 'request_in_use', transitions: tx.t };
    }
  }
  if (node.queue.size >= s.limits.maxQueuePerNode) {
    return { status: 'node_queue_full', transitions: tx.t };
  }
  if (
    s.queued.size >= s.limits.maxQueuedTotal ||
    s.queuedBytes + job.bytes > s.limits.maxQueuedBytes ||
    // The rest of the answer budget is kept for the answers of work already accepted.
    s.answerBytes > s.limits.maxAnswerBytes - s.limits.answerReserveBytes
  ) {
    return { status: 'queue_full', transitions: tx.t };
  }
  if (
    job.clientKey !== null &&
    supersedes === undefined &&
    (s.liveByClient.get(job.clientKey) ?? 0) >= (cmd.clientCap ?? s.limits.maxPendingPerClient)
  ) {
    return { status: 'client_pending_full', transitions: tx.t };
  }
  if (supersedes !== undefined) {
    const old = s.jobs.get(supersedes);
    if (old?.state === 'answered') {
      // Already counted as completed: drop the unretrieved answer, count nothing more.
      forget(s, old);
    } else if (old) {
      endJob(tx, old, 'cancelled', 'requester_cancelled', false);
    }
  }
  if (pk !== null) {
    clearTerminal(s, pk);
    s.completedTtl.delete(pk);
  }
  const deadlineAt =
    tx.now + (job.dialect === 'v1' ? s.limits.v1DeadlineMs : s.limits.legacyRequestTtlMs);
  const rec: JobRec = {
    ...job,
    state: 'queued',
    queuedAt: tx.now,
    deadlineAt,
    claimedAt: 0,
    response: null,
    responseBytes: 0,
    progress: null,
    acked: false,
    handed: false,
  };
  s.jobs.set(job.jobId, rec);
  s.deadlines[job.dialect].set(job.jobId, deadlineAt);
  s.queued.set(job.jobId, tx.now);
  s.queuedBytes += job.bytes;
  node.queue.add(job.jobId);
  if (pk !== null) {
    s.pairs.set(pk, job.jobId);
  }
  if (job.clientKey !== null) {
    s.liveByClient.set(job.clientKey, (s.liveByClient.get(job.clientKey) ?? 0) + 1);
  }
  s.wake(workKey(job.nodeId));
  return { status: 'queued', deadlineAt, transitions: tx.t };
}

/** tpClaimNext */
export function claimNext(s: MemoryState, cmd: ClaimCommand): ClaimResult {
  const tx = begin(s, cmd.now);
  const node = s.nodes.get(cmd.nodeId);
  if (!node) {
    return { status: 'not_found', transitions: tx.t };
  }
  if (node.dialect !== cmd.dialect) {
    return { status: 'dialect_conflict', transitions: tx.t };
  }
  const jobs: ClaimedJob[] = [];
  for (const jobId of node.queue) {
    if (jobs.length >= cmd.max) {
      break;
    }
    const job = s.jobs.get(jobId);
    if (!job) {
      node.queue.delete(jobId);
      continue;
    }
    if (job.deadlineAt <= tx.now) {
      endJob(tx, job, 'expired', 'provider_timeout', true);
      continue;
    }
    unqueue(s, job, node);
    job.state = 'inflight';
    job.claimedAt = tx.now;
    job.progress = null;
    if (job.dialect === 'v1') {
      if (job.requestId === null) {
        // Untracked API v1 work: handed over once, nothing to account for afterwards.
        forget(s, job);
      } else {
        s.claimed.set(job.jobId, tx.now);
        node.claims.set(job.requestId, job.jobId);
        node.activeClaims.add(job.jobId);
        s.claimLeases.set(job.jobId, Math.min(tx.now + s.limits.inFlightTtlMs, job.deadlineAt));
      }
    } else {
      s.claimed.set(job.jobId, tx.now);
      if (job.clientKey !== null) {
        let set = s.legacyClaimsByClient.get(job.clientKey);
        if (!set) {
          set = new Set();
          s.legacyClaimsByClient.set(job.clientKey, set);
        }
        set.add(job.jobId);
      }
      if (job.stream && job.clientKey !== null) {
        openStream(tx, job.jobId, job.clientKey, node.nodeId);
      }
    }
    jobs.push({
      jobId: job.jobId,
      clientKey: job.clientKey,
      requestId: job.requestId,
      cancelToken: job.cancelToken,
      stream: job.stream,
      envelope: job.envelope,
      deadlineAt: job.deadlineAt,
    });
  }
  return { status: 'ok', jobs, transitions: tx.t };
}

/** tpControl */
export function control(s: MemoryState, cmd: ControlCommand): ControlResult {
  const tx = begin(s, cmd.now);
  const node = liveNode(tx, cmd.nodeId);
  const liveV1 = node !== undefined && node.dialect === 'v1';
  if (liveV1 && !credentialMatches(node.credentialDigest, cmd.credentialDigest)) {
    return { status: 'forbidden', transitions: tx.t };
  }
  if (liveV1) {
    touch(tx, node);
    const jobId = node.claims.get(cmd.requestId);
    const job = jobId !== undefined ? s.jobs.get(jobId) : undefined;
    if (job && job.state === 'inflight') {
      if (job.deadlineAt <= tx.now) {
        endJob(tx, job, 'expired', 'provider_timeout', true);
      } else {
        job.acked = true;
        node.activeClaims.add(job.jobId);
        s.claimLeases.set(job.jobId, Math.min(tx.now + s.limits.inFlightTtlMs, job.deadlineAt));
        return { status: 'ok', state: 'active', deadlineAt: job.deadlineAt, transitions: tx.t };
      }
    }
  }
  const tk = tombKey(cmd.nodeId, cmd.requestId);
  const tomb = s.tombstones.get(tk);
  if (tomb) {
    if (!credentialMatches(tomb.digest, cmd.credentialDigest)) {
      return { status: 'forbidden', transitions: tx.t };
    }
    if (cmd.acknowledge) {
      s.tombstones.delete(tk);
      s.tombstoneTtl.delete(tk);
    }
    return { status: 'ok', state: tomb.status, deadlineAt: tomb.deadlineAt, transitions: tx.t };
  }
  if (liveV1) {
    return { status: 'ok', state: 'completed_unavailable', deadlineAt: null, transitions: tx.t };
  }
  return { status: 'forbidden', transitions: tx.t };
}

/** tpCancel */
export function cancel(s: MemoryState, cmd: CancelCommand): CancelResult {
  const tx = begin(s, cmd.now);
  const jobId = s.pairs.get(pairKey(cmd.clientKey, cmd.requestId));
  const job = jobId !== undefined ? s.jobs.get(jobId) : undefined;
  if (
    !job ||
    job.state === 'answered' ||
    job.cancelToken === null ||
    !constantTimeEquals(job.cancelToken, cmd.cancelToken)
  ) {
    return { status: 'forbidden', transitions: tx.t };
  }
  const removedFromQueue = job.state === 'queued' ? 1 : 0;
  endJob(tx, job, cmd.status, cmd.reason, true);
  return { status: 'ok', removedFromQueue, transitions: tx.t };
}

/** tpPutProgress */
export function putProgress(s: MemoryState, cmd: ProgressCommand): ProgressResult {
  const tx = begin(s, cmd.now);
  const node = liveNode(tx, cmd.nodeId);
  if (
    !node ||
    node.dialect !== 'v1' ||
    !credentialMatches(node.credentialDigest, cmd.credentialDigest)
  ) {
    return { status: 'forbidden', transitions: tx.t };
  }
  touch(tx, node);
  const jobId = node.claims.get(cmd.requestId);
  const job = jobId !== undefined ? s.jobs.get(jobId) : undefined;
  if (!job || job.state !== 'inflight' || job.clientKey !== cmd.clientKey) {
    return { status: 'not_active', transitions: tx.t };
  }
  if (job.deadlineAt <= tx.now) {
    endJob(tx, job, 'expired', 'provider_timeout', true);
    return { status: 'expired', transitions: tx.t };
  }
  job.progress = cmd.envelope;
  job.acked = true;
  s.wake(responseKey(cmd.clientKey, cmd.requestId));
  return { status: 'accepted', transitions: tx.t };
}

/** tpHasWork: what a work wait re-checks (the node has queued work, or is gone). */
export function hasWork(s: MemoryState, nodeId: string): boolean {
  const node = s.nodes.get(nodeId);
  return !node || node.queue.size > 0;
}
