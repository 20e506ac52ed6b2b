/**
 * The relay's HTTP routes as the page calls them (spec §7.5), over an injected `fetch` so the same
 * code runs in the browser (same origin, `baseUrl` '') and under Node in the tests.
 */
export interface HttpResult {
  status: number;
  body: Record<string, unknown>;
  /** `Retry-After` in seconds, when the relay sent one. */
  retryAfter: number | null;
}

/** The relay could not be reached, or did not answer in time. */
export class NetworkError extends Error {
  constructor(readonly timedOut: boolean) {
    super(timedOut ? 'the relay did not answer in time' : 'the relay cannot be reached');
    this.name = 'NetworkError';
  }
}

/** The caller's own signal aborted the call (the Stop button, a page hide). */
export class StoppedError extends Error {
  constructor() {
    super('stopped');
    this.name = 'StoppedError';
  }
}

export type RelayHealth = 'ok' | 'degraded' | 'draining' | 'unreachable';

interface CallOptions {
  body?: unknown;
  signal?: AbortSignal;
  timeoutMs?: number;
  headers?: Record<string, string>;
  keepalive?: boolean;
}

export interface CancelInput {
  clientPublicKey: string;
  requestId: string;
  cancelToken: string;
  reason: 'requester_cancelled' | 'client_timeout' | 'requester_gave_up';
}

/** The longest hold this relay grants a retrieve (`Prefer: wait=N`). */
export const MAX_PREFER_WAIT_SECONDS = 8;

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** What `/relay/diagnostics?summary=1` says is registered. */
export interface RegisteredNodes {
  /** API v1 nodes, the demo node apart. */
  v1: number;
  /** Among `v1`, nodes whose key the relay found unusable. */
  unusable: number;
  legacy: number;
  /** Demo nodes (`--use_mock_llm`), counted apart by the relay. */
  demo: number;
}

export class RelayApi {
  private readonly fetchFn: typeof fetch;

  constructor(
    private readonly baseUrl = '',
    fetchFn?: typeof fetch,
  ) {
    this.fetchFn = fetchFn ?? ((input, init) => globalThis.fetch(input, init));
  }

  async call(method: 'GET' | 'POST', path: string, opts: CallOptions = {}): Promise<HttpResult> {
    const signals: AbortSignal[] = [];
    if (opts.signal) {
      signals.push(opts.signal);
    }
    if (opts.timeoutMs !== undefined) {
      signals.push(AbortSignal.timeout(opts.timeoutMs));
    }
    const headers: Record<string, string> = { Accept: 'application/json', ...opts.headers };
    if (opts.body !== undefined) {
      headers['Content-Type'] = 'application/json';
    }
    let text: string;
    let res: Response;
    try {
      res = await this.fetchFn(`${this.baseUrl}${path}`, {
        method,
        headers,
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
        signal: signals.length > 0 ? AbortSignal.any(signals) : undefined,
        cache: 'no-store',
        credentials: 'omit',
        keepalive: opts.keepalive ?? false,
      });
      text = await res.text();
    } catch (error) {
      if (opts.signal?.aborted) {
        throw new StoppedError();
      }
      const timedOut = error instanceof Error && error.name === 'TimeoutError';
      throw new NetworkError(timedOut);
    }
    let body: Record<string, unknown> = {};
    try {
      const parsed: unknown = JSON.parse(text);
      body = isRecord(parsed) ? parsed : { value: parsed };
    } catch {
      body = {};
    }
    const retry = Number(res.headers.get('Retry-After'));
    return {
      status: res.status,
      body,
      retryAfter: res.headers.has('Retry-After') && Number.isFinite(retry) ? retry : null,
    };
  }

  /** Model ids the live nodes serve, default first (`GET /api/v1/models`). */
  async models(signal?: AbortSignal): Promise<string[]> {
    const res = await this.call('GET', '/api/v1/models', { signal, timeoutMs: 5000 });
    const data = res.status === 200 && Array.isArray(res.body.data) ? res.body.data : [];
    return data
      .map((m: unknown) => (isRecord(m) && typeof m.id === 'string' ? m.id : ''))
      .filter((id) => id !== '');
  }

