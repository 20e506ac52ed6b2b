import { randomBytes } from 'node:crypto';
import { Inject, Injectable, Logger } from '@nestjs/common';
import type { CallerWatch } from '../common/client-gone.decorator';
import { CLOCK, type Clock } from '../common/clock';
import { fingerprint, newJobId } from '../common/ids';
import { isPlainObject } from '../common/envelope-body';
import { OpenAiError, RelayError } from '../common/relay-error';
import { RelayConfig } from '../config/relay-config';
import {
  ClientLifecycleService,
  type OutcomeClient,
  type PlaceResult,
} from '../client-lifecycle/client-lifecycle.service';
import { StoreUnavailableError } from '../state/store-unavailable.error';
import {
  PROTOCOL_ID,
  type Envelope,
  type JobInput,
  type TerminalReason,
  type TerminalStatus,
} from '../state/state.types';
import { GatewayErrors, ProviderErrors } from './gateway.errors';
import {
  DecryptError,
  openTextAsync,
  sealText,
  type RsaKey,
  type Sealed,
} from '../common/hybrid.crypto';
import { GatewayKeysService } from './keys.service';
import { UnwrapPoolService } from './unwrap-pool.service';
import { NodeKeys } from './node-keys';
import type { NodeReply } from './openai.format';
import type { ChatMessage } from './request.validation';

/** The gateway always asks for the smallest tier, as the existing relay's provider does. */
const TIER = '8k-fast';
/** Seconds of slack past the relay's own deadline before the gateway gives up (upstream: +5). */
const DEADLINE_SLACK_MS = 5000;
/** Retries of the cancel that follows an enqueue the store did not confirm. */
const CANCEL_RETRIES = 3;

/** What the gateway asks a compute node for. */
export interface DispatchRequest {
  /** Canonical model id. */
  model: string;
  messages: ChatMessage[];
  options: Record<string, unknown>;
  /** The public code of "no node at all" (gateway.md §5.4: chat says `no_compute_node_available`). */
  noNodeCode: 'no_registered_compute_nodes' | 'no_compute_node_available';
}

/** Progress a node reported (counts only; the relay-side reader never sees text). */
export interface NodeProgress {
  phase: string;
  total_prompt_tokens: number;
  processed_prompt_tokens: number;
  generated_tokens: number;
}

export interface WaitHooks {
  /** Called every `tickMs` while nothing happens (SSE keep-alives). */
  tickMs?: number;
  onTick?: () => void;
  onProgress?: (progress: NodeProgress) => void;
}

/** A request on its way: queued at a node, owned by this gateway call until `release()`. */
export class Dispatch {
  requestId = '';
  cancelToken = '';
  nodeId = '';
  deadline = 0;
  failedOver = false;
  private released = false;

  constructor(
    readonly request: DispatchRequest,
    readonly key: RsaKey,
    private readonly onRelease: () => void,
  ) {}

  release(): void {
    if (!this.released) {
      this.released = true;
      this.onRelease();
    }
  }
}

/** The caller went away: nothing is sent (499 is never written), the request was cancelled. */
export class CallerGoneError extends RelayError {
  constructor() {
    super(499, 'Client closed the request');
    this.name = 'CallerGoneError';
  }
}

const hex = (bytes: number): string => randomBytes(bytes).toString('hex');

/**
 * Gateway requests become API v1 requests on the relay's own lifecycle, in process: the scheduler
 * picks a node, the inner envelope (protocol.md §6.4) is encrypted to it under the gateway's client key,
 * the job is enqueued with a request id and cancel token, and the answer is awaited through the
 * store's wake-ups, taken, confirmed, decrypted and checked. No HTTP self-calls; the store only
 * ever holds ciphertext. A caller that leaves or a timeout cancels the request with its proof, so
 * the node sees `cancelled`/`expired` on `/servers/control`; a node that vanished is replaced once.
 */
@Injectable()
export class DispatchService {
  private readonly logger = new Logger('Gateway');
  private active = 0;
  private readonly nodeKeys = new NodeKeys();

  constructor(
    @Inject(CLOCK) private readonly clock: Clock,
    private readonly config: RelayConfig,
    private readonly requests: ClientLifecycleService,
    private readonly keys: GatewayKeysService,
    private readonly unwrapPool: UnwrapPoolService,
  ) {}

  /** Gateway requests this process is holding (benchmarks, tests). */
  get inFlight(): number {
    return this.active;
  }

