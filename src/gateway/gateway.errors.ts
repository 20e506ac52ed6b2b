import { echo, OpenAiError } from '../common/relay-error';

const INVALID = 'invalid_request_error';

/** A field validation error ("VE" of gateway.md §3.4): param and the `invalid_request_error` code. */
export const fieldError = (message: string, param: string): OpenAiError =>
  new OpenAiError(400, message, INVALID, { param, code: INVALID });

/** The gateway's wire errors (gateway.md §3–6), one factory per distinct body. */
export const GatewayErrors = {
  emptyChatBody: () => new OpenAiError(400, 'Invalid request body: empty or not JSON', INVALID),
  emptyBody: () => new OpenAiError(400, 'Invalid request body', INVALID),
  missing: (field: string) => fieldError(`Missing required parameter: ${field}`, field),
  /** v1 completions and v2 with an empty `model`: param but no code. */
  missingNoCode: (field: string) =>
    new OpenAiError(400, `Missing required parameter: ${field}`, INVALID, { param: field }),
  wrongType: (field: string, expected: string) =>
    fieldError(`Invalid type for ${field}: expected ${expected}`, field),
  badBase64: (field: string) => fieldError(`Invalid base64 encoding for ${field}`, field),
  messages: (message: string, param = 'messages') => fieldError(message, param),
  chatStream: () =>
    new OpenAiError(
      400,
      'Streaming is not supported for API v1 chat completions. Use /api/v2/chat/completions for Server-Sent Events.',
      INVALID,
      { param: 'stream' },
    ),
  completionsStream: () =>
    new OpenAiError(
      400,
      'Streaming is not supported for API v1 completions. Use /api/v2/chat/completions for Server-Sent Events.',
      INVALID,
      { param: 'stream' },
    ),
  promptNotText: () =>
    new OpenAiError(
      400,
      'Invalid content type at messages[0]. API v1 chat content must be text-only.',
      INVALID,
    ),
  promptBlocks: () =>
    new OpenAiError(
      400,
      'Invalid text-only content block at messages[0].content[0]. API v1 chat completions do not support image content.',
      INVALID,
    ),
  decrypt: () => new OpenAiError(400, 'Failed to decrypt messages', 'encryption_error'),
  decryptedJson: () =>
    new OpenAiError(400, 'Failed to parse JSON from decrypted messages', 'encryption_error'),
  /** The reply could not be encrypted (upstream: 500, after inference). */
  encryptReply: (type = 'encryption_error') =>
    new OpenAiError(500, 'Failed to encrypt response', type),
  /** The reply key is unusable, found before any node works: bad input, so 400, upstream's text. */
  replyKey: (type = 'encryption_error') => new OpenAiError(400, 'Failed to encrypt response', type),
  streamKeyRequired: () =>
    new OpenAiError(400, 'Client public key required for encrypted streaming', 'encryption_error'),
  streamKeyBase64: () =>
    new OpenAiError(400, 'Client public key is not valid base64', 'encryption_error'),
  blocked: (term: string) =>
    new OpenAiError(
      400,
      `Request blocked by content moderation policy: matched banned term '${term}'.`,
      'content_policy_violation',
      { code: 'content_blocked' },
    ),
  modelNotFound: (id: string) =>
    new OpenAiError(404, `Model '${echo(id)}' not found`, INVALID, { code: 'model_not_found' }),
  v2ModelNotFound: (id: string) =>
    new OpenAiError(400, `Model '${echo(id)}' not found`, INVALID, {
      param: 'model',
      code: 'model_not_found',
    }),
  modelNotSupported: (canonical: string) =>
    new OpenAiError(400, `Model '${echo(canonical)}' is not supported by API v1.`, INVALID, {
      param: 'model',
      code: 'model_not_supported',
    }),
  emptyMessages: () => new OpenAiError(400, 'Messages cannot be empty', 'model_error'),
  imageContent: () =>
    fieldError(
      'Image content is not supported: the compute nodes behind this relay are text-only',
      'messages',
    ),
  publicKeyUnavailable: () =>
    new OpenAiError(500, 'Failed to retrieve public key', 'internal_server_error'),
  rotateFailed: () => new OpenAiError(500, 'Failed to rotate public key', 'internal_server_error'),
  rotateFromFile: () =>
    new OpenAiError(
      409,
      'The gateway key comes from TOKENPLACE_GATEWAY_KEY_FILE: rotate it by replacing that file and restarting',
      INVALID,
      { code: 'key_rotation_unavailable' },
    ),
  disabled: () =>
    new OpenAiError(
      503,
      'The OpenAI-compatible gateway is disabled on this relay (TOKENPLACE_GATEWAY_ENABLED=false). Use the end-to-end encrypted API v1 relay routes under /api/v1/relay/ instead.',
      'service_unavailable_error',
      { code: 'gateway_disabled' },
    ),
  busy: () =>
    new OpenAiError(
      503,
      'The relay is handling too many gateway requests; retry shortly.',
      'service_unavailable_error',
      { code: 'gateway_busy', headers: { 'Retry-After': '2' } },
    ),
  draining: () =>
    new OpenAiError(503, 'Relay is shutting down; retry', 'service_unavailable_error', {
      code: 'relay_draining',
      headers: { 'Retry-After': '1' },
    }),
  imagesUnsupported: () =>
    new OpenAiError(
      501,
      'Image generation is not available on this relay: its compute nodes serve text chat only.',
      'image_generation_error',
      { code: 'image_generation_unsupported' },
    ),
  imagesBody: (message: string, param?: string) =>
    new OpenAiError(400, message, INVALID, { code: INVALID, ...(param ? { param } : {}) }),
  communityUnsupported: () =>
    new OpenAiError(
      404,
      'Community contributions and the leaderboard are not collected by this relay.',
      INVALID,
      { code: 'not_supported' },
    ),
} as const;

/** Dispatch failures of gateway.md §5.4 (body without `param`). */
export const ProviderErrors = {
  noNodes: (code: 'no_registered_compute_nodes' | 'no_compute_node_available') =>
    new OpenAiError(503, 'No LLM servers are available right now.', 'service_unavailable_error', {
      code,
    }),
  /** Every refusal for capacity or a vanished node says when to come back (Retry-After). */
  unreachable: (retryAfter: number) =>
    new OpenAiError(
      503,
      'The LLM server is unavailable right now. Please try again.',
      'service_unavailable_error',
      { code: 'compute_node_unreachable', headers: { 'Retry-After': String(retryAfter) } },
    ),
  timeout: () =>
    new OpenAiError(
      504,
      'The LLM server took too long to respond. Please try again.',
      'timeout_error',
      { code: 'compute_node_timeout' },
    ),
  cancelled: () =>
    new OpenAiError(
      504,
      'The LLM server request expired before it could be answered. Please try again.',
      'timeout_error',
      { code: 'compute_node_request_cancelled' },
    ),
  bridge: () =>
    new OpenAiError(
      502,
      'Unable to contact the LLM server right now. Please try again.',
      'server_error',
      { code: 'compute_node_bridge_error' },
    ),
  invalidPayload: () =>
    new OpenAiError(
      502,
      'The LLM server returned an invalid response. Please try again.',
      'server_error',
      { code: 'compute_node_invalid_payload' },
    ),
} as const;
