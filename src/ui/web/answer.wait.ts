import {
  failed,
  type Attempt,
  type QueueInfo,
  type Turn,
  errorOf,
  httpDetail,
} from './chat.outcome';
import { DecryptError } from './e2ee.crypto';
import { IdentityError, readAnswer, readProgress, type Progress } from './envelope.protocol';
import type { Timers } from './flow.timers';
import {
  NetworkError,
  StoppedError,
  type CancelInput,
  type HttpResult,
  type RelayApi,
} from './relay.api';

/** Consecutive network errors / transient 5xx on retrieve before giving up. */
const MAX_TRANSIENT = 3;
const DEFAULT_TTL_SECONDS = 480;
const DEADLINE_SLACK_MS = 5000;
/**
 * Held retrieves are shorter while others are ahead in line (and for the first one, before the
 * page knows), so the place shown keeps up: claims ahead of it wake no one.
 */
const QUEUED_HOLD_SECONDS = 3;
/** Reasons only a requester sets: a 410 with one of them is not the node's fault. */
const REQUESTER_REASONS = ['requester_cancelled', 'client_timeout', 'requester_gave_up'];

export interface WaitOptions {
  timers: Timers;
  /** Seconds a retrieve may be held (`Prefer: wait=N`); 0 means plain polling. */
  preferWait: number;
  pollMs: number;
  maxWaitMs?: number;
}

/**
 * Waits for one admitted request's answer (spec §7.5 step 6): held retrieves, or polling every
 * `pollMs` when the relay answers at once; progress on the way; decrypt and identity checks at the
 * end; cancel with proof on Stop, timeout or a relay that keeps failing.
 */
export class AnswerWait {
  constructor(
    private readonly api: RelayApi,
    private readonly opts: WaitOptions,
  ) {}

  async run(turn: Turn, admitted: HttpResult, admittedAt: number): Promise<Attempt> {
    const { active, signal } = turn;
    const ttl = admitted.body.request_ttl_seconds;
    const ttlMs = (typeof ttl === 'number' && ttl > 0 ? ttl : DEFAULT_TTL_SECONDS) * 1000;
    let deadline = admittedAt + ttlMs + DEADLINE_SLACK_MS;
    if (this.opts.maxWaitMs !== undefined) {
      deadline = Math.min(deadline, admittedAt + this.opts.maxWaitMs);
    }
    let lastSequence = -1;
    let transient = 0;
    let ahead: number | null = null;
    turn.stage('waiting');
    for (;;) {
      if (signal.aborted) {
        return this.stop(turn, 'requester_cancelled');
      }
      const started = this.opts.timers.now();
      if (started >= deadline) {
        await this.cancel(turn, 'client_timeout');
        return { kind: 'done', outcome: failed('timeout') };
      }
      const hold =
        ahead === null || ahead > 0
          ? Math.min(this.opts.preferWait, QUEUED_HOLD_SECONDS)
          : this.opts.preferWait;
      const wait = hold > 0 ? Math.min(hold, Math.floor((deadline - started) / 1000)) : 0;
      let res: HttpResult;
      try {
        res = await this.api.retrieve(active.clientPublicKey, active.requestId, wait, signal);
      } catch (error) {
        if (error instanceof StoppedError || signal.aborted) {
          return this.stop(turn, 'requester_cancelled');
        }
        transient += 1;
        if (transient >= MAX_TRANSIENT) {
          await this.cancel(turn, 'requester_gave_up');
          return {
            kind: 'done',
            outcome: failed(error instanceof NetworkError ? 'relay_unreachable' : 'relay_error'),
          };
        }
        await this.opts.timers.sleep(this.opts.pollMs, signal);
        continue;
      }
      switch (res.status) {
        case 200:
          return this.answer(turn, res.body);
        case 202: {
          transient = 0;
          const remaining = res.body.request_deadline_remaining_seconds;
          if (typeof remaining === 'number' && remaining >= 0) {
            deadline = Math.min(
              deadline,
              this.opts.timers.now() + remaining * 1000 + DEADLINE_SLACK_MS,
            );
          }
          if (res.body.encrypted_progress !== undefined) {
            // Valid or not, the next retrieve goes out at once: the relay learns nothing from
            // when it arrives about whether the progress decrypted.
            const progress = await this.progress(turn, res.body.encrypted_progress, lastSequence);
            if (progress !== null) {
              ahead = 0;
              lastSequence = progress.sequence;
              turn.events.onProgress?.(progress);
            }
            continue;
          }
          const queue = lastSequence < 0 ? queueOf(res.body) : null;
          ahead = queue?.position ?? 0;
          if (queue !== null) {
            turn.events.onQueue?.(queue);
          }
          const elapsed = this.opts.timers.now() - started;
          if (elapsed < this.opts.pollMs) {
            await this.opts.timers.sleep(this.opts.pollMs - elapsed, signal);
          }
          continue;
        }
        case 404:
          return { kind: 'node_failed', why: 'unknown' };
        case 410: {
          const { status, reason } = errorOf(res);
          if (status === 'cancelled' && REQUESTER_REASONS.includes(reason)) {
            return { kind: 'done', outcome: failed('cancelled') };
          }
          return { kind: 'node_failed', why: status === 'expired' ? 'expired' : 'cancelled' };
        }
        default:
          if (res.status === 429 || res.status >= 500) {
            transient += 1;
            if (transient < MAX_TRANSIENT) {
              await this.opts.timers.sleep(
                Math.max(this.opts.pollMs, (res.retryAfter ?? 0) * 1000),
                signal,
              );
              continue;
            }
          }
          await this.cancel(turn, 'requester_gave_up');
          return { kind: 'done', outcome: failed('relay_error', httpDetail(res)) };
      }
    }
  }