  /**
   * Picks a node and queues the request; failures here are ordinary HTTP errors (503 no node ...).
   * The caller's place among the requests held open is taken first (503 `gateway_busy` when the
   * relay holds as many as its memory allows), so an admitted chat always waits for its answer.
   * The caller must `release()` the dispatch (`await` does).
   */
  async begin(request: DispatchRequest, caller: CallerWatch): Promise<Dispatch> {
    if (!this.config.gateway.enabled) {
      throw GatewayErrors.disabled();
    }
    if (this.requests.refusesNewWork({ awaitedHere: true })) {
      throw GatewayErrors.draining();
    }
    if (this.active >= this.config.gateway.maxConcurrent || !this.requests.holdPlace(caller)) {
      throw GatewayErrors.busy();
    }
    this.active += 1;
    let dispatch: Dispatch | null = null;
    try {
      const key = await this.keys.clientKey();
      dispatch = new Dispatch(request, key, () => {
        this.active -= 1;
      });
      await this.place(dispatch, null);
      return dispatch;
    } catch (error) {
      if (dispatch) {
        dispatch.release();
      } else {
        this.active -= 1;
      }
      throw error;
    }
  }

  /** Waits for the node's answer and returns it decrypted and checked; always releases. */
  async await(dispatch: Dispatch, caller: CallerWatch, hooks: WaitHooks = {}): Promise<NodeReply> {
    try {
      return await this.waitLoop(dispatch, caller, hooks);
    } finally {
      dispatch.release();
    }
  }

  private async waitLoop(d: Dispatch, caller: CallerWatch, hooks: WaitHooks): Promise<NodeReply> {
    const client: OutcomeClient = { dialect: 'v1', clientKey: d.key.publicKeyB64 };
    for (;;) {
      const tick = hooks.tickMs !== undefined ? this.clock.now() + hooks.tickMs : Infinity;
      const until = Math.min(d.deadline, tick);
      const outcome = await this.requests.awaitOutcome(client, d.requestId, until, caller);
      switch (outcome.status) {
        case 'answered':
          this.requests.confirmDelivery(client, d.requestId, null);
          return this.readAnswer(d, outcome.envelope);
        case 'node_gone':
          if (!d.failedOver) {
            await this.failOver(d);
            break;
          }
          throw ProviderErrors.cancelled();
        case 'ended':
          throw ProviderErrors.cancelled();
        case 'unknown':
          throw ProviderErrors.bridge();
        case 'pending':
          switch (outcome.ended) {
            case 'progress':
              await this.reportProgress(d, outcome.request?.progress ?? null, hooks);
              break;
            case 'caller_gone':
              await this.cancel(d, 'cancelled', 'requester_cancelled');
              throw new CallerGoneError();
            case 'draining':
              // Nothing but this process could deliver the answer: the caller retries elsewhere.
              await this.cancel(d, 'cancelled', 'requester_gave_up');
              throw GatewayErrors.draining();
            case 'no_room':
              // Not reached: `begin` held the caller's place before the request was admitted.
              await this.cancel(d, 'cancelled', 'requester_gave_up');
              throw GatewayErrors.busy();
            case 'until':
              if (this.clock.now() >= d.deadline) {
                await this.cancel(d, 'expired', 'provider_timeout');
                throw ProviderErrors.timeout();
              }
              hooks.onTick?.();
              break;
            default: {
              const never: never = outcome.ended;
              return never;
            }
          }
          break;
        default: {
          const never: never = outcome;
          return never;
        }
      }
    }
  }

