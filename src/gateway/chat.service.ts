import { Inject, Injectable } from '@nestjs/common';
import type { KeyObject } from 'node:crypto';
import type { CallerWatch } from '../common/client-gone.decorator';
import { CLOCK, type Clock } from '../common/clock';
import { WireResponse } from '../common/wire-response';
import { RelayConfig } from '../config/relay-config';
import { CatalogService } from './catalog.service';
import { DispatchService, type DispatchRequest } from './dispatch.service';
import { OpenAiError } from '../common/relay-error';
import { GatewayErrors } from './gateway.errors';
import { openTextAsync, publicKeyFromB64, sealText } from '../common/hybrid.crypto';
import { GatewayKeysService } from './keys.service';
import { UnwrapPoolService } from './unwrap-pool.service';
import {
  chatCompletionId,
  finishReasonOf,
  pythonJson,
  textCompletionId,
  unixSeconds,
  usageOf,
  type NodeReply,
} from './openai.format';
import {
  canonicalModel,
  checkChatEnvelope,
  checkCompletion,
  checkMessages,
  parseDecrypted,
  textsOf,
  type ApiVersion,
  type ChatEnvelope,
  type ChatMessage,
} from './request.validation';
import { SseService } from './sse.service';

/** gateway.md §2.4: on 2xx v1 chat and completions only. */
const V1_HEADERS = {
  'X-Tokenplace-API-V1-Provider': 'DistributedApiV1ComputeProvider',
  'X-Tokenplace-API-V1-Resolved-Provider-Path': 'distributed',
  'X-Tokenplace-API-V1-Execution-Backend-Path': 'distributed_relay_e2ee',
  'X-Tokenplace-API-V1-Stream-Mode': 'non-streaming',
};

const DESKTOP_BRIDGE = {
  inference_target: 'desktop_bridge_api_v1_e2ee',
  relay_path: 'api_v1_e2ee',
};

/**
 * Chat and text completions on every prefix: the existing relay's checks and bodies, the
 * encrypted mode with the relay's own key, and dispatch to compute nodes. The plaintext a client
 * sends lives in this request's memory only; nothing of it is stored or logged.
 */
@Injectable()
export class ChatService {
  constructor(
    private readonly dispatch: DispatchService,
    private readonly keys: GatewayKeysService,
    private readonly catalog: CatalogService,
    private readonly sse: SseService,
    private readonly config: RelayConfig,
    @Inject(CLOCK) private readonly clock: Clock,
    private readonly unwrapPool: UnwrapPoolService,
  ) {}

  /** `POST /api/v1/chat/completions` and `/v1/chat/completions`. */
  async v1Chat(body: unknown, caller: CallerWatch): Promise<WireResponse> {
    const env = checkChatEnvelope(body, 'v1');
    const messages = await this.messagesOf(env, 'v1');
    this.moderate(textsOf(messages));
    const replyKey = this.replyKeyOf(env, 'encryption_error');
    const model = canonicalModel(env.model);
    const bridge =
      env.encrypted &&
      env.metadata?.inference_target === DESKTOP_BRIDGE.inference_target &&
      env.metadata.relay_path === DESKTOP_BRIDGE.relay_path;
    const reply = await this.run(
      {
        model,
        messages,
        options: env.options,
        noNodeCode: bridge ? 'no_registered_compute_nodes' : 'no_compute_node_available',
      },
      caller,
    );
    const out = this.chatBody(env.model, messages, reply, env.metadata);
    return new WireResponse(200, this.sealReply(out, replyKey, 'encryption_error'), V1_HEADERS);
  }

  /** `POST /api/v2/chat/completions` and `/v2/chat/completions`: JSON, or SSE with `stream`. */
  async v2Chat(body: unknown, caller: CallerWatch): Promise<WireResponse | Response> {
    const env = checkChatEnvelope(body, 'v2', await this.catalog.knownToV2());
    const messages = await this.messagesOf(env, 'v2');
    this.moderate(textsOf(messages));
    if (messages.length === 0) {
      throw GatewayErrors.emptyMessages();
    }
    const request: DispatchRequest = {
      model: canonicalModel(env.model),
      messages,
      options: env.options,
      noNodeCode: 'no_compute_node_available',
    };
    if (env.stream) {
      return this.sse.chat(env, request, caller);
    }
    const replyKey = this.replyKeyOf(env, 'encryption_error');
    const reply = await this.run(request, caller);
    const out = this.chatBody(env.model, messages, reply, null);
    return new WireResponse(200, this.sealReply(out, replyKey, 'encryption_error'));
  }

