import { randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import { ReadableStream as WebReadableStream } from 'node:stream/web';
import { Inject, Injectable } from '@nestjs/common';
import type { CallerWatch } from '../common/client-gone.decorator';
import { CLOCK, type Clock } from '../common/clock';
import { RelayError } from '../common/relay-error';
import { openAiBody } from '../edge/relay-exception.filter';
import { DispatchService, type Dispatch, type DispatchRequest } from './dispatch.service';
import { GatewayErrors } from './gateway.errors';
import { isStrictBase64, publicKeyFromB64, sealWithKey, wrapKey } from '../common/hybrid.crypto';
import {
  chatCompletionId,
  finishReasonOf,
  pythonJson,
  unixSeconds,
  type NodeReply,
} from './openai.format';
import type { ChatEnvelope } from './request.validation';

/** gateway.md §6.3: content goes out in slices of at most this many code points. */
const SLICE_CODE_POINTS = 512;
/** An SSE comment this often keeps proxies and clients from timing out while the node works. */
export const KEEP_ALIVE_MS = 15_000;

const SSE_HEADERS = {
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-cache',
};

const data = (json: string): string => `data: ${json}\n\n`;

function slices(text: string): string[] {
  const points = [...text];
  const out: string[] = [];
  for (let i = 0; i < points.length; i += SLICE_CODE_POINTS) {
    out.push(points.slice(i, i + SLICE_CODE_POINTS).join(''));
  }
  return out;
}

/** Turns chunk objects into SSE lines, plain or encrypted with one stream key (§6.3). */
class ChunkWriter {
  private readonly sessionId = `stream-${randomUUID()}`;
  private readonly aesKey = randomBytes(32);
  private first = true;

  constructor(private readonly clientKey: KeyObject | null) {}

  line(chunk: object): string {
    const json = pythonJson(chunk);
    if (this.clientKey === null) {
      return data(json);
    }
    const sealed: Record<string, unknown> = {
      encrypted: true,
      ...sealWithKey(json, this.aesKey),
      stream_session_id: this.sessionId,
    };
    if (this.first) {
      // The stream key goes out once, OAEP-wrapped (unlike every other reply, §6.3).
      sealed.cipherkey = wrapKey(this.aesKey, this.clientKey, 'oaep');
      this.first = false;
    }
    return data(
      pythonJson({
        event: 'delta',
        encrypted: true,
        stream_session_id: this.sessionId,
        data: sealed,
      }),
    );
  }
}

/**
 * API v2 streaming for API v1 nodes, which answer whole: the role chunk goes out at once, SSE
 * comments keep the stream alive (with the node's progress counts when it reports any), then the
 * content in ≤ 512-code-point chunks, the final chunk and `[DONE]`.
 */
@Injectable()
export class SseService {
  constructor(
    private readonly dispatch: DispatchService,
    @Inject(CLOCK) private readonly clock: Clock,
  ) {}

  async chat(env: ChatEnvelope, request: DispatchRequest, caller: CallerWatch): Promise<Response> {
    let clientKey: KeyObject | null = null;
    if (env.encrypted) {
      if (env.clientPublicKey === '') {
        throw GatewayErrors.streamKeyRequired();
      }
      if (!isStrictBase64(env.clientPublicKey)) {
        throw GatewayErrors.streamKeyBase64();
      }
      try {
        clientKey = publicKeyFromB64(env.clientPublicKey);
      } catch {
        // §6.3: a key that cannot be loaded gets a 200 stream holding only this event.
        return stream([data(pythonJson({ event: 'error', reason: 'encryption_failed' }))]);
      }
    }
    const dispatch = await this.dispatch.begin(request, caller);
    return stream(this.events(env.model, dispatch, new ChunkWriter(clientKey), caller));
  }

  private async *events(
    model: string,
    dispatch: Dispatch,
    writer: ChunkWriter,
    caller: CallerWatch,
  ): AsyncGenerator<string> {
    const base = {
      id: chatCompletionId(),
      object: 'chat.completion.chunk',
      created: unixSeconds(this.clock.now()),
      model,
    };
    const chunk = (delta: object, finish: string | null): object => ({
      ...base,
      choices: [{ index: 0, delta, finish_reason: finish }],
    });
    yield writer.line(chunk({ role: 'assistant' }, null));
    const pending: string[] = [];
    const state: { done: boolean; reply?: NodeReply; failure?: unknown; wake?: () => void } = {
      done: false,
    };
    const push = (line: string): void => {
      pending.push(line);
      state.wake?.();
    };
    void this.dispatch
      .await(dispatch, caller, {
        tickMs: KEEP_ALIVE_MS,
        onTick: () => push(': keep-alive\n\n'),
        onProgress: (p) => push(`: progress ${pythonJson(p)}\n\n`),
      })
      .then(
        (r) => {
          state.reply = r;
        },
        (error: unknown) => {
          state.failure = error;
        },
      )
      .finally(() => {
        state.done = true;
        state.wake?.();
      });
    while (!state.done || pending.length > 0) {
      const next = pending.shift();
      if (next !== undefined) {
        yield next;
        continue;
      }
      await new Promise<void>((resolve) => {
        state.wake = resolve;
      });
      state.wake = undefined;
    }
    if (state.reply === undefined) {
      const failure = state.failure;
      if (!(failure instanceof RelayError && failure.status === 499)) {
        // Mid-stream failures arrive as an OpenAI error object, which SDKs raise as API errors.
        const error =
          failure instanceof RelayError ? failure : new RelayError(500, 'Internal relay error');
        yield data(pythonJson(openAiBody(error)));
      }
      return;
    }
    const answer = state.reply;
    for (const text of slices(answer.content)) {
      yield writer.line(chunk({ content: text }, null));
    }
    (answer.toolCalls ?? []).forEach((call, index) => {
      pending.push(writer.line(chunk({ tool_calls: [toolCallDelta(call, index)] }, null)));
    });
    yield* pending.splice(0);
    yield writer.line(chunk({}, finishReasonOf(answer)));
    yield 'data: [DONE]\n\n';
  }
}

function toolCallDelta(call: unknown, index: number): object {
  const c = (typeof call === 'object' && call !== null ? call : {}) as Record<string, unknown>;
  const fn = (typeof c.function === 'object' && c.function !== null ? c.function : {}) as Record<
    string,
    unknown
  >;
  return {
    index,
    id: c.id ?? null,
    type: c.type ?? 'function',
    function: { name: fn.name ?? null, arguments: fn.arguments ?? '' },
  };
}

function stream(lines: AsyncIterable<string> | Iterable<string>): Response {
  const body = WebReadableStream.from(lines) as unknown as ReadableStream<Uint8Array>;
  return new Response(body, { status: 200, headers: SSE_HEADERS });
}
