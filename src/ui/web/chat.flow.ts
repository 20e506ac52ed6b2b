import { DecryptError, randomHex, seal, type Padding, type TabIdentity } from './e2ee.crypto';
import {
  IdentityError,
  PROTOCOL,
  innerRequest,
  readAnswer,
  readProgress,
  resolveTier,
  tierSatisfies,
  trimHistory,
  type ChatMessage,
  type ContextTier,
  type Expected,
  type Progress,
  type TierChoice,
  type Usage,
} from './envelope.protocol';
import {
  MAX_PREFER_WAIT_SECONDS,
  NetworkError,
  StoppedError,
  type CancelInput,
  type HttpResult,
  type RelayApi,
} from './relay.api';

/**
 * One chat turn over the API v1 relay (spec §7.5): pick a node for the estimated context tier,
 * encrypt to it, submit with a request id and cancel token, wait for the answer (held retrieves
 * with `Prefer: wait`, or 500 ms polling), show encrypted progress, decrypt and check identity,
 * fail over to another node on 404/410, and cancel with proof on Stop or timeout.
 */
export interface Timers {
  now(): number;
  /** Resolves after `ms`, or at once when `signal` aborts. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const realTimers: Timers = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise<void>((resolve) => {
      if (signal?.aborted) {
        resolve();
        return;
      }
      const done = (): void => {
        clearTimeout(handle);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const handle = setTimeout(done, Math.max(0, ms));
      signal?.addEventListener('abort', done, { once: true });
    }),
};

export const FAILURES = [
  'no_nodes',
  'no_matching_node',
  'no_capacity',
  'expired',
  'timeout',
  'cancelled',
  'decrypt_failed',
  'identity_mismatch',
  'node_error',
  'nodes_failed',
  'rate_limited',
  'relay_draining',
  'relay_unreachable',
  'relay_error',
] as const;
export type FailureCode = (typeof FAILURES)[number];

export type ChatOutcome =
  | {
      status: 'answered';
      content: string;
      finishReason: string | null;
      usage: Usage | null;
      padding: Padding;
      nodeKey: string;
      requestId: string;
      attempts: number;
    }
  | { status: 'stopped'; confirmed: boolean }
  | { status: 'failed'; code: FailureCode; message: string };

/** What a request needs to be cancelled (also from a `pagehide` handler). */
export type ActiveRequest = Omit<CancelInput, 'reason'> & { nodeKey: string };

export type Stage =
  'selecting' | 'encrypting' | 'submitting' | 'waiting' | 'decrypting' | 'cancelling';

export interface ChatEvents {
  onStage?(stage: Stage, detail: { attempt: number; tier: ContextTier }): void;
  onProgress?(progress: Progress): void;
  /** Called with the request once admitted, and with null when it is settled. */
  onActive?(active: ActiveRequest | null): void;
}

export interface ChatInput {
  identity: TabIdentity;
  model: string;
  tierChoice: TierChoice;
  messages: readonly ChatMessage[];
  /** Live API v1 nodes as last seen; bounds fail-over to min(live − 1, 3). */
  liveNodes: number;
}

export interface FlowOptions {
  timers?: Timers;
  /** Seconds a retrieve may be held (`Prefer: wait=N`); 0 polls every `pollMs` like the old page. */
  preferWaitSeconds?: number;
  pollMs?: number;
  /** Client-side cap on one attempt's wait, on top of the relay's deadline + 5 s. */
  maxWaitMs?: number;
}

const MAX_FAILOVERS = 3;
/** Consecutive network errors / transient 5xx on retrieve before giving up. */
const MAX_TRANSIENT = 3;
const DEFAULT_TTL_SECONDS = 480;
const DEADLINE_SLACK_MS = 5000;

export function failureMessage(code: FailureCode, detail = ''): string {
  switch (code) {
    case 'no_nodes':
      return 'No compute nodes are connected to this relay right now. Try again when one is online.';
    case 'no_matching_node':
      return `Compute nodes are online, but none serves this model with a large enough context${detail ? ` (${detail})` : ''}. Pick another model or start a new conversation.`;
    case 'no_capacity':
      return 'Every compute node that could answer is busy. Try again in a moment.';
    case 'expired':
      return 'The request expired before a compute node answered.';
    case 'timeout':
      return 'No answer arrived in time, so the request was cancelled.';
    case 'cancelled':
      return 'The request was cancelled before an answer arrived.';
    case 'decrypt_failed':
      return 'An answer arrived but could not be decrypted in this tab, so it was discarded.';
    case 'identity_mismatch':
      return 'An answer arrived that was not addressed to this request, so it was discarded.';
    case 'node_error':
      return `The compute node could not answer${detail ? `: ${detail}` : '.'}`;
    case 'nodes_failed':
      return `The compute nodes went away before answering${detail ? ` (${detail})` : ''}. Try again.`;
    case 'rate_limited':
      return `The relay is limiting requests from your address${detail ? `; try again in ${detail} s` : ''}.`;
    case 'relay_draining':
      return 'The relay is restarting. Try again in a moment.';
    case 'relay_unreachable':
      return 'The relay cannot be reached. Check your connection and try again.';
    case 'relay_error':
      return `The relay refused the request${detail ? ` (${detail})` : ''}.`;
    default: {
      const never: never = code;
      return never;
    }
  }
}

function failed(code: FailureCode, detail?: string): ChatOutcome {
  return { status: 'failed', code, message: failureMessage(code, detail) };
}

function errorOf(res: HttpResult): {
  code: string;
  message: string;
  status: string;
  reason: string;
} {
  const e = res.body.error;
  const rec = typeof e === 'object' && e !== null ? (e as Record<string, unknown>) : {};
  const str = (v: unknown): string =>
    typeof v === 'string' ? v : typeof v === 'number' ? String(v) : '';
  return {
    code: str(rec.code),
    message: typeof e === 'string' ? e : str(rec.message),
    status: str(rec.status),
    reason: str(rec.reason),
  };
}

function httpDetail(res: HttpResult): string {
  const { message } = errorOf(res);
  return `HTTP ${res.status}${message ? `: ${message}` : ''}`;
}

type Attempt =
  | { kind: 'done'; outcome: ChatOutcome }
  | { kind: 'node_failed'; why: 'unknown' | 'expired' | 'cancelled' | 'bad_key' }
  | { kind: 'window_exceeded' };

type Selection = { kind: 'selected'; key: string } | { kind: 'done'; outcome: ChatOutcome };

/** Everything one attempt at one node carries around. */
interface Turn {
  identity: TabIdentity;
  active: ActiveRequest;
  expected: Expected;
  attempt: number;
  signal: AbortSignal;
  events: ChatEvents;
  stage: (s: Stage) => void;
}

export class ChatFlow {
  private readonly timers: Timers;
  private readonly preferWait: number;
  private readonly pollMs: number;

