import { randomBytes } from 'node:crypto';
import { newIdentity, type Identity, type Padding, type Sealed } from '../../src/peer/peer.crypto';
import { LegacyClient, LegacyNode, type LegacyWork } from '../../src/peer/legacy.peer';
import type { RelayRequest } from '../../src/peer/relay.client';
import { V1Client, V1Node, workMatches, type V1Work } from '../../src/peer/v1.peer';
import { NODE_TOKEN_HEADER, PROTOCOL_ID, type ChatMessage } from '../../src/peer/relay.protocol';
import { call, type WireResult } from './test-app';

/**
 * Simulated peers with the timing of the real ones. What they say on the wire is the peer library's
 * (`src/peer/`); what is here is behaviour: when each peer calls, polls, sleeps and fails over.
 */
export { PROTOCOL_ID as PROTOCOL };
export type { ChatMessage, V1Work };

/** The simulated model: answers with the last user message, reversed, so answers are checkable. */
export function simulatedAnswer(messages: ChatMessage[]): string {
  const last = [...messages].reverse().find((m) => m.role === 'user');
  return `echo: ${[...(last?.content ?? '')].reverse().join('')}`;
}

const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * How a simulated peer reaches the relay. `mayHold` marks requests the relay may hold open (long-
 * polls), so a virtual-time driver knows not to wait for them before it moves the clock.
 */
export type Transport = (
  baseUrl: string,
  method: string,
  path: string,
  body?: unknown,
  headers?: Record<string, string>,
  mayHold?: boolean,
) => Promise<WireResult>;

const direct: Transport = (baseUrl, method, path, body, headers) =>
  call(baseUrl, method, path, body, headers);

/** A peer library `Send` over a simulator's transport; node calls carry the node token. */
function sender(
  baseUrl: string,
  transport: Transport,
  token: string | undefined,
): (request: RelayRequest) => Promise<WireResult> {
  return (request) =>
    transport(
      baseUrl,
      request.method,
      request.path,
      request.body,
      {
        ...(request.asNode && token ? { [NODE_TOKEN_HEADER]: token } : {}),
        ...request.headers,
      },
      request.mayHold,
    );
}

/** Time as a simulated peer sees it: the wall clock in process tests, a ManualClock in e2e tests. */
export interface PeerTime {
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const REAL_TIME: PeerTime = { now: () => Date.now(), sleep: delay };

/**
 * A legacy compute node as `server.py` of the OLD code base behaves: `/sink`, decrypt the history,
 * answer with the history plus the assistant turn, encrypted to the outer client key, `/source`.
 */
export class LegacyNodeSim {
  readonly identity: Identity = newIdentity();
  /** Every raw work item received, for byte-identity assertions. */
  readonly received: Array<Record<string, unknown>> = [];

  constructor(
    protected baseUrl: string,
    protected readonly opts: { token?: string; replyPadding?: Padding; transport?: Transport } = {},
  ) {}

  /** The library peer, made per call: a copy of the simulator with another `baseUrl` uses its own. */
  private get peer(): LegacyNode<WireResult> {
    return new LegacyNode(
      sender(this.baseUrl, this.opts.transport ?? direct, this.opts.token),
      this.identity,
    );
  }

  get key(): string {
    return this.identity.publicKeyB64;
  }

  sink(extra: Record<string, unknown> = {}): Promise<WireResult> {
    return this.peer.sink(extra);
  }

  /** One `/sink`; when work came back, answers it. Returns whether work was handled. */
  async serveOnce(): Promise<boolean> {
    return (await this.serve(await this.sink())) !== null;
  }

