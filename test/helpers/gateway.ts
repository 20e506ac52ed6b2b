import {
  newIdentity,
  openAny,
  seal,
  type Identity,
  type Padding,
} from '../../src/peer/peer.crypto';
import { PROTOCOL_ID } from '../../src/peer/relay.protocol';
import { simulatedAnswer, V1NodeSim, type ChatMessage, type V1Work } from './simulators';
import { call, type WireResult } from './test-app';

const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** What a simulated node does with one work item. */
export type NodeBehaviour =
  | { kind: 'answer'; content?: string; finishReason?: string; usage?: unknown }
  | { kind: 'error'; code: string }
  | { kind: 'garbage' }
  | { kind: 'wrong_request_id' }
  | { kind: 'silent' };

/**
 * Today's compute node on its measured timing (protocol.md §7.8): long-polls, calls
 * `/servers/control` ~60 ms after the poll returns, answers ~0.3 s later with PKCS#1 v1.5.
 * Runs until stopped; every work item it saw is kept.
 */
export class HeadNodeLoop {
  readonly sim: V1NodeSim;
  readonly works: V1Work[] = [];
  readonly controls: Array<Record<string, unknown>> = [];
  private stopped = false;
  private loop: Promise<void> | null = null;

  constructor(
    private readonly baseUrl: string,
    private readonly behave: (work: V1Work) => NodeBehaviour = () => ({ kind: 'answer' }),
    opts: {
      token?: string;
      replyPadding?: Padding;
      controlDelayMs?: number;
      answerDelayMs?: number;
    } = {},
  ) {
    this.sim = new V1NodeSim(baseUrl, { token: opts.token, replyPadding: opts.replyPadding });
    this.token = opts.token;
    this.replyPadding = opts.replyPadding ?? 'pkcs1';
    this.controlDelayMs = opts.controlDelayMs ?? 60;
    this.answerDelayMs = opts.answerDelayMs ?? 300;
  }

  private readonly replyPadding: Padding;
  private readonly token: string | undefined;
  private readonly controlDelayMs: number;
  private readonly answerDelayMs: number;

  get key(): string {
    return this.sim.key;
  }

  async start(): Promise<this> {
    const res = await this.sim.register();
    if (res.status !== 200) {
      throw new Error(`register answered ${res.status}`);
    }
    this.loop = this.run();
    return this;
  }

  /** Stops and unregisters, which ends a held long-poll at once (404). */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.sim.unregister().catch(() => undefined);
    await this.loop?.catch(() => undefined);
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      let work: V1Work | null;
      try {
        work = await this.sim.take();
      } catch {
        await delay(20);
        continue;
      }
      if (work === null || this.stopped) {
        continue;
      }
      this.works.push(work);
      await delay(this.controlDelayMs);
      const control = await this.sim.control(work.requestId);
      this.controls.push(control.body);
      const behaviour = this.behave(work);
      if (behaviour.kind === 'silent') {
        continue;
      }
      await delay(this.answerDelayMs);
      await this.answer(work, behaviour);
    }
  }

  private answer(work: V1Work, b: NodeBehaviour): Promise<WireResult> {
    const request = work.inner.api_v1_request as { messages: ChatMessage[] };
    let inner: unknown;
    switch (b.kind) {
      case 'answer':
        inner = {
          protocol: PROTOCOL_ID,
          version: 1,
          request_id: work.requestId,
          client_public_key: work.clientKey,
          api_v1_response: {
            message: { role: 'assistant', content: b.content ?? simulatedAnswer(request.messages) },
            finish_reason: b.finishReason ?? 'stop',
            usage: b.usage ?? { prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 },
          },
        };
        break;
      case 'error':
        inner = {
          protocol: PROTOCOL_ID,
          version: 1,
          request_id: work.requestId,
          client_public_key: work.clientKey,
          api_v1_response: { error: { code: b.code, message: 'refused' } },
        };
        break;
      case 'wrong_request_id':
        inner = {
          protocol: PROTOCOL_ID,
          version: 1,
          request_id: 'api-v1-someone-else',
          client_public_key: work.clientKey,
          api_v1_response: { message: { role: 'assistant', content: 'x' } },
        };
        break;
      case 'garbage':
      case 'silent':
        inner = 'not an envelope';
        break;
      default: {
        const never: never = b;
        return never;
      }
    }
    const sealed = seal(inner, work.clientKey, this.replyPadding);
    return call(
      this.baseUrl,
      'POST',
      '/api/v1/relay/responses',
      {
        client_public_key: work.clientKey,
        request_id: work.requestId,
        protocol: PROTOCOL_ID,
        version: 1,
        chat_history: b.kind === 'garbage' ? sealed.ciphertext.slice(0, 24) : sealed.ciphertext,
        cipherkey: sealed.cipherkey,
        iv: sealed.iv,
      },
      this.token === undefined ? {} : { 'X-Relay-Server-Token': this.token },
    );
  }
}

/** A client of the gateway's encrypted mode (gateway.md §4), with its own key. */
export class EncryptedClient {
  readonly identity: Identity = newIdentity();

  constructor(private readonly baseUrl: string) {}

  async relayKey(prefix = '/api/v1'): Promise<string> {
    const res = await call(this.baseUrl, 'GET', `${prefix}/public-key`);
    return res.body.public_key as string;
  }

  /** An encrypted chat body: the messages array sealed to the relay's key. */
  async body(
    messages: unknown,
    opts: {
      padding?: Padding;
      prefix?: string;
      extra?: Record<string, unknown>;
      key?: string;
    } = {},
  ): Promise<Record<string, unknown>> {
    const relayKey = opts.key ?? (await this.relayKey(opts.prefix));
    return {
      model: 'llama-3-8b-instruct',
      encrypted: true,
      client_public_key: this.identity.publicKeyB64,
      messages: seal(messages, relayKey, opts.padding ?? 'oaep'),
      ...opts.extra,
    };
  }

  /** Decrypts `{"encrypted":true,"data":{ciphertext,cipherkey,iv}}`. */
  open(body: Record<string, unknown>): { value: Record<string, unknown>; padding: Padding } {
    const data = body.data as { ciphertext: string; cipherkey: string; iv: string };
    const { value, padding } = openAny(this.identity, data);
    return { value: value as Record<string, unknown>, padding };
  }
}

/** The `data:` payloads of an SSE body, in order (comments skipped). */
export function sseData(text: string): string[] {
  return text
    .split('\n\n')
    .filter((block) => block.startsWith('data: '))
    .map((block) => block.slice('data: '.length));
}