  /**
   * Lets the client lifecycle place the request (the store chooses the node, never one in
   * `exclude`; unusable keys are marked and stepped over), then maps why it could not.
   */
  private async place(d: Dispatch, exclude: string | null): Promise<void> {
    let result: PlaceResult;
    try {
      result = await this.requests.place(
        {
          model: d.request.model,
          tier: TIER,
          exclude: exclude === null ? [] : [exclude],
          // Every matching node busy: queue in the shortest line (its queue is capped at
          // admission), as a browser retrying with backoff would end up doing.
          atCapacity: 'least_loaded',
        },
        (nodeId) => this.seal(d, nodeId),
        {
          awaitedHere: true,
          // The process-wide client key is the gateway's, not a stranger's: its chats are bounded
          // by the gateway's own caps; the store's cap on it is kept as a backstop above them.
          clientCap: this.clientCap(),
          mayReplace: !d.failedOver,
          onUnusable: (nodeId) =>
            this.logger.warn({
              msg: 'gateway: node key unusable, choosing another',
              node: fingerprint(nodeId),
            }),
        },
      );
    } catch (error) {
      if (error instanceof StoreUnavailableError && d.requestId !== '') {
        // The store may still apply the enqueue once it recovers (a stalled Redis runs what it
        // queued): cancel that id, so the node never does work nobody waits for.
        this.cancelLater(d.key.publicKeyB64, d.requestId, d.cancelToken);
      }
      throw error;
    }
    if (result.status === 'queued') {
      d.failedOver ||= result.replaced;
      d.deadline = Math.min(
        this.clock.now() + this.config.gateway.timeoutMs,
        result.deadlineAt + DEADLINE_SLACK_MS,
      );
      return;
    }
    throw placeError(result, d.request.noNodeCode, d.request.model);
  }

  /** The request sealed to the node, with a fresh id and cancel token; null if its key is unusable. */
  private seal(d: Dispatch, nodeId: string): JobInput | null {
    const requestId = `api-v1-${hex(16)}`;
    const inner = {
      protocol: PROTOCOL_ID,
      version: 1,
      request_id: requestId,
      client_public_key: d.key.publicKeyB64,
      api_v1_request: {
        model: d.request.model,
        messages: d.request.messages,
        options: d.request.options,
      },
    };
    let sealed: Sealed;
    try {
      sealed = sealText(JSON.stringify(inner), this.nodeKeys.publicKey(nodeId), 'oaep');
    } catch {
      return null;
    }
    const envelope: Envelope = {
      ciphertext: sealed.ciphertext,
      cipherkey: sealed.cipherkey,
      iv: sealed.iv,
      extra: { protocol: PROTOCOL_ID, version: 1 },
    };
    d.requestId = requestId;
    d.cancelToken = hex(16);
    d.nodeId = nodeId;
    return {
      jobId: newJobId(),
      dialect: 'v1',
      nodeId,
      clientKey: d.key.publicKeyB64,
      requestId,
      cancelToken: d.cancelToken,
      stream: false,
      envelope,
      bytes: sealed.ciphertext.length + sealed.cipherkey.length + sealed.iv.length,
    };
  }

  /**
   * The store's cap on the gateway's client key: every chat this process may hold, plus what a
   * stranger naming that key on the public routes may add (`maxPendingPerClient`), so that stranger
   * can never take a gateway chat's place.
   */
  private clientCap(): number {
    return this.config.gateway.maxConcurrent + this.config.limits.maxPendingPerClient;
  }

  /**
   * Best-effort cancel of an id whose enqueue failed with a store error: now, then after 1, 2 and
   * 4 s while the store stays unreachable. Commands on one Redis connection run in order, so a
   * cancel sent after a stalled enqueue also runs after it.
   */
  private cancelLater(clientKey: string, requestId: string, cancelToken: string): void {
    const attempt = (n: number): void => {
      this.requests
        .cancel(clientKey, requestId, cancelToken, 'cancelled', 'requester_gave_up')
        .catch(() => {
          if (n < CANCEL_RETRIES) {
            setTimeout(() => attempt(n + 1), 1000 * 2 ** n).unref();
          }
        });
    };
    attempt(0);
  }

  private async failOver(d: Dispatch): Promise<void> {
    d.failedOver = true;
    this.logger.log({ msg: 'gateway: node left, failing over', node: fingerprint(d.nodeId) });
    await this.place(d, d.nodeId);
  }

  private async cancel(d: Dispatch, status: TerminalStatus, reason: TerminalReason): Promise<void> {
    try {
      await this.requests.cancel(d.key.publicKeyB64, d.requestId, d.cancelToken, status, reason);
    } catch {
      // The store is unreachable: the request ends at its own deadline instead.
    }
  }