  /** Answers the work a `/sink` answer carried (null when it carried none). */
  protected async serve(res: WireResult): Promise<ChatMessage[] | null> {
    if (res.status !== 200 || typeof res.body.chat_history !== 'string') {
      return null;
    }
    this.received.push(res.body);
    const work = this.peer.openWork(res.body) as LegacyWork;
    const reply = [
      ...work.history,
      { role: 'assistant' as const, content: simulatedAnswer(work.history) },
    ];
    const posted = await this.peer.source(work.clientKey, reply, this.opts.replyPadding ?? 'oaep');
    if (posted.status !== 200) {
      throw new Error(`/source answered ${posted.status}: ${posted.text}`);
    }
    return reply;
  }
}

/** A legacy client (`client.py`): `/next_server`, `/faucet`, poll `/retrieve`. */
export class LegacyClientSim {
  readonly identity: Identity = newIdentity();
  /** Ciphertext fields sent with the last `/faucet`. */
  lastSent: Sealed | null = null;

  constructor(
    private readonly baseUrl: string,
    private readonly opts: { padding?: Padding; pollMs?: number; transport?: Transport } = {},
  ) {}

  /** The library peer, made per call: a copy of the simulator with another `baseUrl` uses its own. */
  protected get peer(): LegacyClient<WireResult> {
    return new LegacyClient(
      sender(this.baseUrl, this.opts.transport ?? direct, undefined),
      this.identity,
    );
  }

  get key(): string {
    return this.identity.publicKeyB64;
  }

  async send(serverKey: string, history: ChatMessage[]): Promise<WireResult> {
    const { sealed, reply } = await this.peer.faucet(
      serverKey,
      history,
      this.opts.padding ?? 'oaep',
    );
    this.lastSent = sealed;
    return reply;
  }

  /** Polls `/retrieve` until an answer arrives (or `attempts` run out) and decrypts it. */
  async receive(attempts = 100): Promise<ChatMessage[]> {
    for (let i = 0; i < attempts; i += 1) {
      const res = await this.peer.retrieve();
      const answer = res.status === 200 ? this.peer.openAnswer(res.body) : null;
      if (answer !== null) {
        return answer;
      }
      await delay(this.opts.pollMs ?? 20);
    }
    throw new Error('no answer');
  }
}

/** Today's compute node (`server.py` API v1 path): register, long-poll, control, progress, respond. */
export class V1NodeSim {
  readonly identity: Identity = newIdentity();
  credential: string | null = null;

  constructor(
    protected baseUrl: string,
    protected readonly opts: {
      token?: string;
      replyPadding?: Padding;
      capabilities?: Record<string, unknown>;
      transport?: Transport;
    } = {},
  ) {}

  /** The library peer, made per call: a copy of the simulator with another `baseUrl` uses its own. */
  private get peer(): V1Node<WireResult> {
    return new V1Node(
      (request: RelayRequest) =>
        this.send(request.method, request.path, request.body, request.mayHold),
      this.identity,
    );
  }

  protected send(
    method: string,
    path: string,
    body: unknown,
    mayHold = false,
  ): Promise<WireResult> {
    return (this.opts.transport ?? direct)(
      this.baseUrl,
      method,
      path,
      body,
      this.headers(),
      mayHold,
    );
  }

  get key(): string {
    return this.identity.publicKeyB64;
  }

  private headers(): Record<string, string> {
    return this.opts.token ? { [NODE_TOKEN_HEADER]: this.opts.token } : {};
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
    const res = await this.peer.register(this.capabilities());
    if (typeof res.body.control_credential === 'string') {
      this.credential = res.body.control_credential;
    }
    return res;
  }

  poll(): Promise<WireResult> {
    return this.peer.poll(this.capabilities());
  }

  /** Polls once; decrypts and checks the work item like the real node (inner key == outer key). */
  async take(): Promise<V1Work | null> {
    const res = await this.poll();
    if (res.status !== 200) {
      throw new Error(`poll answered ${res.status}: ${res.text}`);
    }
    return this.open(res.body);
  }

  /** Decrypts a poll answer's work item, or null when it carried none. */
  protected open(raw: Record<string, unknown>): V1Work | null {
    if (typeof raw.chat_history !== 'string') {
      return null;
    }
    const work = this.peer.openWork(raw);
    if (work === null || !workMatches(work)) {
      throw new Error('inner envelope does not match the outer fields');
    }
    return work;
  }

