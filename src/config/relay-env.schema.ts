import { Transform } from 'class-transformer';
import {
  IsBoolean,
  IsIn,
  IsInt,
  IsNumber,
  IsOptional,
  IsString,
  Matches,
  Max,
  MaxLength,
  Min,
  MinLength,
} from 'class-validator';
import { Env } from './env.decorator';

const TRUE = new Set(['1', 'true', 'yes', 'on']);
const FALSE = new Set(['0', 'false', 'no', 'off']);

/** Strings that look like numbers become numbers; anything else stays a string and fails validation. */
const ToNumber = (): PropertyDecorator =>
  Transform(({ value }: { value: unknown }) => {
    if (typeof value !== 'string') {
      return value;
    }
    const trimmed = value.trim();
    const n = Number(trimmed);
    return trimmed !== '' && Number.isFinite(n) ? n : value;
  });

const ToBoolean = (): PropertyDecorator =>
  Transform(({ value }: { value: unknown }) => {
    if (typeof value !== 'string') {
      return value;
    }
    const v = value.trim().toLowerCase();
    if (TRUE.has(v)) {
      return true;
    }
    return FALSE.has(v) || v === '' ? false : value;
  });

const Trim = (): PropertyDecorator =>
  Transform(({ value }: { value: unknown }) => (typeof value === 'string' ? value.trim() : value));

/** `60/hour`, `60 per hour`, `10/minute`, `1000/day`, or `off`. */
const RATE_LIMIT = /^(off|\d+\s*(\/|per)\s*(\d+\s*)?(second|minute|hour|day)s?)$/i;
const RATE_LIMIT_MESSAGE = 'must look like "60/hour", "10 per minute" or "off"';

/** `host:port,host:port` (IPv6 in brackets), or empty. */
const HOST_PORT_LIST =
  /^((\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5})?(\s*,\s*(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):\d{1,5})*$/;
const HOST_PORT_LIST_MESSAGE =
  'must be comma-separated host:port (e.g. redis-0:26379,redis-1:26379)';

/**
 * Every environment variable the relay reads, declared once with its default, its aliases (the
 * runbook's names and the existing relay's names) and a one-line description. Validated once at
 * boot; a bad value stops the process with one message listing every bad variable.
 */
export class RelayEnvSchema {
  // ---- listener
  @Env('RELAY_HOST', 'Bind address (the container image sets 0.0.0.0); `--host` overrides it')
  @IsString()
  @MinLength(1)
  host = '127.0.0.1';

  @Env('RELAY_PORT', 'Listener port; `--port` overrides it')
  @ToNumber()
  @IsInt()
  @Min(0)
  @Max(65535)
  port = 5010;

  @Env(
    ['TOKENPLACE_RELAY_PUBLIC_URL', 'TOKEN_PLACE_RELAY_PUBLIC_URL', 'RELAY_PUBLIC_URL'],
    'Advertised base URL, echoed in /healthz as publicUrl and publicBaseUrl',
  )
  @Trim()
  @Matches(/^(https?:\/\/[^\s/]+[^\s]*)?$/, { message: 'must be an http(s) URL' })
  publicUrl = '';

  @Env(
    'TOKENPLACE_RELAY_TRUST_PROXY',
    'Trusted reverse proxies: a hop count, or a comma list of IPs/CIDRs or loopback/linklocal/uniquelocal; empty trusts none',
  )
  @Trim()
  @Matches(
    /^(\d{1,2}|((loopback|linklocal|uniquelocal|[0-9a-fA-F.:]+(\/\d{1,3})?)\s*(,\s*|$))+)?$/,
    {
      message:
        'must be a hop count or a comma list of IPs, CIDRs, loopback, linklocal, uniquelocal',
    },
  )
  trustProxy = '';

  // ---- deployment metadata
  @Env(
    'TOKEN_PLACE_ENV',
    'Deployment profile reported by /api/v1/meta (development, staging, production)',
  )
  @IsString()
  @MaxLength(64)
  tokenPlaceEnv = 'development';

  @Env(
    'TOKENPLACE_DEPLOY_ENV',
    'prod, staging or dev for /api/v1/meta; inferred from TOKEN_PLACE_ENV or the Host header when unset',
  )
  @IsString()
  @MaxLength(64)
  deployEnv = '';

  @Env('TOKENPLACE_RELEASE_VERSION', 'Release version for /api/v1/meta and tokenplace_build_info')
  @IsString()
  @MaxLength(128)
  releaseVersion = '';

