/**
 * How the store calls the scripts of answers.redis.lua (the twin of answers.memory.ts): each one's
 * arguments in ARGV order and the reading of its reply, one declaration per script, same order.
 */
import { bit, opt, script, statusReply } from '../redis/script-call';
import { envelopeSchema, flagReply, MalformedReplyError } from '../redis/script-reply';
import {
  COMPLETE_STATUSES,
  GONE_CODES,
  STREAM_CHUNK_STATUSES,
  STREAM_TAKE_STATUSES,
  TAKE_RESPONSE_STATUSES,
  type CompleteCommand,
  type ConfirmDeliveryCommand,
  type StreamChunkCommand,
  type StreamTakeResult,
  type TakeResponseCommand,
} from '../state-store';
import { answerBytes, TERMINAL_REASONS, TERMINAL_STATUSES } from '../state.types';

export const LUA_FILE = 'answers.redis.lua';

/** A client's answer, with or without a request id (legacy: none). */
interface AnswerAddress {
  clientKey: string;
  requestId: string | null;
}

/** The arguments naming one answer (take, confirm and the wait's check alike). */
function answerArgs(cmd: AnswerAddress) {
  return { client: cmd.clientKey, requestId: opt(cmd.requestId) };
}

export const complete = script('tpComplete', {
  args: ['dialect', 'client', 'requestId', 'envelopeJson', 'answerer', 'answerBytes'],
  encode: (cmd: CompleteCommand) => ({
    client: cmd.clientKey,
    requestId: opt(cmd.requestId),
    envelopeJson: JSON.stringify(cmd.envelope),
    answerer: opt(cmd.answerer),
    answerBytes: String(answerBytes(cmd.envelope, cmd.clientKey)),
  }),
  // Idempotent only with a request id (API v1): the same answer is not stored twice.
  idempotent: (cmd) => cmd.requestId !== null,
  acknowledged: true,
  reply: statusReply(COMPLETE_STATUSES, { gone: (r) => ({ code: r.oneOf(GONE_CODES, 'code') }) }),
});

/**
 * Repeatable (the answer stays handed out until delivery is confirmed) except an untracked API v1
 * answer, which the take removes: only a repeatable take may answer 503 after it ran, so only a
 * repeatable one is retried and waits for the replicas.
 */
const repeatable = (cmd: TakeResponseCommand): boolean =>
  cmd.dialect === 'legacy' || cmd.requestId !== null;

export const takeResponse = script('tpTakeResponse', {
  args: ['dialect', 'client', 'requestId'],
  encode: (cmd: TakeResponseCommand) => answerArgs(cmd),
  idempotent: repeatable,
  acknowledged: repeatable,
  reply: statusReply(TAKE_RESPONSE_STATUSES, {
    ok: (r) => ({ envelope: r.json(envelopeSchema, 'envelope') }),
    pending: (r) => ({
      deadlineAt: r.number('deadline'),
      progress: r.nullableJson(envelopeSchema, 'progress'),
      queuePosition: r.integer('queue position'),
      estimatedWaitSeconds: r.nullableNumber('estimated wait'),
    }),
    terminal: (r) => ({
      terminal: r.oneOf(TERMINAL_STATUSES, 'terminal status'),
      reason: r.oneOf(TERMINAL_REASONS, 'terminal reason'),
    }),
  }),
});

/** What a response wait re-checks (see the in-memory twin, answers.memory.ts). */
export const hasResponse = script('tpHasResponse', {
  readOnly: true,
  args: ['client', 'requestId'],
  encode: (cmd: AnswerAddress) => answerArgs(cmd),
  parse: flagReply,
});

export const confirmDelivery = script('tpConfirmDelivery', {
  args: ['dialect', 'client', 'requestId'],
  encode: (cmd: ConfirmDeliveryCommand) => answerArgs(cmd),
  idempotent: true,
  acknowledged: true,
  parse: (name, raw): void => {
    if (raw !== 1) {
      throw new MalformedReplyError(name, `expected 1, got ${typeof raw}`);
    }
  },
});

export const appendStreamChunk = script('tpAppendStreamChunk', {
  args: ['sessionId', 'chunkJson', 'chunkBytes', 'final'],
  encode: (cmd: StreamChunkCommand) => ({ chunkJson: cmd.chunk, final: bit(cmd.final) }),
  idempotent: false,
  acknowledged: true,
  reply: statusReply(STREAM_CHUNK_STATUSES),
});

export const takeStream = script('tpTakeStream', {
  args: ['client'],
  encode: (clientKey: string) => ({ client: clientKey }),
  idempotent: false,
  acknowledged: false,
  reply: (r): StreamTakeResult => {
    if (r.oneOf(STREAM_TAKE_STATUSES, 'status') === 'none') {
      r.end();
      return { status: 'none' };
    }
    const sessionId = r.text('session id');
    const final = r.flag('final');
    const chunks: string[] = [];
    while (r.remaining > 0) {
      chunks.push(r.text('chunk'));
    }
    return { status: 'ok', sessionId, final, chunks };
  },
});

export const SCRIPTS = [
  complete,
  takeResponse,
  hasResponse,
  confirmDelivery,
  appendStreamChunk,
  takeStream,
];
