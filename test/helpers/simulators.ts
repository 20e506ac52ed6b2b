import { randomBytes } from 'node:crypto';
import { newIdentity, seal, type Identity, type Padding, type Sealed } from '../../src/smoke/e2ee';
import { call, type WireResult } from './test-app';
import { openAny } from './crypto';

export const PROTOCOL = 'tokenplace_api_v1_relay_e2ee';

export type ChatMessage = { role: 'system' | 'user' | 'assistant'; content: string };

/** The simulated model: answers with the last user message, reversed, so answers are checkable. */
export function simulatedAnswer(messages: ChatMessage[]): string {
  const last = [...messages].reverse().find((m) => m.role === 'user');
  return `echo: ${[...(last?.content ?? '')].reverse().join('')}`;
}

const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A legacy compute node as `server.py` of the OLD code base behaves: `/sink`, decrypt the history,
 * answer with the history plus the assistant turn, encrypted to the outer client key, `/source`.
 */
export class LegacyNodeSim {
  readonly identity: Identity = newIdentity();
  /** Every raw work item received, for byte-identity assertions. */
  readonly received: Array<Record<string, unknown>> = [];

  constructor(
    private readonly baseUrl: string,
    private readonly opts: { token?: string; replyPadding?: Padding } = {},
  ) {}

  get key(): string {
    return this.identity.publicKeyB64;
  }

  private headers(): Record<string, string> {
    return this.opts.token ? { 'X-Relay-Server-Token': this.opts.token } : {};
  }

  sink(extra: Record<string, unknown> = {}): Promise<WireResult> {
    return call(
      this.baseUrl,
      'POST',
      '/sink',
      { server_public_key: this.key, ...extra },
      this.headers(),
    );
  }

  /** One `/sink`; when work came back, answers it. Returns whether work was handled. */
  async serveOnce(): Promise<boolean> {
    const res = await this.sink();
    if (res.status !== 200 || typeof res.body.chat_history !== 'string') {
      return false;
    }
    this.received.push(res.body);
    const sealed: Sealed = {
      ciphertext: res.body.chat_history,
      cipherkey: res.body.cipherkey as string,
      iv: res.body.iv as string,
    };
    const { value } = openAny(this.identity, sealed);
    const history = (
      Array.isArray(value) ? value : (value as { chat_history: ChatMessage[] }).chat_history
    ) as ChatMessage[];
    const reply = [...history, { role: 'assistant', content: simulatedAnswer(history) }];
    const out = seal(reply, res.body.client_public_key as string, this.opts.replyPadding ?? 'oaep');
    const posted = await call(
      this.baseUrl,
      'POST',
      '/source',
      {
        client_public_key: res.body.client_public_key,
        chat_history: out.ciphertext,
        cipherkey: out.cipherkey,
        iv: out.iv,
      },
      this.headers(),
    );
    if (posted.status !== 200) {
      throw new Error(`/source answered ${posted.status}: ${posted.text}`);
    }
    return true;
  }
}

/** A legacy client (`client.py`): `/next_server`, `/faucet`, poll `/retrieve`. */
export class LegacyClientSim {
  readonly identity: Identity = newIdentity();
  /** Ciphertext fields sent with the last `/faucet`. */
  lastSent: Sealed | null = null;

  constructor(
    private readonly baseUrl: string,
    private readonly opts: { padding?: Padding; pollMs?: number } = {},
  ) {}

  get key(): string {
    return this.identity.publicKeyB64;
  }

  async send(serverKey: string, history: ChatMessage[]): Promise<WireResult> {
    const sealed = seal(history, serverKey, this.opts.padding ?? 'oaep');
    this.lastSent = sealed;
    return call(this.baseUrl, 'POST', '/faucet', {
      server_public_key: serverKey,
      client_public_key: this.key,
      chat_history: sealed.ciphertext,
      cipherkey: sealed.cipherkey,
      iv: sealed.iv,
    });
  }

  /** Polls `/retrieve` until an answer arrives (or `attempts` run out) and decrypts it. */
  async receive(attempts = 100): Promise<ChatMessage[]> {
    for (let i = 0; i < attempts; i += 1) {
      const res = await call(this.baseUrl, 'POST', '/retrieve', { client_public_key: this.key });
      if (res.status === 200 && typeof res.body.chat_history === 'string') {
        const { value } = openAny(this.identity, {
          ciphertext: res.body.chat_history,
          cipherkey: res.body.cipherkey as string,
          iv: res.body.iv as string,
        });
        return value as ChatMessage[];
      }
      await delay(this.opts.pollMs ?? 20);
    }
    throw new Error('no answer');
  }
}