  control(
    requestId: string,
    acknowledge = false,
    credential = this.credential,
  ): Promise<WireResult> {
    return this.peer.control(requestId, credential, acknowledge);
  }

  progress(work: V1Work, progress: Record<string, unknown>): Promise<WireResult> {
    return this.peer.progress(work, progress, this.credential, this.opts.replyPadding ?? 'pkcs1');
  }

  /** Answers a work item the way HEAD nodes do (PKCS#1 v1.5 wrap unless told otherwise). */
  respond(work: V1Work, content?: string): Promise<WireResult> {
    const request = work.inner.api_v1_request as { messages: ChatMessage[] };
    return this.peer.respond(
      work,
      {
        message: { role: 'assistant', content: content ?? simulatedAnswer(request.messages) },
        finish_reason: 'stop',
        usage: { prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 },
      },
      this.opts.replyPadding ?? 'pkcs1',
    );
  }

  unregister(credential = this.credential): Promise<WireResult> {
    return this.peer.unregister(credential);
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
    protected readonly baseUrl: string,
    protected readonly opts: { padding?: Padding; transport?: Transport } = {},
  ) {}

  /** The library peer, made per call: a copy of the simulator with another `baseUrl` uses its own. */
  private get peer(): V1Client<WireResult> {
    return new V1Client(
      sender(this.baseUrl, this.opts.transport ?? direct, undefined),
      this.identity,
    );
  }

  get key(): string {
    return this.identity.publicKeyB64;
  }

  next(model = 'qwen3-8b-instruct', tier = '8k-fast'): Promise<WireResult> {
    return this.peer.next(model, tier);
  }

  /** Submits one message; `requestId` repeats an earlier submission (a retry after a 503). */
  submit(
    serverKey: string,
    content: string,
    extra: Record<string, unknown> = {},
    requestId?: string,
  ): Promise<V1Submission> {
    return this.submitMessages(serverKey, [{ role: 'user', content }], extra, requestId);
  }

  /** Submits a whole conversation so far (what today's clients send with every message). */
  async submitMessages(
    serverKey: string,
    messages: ChatMessage[],
    extra: Record<string, unknown> = {},
    requestId = randomBytes(16).toString('hex'),
  ): Promise<V1Submission> {
    const cancelToken = randomBytes(16).toString('hex');
    const { sealed, reply } = await this.peer.submit(
      serverKey,
      {
        model: 'qwen3-8b-instruct',
        messages,
        options: { max_tokens: 256 },
        routing: { context_tier: '8k-fast' },
      },
      { requestId, cancelToken },
      this.opts.padding ?? 'oaep',
      extra,
    );
    return { requestId, cancelToken, sealed, response: reply };
  }

  retrieve(requestId?: string, headers: Record<string, string> = {}): Promise<WireResult> {
    return this.peer.retrieve(requestId, headers);
  }

  /** Decrypts a 200 retrieve body and checks the inner identity fields like the web page. */
  openResponse(
    body: Record<string, unknown>,
    requestId: string,
  ): { content: string; padding: Padding } {
    const { inner, padding } = this.peer.openAnswer(body);
    if (!this.peer.answerMatches(inner, requestId)) {
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
    return this.peer.cancel(requestId, cancelToken, extra);
  }
}

// ------------------------------------------------------------------ peers with their real timing

/** What one message of a simulated conversation came to. */
export interface TurnResult {
  index: number;
  answered: boolean;
  /** Send (or first `/servers/next`) to decrypted answer, in the peer's time. */
  latencyMs: number;
  content: string | null;
  /** What the client saw instead of an answer. */
  failure: string | null;
  /** Nodes tried (1 + fail-overs). */
  attempts: number;
}

/**
 * Today's compute node (upstream `server.py` at HEAD, API v1) with the timing measured from the
 * real one (spec §7.8): register (lease L, refresh once the last heartbeat is older than
 * max(min(0.8 L, L - 1), 0.5 L)), long-poll `/servers/poll`; on work, `/servers/control` about
 * 60 ms later and the answer about 0.3 s after that (the mock model); then it sleeps
 * `next_ping_in_x_seconds` of the work response, which the existing relay never sends, so it
 * sleeps its whole lease: silent for exactly L. Then it re-registers (`lease_expiry_risk`) and
 * long-polls again. A 404 on a poll makes it register again. `extraSilenceMs` stretches each
 * silence (a poll that timed out, a slow network). With `relays`, each silence ends on the next
 * relay of the list (several replicas behind one Service).
 */
export class HeadNodeSim extends V1NodeSim {
  /** Every call the node made, with the node's time: relay, route and status. */
  readonly events: Array<{ at: number; relay: string; route: string; status: number }> = [];
  /** Request ids answered, in order. */
  readonly answered: string[] = [];
  private leaseMs = 30_000;
  private lastHeartbeat = 0;
  private markRegistered: () => void = () => undefined;
  /** Resolves once the node's first registration was accepted. */
  readonly registered = new Promise<void>((resolve) => {
    this.markRegistered = resolve;
  });

