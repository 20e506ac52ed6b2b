import { Errors, RelayError } from '../common/relay-error';
import { isPlainObject } from '../common/envelope-body';
import { CONTEXT_TIERS, type ContextTier, type NodeCapabilities } from '../state/state.types';

const BACKENDS = new Set(['cpu', 'cuda', 'metal', 'vulkan', 'gpu', 'unknown']);
const MAX_MODELS = 64;
const MAX_MODEL_CHARS = 128;
const MAX_TOKENS = 1_000_000;
const MAX_CONCURRENCY = 128;

const isInt = (v: unknown, min: number, max: number): v is number =>
  typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;

const fail = (message: string): RelayError => Errors.invalidCapabilities(message);

/** Capabilities of a node that registered without any: valid, but serving no model. */
export function defaultCapabilities(): NodeCapabilities {
  return {
    api_version: 'v1',
    supported_model_ids: [],
    active_context_tier: '8k-fast',
    maximum_total_context_tokens: CONTEXT_TIERS['8k-fast'],
    default_output_token_reservation: 1024,
    maximum_output_tokens: 8192,
    max_concurrency: 1,
    backend_class: 'unknown',
  };
}

/**
 * Validates and normalises API v1 capabilities exactly as spec §4.4.1 (first failing rule wins;
 * model ids trimmed, lower-cased and de-duplicated; unknown backends become `unknown`; the result
 * always has the same eight keys). Throws the `invalid_capabilities` error.
 */
export function normaliseCapabilities(raw: unknown): NodeCapabilities {
  if (raw === undefined || raw === null) {
    return defaultCapabilities();
  }
  if (!isPlainObject(raw)) {
    throw fail('capabilities must be an object');
  }
  const apiVersion = raw.api_version ?? 'v1';
  if (apiVersion !== 'v1' && apiVersion !== 1) {
    throw fail('capabilities.api_version must be v1');
  }
  const tierRaw = raw.active_context_tier ?? raw.context_tier ?? '8k-fast';
  if (typeof tierRaw !== 'string') {
    throw fail('capabilities.active_context_tier must be a string');
  }
  const tier = tierRaw.trim();
  if (!Object.hasOwn(CONTEXT_TIERS, tier)) {
    throw fail('capabilities.active_context_tier is unsupported');
  }
  const tierSize = CONTEXT_TIERS[tier as ContextTier];
  const models = raw.supported_model_ids ?? raw.model_ids;
  if (
    !Array.isArray(models) ||
    models.length === 0 ||
    models.length > MAX_MODELS ||
    !models.every((m) => typeof m === 'string' && m.trim() !== '' && m.length <= MAX_MODEL_CHARS)
  ) {
    throw fail('capabilities.supported_model_ids must be a non-empty string list');
  }
  const total = raw.maximum_total_context_tokens ?? tierSize;
  if (!isInt(total, 1, MAX_TOKENS)) {
    throw fail('capabilities.maximum_total_context_tokens must be a positive integer');
  }
  if (total < tierSize) {
    throw fail('capabilities.maximum_total_context_tokens is below the active tier');
  }
  const reservation = raw.default_output_token_reservation ?? 1024;
  const maxOutput = raw.maximum_output_tokens ?? 8192;
  const concurrency = raw.max_concurrency ?? 1;
  if (
    !isInt(reservation, 1, MAX_TOKENS) ||
    !isInt(maxOutput, 1, MAX_TOKENS) ||
    !isInt(concurrency, 1, MAX_CONCURRENCY)
  ) {
    throw fail('capability token reservations and concurrency must be positive integers');
  }
  if (reservation > maxOutput) {
    throw fail('default output reservation cannot exceed maximum output tokens');
  }
  const backend = raw.backend_class ?? 'unknown';
  if (typeof backend !== 'string') {
    throw fail('capabilities.backend_class must be a string');
  }
  const normalisedBackend = backend.trim().toLowerCase();
  return {
    api_version: 'v1',
    supported_model_ids: [...new Set((models as string[]).map((m) => m.trim().toLowerCase()))],
    active_context_tier: tier as ContextTier,
    maximum_total_context_tokens: total,
    default_output_token_reservation: reservation,
    maximum_output_tokens: maxOutput,
    max_concurrency: concurrency,
    backend_class: BACKENDS.has(normalisedBackend) ? normalisedBackend : 'unknown',
  };
}

/** Model aliases of the existing relay (spec §4.5; the gateway applies them case-sensitively). */
export const MODEL_ALIASES: Readonly<Record<string, string>> = {
  'llama-3.1-8b-instruct': 'qwen3-8b-instruct',
  'llama-3-8b-instruct': 'qwen3-8b-instruct',
  'gpt-3.5-turbo': 'qwen3-8b-instruct',
  'gpt-5-chat-latest': 'qwen3-8b-instruct',
};

export const DEFAULT_MODEL = 'qwen3-8b-instruct';

/** Requested model: trimmed, lower-cased, aliased (spec §4.5 step 1). */
export function resolveModel(requested: string): string {
  const m = requested.trim().toLowerCase();
  return Object.hasOwn(MODEL_ALIASES, m) ? (MODEL_ALIASES[m] as string) : m;
}