export interface V1Work {
  raw: Record<string, unknown>;
  requestId: string;
  clientKey: string;
  inner: Record<string, unknown>;
  padding: Padding;
}

/** Today's compute node (`server.py` API v1 path): register, long-poll, control, progress, respond. */
export class V1NodeSim {
  readonly identity: Identity = newIdentity();
  credential: string | null = null;

  constructor(
    private readonly baseUrl: string,
    private readonly opts: {
      token?: string;
      replyPadding?: Padding;
      capabilities?: Record<string, unknown>;
    } = {},
  ) {}

  get key(): string {
    return this.identity.publicKeyB64;
  }

  private headers(): Record<string, string> {
    return this.opts.token ? { 'X-Relay-Server-Token': this.opts.token } : {};
  }

  capabilities(): Record<string, unknown> {
    return (
      this.opts.capabilities ?? {
        api_version: 'v1',
        supported_model_ids: ['qwen3-8b-instruct'],
        active_context_tier: '8k-fast',
        maximum_total_context_tokens: 8192,
        default_output_token_reservation: 1024,
        maximum_output_tokens: 8192,
        max_concurrency: 1,
        backend_class: 'cuda',
      }
    );
  }

  async register(): Promise<WireResult> {
    const res = await call(
      this.baseUrl,
      'POST',
      '/api/v1/relay/servers/register',
      { server_public_key: this.key, capabilities: this.capabilities() },
      this.headers(),
    );
    if (typeof res.body.control_credential === 'string') {
      this.credential = res.body.control_credential;
    }
    return res;
  }

  poll(): Promise<WireResult> {
    return call(
      this.baseUrl,
      'POST',
      '/api/v1/relay/servers/poll',
      { server_public_key: this.key, capabilities: this.capabilities() },
      this.headers(),
    );
  }

  /** Polls once; decrypts and checks the work item like the real node (inner key == outer key). */
  async take(): Promise<V1Work | null> {
    const res = await this.poll();
    if (res.status !== 200) {
      throw new Error(`poll answered ${res.status}: ${res.text}`);
    }
    if (typeof res.body.chat_history !== 'string') {
      return null;
    }
    const raw = res.body;
    const { value, padding } = openAny(this.identity, {
      ciphertext: raw.chat_history as string,
      cipherkey: raw.cipherkey as string,
      iv: raw.iv as string,
    });
    const inner = value as Record<string, unknown>;
    if (
      inner.client_public_key !== raw.client_public_key ||
      inner.request_id !== raw.request_id ||
      inner.protocol !== PROTOCOL
    ) {
      throw new Error('inner envelope does not match the outer fields');
    }
    return {
      raw,
      requestId: raw.request_id as string,
      clientKey: raw.client_public_key as string,
      inner,
      padding,
    };
  }

  control(
    requestId: string,
    acknowledge = false,
    credential = this.credential,
  ): Promise<WireResult> {
    return call(
      this.baseUrl,
      'POST',
      '/api/v1/relay/servers/control',
      {
        server_public_key: this.key,
        request_id: requestId,
        control_credential: credential,
        acknowledge,
      },
      this.headers(),
    );
  }

  progress(work: V1Work, progress: Record<string, unknown>): Promise<WireResult> {
    const sealed = seal(
      {
        protocol: PROTOCOL,
        version: 1,
        request_id: work.requestId,
        client_public_key: work.clientKey,
        api_v1_progress: progress,
      },
      work.clientKey,
      this.opts.replyPadding ?? 'pkcs1',
    );
    return call(
      this.baseUrl,
      'POST',
      '/api/v1/relay/progress',
      {
        server_public_key: this.key,
        client_public_key: work.clientKey,
        request_id: work.requestId,
        control_credential: this.credential,
        protocol: PROTOCOL,
        version: 1,
        ...sealed,
      },
      this.headers(),
    );
  }

  /** Answers a work item the way HEAD nodes do (PKCS#1 v1.5 wrap unless told otherwise). */
  respond(work: V1Work, content?: string): Promise<WireResult> {
    const request = work.inner.api_v1_request as { messages: ChatMessage[] };
    const sealed = seal(
      {
        protocol: PROTOCOL,
        version: 1,
        request_id: work.requestId,
        client_public_key: work.clientKey,
        api_v1_response: {
          message: { role: 'assistant', content: content ?? simulatedAnswer(request.messages) },
          finish_reason: 'stop',
          usage: { prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 },
        },
      },
      work.clientKey,
      this.opts.replyPadding ?? 'pkcs1',
    );
    return call(
      this.baseUrl,
      'POST',
      '/api/v1/relay/responses',
      {
        client_public_key: work.clientKey,
        request_id: work.requestId,
        protocol: PROTOCOL,
        version: 1,
        chat_history: sealed.ciphertext,
        cipherkey: sealed.cipherkey,
        iv: sealed.iv,
      },
      this.headers(),
    );
  }

