/**
 * How the store calls the scripts of work.redis.lua (the twin of work.memory.ts): each one's
 * arguments in ARGV order and the reading of its reply, one declaration per script, same order.
 */
import { bit, opt, script, statusReply } from '../redis/script-call';
import { envelopeSchema, flagReply } from '../redis/script-reply';
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
  ],
  encode: ({ job, clientCap }: EnqueueCommand) => ({
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
  reply: statusReply(ENQUEUE_STATUSES, { queued: (r) => ({ deadlineAt: r.number('deadline') }) }),
});

/**
 * Not acknowledged (no WAIT): a lost claim re-queues the work, delivered again (at-least-once),
 * while a claim answered 503 after it was applied would hide the work until its lease lapses.
 */
export const claimNext = script('tpClaimNext', {
  args: ['nodeId', 'dialect', 'maxJobs'],
  encode: (cmd: ClaimCommand) => ({ maxJobs: cmd.max }),
  lane: true,
  idempotent: false,
  acknowledged: false,
  reply: (r, cmd): ClaimResult => {
    const status = r.oneOf(CLAIM_STATUSES, 'status');
    const transitions = r.transitions();
    if (status !== 'ok') {
      r.end();
      return { status, transitions };
    }
    if (r.remaining % 7 !== 0 || r.remaining / 7 > cmd.max) {
      r.fail(`${r.remaining} claim fields are not 7 per job for at most ${cmd.max}`);
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
    return { status, jobs, transitions };
  },
});

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

export const SCRIPTS = [enqueue, claimNext, control, cancel, putProgress, hasWork];