  constructor(
    private readonly api: RelayApi,
    private readonly opts: FlowOptions = {},
  ) {
    this.timers = opts.timers ?? realTimers;
    this.preferWait = Math.min(
      opts.preferWaitSeconds ?? MAX_PREFER_WAIT_SECONDS,
      MAX_PREFER_WAIT_SECONDS,
    );
    this.pollMs = opts.pollMs ?? 500;
  }

  async send(input: ChatInput, signal: AbortSignal, events: ChatEvents = {}): Promise<ChatOutcome> {
    const messages = trimHistory(input.messages);
    let tier = resolveTier(input.tierChoice, messages);
    let widened = false;
    const failedNodes = new Set<string>();
    const maxFailovers = Math.max(0, Math.min(input.liveNodes - 1, MAX_FAILOVERS));
    let lastFailure: Attempt & { kind: 'node_failed' } = { kind: 'node_failed', why: 'unknown' };
    for (let attempt = 1; ; attempt += 1) {
      if (signal.aborted) {
        return { status: 'stopped', confirmed: true };
      }
      events.onStage?.('selecting', { attempt, tier });
      const selection = await this.select(input.model, tier, failedNodes, signal);
      if (selection.kind === 'done') {
        return selection.outcome;
      }
      const result = await this.attempt(
        input,
        messages,
        selection.key,
        tier,
        attempt,
        signal,
        events,
      );
      switch (result.kind) {
        case 'done':
          return result.outcome;
        case 'window_exceeded':
          if (tier === '8k-fast' && !widened) {
            widened = true;
            tier = '64k-full';
            continue;
          }
          return failed('node_error', 'the conversation is longer than its context window');
        case 'node_failed':
          failedNodes.add(selection.key);
          lastFailure = result;
          if (failedNodes.size > maxFailovers) {
            return lastFailure.why === 'expired'
              ? failed('expired')
              : failed('nodes_failed', `tried ${failedNodes.size}`);
          }
          continue;
        default: {
          const never: never = result;
          return never;
        }
      }
    }
  }

