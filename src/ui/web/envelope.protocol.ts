/**
 * The API v1 E2EE inner envelopes (spec §6.4) and the page's rules around them: context-tier
 * estimate, identity checks on answers and progress, progress validation. Pure functions, no DOM.
 */
import { PROTOCOL_ID } from '../../peer/relay.protocol';

export const PROTOCOL = PROTOCOL_ID;
export const FALLBACK_MODEL = 'qwen3-8b-instruct';

export const CONTEXT_TIERS = { '8k-fast': 8192, '64k-full': 65536 } as const;
export type ContextTier = keyof typeof CONTEXT_TIERS;
export type TierChoice = 'auto' | ContextTier;

export const ROLES = ['system', 'user', 'assistant'] as const;
export type Role = (typeof ROLES)[number];

export interface ChatMessage {
  role: Role;
  content: string;
}

/** Output reservation and safety margin the estimate adds (spec §7.5 step 4). */
const OUTPUT_RESERVATION = 1024;
const SAFETY_MARGIN = 1024;
/** What the page asks for; nodes clamp it to their own output budget. */
export const MAX_TOKENS = 8192;
/** Node limit on messages per request (spec §6.4). */
export const MAX_MESSAGES = 64;

export function isContextTier(value: unknown): value is ContextTier {
  return typeof value === 'string' && Object.hasOwn(CONTEXT_TIERS, value);
}

/** Prompt-token estimate: the larger of chars/4 and words·1.35, plus 8 per message. */
export function estimatePromptTokens(messages: readonly ChatMessage[]): number {
  let chars = 0;
  let words = 0;
  for (const m of messages) {
    chars += m.content.length;
    words += m.content.split(/\s+/).filter((w) => w !== '').length;
  }
  return Math.max(Math.ceil(chars / 4), Math.ceil(words * 1.35)) + 8 * messages.length;
}

/** `auto` picks `8k-fast` when prompt + reservation + margin fits 8192 tokens, else `64k-full`. */
export function estimateContextTier(messages: readonly ChatMessage[]): ContextTier {
  const needed = estimatePromptTokens(messages) + OUTPUT_RESERVATION + SAFETY_MARGIN;
  return needed <= CONTEXT_TIERS['8k-fast'] ? '8k-fast' : '64k-full';
}

export function resolveTier(choice: TierChoice, messages: readonly ChatMessage[]): ContextTier {
  return choice === 'auto' ? estimateContextTier(messages) : choice;
}

/** A node selected for `required` must offer at least that window. */
export function tierSatisfies(selected: unknown, required: ContextTier): boolean {
  return isContextTier(selected) && CONTEXT_TIERS[selected] >= CONTEXT_TIERS[required];
}

/** The newest messages a node accepts, starting at a user turn. */
export function trimHistory(messages: readonly ChatMessage[]): ChatMessage[] {
  const kept = messages.slice(-MAX_MESSAGES);
  while (kept.length > 1 && kept[0]?.role === 'assistant') {
    kept.shift();
  }
  return kept;
}

export interface InnerRequestInput {
  requestId: string;
  clientPublicKey: string;
  model: string;
  messages: readonly ChatMessage[];
  tier: ContextTier;
}

/** The plaintext the node decrypts: identity repeated inside, then the request (spec §6.4). */
export function innerRequest(input: InnerRequestInput): Record<string, unknown> {
  return {
    protocol: PROTOCOL,
    version: 1,
    request_id: input.requestId,
    client_public_key: input.clientPublicKey,
    api_v1_request: {
      model: input.model,
      messages: input.messages.map((m) => ({ role: m.role, content: m.content })),
      options: { max_tokens: MAX_TOKENS },
      routing: { context_tier: input.tier },
    },
  };
}

export class IdentityError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IdentityError';
  }
}

