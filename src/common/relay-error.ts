/** Most characters of a caller's input an error message repeats back. */
export const ECHO_CHARS = 128;

/**
 * A caller's input as an error message repeats it: cut to {@link ECHO_CHARS} characters, with the
 * full length said, so a 10 KB model name costs the answer 150 bytes, not 10 KB.
 */
export function echo(value: string): string {
  return value.length <= ECHO_CHARS
    ? value
    : `${value.slice(0, ECHO_CHARS)}... (${value.length} characters)`;
}

/**
 * A failure with a wire meaning: status, message, the `code` inside the error object, and any extra
 * fields or headers the protocol spec gives it. Services throw these; one filter renders them in the
 * shape each route speaks (see {@link ErrorStyle}).
 */
export class RelayError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly code: number | string = status,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'RelayError';
  }
}

/**
 * An error in the OpenAI envelope the gateway speaks (gateway.md §2.1):
 * `{"error":{"message","type"[,"param"][,"code"]}}`, `param` and `code` omitted when absent.
 */
export class OpenAiError extends RelayError {
  readonly type: string;
  /** `undefined`: omitted; `null` is written (the 429 body carries `"param":null`). */
  readonly param: string | null | undefined;

  constructor(
    status: number,
    message: string,
    type: string,
    opts: { param?: string | null; code?: string; headers?: Record<string, string> } = {},
  ) {
    super(status, message, opts.code ?? status, {}, opts.headers ?? {});
    this.name = 'OpenAiError';
    this.type = type;
    this.param = opts.param;
  }
}

const obj = (
  status: number,
  message: string,
  code: number | string = status,
  extra = {},
  headers = {},
) => new RelayError(status, message, code, extra, headers);

/**
 * The errors of the catalogue that say nothing but a status and a message (the status is their
 * `code`), grouped by status.
 */
const PLAIN = {
  400: {
    invalidRequest: 'Invalid request data',
    invalidPublicKey: 'Invalid public key',
    invalidBatchSize: 'Invalid max_batch_size',
    missingServerKey: 'Missing server public key',
    invalidServerKey: 'Invalid server public key',
    missingClientKey: 'Missing client public key',
    streamNeedsClientKey: 'Streaming requests require a client public key',
    plaintextForbidden:
      'Plaintext relay payload fields are forbidden; send ciphertext envelope only',
    unexpectedFields:
      'Unexpected relay payload fields are forbidden; send ciphertext envelope only',
    progressSchema: 'Invalid encrypted progress schema',
    progressProtocol: 'Invalid encrypted progress protocol',
    progressEnvelope: 'Invalid encrypted progress envelope',
    malformedJson: 'Malformed JSON body',
  },
  401: { serverToken: 'Missing or invalid relay server token' },
  403: {
    controlCredential: 'Missing or invalid relay server control credential',
    cancelProof: 'Missing or invalid cancel proof',
    notHolder: 'This request is not held by the answering node',
  },
  404: {
    notFoundRoute: 'Not found',
    serverNotFound: 'Server with the specified public key not found',
    unknownStream: 'Unknown stream session',
    noResponse: 'No response available for the given public key',
  },
  405: { methodNotAllowed: 'Method not allowed' },
  409: {
    requestInUse: 'request_id is already in use by a live request; its cancel_token is needed',
  },
  410: {
    progressNotActive: 'Progress request is not active for this owner',
    progressExpired: 'Progress request has expired',
  },
  413: {
    progressTooLarge: 'Progress envelope too large',
    streamFull: 'Stream session buffer is full',
  },
  415: { unsupportedMediaType: 'Content-Type must be application/json' },
  503: { noServers: 'No servers available' },
} as const;

type PlainError = { [S in keyof typeof PLAIN]: keyof (typeof PLAIN)[S] }[keyof typeof PLAIN];

/** A factory for each error of {@link PLAIN}. */
function plainErrors(): Record<PlainError, () => RelayError> {
  const factories = Object.entries(PLAIN).flatMap(([status, messages]) =>
    Object.entries(messages).map(([name, message]) => [name, () => obj(Number(status), message)]),
  );
  return Object.fromEntries(factories) as Record<PlainError, () => RelayError>;
}

/** The error catalogue of spec §2–4, one factory per distinct wire error. */
export const Errors = {
  ...plainErrors(),
  invalidCapabilities: (message: string) => obj(400, message, 'invalid_capabilities'),
  invalidContextTier: () => obj(400, 'Unsupported context_tier', 'invalid_context_tier'),
  bodyTooLarge: (limit: number) => obj(413, `Request body too large (limit ${limit} bytes)`),
  bodyTimeout: () => obj(408, 'Request body not received in time', 'request_body_timeout'),
  unknownRequestId: (requestId: string) => obj(404, `Unknown request_id: ${echo(requestId)}`),
  noLongerWaiting: (code: string) =>
    obj(410, 'Request is no longer waiting for a response', code, { status: code }),
  requestEnded: (status: string, reason: string) =>
    obj(410, `Request ${status}`, status, { status, reason }),
  legacyDisabled: (route: string) =>
    obj(
      410,
      `Legacy relay endpoint '${route}' is deprecated. Use API v1 relay E2EE routes.`,
      'legacy_relay_endpoint_deprecated',
      { deprecated: true },
    ),
  rateLimited: (text: string, retryAfter: number) =>
    obj(
      429,
      `Rate limit exceeded: ${text}. Try again in ${retryAfter} seconds.`,
      'rate_limit_exceeded',
      { type: 'rate_limit_error', param: null },
      { 'Retry-After': String(retryAfter) },
    ),
  capacity: (message: string, retryAfter: number, status = 429) =>
    obj(
      status,
      message,
      status === 429 ? 'relay_capacity_exceeded' : 'relay_overloaded',
      {},
      { 'Retry-After': String(retryAfter) },
    ),
  noComputeNodes: () =>
    obj(
      503,
      'No registered compute nodes are available on this relay.',
      'no_registered_compute_nodes',
    ),
  unavailable: (
    code: string,
    message: string,
    extra: Record<string, unknown>,
    headers: Record<string, string> = {},
  ) => obj(503, message, code, extra, headers),
  storeUnavailable: () =>
    obj(
      503,
      'Relay state store is unavailable; retry shortly',
      'state_store_unavailable',
      {},
      { 'Retry-After': '2' },
    ),
  draining: () =>
    obj(503, 'Relay is shutting down; retry', 'relay_draining', {}, { 'Retry-After': '1' }),
  operatorNotConfigured: () =>
    obj(503, 'Operator authentication is not configured', 'operator_auth_not_configured', {
      type: 'authentication_error',
    }),
  operatorToken: () =>
    obj(401, 'Operator token missing or invalid', 'operator_token_invalid', {
      type: 'authentication_error',
    }),
} as const;