  @Env(
    'TOKENPLACE_IMAGE_TAG',
    'Image tag for /api/v1/meta and tokenplace_build_info (the chart sets it)',
  )
  @IsString()
  @MaxLength(256)
  imageTag = '';

  @Env('TOKENPLACE_GIT_SHA', 'Git commit for /api/v1/meta and tokenplace_build_info')
  @IsString()
  @MaxLength(64)
  gitSha = '';

  @Env('TOKENPLACE_CHART_VERSION', 'Helm chart version (informational, set by the chart)')
  @IsString()
  @MaxLength(64)
  chartVersion = '';

  @Env(
    'TOKENPLACE_LOG_LEVEL',
    'trace, debug, info, warn, error, fatal or silent (JSON lines on stdout)',
  )
  @Transform(({ value }: { value: unknown }) =>
    typeof value === 'string'
      ? value
          .trim()
          .toLowerCase()
          .replace(/^warning$/, 'warn')
      : value,
  )
  @IsIn(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'])
  logLevel = 'info';

  // ---- upstream (health output only; the relay never calls an upstream)
  @Env(
    'TOKENPLACE_RELAY_UPSTREAM_URL',
    'Upstream GPU endpoint of legacy deployments; reported by /healthz only when set',
  )
  @Trim()
  @Matches(/^(https?:\/\/\S+)?$/, { message: 'must be an http(s) URL' })
  upstreamUrl = '';

  @Env(
    ['TOKENPLACE_GPU_HOST', 'GPU_SERVER_HOST'],
    'GPU host name, reported by /healthz only when set (or when upstream health is required; default: from the upstream URL, else gpu-server)',
  )
  @IsString()
  @MaxLength(253)
  gpuHost = '';

  @Env(
    ['TOKENPLACE_GPU_PORT', 'GPU_SERVER_PORT'],
    'GPU port, reported with the GPU host (default: from the upstream URL, else 3000)',
  )
  @ToNumber()
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(65535)
  gpuPort?: number;

  @Env(
    'TOKENPLACE_RELAY_REQUIRE_UPSTREAM_HEALTH',
    'When on, /healthz resolves the GPU host and reports degraded (503) if it does not resolve',
  )
  @ToBoolean()
  @IsBoolean()
  requireUpstreamHealth = false;

  @Env(
    'TOKEN_PLACE_RELAY_UPSTREAMS',
    'Comma list of configured upstream URLs (affects relayOnly in /healthz)',
  )
  @IsString()
  @MaxLength(4096)
  upstreams = '';

  @Env('PERSONAL_GAMING_PC_URL', 'An extra configured upstream URL (affects relayOnly in /healthz)')
  @IsString()
  @MaxLength(2048)
  personalGamingPcUrl = '';

  // ---- compute-node authentication
  @Env(
    'TOKENPLACE_RELAY_SERVER_TOKEN',
    'Shared secret compute nodes send in X-Relay-Server-Token (runbook name)',
    true,
  )
  @IsString()
  @MaxLength(4096)
  serverToken = '';

  @Env(
    'TOKEN_PLACE_RELAY_SERVER_TOKEN',
    "Same, under the existing relay's name; all configured tokens are accepted",
    true,
  )
  @IsString()
  @MaxLength(4096)
  serverTokenLegacy = '';

  @Env(
    ['TOKEN_PLACE_RELAY_SERVER_TOKENS', 'TOKENPLACE_RELAY_SERVER_TOKENS'],
    'Several node tokens, separated by commas or newlines; any may match',
    true,
  )
  @IsString()
  @MaxLength(65536)
  serverTokens = '';

  @Env(
    'TOKENPLACE_RELAY_SERVER_TOKENS_FILE',
    'File with node tokens (one per line), re-read when it changes: rotation without restart',
  )
  @IsString()
  @MaxLength(4096)
  serverTokensFile = '';

  @Env(
    ['TOKEN_PLACE_OPERATOR_TOKEN', 'TOKEN_PLACE_KEY_ROTATION_TOKEN', 'PUBLIC_KEY_ROTATION_TOKEN'],
    'Operator token for POST /api/v1/relay/unregister (unset: operator routes answer 503)',
    true,
  )
  @IsString()
  @MaxLength(4096)
  operatorToken = '';

  // ---- metrics
  @Env(
    'TOKENPLACE_METRICS_TOKEN',
    'Bearer token required by /metrics; unset: open; set but empty: always 401',
    true,
  )
  @IsOptional()
  @IsString()
  @MaxLength(4096)
  metricsToken?: string;

  @Env('TOKENPLACE_METRICS_DISABLED', 'When on, /metrics always answers 401')
  @ToBoolean()
  @IsBoolean()
  metricsDisabled = false;

  // ---- legacy protocol
  @Env(
    'TOKENPLACE_ENABLE_LEGACY_RELAY_ROUTES',
    'Serve the legacy routes (/sink, /faucet, ...); off: they answer 410',
  )
  @ToBoolean()
  @IsBoolean()
  legacyRoutesEnabled = true;

  @Env('TOKENPLACE_RELAY_SINK_PING_SECONDS', 'next_ping_in_x_seconds sent to /sink nodes')
  @ToNumber()
  @IsNumber()
  @Min(0)
  @Max(60)
  sinkPingSeconds = 10;

  @Env(
    ['TOKENPLACE_RELAY_SINK_STALE_SECONDS', 'TOKEN_PLACE_RELAY_SERVER_TTL_SECONDS'],
    'A /sink node silent this long is lapsed: handed out only when no fresh node is, evicted after the lapse grace',
  )
  @ToNumber()
  @IsNumber()
  @Min(1)
  @Max(3600)
  sinkStaleSeconds = 60;

  @Env(
    'TOKENPLACE_RELAY_SINK_HOLD_SECONDS',
    "Long-poll: hold an idle /sink up to this long for work (0: answer at once; keep below the nodes' 10 s timeout)",
  )
  @ToNumber()
  @IsNumber()
  @Min(0)
  @Max(8)
  sinkHoldSeconds = 0;

  @Env(
    'TOKENPLACE_RELAY_RETRIEVE_HOLD_SECONDS',
    'Long-poll: hold an empty /retrieve up to this long for the answer (0: answer at once)',
  )
  @ToNumber()
  @IsNumber()
  @Min(0)
  @Max(8)
  retrieveHoldSeconds = 0;

  @Env(
    ['TOKENPLACE_RELAY_LEGACY_REQUEST_TTL_SECONDS', 'TOKENPLACE_PENDING_REQUEST_TTL_SECONDS'],
    'How long a legacy request may wait for a node and its answer',
  )
  @ToNumber()
  @IsNumber()
  @Min(1)
  @Max(86400)
  legacyRequestTtlSeconds = 300;

  @Env('TOKENPLACE_RELAY_STREAM_TTL_SECONDS', 'Idle lifetime of a legacy stream session')
  @ToNumber()
  @IsNumber()
  @Min(1)
  @Max(86400)
  streamTtlSeconds = 300;

  // ---- bounds
  @Env(
    'TOKENPLACE_RELAY_MEMORY_LIMIT_BYTES',
    "The container's memory limit in bytes (the chart sets it from resources.limits.memory); unset: the cgroup limit. Unset caps are derived from it and the V8 heap limit; explicit caps that cannot fit stop the relay at boot",
  )
  @ToNumber()
  @IsOptional()
  @IsInt()
  @Min(64 * 1024 * 1024)
  @Max(2 ** 50)
  memoryLimitBytes?: number;

  @Env(
    'TOKENPLACE_RELAY_MAX_BODY_BYTES',
    'Largest accepted request body (413 beyond); /api/v1/relay/progress is fixed at 16384',
  )
  @ToNumber()
  @IsInt()
  @Min(16384)
  @Max(64 * 1024 * 1024)
  maxBodyBytes = 1024 * 1024;

  @Env(
    'TOKENPLACE_RELAY_MAX_BODY_BYTES_IN_FLIGHT',
    'Most request-body bytes read at once over all callers, each body counted at its Content-Length (at least 16384; chunked or compressed: the body limit); beyond: 503 with Retry-After before the body is read. Counted in the memory budget. Default: 32 times TOKENPLACE_RELAY_MAX_BODY_BYTES',
  )
  @ToNumber()
  @IsOptional()
  @IsInt()
  @Min(16384)
  @Max(2 ** 40)
  maxBodyBytesInFlight?: number;

  @Env(
    'TOKENPLACE_RELAY_MAX_BODY_BYTES_IN_FLIGHT_PER_ADDRESS',
    'The same bound per client address (IPv6: per /64); beyond: 503 with Retry-After for that address only. Default: 4 times TOKENPLACE_RELAY_MAX_BODY_BYTES, at most the total',
  )
  @ToNumber()
  @IsOptional()
  @IsInt()
  @Min(16384)
  @Max(2 ** 40)
  maxBodyBytesInFlightPerAddress?: number;

  @Env(
    'TOKENPLACE_RELAY_BODY_TIMEOUT_SECONDS',
    'A request body must arrive within this many seconds plus its size at TOKENPLACE_RELAY_MIN_UPLOAD_BYTES_PER_SECOND (408 and the connection closed beyond)',
  )
  @ToNumber()
  @IsNumber()
  @Min(1)
  @Max(600)
  bodyTimeoutSeconds = 10;

  @Env(
    'TOKENPLACE_RELAY_MIN_UPLOAD_BYTES_PER_SECOND',
    'Slowest upload rate a request body is given time for, on top of TOKENPLACE_RELAY_BODY_TIMEOUT_SECONDS',
  )
  @ToNumber()
  @IsInt()
  @Min(1024)
  @Max(1024 * 1024 * 1024)
  minUploadBytesPerSecond = 32768;

  @Env(
    'TOKENPLACE_RELAY_MAX_NODES',
    'Most registered compute nodes (new registrations get 503 beyond; renewals always succeed)',
  )
  @ToNumber()
  @IsInt()
  @Min(1)
  @Max(1_000_000)
  maxNodes = 1024;

  @Env(
    'TOKENPLACE_RELAY_MAX_NODES_PER_ADDRESS',
    'Without a node token: most compute nodes one client address (IPv4, or IPv6 /56) holds; its new keys get 429 beyond',
  )
  @ToNumber()
  @IsInt()
  @Min(1)
  @Max(1_000_000)
  maxNodesPerAddress = 8;

  @Env(
    'TOKEN_PLACE_API_V1_MAX_QUEUE_DEPTH_PER_NODE',
    'Most queued requests per node: the scheduler skips a full node and admission answers 429',
  )
  @ToNumber()
  @IsInt()
  @Min(1)
  @Max(1_000_000)
  maxQueuePerNode = 1024;

  @Env('TOKENPLACE_RELAY_MAX_QUEUED_REQUESTS', 'Most queued requests over all nodes (503 beyond)')
  @ToNumber()
  @IsInt()
  @Min(1)
  @Max(10_000_000)
  maxQueuedTotal = 20000;

  @Env(
    'TOKENPLACE_RELAY_MAX_QUEUED_BYTES',
    'Most bytes of queued ciphertext over all nodes (503 beyond); unset: derived from the memory budget, at most 536870912',
  )
  @ToNumber()
  @IsOptional()
  @IsInt()
  @Min(1024 * 1024)
  @Max(64 * 1024 * 1024 * 1024)
  maxQueuedBytes?: number;

  @Env(
    'TOKENPLACE_RELAY_MAX_PENDING_PER_CLIENT',
    'Most live requests (queued, in flight or answered) per client key (429 beyond)',
  )
  @ToNumber()
  @IsInt()
  @Min(1)
  @Max(100_000)
  maxPendingPerClient = 16;

  @Env(
    'TOKENPLACE_RELAY_MAX_RESPONSES_PER_CLIENT',
    'Most stored untracked answers per client key (429 beyond)',
  )
  @ToNumber()
  @IsInt()
  @Min(1)
  @Max(100_000)
  maxResponsesPerClient = 8;

  @Env(
    'TOKENPLACE_RELAY_MAX_STORED_RESPONSES',
    'Sanity ceiling on the count of answers waiting to be retrieved over all clients (503 beyond); their bytes are the budget (TOKENPLACE_RELAY_MAX_ANSWER_BYTES)',
  )
  @ToNumber()
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(10_000_000)
  maxStoredResponses?: number;

  @Env(
    'TOKENPLACE_RELAY_MAX_ANSWER_BYTES',
    'Most bytes of answers waiting for their clients and of buffered legacy stream chunks, as held (503 + Retry-After beyond; the last quarter is kept for the answers of accepted requests); unset: derived from the memory budget, at most 536870912',
  )
  @ToNumber()
  @IsOptional()
  @IsInt()
  @Min(1024 * 1024)
  @Max(64 * 1024 * 1024 * 1024)
  maxAnswerBytes?: number;

  @Env(
    'TOKENPLACE_RELAY_RESPONSE_TTL_SECONDS',
    'An answer nobody retrieves is dropped after this long',
  )
  @ToNumber()
  @IsNumber()
  @Min(1)
  @Max(86400)
  responseTtlSeconds = 300;

  @Env(
    'TOKENPLACE_RELAY_DELIVERY_GRACE_SECONDS',
    'An answer handed to a client stays retrievable this long until its delivery is confirmed (survives a replica dying mid-answer)',
  )
  @ToNumber()
  @IsNumber()
  @Min(1)
  @Max(600)
  deliveryGraceSeconds = 30;

  @Env(
    'TOKENPLACE_RELAY_MAX_TERMINAL_RECORDS',
    'Most remembered cancelled/expired request records (oldest dropped first)',
  )
  @ToNumber()
  @IsInt()
  @Min(1)
  @Max(10_000_000)
  maxTerminalRecords = 50000;

  @Env(
    'TOKENPLACE_RELAY_MAX_STREAM_SESSIONS',
    'Sanity ceiling on open legacy stream sessions (oldest dropped first); their buffered bytes count in TOKENPLACE_RELAY_MAX_ANSWER_BYTES',
  )
  @ToNumber()
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(1_000_000)
  maxStreamSessions?: number;

  @Env(
    'TOKENPLACE_RELAY_MAX_STREAM_BYTES',
    'Most buffered bytes per legacy stream session (chunks beyond get 413)',
  )
  @ToNumber()
  @IsInt()
  @Min(1024)
  @Max(1024 * 1024 * 1024)
  maxStreamBytes = 1024 * 1024;

  @Env(
    'TOKENPLACE_RELAY_MAX_RATE_LIMIT_BUCKETS',
    'Most rate-limit buckets held at once (new callers get 429 beyond)',
  )
  @ToNumber()
  @IsInt()
  @Min(100)
  @Max(100_000_000)
  maxRateLimitBuckets = 200000;

  // ---- API v1 lifecycle (spec §4.2)
  @Env(
    'TOKEN_PLACE_API_V1_RELAY_SERVER_LEASE_SECONDS',
    'API v1 node lease; next_ping_in_x_seconds in /servers/register',
  )
  @ToNumber()
  @IsInt()
  @Min(1)
  @Max(3600)
  v1LeaseSeconds = 30;

  @Env(
    'TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS',
    'Long-poll hold of /servers/poll (poll_wait_seconds)',
  )
  @ToNumber()
  @IsNumber()
  @Min(0)
  @Max(120)
  pollWaitSeconds = 10;

  @Env(
    'TOKEN_PLACE_API_V1_IN_FLIGHT_TTL_SECONDS',
    'In-flight accounting lease renewed by /servers/control (default: the node lease)',
  )
  @ToNumber()
  @IsOptional()
  @IsNumber()
  @Min(1)
  @Max(3600)
  inFlightTtlSeconds?: number;

  @Env(
    'TOKENPLACE_RELAY_NODE_LAPSE_GRACE_SECONDS',
    'A node silent past its lease keeps its queued and claimed work this much longer (not offered while another node is fresh); back within it, it gets the work, else the work ends cancelled/server_unregistered',
  )
  @ToNumber()
  @IsNumber()
  @Min(0)
  @Max(600)
  nodeLapseGraceSeconds = 20;

  @Env(
    'TOKENPLACE_RELAY_V1_WORK_PING_HINT',
    "Send next_ping_in_x_seconds: 0 with work on /servers/poll, so today's nodes poll again right after answering (the existing relay omits it and they sleep a whole lease)",
  )
  @ToBoolean()
  @IsBoolean()
  v1WorkPingHint = true;

  @Env(
    'TOKEN_PLACE_API_V1_REQUEST_DEADLINE_SECONDS',
    'Authoritative request deadline (clamped to [MIN, MAX])',
  )
  @ToNumber()
  @IsNumber()
  @Min(0.001)
  @Max(86400)
  deadlineSeconds = 480;

  @Env('TOKEN_PLACE_API_V1_REQUEST_DEADLINE_MIN_SECONDS', 'Deadline floor (clamped to [1, 3600])')
  @ToNumber()
  @IsNumber()
  @Min(0.001)
  @Max(86400)
  deadlineMinSeconds = 1;

  @Env(
    'TOKEN_PLACE_API_V1_REQUEST_DEADLINE_MAX_SECONDS',
    'Deadline ceiling (clamped to [MIN, 3600])',
  )
  @ToNumber()
  @IsNumber()
  @Min(0.001)
  @Max(86400)
  deadlineMaxSeconds = 3600;

  @Env(
    'TOKEN_PLACE_API_V1_CONTROL_TOMBSTONE_TTL_SECONDS',
    'Lifetime of node-facing control tombstones',
  )
  @ToNumber()
  @IsNumber()
  @Min(1)
  @Max(300)
  tombstoneTtlSeconds = 60;

  @Env(
    'TOKENPLACE_TERMINAL_REQUEST_TTL_SECONDS',
    'Lifetime of client-facing cancelled/expired/completed records',
  )
  @ToNumber()
  @IsNumber()
  @Min(1)
  @Max(86400)
  terminalTtlSeconds = 300;

  // ---- rate limits (spec §2.4)
  @Env(
    'API_RATE_LIMIT',
    'Public limit per client address per route (submit/cancel/models/legacy submit)',
  )
  @Trim()
  @Matches(RATE_LIMIT, { message: RATE_LIMIT_MESSAGE })
  apiRateLimit = '60/hour';

  @Env('API_DAILY_QUOTA', 'Second public limit per client address per route')
  @Trim()
  @Matches(RATE_LIMIT, { message: RATE_LIMIT_MESSAGE })
  apiDailyQuota = '1000/day';

  @Env(
    'API_RELAY_CONTROL_PLANE_RATE_LIMIT',
    'Identity limit for all six compute-node routes (overridden per route below); unset: the per-route defaults (register and unregister 240/hour, poll and responses 6000/minute, control 9000/minute, progress 12000/minute)',
  )
  @Trim()
  @Matches(new RegExp(`^$|${RATE_LIMIT.source}`, 'i'), { message: RATE_LIMIT_MESSAGE })
  controlPlaneRateLimit = '';

  @Env(
    'API_RELAY_CONTROL_PLANE_IP_RATE_LIMIT',
    'Per-address limit on each compute-node route (room for two busy nodes behind one address)',
  )
  @Trim()
  @Matches(RATE_LIMIT, { message: RATE_LIMIT_MESSAGE })
  controlPlaneIpRateLimit = '24000/minute';

  @Env(
    'TOKENPLACE_RELAY_DIAGNOSTICS_RATE_LIMIT',
    'Per-address limit on the full /relay/diagnostics body (its ?summary=1 form is not limited)',
  )
  @Trim()
  @Matches(RATE_LIMIT, { message: RATE_LIMIT_MESSAGE })
  diagnosticsRateLimit = '120/minute';

  @Env(
    'API_RELAY_CONTROL_PLANE_REGISTER_RATE_LIMIT',
    'Identity limit of /servers/register (default 240/hour)',
  )
  @Trim()
  @Matches(new RegExp(`^$|${RATE_LIMIT.source}`, 'i'), { message: RATE_LIMIT_MESSAGE })
  registerRateLimit = '';

  @Env(
    'API_RELAY_CONTROL_PLANE_UNREGISTER_RATE_LIMIT',
    'Identity limit of /servers/unregister (default 240/hour)',
  )
  @Trim()
  @Matches(new RegExp(`^$|${RATE_LIMIT.source}`, 'i'), { message: RATE_LIMIT_MESSAGE })
  unregisterRateLimit = '';

  @Env(
    'API_RELAY_CONTROL_PLANE_POLL_RATE_LIMIT',
    'Identity limit of /servers/poll and /sink (default 6000/minute)',
  )
  @Trim()
  @Matches(new RegExp(`^$|${RATE_LIMIT.source}`, 'i'), { message: RATE_LIMIT_MESSAGE })
  pollRateLimit = '';

  @Env(
    'API_RELAY_CONTROL_PLANE_CONTROL_RATE_LIMIT',
    'Identity limit of /servers/control (default 9000/minute)',
  )
  @Trim()
  @Matches(new RegExp(`^$|${RATE_LIMIT.source}`, 'i'), { message: RATE_LIMIT_MESSAGE })
  controlRateLimit = '';

  @Env(
    'API_RELAY_CONTROL_PLANE_RESPONSE_RATE_LIMIT',
    'Identity limit of /responses and legacy answers (default 6000/minute)',
  )
  @Trim()
  @Matches(new RegExp(`^$|${RATE_LIMIT.source}`, 'i'), { message: RATE_LIMIT_MESSAGE })
  responseRateLimit = '';

  @Env(
    'API_RELAY_CONTROL_PLANE_PROGRESS_RATE_LIMIT',
    'Identity limit of /progress (default 12000/minute)',
  )
  @Trim()
  @Matches(new RegExp(`^$|${RATE_LIMIT.source}`, 'i'), { message: RATE_LIMIT_MESSAGE })
  progressRateLimit = '';

  // ---- state store
  @Env('TOKENPLACE_RELAY_STATE_STORE', 'memory (one process) or redis (several replicas)')
  @Transform(({ value }: { value: unknown }) =>
    typeof value === 'string' ? value.trim().toLowerCase() : value,
  )
  @IsIn(['memory', 'redis'])
  stateStore = 'memory';

  @Env(
    ['TOKENPLACE_RELAY_REDIS_URL', 'REDIS_URL'],
    'redis:// or rediss:// URL with optional password and db (required with the redis store, except on Sentinel or a Cluster)',
    true,
  )
  @Trim()
  @Matches(/^(rediss?:\/\/\S+)?$/, { message: 'must be a redis:// or rediss:// URL' })
  redisUrl = '';

  @Env(
    'TOKENPLACE_RELAY_REDIS_KEY_PREFIX',
    'Prefix of every Redis key the relay writes; its {hash tag} puts every key of a deployment in one Redis Cluster slot',
  )
  @Matches(/^(?=[A-Za-z0-9:_{}.-]{1,64}$)[^{}]*(\{[^{}]+\}[^{}]*)?$/, {
    message:
      'must be 1-64 characters of A-Z a-z 0-9 : _ { } . - with at most one hash tag, a non-empty {...} (e.g. {tokenplace}:)',
  })
  redisKeyPrefix = '{tokenplace}:';

  @Env(
    'TOKENPLACE_RELAY_REDIS_MIGRATE_FROM_PREFIX',
    'Earlier key prefix whose keys are renamed to the current prefix once at boot (then fenced); empty means tokenplace: (the old default) while the prefix is left at its default; off turns it off',
  )
  @Matches(/^(off|[A-Za-z0-9:_{}.-]{1,64})?$/, {
    message: 'must be empty, off, or 1-64 characters of A-Z a-z 0-9 : _ { } . -',
  })
  redisMigrateFromPrefix = '';

  @Env(
    'TOKENPLACE_RELAY_REDIS_PASSWORD',
    'Password of the Redis data nodes (overrides one in the URL; needed with Sentinel or Cluster when the URL is not set)',
    true,
  )
  redisPassword = '';

  @Env(
    'TOKENPLACE_RELAY_REDIS_SENTINELS',
    'Comma-separated host:port of Redis Sentinels; the relay then asks them for the primary and follows failovers',
  )
  @Trim()
  @Matches(HOST_PORT_LIST, { message: HOST_PORT_LIST_MESSAGE })
  redisSentinels = '';

  @Env(
    'TOKENPLACE_RELAY_REDIS_SENTINEL_MASTER',
    'Name the Sentinels monitor (Bitnami charts: mymaster); required with TOKENPLACE_RELAY_REDIS_SENTINELS',
  )
  @Trim()
  @Matches(/^[A-Za-z0-9._-]{0,128}$/, { message: 'must be a Sentinel master name' })
  redisSentinelMaster = '';

  @Env(
    'TOKENPLACE_RELAY_REDIS_SENTINEL_PASSWORD',
    'Password of the Sentinels themselves (requirepass of sentinel.conf), when they have one',
    true,
  )
  redisSentinelPassword = '';

  @Env('TOKENPLACE_RELAY_REDIS_SENTINEL_TLS', 'Talk TLS to the Sentinels')
  @ToBoolean()
  @IsBoolean()
  redisSentinelTls = false;

  @Env(
    'TOKENPLACE_RELAY_REDIS_CLUSTER_NODES',
    'Comma-separated host:port of Redis Cluster nodes (a few suffice); the relay then runs on the cluster, all keys in one slot',
  )
  @Trim()
  @Matches(HOST_PORT_LIST, { message: HOST_PORT_LIST_MESSAGE })
  redisClusterNodes = '';

  @Env(
    'TOKENPLACE_RELAY_REDIS_TLS',
    'Talk TLS to the Redis data nodes (a rediss:// URL turns it on too)',
  )
  @ToBoolean()
  @IsBoolean()
  redisTls = false;

  @Env(
    'TOKENPLACE_RELAY_REDIS_TLS_CA_FILE',
    'PEM file of the CA that signed the Redis (and Sentinel) certificates; empty trusts the system CAs',
  )
  @Trim()
  redisTlsCaFile = '';

  @Env(
    'TOKENPLACE_RELAY_REDIS_WAIT_REPLICAS',
    'Before answering 2xx for an acknowledged transition, wait until this many replicas have it (Redis WAIT); 0 does not wait',
  )
  @ToNumber()
  @IsInt()
  @Min(0)
  @Max(16)
  redisWaitReplicas = 0;

  @Env(
    'TOKENPLACE_RELAY_REDIS_WAIT_TIMEOUT_MS',
    'How long a transition waits for its replicas; past it the caller gets 503 + Retry-After and may retry with the same request_id',
  )
  @ToNumber()
  @IsInt()
  @Min(1)
  @Max(60000)
  redisWaitTimeoutMs = 500;

  @Env(
    'TOKENPLACE_RELAY_REDIS_COMMAND_TIMEOUT_MS',
    'A Redis command slower than this fails the request with 503',
  )
  @ToNumber()
  @IsInt()
  @Min(10)
  @Max(60000)
  redisCommandTimeoutMs = 2000;

  // ---- process life
  @Env(
    'TOKENPLACE_RELAY_DRAIN_SECONDS',
    'After SIGTERM, keep serving this long with /healthz at 503 so load balancers stop routing',
  )
  @ToNumber()
  @IsNumber()
  @Min(0)
  @Max(300)
  drainSeconds = 5;

  @Env(
    'TOKENPLACE_RELAY_SHUTDOWN_GRACE_SECONDS',
    'Hard limit from the signal to exit; open connections are closed then',
  )
  @ToNumber()
  @IsNumber()
  @Min(1)
  @Max(900)
  shutdownGraceSeconds = 20;

  @Env(
    'TOKENPLACE_RELAY_SWEEP_INTERVAL_SECONDS',
    'How often expiry and eviction run on a timer (they also run on requests)',
  )
  @ToNumber()
  @IsNumber()
  @Min(0.05)
  @Max(60)
  sweepIntervalSeconds = 1;

  @Env(
    'TOKENPLACE_RELAY_HEALTH_EXPOSE_KEYS',
    'Show whole node public keys in /healthz registeredServers instead of sha256 fingerprints (/relay/diagnostics always shows keys, as the existing relay)',
  )
  @ToBoolean()
  @IsBoolean()
  healthExposeKeys = false;

  // ---- OpenAI-compatible gateway (spec gateway.md; one block, kept together)
  @Env(
    'TOKENPLACE_GATEWAY_ENABLED',
    'Serve the OpenAI-compatible gateway (/v1, /api/v1, /v2, /api/v2 chat, completions, public key); off: those routes still validate but refuse work',
  )
  @ToBoolean()
  @IsBoolean()
  gatewayEnabled = true;

  @Env(
    'TOKENPLACE_API_V1_DISTRIBUTED_TIMEOUT_SECONDS',
    'Longest a gateway chat waits for its compute node before 504 compute_node_timeout (the request is then cancelled)',
  )
  @ToNumber()
  @IsNumber()
  @Min(0.05)
  @Max(3600)
  gatewayTimeoutSeconds = 485;

  @Env(
    'TOKENPLACE_GATEWAY_MAX_CONCURRENT',
    'Most gateway chats waiting for a node at once in this process (503 with Retry-After beyond)',
  )
  @ToNumber()
  @IsInt()
  @Min(1)
  @Max(100000)
  gatewayMaxConcurrent = 1024;

  @Env(
    'TOKENPLACE_GATEWAY_CLIENT_KEY_ROTATE_SECONDS',
    'Age after which the gateway replaces the RSA-2048 client key its chats are sealed under (one per process, made in the background, never persisted)',
  )
  @ToNumber()
  @IsInt()
  @Min(60)
  @Max(604800)
  gatewayClientKeyRotateSeconds = 3600;

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

  @Env(
    'API_STREAM_RATE_LIMIT',
    'Shared limit per client address on streaming /api/v2 and /v2 chat completions, on top of the public limits; empty: off',
  )
  @Trim()
  @Matches(new RegExp(`^$|${RATE_LIMIT.source}`, 'i'), { message: RATE_LIMIT_MESSAGE })
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

  @Env(
    'CONTENT_MODERATION_INCLUDE_DEFAULTS',
    'Include the built-in blocked terms when moderation is on',
  )
  @ToBoolean()
  @IsBoolean()
  moderationIncludeDefaults = true;

  @Env(
    'USE_MOCK_LLM',
    'Start the demo compute node in process (also `--use_mock_llm`): it registers over HTTP and answers with mock texts',
  )
  @ToBoolean()
  @IsBoolean()
  useMockLlm = false;

  @Env('TOKENPLACE_RELAY_UI_ENABLED', 'Serve the browser UI at /')
  @ToBoolean()
  @IsBoolean()
  uiEnabled = true;
}