  /**
   * How many nodes are registered, from the counts-only form of `/relay/diagnostics` (a few
   * hundred bytes however many nodes there are; the relay checks every API v1 key at registration).
   */
  async nodes(signal?: AbortSignal): Promise<RegisteredNodes> {
    const res = await this.call('GET', '/relay/diagnostics?summary=1', { signal, timeoutMs: 1000 });
    const count = (n: unknown): n is number =>
      typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
    const { total_registered_compute_nodes: total, total_api_v1_registered_compute_nodes: v1 } =
      res.body;
    const unusable = res.body.unusable_compute_nodes_count;
    const demo = res.body.demo_compute_nodes_count;
    if (res.status !== 200 || !count(total) || !count(v1)) {
      throw new NetworkError(false);
    }
    return {
      v1,
      unusable: count(unusable) ? Math.min(unusable, v1) : 0,
      legacy: Math.max(0, total - v1),
      demo: count(demo) ? demo : 0,
    };
  }

  /** Readiness as `/healthz` reports it. */
  async health(signal?: AbortSignal): Promise<RelayHealth> {
    try {
      const res = await this.call('GET', '/healthz', { signal, timeoutMs: 2000 });
      const status = res.body.status;
      if (status === 'ok' || status === 'degraded' || status === 'draining') {
        return status;
      }
      return res.status === 200 ? 'ok' : 'degraded';
    } catch {
      return 'unreachable';
    }
  }

  /** The release label of `/api/v1/meta` (`"dev dev"`, `"prod 1.2.3"`), or null. */
  async releaseLabel(): Promise<string | null> {
    try {
      const res = await this.call('GET', '/api/v1/meta', { timeoutMs: 2000 });
      return typeof res.body.label === 'string' ? res.body.label : null;
    } catch {
      return null;
    }
  }

  next(model: string, tier: string, signal?: AbortSignal): Promise<HttpResult> {
    const query = `model=${encodeURIComponent(model)}&context_tier=${encodeURIComponent(tier)}`;
    return this.call('GET', `/api/v1/relay/servers/next?${query}`, { signal, timeoutMs: 10_000 });
  }

  submit(envelope: Record<string, unknown>): Promise<HttpResult> {
    return this.call('POST', '/api/v1/relay/requests', { body: envelope, timeoutMs: 30_000 });
  }

  /**
   * One retrieve. With `waitSeconds` > 0 asks the relay to hold a pending answer (`Prefer: wait=N`);
   * a relay that ignores the header answers at once, and the caller falls back to polling.
   */
  retrieve(
    clientPublicKey: string,
    requestId: string,
    waitSeconds: number,
    signal: AbortSignal,
  ): Promise<HttpResult> {
    const wait = Math.max(0, Math.min(MAX_PREFER_WAIT_SECONDS, Math.floor(waitSeconds)));
    return this.call('POST', '/api/v1/relay/responses/retrieve', {
      body: { client_public_key: clientPublicKey, request_id: requestId },
      headers: wait > 0 ? { Prefer: `wait=${wait}` } : {},
      signal,
      timeoutMs: (wait + 10) * 1000,
    });
  }

  /**
   * Cancels with proof (spec §4.4.9). Confirmed only on 2xx with `status` cancelled/expired and our
   * own `request_id` echoed. Sent with keepalive so it survives the page going away.
   */
  async cancel(input: CancelInput): Promise<boolean> {
    try {
      const res = await this.call('POST', '/api/v1/relay/requests/cancel', {
        body: {
          client_public_key: input.clientPublicKey,
          request_id: input.requestId,
          cancel_token: input.cancelToken,
          status: 'cancelled',
          reason: input.reason,
        },
        timeoutMs: 2000,
        keepalive: true,
      });
      return (
        res.status >= 200 &&
        res.status < 300 &&
        (res.body.status === 'cancelled' || res.body.status === 'expired') &&
        res.body.request_id === input.requestId
      );
    } catch {
      return false;
    }
  }
}
