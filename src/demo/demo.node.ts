import { randomInt, type KeyObject } from 'node:crypto';
import { Agent, request as httpRequest } from 'node:http';
import { Logger } from '@nestjs/common';
import { isPlainObject } from '../common/envelope-body';
import { fingerprint } from '../common/ids';
import { publicKeyFromB64 } from '../common/hybrid.crypto';
import { estimateTokens } from '../gateway/openai.format';
import { newIdentityAsync, type RsaKey } from '../peer/peer.crypto';
import type { Json, RelayReply, RelayRequest } from '../peer/relay.client';
import { V1Node } from '../peer/v1.peer';
import { NODE_TOKEN_HEADER, PROTOCOL_ID, PROTOCOL_VERSION } from '../peer/relay.protocol';
import { DEFAULT_MODEL } from '../registry/capabilities';

/** The existing relay's mock replies (gateway.md §5.2), verbatim. */
export const MOCK_REPLIES = [
  'Mock response: Paris is the capital of France and one of the most visited cities in the world.',
  'Mock response: The capital of France is Paris, known for its iconic Eiffel Tower and the Louvre Museum.',
  "Mock response: Paris, the City of Light, serves as France's capital and cultural center.",
] as const;

const CAPABILITIES = {
  api_version: 'v1',
  supported_model_ids: [DEFAULT_MODEL],
  active_context_tier: '8k-fast',
  maximum_total_context_tokens: 8192,
  default_output_token_reservation: 1024,
  maximum_output_tokens: 8192,
  max_concurrency: 1,
  backend_class: 'cpu',
};

export interface DemoNodeOptions {
  /** The relay's own listener, e.g. `http://127.0.0.1:5010`. */
  baseUrl: string;
  /** `X-Relay-Server-Token` when the relay requires one. */
  token: string | null;
  /** Pause after a failed call before trying again. */
  retryMs?: number;
  /** The node's key, when it was started early (DemoNodeService makes it while the app boots). */
  key?: Promise<RsaKey>;
}

/** An RSA-2048 node key, made off the event loop. */
export function newDemoNodeKey(): Promise<RsaKey> {
  return newIdentityAsync();
}

/**
 * A compute node that runs inside the relay process for demos and tests (`--use_mock_llm`,
 * `USE_MOCK_LLM=1`). It is a node like any other: an HTTP client of the relay's own listener that
 * registers, long-polls, calls `/servers/control`, decrypts with its own RSA key and answers with
 * the existing relay's mock texts, encrypted to the client. The relay stays blind to its traffic.
 * What it says on the wire is the peer library's API v1 node (`peer/relay.client`).
 */