  constructor(
    baseUrl: string,
    opts: ConstructorParameters<typeof V1NodeSim>[1] & {
      time?: PeerTime;
      extraSilenceMs?: number;
      relays?: string[];
      controlAfterMs?: number;
      answerAfterMs?: number;
    } = {},
  ) {
    super(baseUrl, opts);
    this.time = opts.time ?? REAL_TIME;
    this.extraSilenceMs = opts.extraSilenceMs ?? 0;
    this.relays = opts.relays ?? [baseUrl];
    this.controlAfterMs = opts.controlAfterMs ?? 60;
    this.answerAfterMs = opts.answerAfterMs ?? 240;
  }

  private readonly time: PeerTime;
  private readonly extraSilenceMs: number;
  private readonly relays: string[];
  private readonly controlAfterMs: number;
  private readonly answerAfterMs: number;
  private relayIndex = 0;

  protected override async send(
    method: string,
    path: string,
    body: unknown,
    mayHold = false,
  ): Promise<WireResult> {
    const relay = this.baseUrl;
    const res = await super.send(method, path, body, mayHold);
    this.events.push({
      relay,
      at: this.time.now(),
      route: path.replace('/api/v1/relay', ''),
      status: res.status,
    });
    return res;
  }

  private async registerNow(): Promise<void> {
    const res = await this.register();
    if (res.status !== 200) {
      throw new Error(`register answered ${res.status}: ${res.text}`);
    }
    const lease = Number(res.body.next_ping_in_x_seconds);
    if (Number.isFinite(lease) && lease > 0) {
      this.leaseMs = lease * 1000;
    }
    this.lastHeartbeat = this.time.now();
    this.markRegistered();
  }

  private refreshAfterMs(): number {
    const lease = this.leaseMs;
    return Math.max(Math.min(0.8 * lease, lease - 1000), 0.5 * lease);
  }