  private async readAnswer(d: Dispatch, envelope: Envelope): Promise<NodeReply> {
    let inner: unknown;
    try {
      const padding = this.nodeKeys.replyPadding(d.nodeId);
      const opened = await openTextAsync(
        d.key.privateKey,
        envelope,
        padding,
        this.unwrapPool.forAnswers,
      );
      this.nodeKeys.answered(d.nodeId, opened.padding);
      inner = JSON.parse(opened.text);
    } catch (error) {
      this.reject(d, error instanceof DecryptError ? 'undecryptable' : 'not_json');
    }
    if (
      !isPlainObject(inner) ||
      inner.protocol !== PROTOCOL_ID ||
      inner.request_id !== d.requestId ||
      typeof inner.client_public_key !== 'string' ||
      inner.client_public_key.trim() !== d.key.publicKeyB64
    ) {
      this.reject(d, 'identity_mismatch');
    }
    const body = inner.api_v1_response;
    if (!isPlainObject(body)) {
      this.reject(d, 'no_api_v1_response');
    }
    if (
      isPlainObject(body.error) ||
      (body.error !== undefined && body.error !== null && body.error !== false)
    ) {
      const code = isPlainObject(body.error) ? body.error.code : undefined;
      this.logger.warn({
        msg: 'gateway: node reported an error',
        node: fingerprint(d.nodeId),
        code: typeof code === 'string' ? code.slice(0, 64) : 'unknown',
      });
      throw code === 'cancelled' || code === 'expired'
        ? ProviderErrors.cancelled()
        : ProviderErrors.bridge();
    }
    const message = body.message;
    if (!isPlainObject(message)) {
      this.reject(d, 'no_message');
    }
    const toolCalls =
      Array.isArray(message.tool_calls) && message.tool_calls.length > 0
        ? message.tool_calls
        : null;
    return {
      role: typeof message.role === 'string' && message.role !== '' ? message.role : 'assistant',
      content: typeof message.content === 'string' ? message.content : '',
      toolCalls,
      finishReason: typeof body.finish_reason === 'string' ? body.finish_reason : null,
      usage: body.usage,
    };
  }

  private reject(d: Dispatch, reason: string): never {
    this.logger.warn({ msg: 'gateway: node answer rejected', node: fingerprint(d.nodeId), reason });
    throw ProviderErrors.invalidPayload();
  }

  private async reportProgress(
    d: Dispatch,
    envelope: Envelope | null,
    hooks: WaitHooks,
  ): Promise<void> {
    if (!hooks.onProgress || envelope === null) {
      return;
    }
    try {
      const opened = await openTextAsync(
        d.key.privateKey,
        envelope,
        this.nodeKeys.replyPadding(d.nodeId),
        this.unwrapPool.forAnswers,
      );
      const inner: unknown = JSON.parse(opened.text);
      if (!isPlainObject(inner) || inner.request_id !== d.requestId) {
        return;
      }
      const p = inner.api_v1_progress;
      if (!isPlainObject(p) || typeof p.phase !== 'string') {
        return;
      }
      const count = (v: unknown): number =>
        Number.isSafeInteger(v) && (v as number) >= 0 ? (v as number) : 0;
      hooks.onProgress({
        phase: p.phase.slice(0, 32).replace(/[^a-z_]/g, ''),
        total_prompt_tokens: count(p.total_prompt_tokens),
        processed_prompt_tokens: count(p.processed_prompt_tokens),
        generated_tokens: count(p.generated_tokens),
      });
    } catch {
      // progress is advisory
    }
  }
}

/** The gateway's answer to each reason a request could not be placed (gateway.md §5.4). */
function placeError(
  result: Exclude<PlaceResult, { status: 'queued' }>,
  noNodeCode: DispatchRequest['noNodeCode'],
  model: string,
): OpenAiError {
  switch (result.status) {
    case 'draining':
      return GatewayErrors.draining();
    case 'no_nodes':
      return ProviderErrors.noNodes(noNodeCode);
    case 'no_match':
      return GatewayErrors.modelNotSupported(model);
    case 'exhausted':
      // Only nodes kept from the request are left: the one that left (cancelled, as the page
      // sees it), or keys nothing can be encrypted to (as if there were no node).
      return result.unusable === 0
        ? ProviderErrors.cancelled()
        : ProviderErrors.noNodes(noNodeCode);
    case 'no_capacity':
    case 'too_many_unusable':
    case 'node_not_found':
      // The chosen node left before the work was admitted (twice, with the fail-over): another
      // may register or renew at any moment, so the caller is told when to try again.
      return ProviderErrors.unreachable(2);
    case 'node_queue_full':
    case 'client_pending_full':
    case 'queue_full':
      return ProviderErrors.unreachable(5);
    case 'request_in_use':
      // Fresh random ids never collide; the store says otherwise, so do not guess.
      return ProviderErrors.bridge();
    default: {
      const never: never = result;
      return never;
    }
  }
}