export class DemoNode {
  private readonly logger = new Logger('DemoNode');
  private readonly stopper = new AbortController();
  private key: RsaKey | null = null;
  private peer: V1Node | null = null;
  private credential: string | null = null;
  /** Set while it unregisters on stop: that call gets a shorter timeout. */
  private leaving = false;
  private loop: Promise<void> | null = null;
  /** Its own keep-alive connections, closed on stop so the relay's shutdown never waits on them. */
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 4 });
  /** Work items answered (tests and the boot log). */
  answered = 0;
  private lastClient: { b64: string; key: KeyObject } | null = null;

  constructor(private readonly opts: DemoNodeOptions) {}

  get publicKey(): string | null {
    return this.key?.publicKeyB64 ?? null;
  }

  /** Generates the node's key, registers, and starts the poll loop in the background. */
  async start(): Promise<void> {
    this.key = await (this.opts.key ?? newDemoNodeKey());
    this.peer = new V1Node((request) => this.call(request), this.key);
    await this.register();
    this.logger.log({
      msg: 'demo compute node registered',
      node: fingerprint(this.key.publicKeyB64),
      models: CAPABILITIES.supported_model_ids,
      relay: this.opts.baseUrl,
    });
    this.loop = this.run();
  }

  /** Stops polling and unregisters (SIGTERM, tests). */
  async stop(): Promise<void> {
    if (this.stopper.signal.aborted) {
      return;
    }
    this.stopper.abort();
    await this.loop?.catch(() => undefined);
    if (this.peer && this.credential) {
      this.leaving = true;
      try {
        await this.peer.unregister(this.credential);
        this.logger.log({ msg: 'demo compute node unregistered' });
      } catch {
        // The relay is going away as well.
      }
    }
    this.agent.destroy();
  }

  private get stopped(): boolean {
    return this.stopper.signal.aborted;
  }

  private async register(): Promise<void> {
    const res = await (this.peer as V1Node).register(CAPABILITIES);
    if (res.status !== 200) {
      throw new Error(`demo node registration answered ${res.status}`);
    }
    if (typeof res.body.control_credential === 'string') {
      this.credential = res.body.control_credential;
    }
  }

  private async run(): Promise<void> {
    const peer = this.peer as V1Node;
    while (!this.stopped) {
      try {
        const res = await peer.poll(CAPABILITIES);
        if (res.status === 404) {
          await this.register();
        } else if (res.status === 200 && typeof res.body.chat_history === 'string') {
          await this.serve(res.body);
        } else if (res.status !== 200) {
          await this.pause();
        }
      } catch {
        if (!this.stopped) {
          await this.pause();
        }
      }
    }
  }

  /** One work item, as today's node handles it: checks, control, answer. */
  private async serve(body: Json): Promise<void> {
    const peer = this.peer as V1Node;
    const requestId = body.request_id;
    const clientKey = body.client_public_key;
    if (
      body.protocol !== PROTOCOL_ID ||
      body.version !== PROTOCOL_VERSION ||
      typeof requestId !== 'string' ||
      typeof clientKey !== 'string' ||
      typeof body.cipherkey !== 'string' ||
      typeof body.iv !== 'string'
    ) {
      return; // not API v1 E2EE work: today's nodes ignore it too
    }
    let work;
    try {
      // Off the event loop it shares with the relay (OAEP through WebCrypto).
      work = await peer.openWorkAsync(body);
    } catch {
      return; // not for this node's key
    }
    if (work === null) {
      return;
    }
    const control = await peer.control(requestId, this.credential);
    const state = control.body.status;
    if (state === 'cancelled' || state === 'expired') {
      await peer.control(requestId, this.credential, true);
      return;
    }
    const posted = await peer.respond(
      work,
      this.answer(work.inner, requestId, clientKey),
      // Reply the way the client wrapped its request: JSEncrypt-era clients read only PKCS#1 v1.5.
      work.padding,
      this.clientKeyObject(clientKey),
    );
    if (posted.status === 200) {
      this.answered += 1;
    }
  }

  /**
   * The client's parsed key. Gateway chats of one relay process share one client key, so the last
   * one is kept (a PEM parse costs 0.7 ms on Node 20); any other key is parsed as it comes.
   */
  private clientKeyObject(clientKey: string): KeyObject {
    if (this.lastClient?.b64 !== clientKey) {
      this.lastClient = { b64: clientKey, key: publicKeyFromB64(clientKey) };
    }
    return this.lastClient.key;
  }

  /** The mock answer, or the node's encrypted error for a request it must refuse (§6.4). */
  private answer(inner: unknown, requestId: string, clientKey: string): Json {
    const request = isPlainObject(inner) ? inner.api_v1_request : undefined;
    if (
      !isPlainObject(inner) ||
      inner.protocol !== PROTOCOL_ID ||
      inner.request_id !== requestId ||
      typeof inner.client_public_key !== 'string' ||
      inner.client_public_key.trim() !== clientKey.trim() ||
      !isPlainObject(request) ||
      !Array.isArray(request.messages)
    ) {
      return {
        error: {
          code: 'compute_node_invalid_request',
          message: 'The request envelope does not match this request.',
        },
      };
    }
    const content = MOCK_REPLIES[randomInt(MOCK_REPLIES.length)] as string;
    const prompt = (request.messages as unknown[]).reduce<number>((sum, m) => {
      const text = isPlainObject(m) && typeof m.content === 'string' ? m.content : '';
      return sum + estimateTokens(text);
    }, 0);
    const completion = estimateTokens(content);
    return {
      message: { role: 'assistant', content },
      finish_reason: 'stop',
      usage: {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
      },
    };
  }

  private pause(): Promise<void> {
    return new Promise((resolve) => {
      const signal = this.stopper.signal;
      const done = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, this.opts.retryMs ?? 1000);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  /** The node's way of sending: its own keep-alive agent; a long-poll ends when it stops. */
  private call(request: RelayRequest): Promise<RelayReply> {
    const timeoutMs = request.mayHold ? 60_000 : this.leaving ? 5000 : 10_000;
    const url = new URL(request.path, this.opts.baseUrl);
    const payload = request.body === undefined ? '' : JSON.stringify(request.body);
    return new Promise((resolve, reject) => {
      const req = httpRequest(
        url,
        {
          method: request.method,
          agent: this.agent,
          timeout: timeoutMs,
          signal: request.mayHold ? this.stopper.signal : undefined,
          headers: {
            'content-type': 'application/json',
            'content-length': Buffer.byteLength(payload),
            ...(request.asNode && this.opts.token ? { [NODE_TOKEN_HEADER]: this.opts.token } : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', reject);
          res.on('end', () => {
            let parsed: unknown = null;
            try {
              parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
            } catch {
              // not JSON
            }
            resolve({ status: res.statusCode ?? 0, body: isPlainObject(parsed) ? parsed : {} });
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', reject);
      req.end(payload);
    });
  }
}