export interface Expected {
  requestId: string;
  clientPublicKey: string;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The inner protocol, version, request id and client key must be ours (spec §4.7). */
export function checkIdentity(inner: unknown, expected: Expected): Record<string, unknown> {
  if (!isRecord(inner)) {
    throw new IdentityError('the decrypted envelope is not an object');
  }
  if (inner.protocol !== PROTOCOL || inner.version !== 1) {
    throw new IdentityError('the decrypted envelope has the wrong protocol or version');
  }
  if (inner.request_id !== expected.requestId) {
    throw new IdentityError('the decrypted envelope belongs to another request');
  }
  if (
    typeof inner.client_public_key !== 'string' ||
    inner.client_public_key.trim() !== expected.clientPublicKey.trim()
  ) {
    throw new IdentityError('the decrypted envelope was addressed to another client');
  }
  return inner;
}

export interface Usage {
  prompt_tokens?: number;
  completion_tokens?: number;
  total_tokens?: number;
}

export type NodeAnswer =
  | { kind: 'message'; content: string; finishReason: string | null; usage: Usage | null }
  | { kind: 'error'; code: string; message: string };

function readUsage(value: unknown): Usage | null {
  if (!isRecord(value)) {
    return null;
  }
  const usage: Usage = {};
  for (const key of ['prompt_tokens', 'completion_tokens', 'total_tokens'] as const) {
    const n = value[key];
    if (typeof n === 'number' && Number.isSafeInteger(n) && n >= 0) {
      usage[key] = n;
    }
  }
  return usage;
}

/** Reads `api_v1_response` after the identity checks. */
export function readAnswer(inner: unknown, expected: Expected): NodeAnswer {
  const body = checkIdentity(inner, expected).api_v1_response;
  if (!isRecord(body)) {
    throw new IdentityError('the decrypted envelope has no api_v1_response');
  }
  if (isRecord(body.error)) {
    const code = typeof body.error.code === 'string' ? body.error.code : 'compute_node_error';
    const message = typeof body.error.message === 'string' ? body.error.message : '';
    return { kind: 'error', code, message };
  }
  const message = body.message;
  if (!isRecord(message) || typeof message.content !== 'string') {
    throw new IdentityError('the answer has no assistant message');
  }
  return {
    kind: 'message',
    content: message.content,
    finishReason: typeof body.finish_reason === 'string' ? body.finish_reason : null,
    usage: readUsage(body.usage),
  };
}

export const PROGRESS_PHASES = ['preparing', 'prefill', 'generating'] as const;
export type ProgressPhase = (typeof PROGRESS_PHASES)[number];

export interface Progress {
  sequence: number;
  phase: ProgressPhase;
  totalPromptTokens: number;
  cachedPromptTokens: number;
  processedPromptTokens: number;
  generatedTokens: number;
  elapsedMs: number;
}

const PROGRESS_KEYS = [
  'schema_version',
  'sequence',
  'phase',
  'total_prompt_tokens',
  'cached_prompt_tokens',
  'processed_prompt_tokens',
  'generated_tokens',
  'elapsed_ms',
] as const;

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

/**
 * Validates a decrypted progress envelope like the existing page: identity, exactly the eight keys,
 * safe non-negative integers, a known phase, a sequence above `lastSequence`, and
 * cached ≤ processed ≤ total when total > 0. Returns null for anything else (progress is advisory).
 */
export function readProgress(
  inner: unknown,
  expected: Expected,
  lastSequence: number,
): Progress | null {
  let p: unknown;
  try {
    p = checkIdentity(inner, expected).api_v1_progress;
  } catch {
    return null;
  }
  if (!isRecord(p)) {
    return null;
  }
  const keys = Object.keys(p);
  if (keys.length !== PROGRESS_KEYS.length || !PROGRESS_KEYS.every((k) => Object.hasOwn(p, k))) {
    return null;
  }
  if (p.schema_version !== 1 || !(PROGRESS_PHASES as readonly unknown[]).includes(p.phase)) {
    return null;
  }
  const sequence = p.sequence;
  const total = p.total_prompt_tokens;
  const cached = p.cached_prompt_tokens;
  const processed = p.processed_prompt_tokens;
  const generated = p.generated_tokens;
  const elapsed = p.elapsed_ms;
  if (
    !isCount(sequence) ||
    !isCount(total) ||
    !isCount(cached) ||
    !isCount(processed) ||
    !isCount(generated) ||
    !isCount(elapsed)
  ) {
    return null;
  }
  if (sequence <= lastSequence || (total > 0 && !(cached <= processed && processed <= total))) {
    return null;
  }
  return {
    sequence,
    phase: p.phase as ProgressPhase,
    totalPromptTokens: total,
    cachedPromptTokens: cached,
    processedPromptTokens: processed,
    generatedTokens: generated,
    elapsedMs: elapsed,
  };
}

/** Share of the prompt read so far during prefill, in [0, 1]; null when not determinable. */
export function prefillFraction(p: Progress): number | null {
  if (p.phase !== 'prefill' || p.totalPromptTokens <= 0) {
    return null;
  }
  return Math.min(1, p.processedPromptTokens / p.totalPromptTokens);
}
