import { AnswerWait } from './answer.wait';
import {
  errorOf,
  failed,
  httpDetail,
  type ActiveRequest,
  type Attempt,
  type ChatEvents,
  type ChatOutcome,
  type Stage,
  type Turn,
} from './chat.outcome';
import { randomHex, seal, type TabIdentity } from './e2ee.crypto';
import {
  PROTOCOL,
  innerRequest,
  resolveTier,
  tierSatisfies,
  trimHistory,
  type ChatMessage,
  type ContextTier,
  type Expected,
  type TierChoice,
} from './envelope.protocol';
import { realTimers, type Timers } from './flow.timers';
import { MAX_PREFER_WAIT_SECONDS, StoppedError, type HttpResult, type RelayApi } from './relay.api';

export type { ActiveRequest, ChatEvents, ChatOutcome, FailureCode, Stage } from './chat.outcome';
export type { Timers } from './flow.timers';

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

type Selection = { kind: 'selected'; key: string } | { kind: 'done'; outcome: ChatOutcome };

/**
 * One chat turn over the API v1 relay (spec §7.5): pick a node for the estimated context tier,
 * encrypt to it, submit with a request id and cancel token, wait for the answer (held retrieves
 * with `Prefer: wait`, or 500 ms polling), show encrypted progress, decrypt and check identity,
 * fail over to another node on 404/410, and cancel with proof on Stop or timeout.
 */
export class ChatFlow {
  private readonly wait: AnswerWait;
  private readonly timers: Timers;

  constructor(
    private readonly api: RelayApi,
    opts: FlowOptions = {},
  ) {
    const timers = opts.timers ?? realTimers;
    this.timers = timers;
    this.wait = new AnswerWait(api, {
      timers,
      preferWait: Math.min(
        opts.preferWaitSeconds ?? MAX_PREFER_WAIT_SECONDS,
        MAX_PREFER_WAIT_SECONDS,
      ),
      pollMs: opts.pollMs ?? 500,
      maxWaitMs: opts.maxWaitMs,
    });
  }

  async send(input: ChatInput, signal: AbortSignal, events: ChatEvents = {}): Promise<ChatOutcome> {
    const messages = trimHistory(input.messages);
    let tier = resolveTier(input.tierChoice, messages);
    let widened = false;
    const failedNodes = new Set<string>();
    let badKeys = 0;
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
          badKeys += result.why === 'bad_key' ? 1 : 0;
          if (failedNodes.size > maxFailovers) {
            if (badKeys === failedNodes.size) {
              return failed('bad_node_key');
            }
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
      return await this.wait.run(turn, admitted, admittedAt);
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
}