  /** `GET /servers/next`; a node that already failed this turn is skipped when others exist. */
  private async select(
    model: string,
    tier: ContextTier,
    failedNodes: ReadonlySet<string>,
    signal: AbortSignal,
  ): Promise<Selection> {
    for (let tries = 0; tries <= MAX_FAILOVERS; tries += 1) {
      let res: HttpResult;
      try {
        res = await this.api.next(model, tier, signal);
      } catch (error) {
        if (error instanceof StoppedError) {
          return { kind: 'done', outcome: { status: 'stopped', confirmed: true } };
        }
        return { kind: 'done', outcome: failed('relay_unreachable') };
      }
      if (res.status === 503) {
        const { code } = errorOf(res);
        switch (code) {
          case 'no_registered_compute_nodes':
            return { kind: 'done', outcome: failed('no_nodes') };
          case 'no_matching_compute_node':
            return { kind: 'done', outcome: failed('no_matching_node', `${model}, ${tier}`) };
          case 'no_available_capacity':
            return { kind: 'done', outcome: failed('no_capacity') };
          case 'relay_draining':
            return { kind: 'done', outcome: failed('relay_draining') };
          default:
            return { kind: 'done', outcome: failed('relay_error', httpDetail(res)) };
        }
      }
      const key = res.body.server_public_key;
      if (res.status !== 200 || typeof key !== 'string' || key === '') {
        return { kind: 'done', outcome: failed('relay_error', httpDetail(res)) };
      }
      if (!tierSatisfies(res.body.selected_context_tier, tier)) {
        return { kind: 'done', outcome: failed('no_matching_node', `${model}, ${tier}`) };
      }
      if (!failedNodes.has(key)) {
        return { kind: 'selected', key };
      }
    }
    return { kind: 'done', outcome: failed('nodes_failed', `tried ${failedNodes.size}`) };
  }

  private async attempt(
    input: ChatInput,
    messages: readonly ChatMessage[],
    nodeKey: string,
    tier: ContextTier,
    attempt: number,
    signal: AbortSignal,
    events: ChatEvents,
  ): Promise<Attempt> {
    const clientPublicKey = input.identity.publicKeyB64;
    const expected: Expected = { requestId: randomHex(16), clientPublicKey };
    const active: ActiveRequest = {
      clientPublicKey,
      requestId: expected.requestId,
      cancelToken: randomHex(16),
      nodeKey,
    };
    const stage = (s: Stage): void => events.onStage?.(s, { attempt, tier });

    stage('encrypting');
    let sealed;
    try {
      sealed = await seal(
        innerRequest({
          requestId: active.requestId,
          clientPublicKey,
          model: input.model,
          messages,
          tier,
        }),
        nodeKey,
      );
    } catch {
      return { kind: 'node_failed', why: 'bad_key' };
    }
    if (signal.aborted) {
      return { kind: 'done', outcome: { status: 'stopped', confirmed: true } };
    }

    stage('submitting');
    let admitted: HttpResult;
    try {
      admitted = await this.api.submit({
        server_public_key: nodeKey,
        client_public_key: clientPublicKey,
        request_id: active.requestId,
        protocol: PROTOCOL,
        version: 1,
        ciphertext: sealed.ciphertext,
        cipherkey: sealed.cipherkey,
        iv: sealed.iv,
        cancel_token: active.cancelToken,
      });
    } catch {
      // It may have been admitted: withdraw it (harmless if it was not).
      await this.api.cancel({
        clientPublicKey,
        requestId: active.requestId,
        cancelToken: active.cancelToken,
        reason: 'requester_gave_up',
      });
      return { kind: 'done', outcome: failed('relay_unreachable') };
    }
    const refused = this.refusal(admitted);
    if (refused !== null) {
      return refused;
    }
    const turn: Turn = {
      identity: input.identity,
      active,
      expected,
      attempt,
      signal,
      events,
      stage,
    };
    const admittedAt = this.timers.now();
    events.onActive?.(active);
    try {
      return await this.await(turn, admitted, admittedAt);
    } finally {
      events.onActive?.(null);
    }
  }

