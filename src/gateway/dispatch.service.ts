import { randomBytes } from 'node:crypto';
import { Inject, Injectable, Logger } from '@nestjs/common';
import type { CallerWatch } from '../common/client-gone.decorator';
import { CLOCK, type Clock } from '../common/clock';
import { fingerprint, newJobId } from '../common/ids';
import { isPlainObject } from '../common/envelope-body';
import { RelayError } from '../common/relay-error';
import { RelayConfig } from '../config/relay-config';
import { LifecycleService } from '../lifecycle/lifecycle.service';
import { RegistryService } from '../registry/registry.service';
import { STATE_STORE, type EnqueueResult, type StateStore } from '../state/state-store';
import { StoreUnavailableError } from '../state/store-unavailable.error';
import { loadScore } from '../state/scheduler';
import {
  CONTEXT_TIERS,
  PROTOCOL_ID,
  type Envelope,
  type JobInput,
  type TerminalReason,
  type TerminalStatus,
} from '../state/state.types';
import { GatewayErrors, ProviderErrors } from './gateway.errors';
import {
  DecryptError,
  openText,
  publicKeyFromB64,
  sealText,
  type RsaKey,
  type Sealed,
} from '../common/hybrid.crypto';
import { GatewayKeysService } from './keys.service';
import type { NodeReply } from './openai.format';
import type { ChatMessage } from './request.validation';

/** The gateway always asks for the smallest tier, as the existing relay's provider does. */
const TIER = '8k-fast';
/** Seconds of slack past the relay's own deadline before the gateway gives up (upstream: +5). */
const DEADLINE_SLACK_MS = 5000;
/** Nodes with unusable keys one request steps over before it gives up. */
const MAX_UNUSABLE_KEYS = 4;
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
 * picks a node, the inner envelope (protocol.md §6.4) is encrypted to it with a one-time client key,
 * the job is enqueued with a request id and cancel token, and the answer is awaited through the
 * store's wake-ups, taken, confirmed, decrypted and checked. No HTTP self-calls; the store only
 * ever holds ciphertext. A caller that leaves or a timeout cancels the request with its proof, so
 * the node sees `cancelled`/`expired` on `/servers/control`; a node that vanished is replaced once.
 */
@Injectable()
export class DispatchService {
  private readonly logger = new Logger('Gateway');
  private active = 0;

  constructor(
    @Inject(STATE_STORE) private readonly store: StateStore,
    @Inject(CLOCK) private readonly clock: Clock,
    private readonly config: RelayConfig,
    private readonly registry: RegistryService,
    private readonly lifecycle: LifecycleService,
    private readonly keys: GatewayKeysService,
  ) {}

  /** Gateway requests this process is holding (benchmarks, tests). */
  get inFlight(): number {
    return this.active;
  }

  /**
   * Picks a node and queues the request; failures here are ordinary HTTP errors (503 no node ...).
   * The caller must `release()` the dispatch (`await` does).
   */
  async begin(request: DispatchRequest): Promise<Dispatch> {
    if (!this.config.gateway.enabled) {
      throw GatewayErrors.disabled();
    }
    if (this.lifecycle.draining) {
      throw GatewayErrors.draining();
    }
    if (this.active >= this.config.gateway.maxConcurrent) {
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
    const clientKey = d.key.publicKeyB64;
    for (;;) {
      const now = this.clock.now();
      const result = await this.store.takeResponse({
        dialect: 'v1',
        clientKey,
        requestId: d.requestId,
        now,
      });
      switch (result.status) {
        case 'ok':
          this.store
            .confirmDelivery({ dialect: 'v1', clientKey, requestId: d.requestId, now })
            .catch(() => undefined); // the delivery grace forgets it anyway
          return this.readAnswer(d, result.envelope);
        case 'terminal': {
          if (result.terminal === 'cancelled' && result.reason === 'server_unregistered') {
            if (!d.failedOver) {
              await this.failOver(d);
              break;
            }
          }
          throw ProviderErrors.cancelled();
        }
        case 'unknown':
          throw ProviderErrors.bridge();
        case 'pending': {
          if (result.progress !== null) {
            this.reportProgress(d, result.progress, hooks);
          }
          if (caller.gone) {
            await this.cancel(d, 'cancelled', 'requester_cancelled');
            throw new CallerGoneError();
          }
          if (now >= d.deadline) {
            await this.cancel(d, 'expired', 'provider_timeout');
            throw ProviderErrors.timeout();
          }
          const tick = hooks.tickMs !== undefined ? now + hooks.tickMs : Infinity;
          const until = Math.min(d.deadline, tick);
          await this.store.waitForResponse(clientKey, d.requestId, until, caller.signal());
          if (this.clock.now() >= tick && this.clock.now() < d.deadline && !caller.gone) {
            hooks.onTick?.();
          }
          break;
        }
        default: {
          const never: never = result;
          return never;
        }
      }
    }
  }

  /**
   * Selects a node (never `exclude`) and enqueues the encrypted request there. A node whose key
   * cannot be encrypted to is treated like one that vanished: it is marked, so the scheduler
   * stops offering it, and another node is chosen (at most {@link MAX_UNUSABLE_KEYS} of them).
   */
  private async place(d: Dispatch, exclude: string | null): Promise<void> {
    const skip = new Set<string>(exclude === null ? [] : [exclude]);
    for (;;) {
      const nodeId = await this.choose(d, skip);
      if (nodeId === null) {
        // Every node left was skipped: the vanished one, or keys nothing can be encrypted to.
        throw exclude !== null && skip.size === 1
          ? ProviderErrors.cancelled()
          : ProviderErrors.noNodes(d.request.noNodeCode);
      }
      const job = this.seal(d, nodeId);
      if (job !== null) {
        await this.enqueue(d, job);
        return;
      }
      skip.add(nodeId);
      this.logger.warn({
        msg: 'gateway: node key unusable, choosing another',
        node: fingerprint(nodeId),
      });
      await this.registry.markKeyUnusable(nodeId).catch(() => undefined);
      if (skip.size > MAX_UNUSABLE_KEYS) {
        throw ProviderErrors.unreachable(2);
      }
    }
  }

  /** The scheduler's pick, or the least loaded other node when that pick is to be skipped. */
  private async choose(d: Dispatch, skip: ReadonlySet<string>): Promise<string | null> {
    const { model } = d.request;
    const selection = await this.registry.select(model, TIER);
    switch (selection.status) {
      case 'no_nodes':
        throw ProviderErrors.noNodes(d.request.noNodeCode);
      case 'no_match':
        throw GatewayErrors.modelNotSupported(model);
      case 'no_capacity': {
        // Every matching node is busy: queue at the least loaded one instead of refusing (its
        // queue is capped at admission), as a browser retrying with backoff would end up doing.
        const fallback = await this.leastLoaded(model, skip);
        if (fallback === null) {
          throw ProviderErrors.unreachable(2);
        }
        return fallback;
      }
      case 'selected':
        return skip.has(selection.selected.nodeId)
          ? this.leastLoaded(model, skip)
          : selection.selected.nodeId;
      default: {
        const never: never = selection;
        return never;
      }
    }
  }

  private async leastLoaded(model: string, skip: ReadonlySet<string>): Promise<string | null> {
    let best: { nodeId: string; load: number } | null = null;
    for (const node of await this.registry.nodes()) {
      const caps = node.capabilities;
      if (
        node.dialect !== 'v1' ||
        node.keyUnusable ||
        skip.has(node.nodeId) ||
        !caps ||
        !caps.supported_model_ids.includes(model) ||
        caps.maximum_total_context_tokens < CONTEXT_TIERS[TIER] ||
        node.queueDepth >= this.config.maxQueuePerNode
      ) {
        continue;
      }
      const load = loadScore({ ...node, seq: 0 });
      if (best === null || load < best.load) {
        best = { nodeId: node.nodeId, load };
      }
    }
    return best?.nodeId ?? null;
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
      sealed = sealText(JSON.stringify(inner), publicKeyFromB64(nodeId), 'oaep');
    } catch {
      return null;
    }
    const envelope: Envelope = {
      ciphertext: sealed.ciphertext,
      cipherkey: sealed.cipherkey,
      iv: sealed.iv,
      extra: { protocol: PROTOCOL_ID, version: 1 },
    };
    return {
      jobId: newJobId(),
      dialect: 'v1',
      nodeId,
      clientKey: d.key.publicKeyB64,
      requestId,
      cancelToken: hex(16),
      stream: false,
      envelope,
      bytes: sealed.ciphertext.length + sealed.cipherkey.length + sealed.iv.length,
    };
  }

