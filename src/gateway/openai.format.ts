import { randomBytes, randomUUID } from 'node:crypto';
import { crc32 } from 'node:zlib';

/**
 * OpenAI-shaped bodies of the gateway (gateway.md §3–6) and the existing relay's serialisation
 * details the encrypted replies carry.
 */

const NON_ASCII = /[\u0080-\uffff]/g;

function asciiEscape(json: string): string {
  return json.replace(NON_ASCII, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * `json.dumps` with Python's defaults: `", "` and `": "` separators, non-ASCII escaped, insertion
 * order. Values are bounded in depth by the gateway's body check before they get here.
 */
export function pythonJson(value: unknown): string {
  if (typeof value === 'string') {
    return asciiEscape(JSON.stringify(value));
  }
  if (value === null || typeof value !== 'object') {
    return JSON.stringify(value) ?? 'null';
  }
  if (Array.isArray(value)) {
    return `[${value.map((v) => pythonJson(v === undefined ? null : v)).join(', ')}]`;
  }
  const parts: string[] = [];
  for (const [key, v] of Object.entries(value)) {
    if (v !== undefined) {
      parts.push(`${asciiEscape(JSON.stringify(key))}: ${pythonJson(v)}`);
    }
  }
  return `{${parts.join(', ')}}`;
}

export function unixSeconds(nowMs: number): number {
  return Math.floor(nowMs / 1000);
}

export const chatCompletionId = (): string => `chatcmpl-${randomUUID()}`;
export const textCompletionId = (): string => `cmpl-${randomBytes(6).toString('hex')}`;

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** The existing relay's estimate: stripped text → 0 if empty, else max(1, ⌈code points / 4⌉). */
export function estimateTokens(text: string): number {
  const t = text.trim();
  return t === '' ? 0 : Math.max(1, Math.ceil([...t].length / 4));
}

function contentText(content: unknown): string {
  return typeof content === 'string' ? content : pythonJson(content);
}

/** Node-reported usage when all three counts are integers, else the estimate (gateway.md §3.4). */
export function usageOf(
  reported: unknown,
  messages: ReadonlyArray<{ content?: unknown }>,
  reply: string,
  toolCalls: unknown[] | null,
): Usage {
  if (typeof reported === 'object' && reported !== null) {
    const r = reported as Record<string, unknown>;
    const p = r.prompt_tokens;
    const c = r.completion_tokens;
    const t = r.total_tokens;
    if (Number.isInteger(p) && Number.isInteger(c) && Number.isInteger(t)) {
      return {
        prompt_tokens: p as number,
        completion_tokens: c as number,
        total_tokens: t as number,
      };
    }
  }
  const prompt = messages.reduce((sum, m) => sum + estimateTokens(contentText(m.content)), 0);
  const completionText = toolCalls ? `${reply}\n${pythonJson(toolCalls)}` : reply;
  const completion = estimateTokens(completionText);
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: prompt + completion,
  };
}

/** What a compute node answered, after the identity checks. */
export interface NodeReply {
  role: string;
  content: string;
  toolCalls: unknown[] | null;
  finishReason: string | null;
  usage: unknown;
}

export function finishReasonOf(reply: NodeReply): string {
  return reply.finishReason ?? (reply.toolCalls ? 'tool_calls' : 'stop');
}

/** `created` of a model object: deterministic, so every prefix returns byte-identical bodies. */
export function modelCreated(id: string): number {
  return 1_700_000_000 + (crc32(Buffer.from(id, 'utf8')) % 31_536_000);
}

/** A Map: model ids are strings nodes chose, and `__proto__` must be just a name. */
const OWNERS = new Map([['qwen3-8b-instruct', 'Qwen']]);

/** API v1 model object (gateway.md §3.1: these fields, nothing else). */
export function v1Model(id: string): Record<string, unknown> {
  const created = modelCreated(id);
  return {
    id,
    object: 'model',
    created,
    owned_by: OWNERS.get(id) ?? 'token.place',
    permission: [
      {
        id: `modelperm-${id}`,
        object: 'model_permission',
        created,
        allow_create_engine: false,
        allow_sampling: true,
        allow_logprobs: true,
        allow_search_indices: false,
        allow_view: true,
        allow_fine_tuning: false,
        organization: '*',
        group: null,
        is_blocking: false,
      },
    ],
    root: id,
    parent: null,
  };
}

/** API v2 model object (gateway.md §6.1). */
export function v2Model(id: string): Record<string, unknown> {
  return {
    id,
    object: 'model',
    created: modelCreated(id),
    owned_by: 'token.place',
    root: id,
    parent: null,
  };
}