  /** `POST /completions` on every prefix (gateway.md §3.5, §6.4). */
  async completion(api: ApiVersion, body: unknown, caller: CallerWatch): Promise<WireResponse> {
    const req = checkCompletion(body, api);
    if (api === 'v2' && !(await this.catalog.knownToV2())(req.model)) {
      throw GatewayErrors.v2ModelNotFound(req.model);
    }
    this.moderate([req.prompt]);
    if (!this.config.gateway.enabled) {
      throw GatewayErrors.disabled();
    }
    const replyKey =
      req.clientPublicKey === '' ? null : loadReplyKey(req.clientPublicKey, 'server_error');
    const messages: ChatMessage[] = [{ role: 'user', content: req.prompt }];
    const reply = await this.run(
      {
        model: canonicalModel(req.model),
        messages,
        options: req.options,
        noNodeCode: 'no_registered_compute_nodes',
      },
      caller,
    );
    const out = {
      id: textCompletionId(),
      object: 'text_completion',
      created: unixSeconds(this.clock.now()),
      model: req.model,
      choices: [{ index: 0, text: reply.content, finish_reason: finishReasonOf(reply) }],
      usage: usageOf(reply.usage, messages, reply.content, reply.toolCalls),
    };
    return new WireResponse(
      200,
      this.sealReply(out, replyKey, 'server_error'),
      api === 'v1' ? V1_HEADERS : {},
    );
  }

  private async run(request: DispatchRequest, caller: CallerWatch): Promise<NodeReply> {
    const d = await this.dispatch.begin(request, caller);
    return this.dispatch.await(d, caller);
  }

  /** Plain messages as sent, or the encrypted ones decrypted with the relay's key (rows 5–8). */
  private async messagesOf(env: ChatEnvelope, api: ApiVersion): Promise<ChatMessage[]> {
    if (env.sealed === null) {
      return checkMessages(env.messages, api);
    }
    if (!this.config.gateway.enabled) {
      throw GatewayErrors.disabled();
    }
    const key = await this.keys.relayKey();
    let text: string;
    try {
      text = (await openTextAsync(key.privateKey, env.sealed, 'oaep', this.unwrapPool.forRequests))
        .text;
    } catch (error) {
      throw error instanceof OpenAiError ? error : GatewayErrors.decrypt();
    }
    return checkMessages(parseDecrypted(text), api);
  }

  /** Content moderation (gateway.md §3.7): a case-insensitive substring match, off by default. */
  private moderate(texts: string[]): void {
    const { enabled, terms } = this.config.gateway.moderation;
    if (!enabled) {
      return;
    }
    const lowered = texts.map((t) => t.toLowerCase());
    const hit = terms.find((term) => lowered.some((t) => t.includes(term)));
    if (hit !== undefined) {
      throw GatewayErrors.blocked(hit);
    }
  }

  /**
   * The key an encrypted reply goes to, checked before any node works on the request (upstream
   * finds a bad key only after inference; the body is the same).
   */
  private replyKeyOf(env: ChatEnvelope, type: string): KeyObject | null {
    if (!env.encrypted || env.clientPublicKey === '') {
      return null;
    }
    return loadReplyKey(env.clientPublicKey, type);
  }

  private chatBody(
    requested: string,
    messages: ChatMessage[],
    reply: NodeReply,
    metadata: Record<string, unknown> | null,
  ): Record<string, unknown> {
    const message: Record<string, unknown> = { role: reply.role, content: reply.content };
    if (reply.toolCalls) {
      message.tool_calls = reply.toolCalls;
    }
    return {
      id: chatCompletionId(),
      object: 'chat.completion',
      created: unixSeconds(this.clock.now()),
      model: requested,
      choices: [{ index: 0, message, finish_reason: finishReasonOf(reply) }],
      usage: usageOf(reply.usage, messages, reply.content, reply.toolCalls),
      ...(metadata ? { metadata } : {}),
    };
  }

  /** gateway.md §4: the whole body, Python-serialised, AES + RSA PKCS#1 v1.5 to the client. */
  private sealReply(body: object, key: KeyObject | null, type: string): object {
    if (key === null) {
      return body;
    }
    try {
      return {
        encrypted: true,
        data: { encrypted: true, ...sealText(pythonJson(body), key, 'pkcs1') },
      };
    } catch {
      throw GatewayErrors.encryptReply(type);
    }
  }
}

function loadReplyKey(b64: string, type: string): KeyObject {
  try {
    return publicKeyFromB64(b64);
  } catch {
    throw GatewayErrors.replyKey(type);
  }
}
