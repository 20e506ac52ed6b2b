/**
 * How the store calls the scripts of work.redis.lua (the twin of work.memory.ts): each one's
 * arguments in ARGV order and the reading of its reply, one declaration per script, same order.
 */
import { bit, opt, script, statusReply } from '../redis/script-call';
import { envelopeSchema, flagReply, type ScriptReply } from '../redis/script-reply';
import {
  CLAIM_STATUSES,
  ENQUEUE_STATUSES,
  PROGRESS_STATUSES,
  PROOF_STATUSES,
  type CancelCommand,
  type ClaimCommand,
  type ClaimResult,
  type ControlCommand,
  type EnqueueCommand,
  type ProgressCommand,
} from '../state-store';
import { CONTROL_STATES, type ClaimedJob } from '../state.types';

export const LUA_FILE = 'work.redis.lua';

/** The 7 fields of each claimed job (tpClaimNext's reply, a hand-off), at most `max` jobs. */
export function readClaims(r: ScriptReply, max: number): ClaimedJob[] {
  if (r.remaining % 7 !== 0 || r.remaining / 7 > max) {
    r.fail(`${r.remaining} claim fields are not 7 per job for at most ${max}`);
  }
  const jobs: ClaimedJob[] = [];
  while (r.remaining > 0) {
    jobs.push({
      jobId: r.text('job id'),
      clientKey: r.nullableText('client'),
      requestId: r.nullableText('request id'),
      cancelToken: r.nullableText('cancel token'),
      stream: r.flag('stream'),
      envelope: r.json(envelopeSchema, 'envelope'),
      deadlineAt: r.number('deadline'),
    });
  }
  return jobs;
}

/**
 * A job an enqueue claimed for a poll held by this process (tpClaimNext with a holder): the
 * hold's token and the claim. It reaches the poll in the enqueue's reply or in a hand-off message.
 */
export interface HandOff {
  token: string;
  jobs: ClaimedJob[];
}

/** The enqueue as this process sends it: with its id, so a poll it holds takes the job here. */
export type CallerEnqueue = EnqueueCommand & { caller: string };

export const enqueue = script('tpEnqueue', {
  args: [
    'jobId',
    'dialect',
    'nodeId',
    'client',
    'requestId',
    'cancelToken',
    'stream',
    'envelopeJson',
    'bytes',
    'clientCap',
    'caller',
  ],
  encode: ({ job, clientCap }: CallerEnqueue) => ({
    jobId: job.jobId,
    dialect: job.dialect,
    nodeId: job.nodeId,
    client: opt(job.clientKey),
    requestId: opt(job.requestId),
    cancelToken: opt(job.cancelToken),
    stream: bit(job.stream),
    envelopeJson: JSON.stringify(job.envelope),
    bytes: job.bytes,
    clientCap: opt(clientCap),
  }),
  // Idempotent only with a request id (API v1): the same request is not queued twice.
  idempotent: (cmd) => cmd.job.requestId !== null,
  acknowledged: true,
  reply: statusReply(ENQUEUE_STATUSES, {
    queued: (r): { deadlineAt: number; handOff?: HandOff } => {
      const deadlineAt = r.number('deadline');
      if (r.remaining === 0) {
        return { deadlineAt };
      }
      return { deadlineAt, handOff: { token: r.text('hold token'), jobs: readClaims(r, 1) } };
    },
  }),
});

/**
 * A claim, or a waiting API v1 poll's claim-or-hold: with `hold` and nothing to claim, the poll is
 * recorded as held (one-turn delivery, docs/redis.md).
 */
export type ClaimOrHold = ClaimCommand & { hold?: { holder: string; until: number } };

/**
 * Not acknowledged (no WAIT): a lost claim re-queues the work, delivered again (at-least-once),
 * while a claim answered 503 after it was applied would hide the work until its lease lapses. A
 * hold lost in a failover only means the poll is woken as before.
 */
export const claimNext = script('tpClaimNext', {
  args: ['nodeId', 'dialect', 'maxJobs', 'holder', 'until'],
  encode: (cmd: ClaimOrHold) => ({
    maxJobs: cmd.max,
    holder: opt(cmd.hold?.holder),
    until: opt(cmd.hold?.until),
  }),
  lane: true,
  idempotent: false,
  acknowledged: false,
  reply: claimReply,
});

/** tpClaimNext's reply: a status, the transitions, each job claimed. */
function claimReply(r: ScriptReply, cmd: { max: number }): ClaimResult {
  const status = r.oneOf(CLAIM_STATUSES, 'status');
  const transitions = r.transitions();
  if (status !== 'ok') {
    r.end();
    return { status, transitions };
  }
  return { status, jobs: readClaims(r, cmd.max), transitions };
}

export const control = script('tpControl', {
  args: ['nodeId', 'requestId', 'credentialDigest', 'acknowledge'],
  encode: (cmd: ControlCommand) => ({ acknowledge: bit(cmd.acknowledge) }),
  idempotent: true,
  acknowledged: true,
  reply: statusReply(PROOF_STATUSES, {
    ok: (r) => ({
      state: r.oneOf(CONTROL_STATES, 'control state'),
      deadlineAt: r.nullableNumber('deadline'),
    }),
  }),
});

export const cancel = script('tpCancel', {
  args: ['client', 'requestId', 'cancelToken', 'terminalStatus', 'terminalReason'],
  encode: (cmd: CancelCommand) => ({
    client: cmd.clientKey,
    terminalStatus: cmd.status,
    terminalReason: cmd.reason,
  }),
  idempotent: true,
  acknowledged: true,
  reply: statusReply(PROOF_STATUSES, {
    ok: (r) => ({ removedFromQueue: r.integer('removed from queue') }),
  }),
});

export const putProgress = script('tpPutProgress', {
  args: ['nodeId', 'credentialDigest', 'client', 'requestId', 'envelopeJson'],
  encode: (cmd: ProgressCommand) => ({
    client: cmd.clientKey,
    envelopeJson: JSON.stringify(cmd.envelope),
  }),
  idempotent: true,
  acknowledged: true,
  reply: statusReply(PROGRESS_STATUSES),
});

/** What a work wait re-checks: the node has queued work, or is gone. */
export const hasWork = script('tpHasWork', {
  readOnly: true,
  args: ['nodeId'],
  encode: (nodeId: string) => ({ nodeId }),
  parse: flagReply,
});

/**
 * A claim made for a poll that had ended: back to the head of its node's queue. Not acknowledged:
 * nobody waits for it, and one lost in a failover leaves the claim to its in-flight lease.
 */
export const giveBack = script('tpGiveBack', {
  args: ['jobId'],
  encode: (jobId: string) => ({ jobId }),
  idempotent: true,
  acknowledged: false,
  parse: flagReply,
});

export const SCRIPTS = [enqueue, claimNext, control, cancel, putProgress, giveBack, hasWork];