  private async answer(turn: Turn, body: Record<string, unknown>): Promise<Attempt> {
    const { expected } = turn;
    turn.stage('decrypting');
    const ciphertext = body.chat_history ?? body.ciphertext;
    let opened;
    try {
      opened = await turn.identity.open({
        ciphertext: ciphertext as string,
        cipherkey: body.cipherkey as string,
        iv: body.iv as string,
      });
    } catch (error) {
      if (error instanceof DecryptError) {
        return { kind: 'done', outcome: failed('decrypt_failed') };
      }
      throw error;
    }
    let answer;
    try {
      answer = readAnswer(opened.value, expected);
    } catch (error) {
      if (error instanceof IdentityError) {
        return { kind: 'done', outcome: failed('identity_mismatch') };
      }
      throw error;
    }
    if (answer.kind === 'error') {
      if (answer.code === 'compute_node_context_window_exceeded') {
        return { kind: 'window_exceeded' };
      }
      return {
        kind: 'done',
        outcome: failed('node_error', `${answer.message || 'no details'} (${answer.code})`),
      };
    }
    return {
      kind: 'done',
      outcome: {
        status: 'answered',
        content: answer.content,
        finishReason: answer.finishReason,
        usage: answer.usage,
        padding: opened.padding,
        nodeKey: turn.active.nodeKey,
        requestId: expected.requestId,
        attempts: turn.attempt,
      },
    };
  }

  private async progress(
    turn: Turn,
    envelope: unknown,
    lastSequence: number,
  ): Promise<Progress | null> {
    if (typeof envelope !== 'object' || envelope === null) {
      return null;
    }
    const e = envelope as Record<string, unknown>;
    try {
      const { value } = await turn.identity.open({
        ciphertext: (e.ciphertext ?? e.chat_history) as string,
        cipherkey: e.cipherkey as string,
        iv: e.iv as string,
      });
      return readProgress(value, turn.expected, lastSequence);
    } catch {
      return null;
    }
  }

  private async stop(turn: Turn, reason: CancelInput['reason']): Promise<Attempt> {
    const confirmed = await this.cancel(turn, reason);
    return { kind: 'done', outcome: { status: 'stopped', confirmed } };
  }

  private cancel(turn: Turn, reason: CancelInput['reason']): Promise<boolean> {
    turn.stage('cancelling');
    const { clientPublicKey, requestId, cancelToken } = turn.active;
    return this.api.cancel({ clientPublicKey, requestId, cancelToken, reason });
  }
}

const count = (v: unknown): v is number =>
  typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** The place in line of a 202, when the relay sends one (older relays do not). */
function queueOf(body: Record<string, unknown>): QueueInfo | null {
  if (!count(body.queue_position)) {
    return null;
  }
  const estimate = body.estimated_wait_seconds;
  return { position: body.queue_position, estimateSeconds: count(estimate) ? estimate : null };
}