  private refusal(res: HttpResult): Attempt | null {
    if (res.status === 200) {
      return null;
    }
    const { code } = errorOf(res);
    if (res.status === 404) {
      return { kind: 'node_failed', why: 'unknown' };
    }
    if (code === 'rate_limit_exceeded') {
      return {
        kind: 'done',
        outcome: failed('rate_limited', res.retryAfter !== null ? String(res.retryAfter) : ''),
      };
    }
    if (code === 'relay_draining') {
      return { kind: 'done', outcome: failed('relay_draining') };
    }
    if (code === 'relay_capacity_exceeded' || code === 'relay_overloaded') {
      return { kind: 'done', outcome: failed('no_capacity') };
    }
    return { kind: 'done', outcome: failed('relay_error', httpDetail(res)) };
  }

  private async await(turn: Turn, admitted: HttpResult, admittedAt: number): Promise<Attempt> {
    const { active, signal } = turn;
    const ttl = admitted.body.request_ttl_seconds;
    const ttlMs = (typeof ttl === 'number' && ttl > 0 ? ttl : DEFAULT_TTL_SECONDS) * 1000;
    let deadline = admittedAt + ttlMs + DEADLINE_SLACK_MS;
    if (this.opts.maxWaitMs !== undefined) {
      deadline = Math.min(deadline, admittedAt + this.opts.maxWaitMs);
    }
    let lastSequence = -1;
    let transient = 0;
    turn.stage('waiting');
    for (;;) {
      if (signal.aborted) {
        return this.stop(turn, 'requester_cancelled');
      }
      const started = this.timers.now();
      if (started >= deadline) {
        await this.cancel(turn, 'client_timeout');
        return { kind: 'done', outcome: failed('timeout') };
      }
      const wait =
        this.preferWait > 0
          ? Math.min(this.preferWait, Math.floor((deadline - started) / 1000))
          : 0;
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
        await this.timers.sleep(this.pollMs, signal);
        continue;
      }
      switch (res.status) {
        case 200:
          return this.answer(turn, res.body);
        case 202: {
          transient = 0;
          const remaining = res.body.request_deadline_remaining_seconds;
          if (typeof remaining === 'number' && remaining >= 0) {
            deadline = Math.min(deadline, this.timers.now() + remaining * 1000 + DEADLINE_SLACK_MS);
          }
          const progress = await this.progress(turn, res.body.encrypted_progress, lastSequence);
          if (progress !== null) {
            lastSequence = progress.sequence;
            turn.events.onProgress?.(progress);
            continue;
          }
          const elapsed = this.timers.now() - started;
          if (elapsed < this.pollMs) {
            await this.timers.sleep(this.pollMs - elapsed, signal);
          }
          continue;
        }
        case 404:
          return { kind: 'node_failed', why: 'unknown' };
        case 410: {
          const { status, reason } = errorOf(res);
          if (
            status === 'cancelled' &&
            ['requester_cancelled', 'client_timeout', 'requester_gave_up'].includes(reason)
          ) {
            return { kind: 'done', outcome: failed('cancelled') };
          }
          return { kind: 'node_failed', why: status === 'expired' ? 'expired' : 'cancelled' };
        }
        default:
          if (res.status === 429 || res.status >= 500) {
            transient += 1;
            if (transient < MAX_TRANSIENT) {
              await this.timers.sleep(Math.max(this.pollMs, (res.retryAfter ?? 0) * 1000), signal);
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