  /** Serves until `signal` aborts: the real node's loop, one poll at a time. */
  async run(signal: AbortSignal): Promise<void> {
    await this.registerNow();
    while (!signal.aborted) {
      if (this.time.now() - this.lastHeartbeat > this.refreshAfterMs()) {
        await this.registerNow(); // reason lease_expiry_risk
      }
      const res = await this.poll();
      if (signal.aborted) {
        return;
      }
      if (res.status === 404) {
        await this.registerNow();
        continue;
      }
      if (res.status !== 200) {
        await this.time.sleep(1000);
        continue;
      }
      this.lastHeartbeat = this.time.now();
      const work = this.open(res.body);
      if (!work) {
        continue; // no work: next_ping 0, poll again at once
      }
      await this.time.sleep(this.controlAfterMs);
      await this.control(work.requestId);
      await this.time.sleep(this.answerAfterMs);
      const posted = await this.respond(work);
      if (posted.status === 200) {
        this.answered.push(work.requestId);
      }
      const hint = res.body.next_ping_in_x_seconds;
      const silence = typeof hint === 'number' ? hint * 1000 : this.leaseMs;
      await this.time.sleep(silence + (silence > 0 ? this.extraSilenceMs : 0));
      if (silence > 0 && this.relays.length > 1) {
        this.relayIndex = (this.relayIndex + 1) % this.relays.length;
        this.baseUrl = this.relays[this.relayIndex] as string;
      }
    }
  }
}

/**
 * Today's client (`client.py` at upstream HEAD, API v1): for each message `/servers/next`, then
 * `/requests` with the whole conversation so far, then `/responses/retrieve` every `pollMs`
 * (2 s in client.py) until the answer; the next message goes out right after the answer. A 404 or
 * 410 fails over to another node up to `failovers` times (as the web page does; client.py itself
 * keeps polling a 410 until its own timeout).
 */
export class HeadClientSim extends V1ClientSim {
  constructor(
    baseUrl: string,
    opts: ConstructorParameters<typeof V1ClientSim>[1] & {
      time?: PeerTime;
      pollMs?: number;
      timeoutMs?: number;
      failovers?: number;
    } = {},
  ) {
    super(baseUrl, opts);
    this.time = opts.time ?? REAL_TIME;
    this.pollMs = opts.pollMs ?? 2000;
    this.timeoutMs = opts.timeoutMs ?? 485_000;
    this.failovers = opts.failovers ?? 0;
  }

  private readonly time: PeerTime;
  private readonly pollMs: number;
  private readonly timeoutMs: number;
  private readonly failovers: number;

  /** Holds a conversation of `prompts`, one message right after the previous answer. */
  async converse(prompts: string[]): Promise<TurnResult[]> {
    const history: ChatMessage[] = [];
    const results: TurnResult[] = [];
    for (const [index, prompt] of prompts.entries()) {
      history.push({ role: 'user', content: prompt });
      const result = await this.turn(index, history);
      results.push(result);
      if (result.content !== null) {
        history.push({ role: 'assistant', content: result.content });
      }
    }
    return results;
  }

  private async turn(index: number, history: ChatMessage[]): Promise<TurnResult> {
    const started = this.time.now();
    const done = (
      failure: string | null,
      content: string | null,
      attempts: number,
    ): TurnResult => ({
      index,
      answered: content !== null,
      latencyMs: this.time.now() - started,
      content,
      failure,
      attempts,
    });
    let attempts = 0;
    let lastFailure = '';
    while (attempts <= this.failovers) {
      attempts += 1;
      const next = await this.next();
      if (next.status !== 200) {
        return done(
          `servers/next ${next.status} ${String((next.body.error as { code?: string })?.code)}`,
          null,
          attempts,
        );
      }
      const submitted = await this.submitMessages(next.body.server_public_key as string, history);
      if (submitted.response.status !== 200) {
        lastFailure = `requests ${submitted.response.status}`;
        continue;
      }
      for (;;) {
        const res = await this.retrieve(submitted.requestId);
        if (res.status === 200) {
          return done(null, this.openResponse(res.body, submitted.requestId).content, attempts);
        }
        if (res.status !== 202) {
          const error = res.body.error as { status?: string; reason?: string } | undefined;
          lastFailure = `retrieve ${res.status} ${error?.status ?? ''}/${error?.reason ?? ''}`;
          break;
        }
        if (this.time.now() - started >= this.timeoutMs) {
          return done('timed out', null, attempts);
        }
        await this.time.sleep(this.pollMs);
      }
    }
    return done(lastFailure, null, attempts);
  }
}

/**
 * The legacy compute node (upstream `server.py` of Dec 2025): `/sink`; with work, decrypt, answer
 * with the history plus the assistant turn, `/source`; then sleep `next_ping_in_x_seconds` of the
 * `/sink` answer (10 s from the existing relay), so it is silent for that long after every job.
 */
export class OldNodeSim extends LegacyNodeSim {
  readonly answeredCount = { value: 0 };
  private markRegistered: () => void = () => undefined;
  /** Resolves once the relay accepted the node's first `/sink`. */
  readonly registered = new Promise<void>((resolve) => {
    this.markRegistered = resolve;
  });

