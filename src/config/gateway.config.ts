import { MaxLength } from 'class-validator';
import { Env } from './env.decorator';
import { BoolEnv, IntEnv, NumberEnv, RateLimitEnv, Trim } from './env-kinds';
import { parseRateLimit, type RateLimit } from './edge.config';

/** The OpenAI-compatible gateway (gateway/, spec gateway.md) and its demo node (demo/). */
export class GatewayEnv {
  @BoolEnv(
    'TOKENPLACE_GATEWAY_ENABLED',
    'Serve the OpenAI-compatible gateway (/v1, /api/v1, /v2, /api/v2 chat, completions, public key); off: those routes still validate but refuse work',
  )
  gatewayEnabled = true;

  @NumberEnv(
    'TOKENPLACE_API_V1_DISTRIBUTED_TIMEOUT_SECONDS',
    'Longest a gateway chat waits for its compute node before 504 compute_node_timeout (the request is then cancelled)',
    0.05,
    3600,
  )
  gatewayTimeoutSeconds = 485;

  @IntEnv(
    'TOKENPLACE_GATEWAY_MAX_CONCURRENT',
    'Most gateway chats waiting for a node at once in this process (503 with Retry-After beyond)',
    1,
    100000,
  )
  gatewayMaxConcurrent = 1024;

  @IntEnv(
    'TOKENPLACE_GATEWAY_CLIENT_KEY_ROTATE_SECONDS',
    'Age after which the gateway replaces the RSA-2048 client key its chats are sealed under (one per process, made in the background, never persisted)',
    60,
    604800,
  )
  gatewayClientKeyRotateSeconds = 3600;

  @IntEnv(
    'TOKENPLACE_GATEWAY_UNWRAP_THREADS',
    'Worker threads for the RSA PKCS#1 v1.5 unwraps of gateway answers and encrypted-mode requests (started on demand, idle ones exit); 0: on the event loop',
    0,
    16,
  )
  gatewayUnwrapThreads = 1;

  @Env(
    'TOKENPLACE_GATEWAY_KEY_FILE',
    'PEM private key of the gateway (encrypted mode, /api/v1/public-key), e.g. a mounted Secret shared by every replica; unset: a fresh key per process, never persisted',
  )
  @Trim()
  @MaxLength(4096)
  gatewayKeyFile = '';

  @Env('SERVICE_NAME', 'Service name reported by /api/v1/health (token.place when unset)')
  @Trim()
  @MaxLength(256)
  serviceName = '';

  @RateLimitEnv(
    'API_STREAM_RATE_LIMIT',
    'Shared limit per client address on streaming /api/v2 and /v2 chat completions, on top of the public limits; empty: off',
    true,
  )
  streamRateLimit = '30/minute';

  @Env(
    'CONTENT_MODERATION_MODE',
    'disabled (default) or any other word to refuse gateway chats matching the blocklist (400 content_blocked)',
  )
  @Trim()
  @MaxLength(64)
  moderationMode = 'disabled';

  @Env('CONTENT_MODERATION_BLOCKLIST', 'Extra comma-separated blocked terms (case-insensitive)')
  @MaxLength(65536)
  moderationBlocklist = '';

  @BoolEnv(
    'CONTENT_MODERATION_INCLUDE_DEFAULTS',
    'Include the built-in blocked terms when moderation is on',
  )
  moderationIncludeDefaults = true;

  @BoolEnv(
    'USE_MOCK_LLM',
    'Start the demo compute node in process (also `--use_mock_llm`): it registers over HTTP and answers with mock texts',
  )
  useMockLlm = false;
}

/** Terms the existing relay blocks when moderation is on (gateway.md §3.7). */
export const DEFAULT_BLOCKED_TERMS = [
  'build a bomb',
  'harm humans',
  'kill',
  'make a weapon',
  'weaponize',
];

export interface GatewayConfig {
  enabled: boolean;
  /** `TOKENPLACE_API_V1_DISTRIBUTED_TIMEOUT_SECONDS`. */
  timeoutMs: number;
  maxConcurrent: number;
  /** Age after which the client key of gateway chats is replaced (in the background). */
  clientKeyRotateMs: number;
  /** Worker threads for PKCS#1 v1.5 unwraps; 0: on the event loop. */
  unwrapThreads: number;
  /** PEM private key file shared by replicas, or null for a per-process key. */
  keyFile: string | null;
  serviceName: string;
  streamRateLimit: RateLimit | null;
  moderation: { enabled: boolean; terms: string[] };
  /** Start the in-process demo compute node (`USE_MOCK_LLM`, `--use_mock_llm`). */
  mockNode: boolean;
}

export interface GatewaySettings {
  /** The OpenAI-compatible gateway (gateway.md). */
  readonly gateway: GatewayConfig;
}

export function gatewaySettings(s: GatewayEnv): GatewaySettings {
  const moderationMode = s.moderationMode.toLowerCase();
  return {
    gateway: {
      enabled: s.gatewayEnabled,
      timeoutMs: Math.round(s.gatewayTimeoutSeconds * 1000),
      maxConcurrent: s.gatewayMaxConcurrent,
      clientKeyRotateMs: s.gatewayClientKeyRotateSeconds * 1000,
      unwrapThreads: s.gatewayUnwrapThreads,
      keyFile: s.gatewayKeyFile || null,
      serviceName: s.serviceName || 'token.place',
      streamRateLimit: parseRateLimit(s.streamRateLimit),
      moderation: {
        enabled: !['', 'disabled', 'off', 'none'].includes(moderationMode),
        terms: [
          ...(s.moderationIncludeDefaults ? DEFAULT_BLOCKED_TERMS : []),
          ...s.moderationBlocklist
            .split(',')
            .map((t) => t.trim().toLowerCase())
            .filter(Boolean),
        ],
      },
      mockNode: s.useMockLlm,
    },
  };
}