  private async enqueue(d: Dispatch, job: JobInput): Promise<void> {
    const nodeId = job.nodeId;
    d.requestId = job.requestId as string;
    d.cancelToken = job.cancelToken as string;
    d.nodeId = nodeId;
    const now = this.clock.now();
    let result: EnqueueResult;
    try {
      result = await this.store.enqueue({ job, now });
    } catch (error) {
      if (error instanceof StoreUnavailableError) {
        // The store may still apply the enqueue once it recovers (a stalled Redis runs what it
        // queued): cancel that id, so the node never does work nobody waits for.
        this.cancelLater(d.key.publicKeyB64, d.requestId, d.cancelToken);
      }
      throw error;
    }
    switch (result.status) {
      case 'queued':
        d.deadline = Math.min(
          now + this.config.gateway.timeoutMs,
          result.deadlineAt + DEADLINE_SLACK_MS,
        );
        return;
      case 'node_not_found':
        // The node left between selection and admission: the page's fail-over, once.
        if (!d.failedOver) {
          d.failedOver = true;
          await this.place(d, nodeId);
          return;
        }
        throw ProviderErrors.unreachable();
      case 'node_queue_full':
      case 'client_pending_full':
      case 'queue_full':
        throw ProviderErrors.unreachable(5);
      case 'request_in_use':
        // Fresh random ids never collide; the store says otherwise, so do not guess.
        throw ProviderErrors.bridge();
      default: {
        const never: never = result;
        return never;
      }
    }
  }

  /**
   * Best-effort cancel of an id whose enqueue failed with a store error: now, then after 1, 2 and
   * 4 s while the store stays unreachable. Commands on one Redis connection run in order, so a
   * cancel sent after a stalled enqueue also runs after it.
   */
  private cancelLater(clientKey: string, requestId: string, cancelToken: string): void {
    const attempt = (n: number): void => {
      this.store
        .cancel({
          clientKey,
          requestId,
          cancelToken,
          status: 'cancelled',
          reason: 'requester_gave_up',
          now: this.clock.now(),
        })
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
      await this.store.cancel({
        clientKey: d.key.publicKeyB64,
        requestId: d.requestId,
        cancelToken: d.cancelToken,
        status,
        reason,
        now: this.clock.now(),
      });
    } catch {
      // The store is unreachable: the request ends at its own deadline instead.
    }
  }

  private readAnswer(d: Dispatch, envelope: Envelope): NodeReply {
    let inner: unknown;
    try {
      inner = JSON.parse(openText(d.key.privateKey, envelope).text);
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

  private reportProgress(d: Dispatch, envelope: Envelope, hooks: WaitHooks): void {
    if (!hooks.onProgress) {
      return;
    }
    try {
      const inner: unknown = JSON.parse(openText(d.key.privateKey, envelope).text);
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