  constructor(
    baseUrl: string,
    opts: ConstructorParameters<typeof LegacyNodeSim>[1] & {
      time?: PeerTime;
      workMs?: number;
      /** Each silence after a job ends on the next relay of the list (replicas of one Service). */
      relays?: string[];
    } = {},
  ) {
    super(baseUrl, opts);
    this.time = opts.time ?? REAL_TIME;
    this.workMs = opts.workMs ?? 300;
    this.relays = opts.relays ?? [baseUrl];
  }

  private readonly time: PeerTime;
  private readonly workMs: number;
  private readonly relays: string[];
  private relayIndex = 0;

  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      const res = await this.sink();
      if (signal.aborted) {
        return;
      }
      if (res.status === 200) {
        this.markRegistered();
      }
      const worked = res.status === 200 && typeof res.body.chat_history === 'string';
      if (worked) {
        await this.time.sleep(this.workMs);
        if ((await this.serve(res)) !== null) {
          this.answeredCount.value += 1;
        }
      }
      const next = Number(res.body.next_ping_in_x_seconds);
      await this.time.sleep(res.status === 200 && Number.isFinite(next) ? next * 1000 : 10_000);
      if (worked && this.relays.length > 1) {
        this.relayIndex = (this.relayIndex + 1) % this.relays.length;
        this.baseUrl = this.relays[this.relayIndex] as string;
      }
    }
  }
}

/**
 * The legacy client (`client.py` of Dec 2025): `/next_server`, `/faucet` with the whole history,
 * `/retrieve` every `pollMs` (2 s) for up to `timeoutMs` (60 s); the next message right after.
 */
export class OldClientSim extends LegacyClientSim {
  constructor(
    relay: string,
    opts: ConstructorParameters<typeof LegacyClientSim>[1] & {
      time?: PeerTime;
      timeoutMs?: number;
    } = {},
  ) {
    super(relay, opts);
    this.time = opts.time ?? REAL_TIME;
    this.pollEveryMs = opts.pollMs ?? 2000;
    this.timeoutMs = opts.timeoutMs ?? 60_000;
  }

  private readonly time: PeerTime;
  private readonly pollEveryMs: number;
  private readonly timeoutMs: number;

  async converse(prompts: string[]): Promise<TurnResult[]> {
    let history: ChatMessage[] = [];
    const results: TurnResult[] = [];
    for (const [index, prompt] of prompts.entries()) {
      const started = this.time.now();
      const asked = [...history, { role: 'user' as const, content: prompt }];
      const result = (failure: string | null, content: string | null): TurnResult => ({
        index,
        answered: content !== null,
        latencyMs: this.time.now() - started,
        content,
        failure,
        attempts: 1,
      });
      const next = await this.peer.nextServer();
      if (next.status !== 200 || typeof next.body.server_public_key !== 'string') {
        results.push(result(`next_server ${next.status}`, null));
        history = asked;
        continue;
      }
      const sent = await this.sendVia(next.body.server_public_key, asked);
      if (sent.status !== 200) {
        results.push(result(`faucet ${sent.status}`, null));
        history = asked;
        continue;
      }
      let answer: ChatMessage[] | null = null;
      while (answer === null && this.time.now() - started < this.timeoutMs) {
        const res = await this.peer.retrieve();
        answer = res.status === 200 ? this.peer.openAnswer(res.body) : null;
        if (answer !== null) {
          break;
        }
        await this.time.sleep(this.pollEveryMs);
      }
      const last = answer?.[answer.length - 1];
      results.push(
        answer ? result(null, last?.content ?? '') : result('no answer within the timeout', null),
      );
      history = answer ?? asked;
    }
    return results;
  }

  /** `/faucet` as client.py sends it: always RSA-OAEP. */
  private async sendVia(serverKey: string, history: ChatMessage[]): Promise<WireResult> {
    const { sealed, reply } = await this.peer.faucet(serverKey, history, 'oaep');
    this.lastSent = sealed;
    return reply;
  }
}