  unregister(credential = this.credential): Promise<WireResult> {
    return call(
      this.baseUrl,
      'POST',
      '/api/v1/relay/servers/unregister',
      { server_public_key: this.key, control_credential: credential },
      this.headers(),
    );
  }
}

export interface V1Submission {
  requestId: string;
  cancelToken: string;
  sealed: Sealed;
  response: WireResult;
}

/** The browser / `client.py` API v1 flow: next, requests, retrieve, cancel. */
export class V1ClientSim {
  readonly identity: Identity = newIdentity();

  constructor(
    private readonly baseUrl: string,
    private readonly opts: { padding?: Padding } = {},
  ) {}

  get key(): string {
    return this.identity.publicKeyB64;
  }

  next(model = 'qwen3-8b-instruct', tier = '8k-fast'): Promise<WireResult> {
    return call(
      this.baseUrl,
      'GET',
      `/api/v1/relay/servers/next?model=${encodeURIComponent(model)}&context_tier=${tier}`,
    );
  }

  async submit(
    serverKey: string,
    content: string,
    extra: Record<string, unknown> = {},
  ): Promise<V1Submission> {
    const requestId = randomBytes(16).toString('hex');
    const cancelToken = randomBytes(16).toString('hex');
    const sealed = seal(
      {
        protocol: PROTOCOL,
        version: 1,
        request_id: requestId,
        client_public_key: this.key,
        api_v1_request: {
          model: 'qwen3-8b-instruct',
          messages: [{ role: 'user', content }],
          options: { max_tokens: 256 },
          routing: { context_tier: '8k-fast' },
        },
      },
      serverKey,
      this.opts.padding ?? 'oaep',
    );
    const response = await call(this.baseUrl, 'POST', '/api/v1/relay/requests', {
      server_public_key: serverKey,
      client_public_key: this.key,
      request_id: requestId,
      protocol: PROTOCOL,
      version: 1,
      ciphertext: sealed.ciphertext,
      cipherkey: sealed.cipherkey,
      iv: sealed.iv,
      cancel_token: cancelToken,
      ...extra,
    });
    return { requestId, cancelToken, sealed, response };
  }

  retrieve(requestId?: string, headers: Record<string, string> = {}): Promise<WireResult> {
    return call(
      this.baseUrl,
      'POST',
      '/api/v1/relay/responses/retrieve',
      {
        client_public_key: this.key,
        ...(requestId !== undefined ? { request_id: requestId } : {}),
      },
      headers,
    );
  }

  /** Decrypts a 200 retrieve body and checks the inner identity fields like the web page. */
  openResponse(
    body: Record<string, unknown>,
    requestId: string,
  ): { content: string; padding: Padding } {
    const { value, padding } = openAny(this.identity, {
      ciphertext: (body.chat_history ?? body.ciphertext) as string,
      cipherkey: body.cipherkey as string,
      iv: body.iv as string,
    });
    const inner = value as Record<string, unknown>;
    if (
      inner.protocol !== PROTOCOL ||
      inner.version !== 1 ||
      inner.request_id !== requestId ||
      inner.client_public_key !== this.key
    ) {
      throw new Error('response identity check failed');
    }
    const response = inner.api_v1_response as { message: { content: string } };
    return { content: response.message.content, padding };
  }

  /** Polls until 200 (decrypted) or a non-202 answer. */
  async await(requestId: string, attempts = 200): Promise<WireResult> {
    for (let i = 0; i < attempts; i += 1) {
      const res = await this.retrieve(requestId);
      if (res.status !== 202) {
        return res;
      }
      await delay(10);
    }
    throw new Error('still pending');
  }

  cancel(
    requestId: string,
    cancelToken: string,
    extra: Record<string, unknown> = {},
  ): Promise<WireResult> {
    return call(this.baseUrl, 'POST', '/api/v1/relay/requests/cancel', {
      client_public_key: this.key,
      request_id: requestId,
      cancel_token: cancelToken,
      status: 'cancelled',
      reason: 'requester_cancelled',
      ...extra,
    });
  }
}
