import { BlockList, isIP } from 'node:net';
import { plainToInstance } from 'class-transformer';
import { validateSync, type ValidationError } from 'class-validator';
import type { StoreLimits } from './store-limits';
import { envSpecs } from './env.decorator';
import {
  MEMORY_MODEL,
  planMemory,
  runtimeMemory,
  type MemoryPlan,
  type RuntimeMemory,
} from './memory-budget';
import { RelayEnvSchema } from './relay-env.schema';
import { unknownVariableWarnings, type EnvWarning } from './unknown-env';

export type EnvSource = Readonly<Record<string, string | undefined>>;

/** A parsed rate limit: `limit` hits per `windowMs`, and the text used in 429 messages. */
export interface RateLimit {
  limit: number;
  windowMs: number;
  text: string;
  windowSeconds: number;
}

const UNIT_SECONDS: Record<string, number> = { second: 1, minute: 60, hour: 3600, day: 86400 };

export function parseRateLimit(value: string): RateLimit | null {
  const m = /^(\d+)\s*(?:\/|per)\s*(\d+)?\s*(second|minute|hour|day)s?$/i.exec(value.trim());
  if (!m) {
    return null;
  }
  const count = Number(m[2] ?? 1);
  const unit = (m[3] as string).toLowerCase();
  const windowSeconds = count * (UNIT_SECONDS[unit] as number);
  return {
    limit: Number(m[1]),
    windowMs: windowSeconds * 1000,
    windowSeconds,
    text: `${m[1]} per ${count} ${unit}`,
  };
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid relay configuration:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

export const CONTROL_ROUTES = [
  'register',
  'unregister',
  'poll',
  'control',
  'response',
  'progress',
] as const;
export type ControlRoute = (typeof CONTROL_ROUTES)[number];

/**
 * Identity budgets sized for one node with `max_concurrency` 128 (the spec's ceiling) kept full
 * with requests of 2 s or more, behaving as spec §7.4 says today's nodes do: a poll per claim, a
 * control call right after each claim and every 10 s per request, progress once a second per
 * request, one answer per request, a re-registration every 24 s (docs/decisions.md, "Node
 * budgets"; measured by `node bench/hostile.mjs --only busy-node`). Per-minute windows so a burst
 * never costs a node the rest of an hour.
 */
export const CONTROL_DEFAULTS: Record<ControlRoute, string> = {
  register: '240/hour',
  unregister: '240/hour',
  poll: '6000/minute',
  control: '9000/minute',
  response: '6000/minute',
  progress: '12000/minute',
};

/** Terms the existing relay blocks when moderation is on (gateway.md §3.7). */
export const DEFAULT_BLOCKED_TERMS = [
  'build a bomb',
  'harm humans',
  'kill',
  'make a weapon',
  'weaponize',
];

/**
 * Request bodies being read at once (docs/decisions.md, "Bodies in flight"). Always on: tunable,
 * never off, on every listen address.
 */
export interface BodyLimits {
  /** Body limit of the general JSON parser (TOKENPLACE_RELAY_MAX_BODY_BYTES). */
  maxBodyBytes: number;
  /** Bytes of bodies being read at once over all callers. */
  maxInFlightBytes: number;
  /** The same per client address (IPv6 per /64). */
  maxInFlightBytesPerAddress: number;
  /** Every body is charged at least this much (what a stalled socket holds in buffers). */
  minChargeBytes: number;
  /** A body must arrive within this plus its size at {@link minBytesPerSecond}. */
  timeoutMs: number;
  minBytesPerSecond: number;
}

/** Smallest charge of a body being read: a stalled socket's buffers hold about this much. */
export const MIN_BODY_CHARGE_BYTES = 16384;

export interface GatewayConfig {
  enabled: boolean;
  /** `TOKENPLACE_API_V1_DISTRIBUTED_TIMEOUT_SECONDS`. */
  timeoutMs: number;
  maxConcurrent: number;
  keyPoolSize: number;
  /** PEM private key file shared by replicas, or null for a per-process key. */
  keyFile: string | null;
  serviceName: string;
  streamRateLimit: RateLimit | null;
  moderation: { enabled: boolean; terms: string[] };
  /** Start the in-process demo compute node (`USE_MOCK_LLM`, `--use_mock_llm`). */
  mockNode: boolean;
}

/**
 * The relay's configuration, parsed and validated once at boot. `process.env` is read only in
 * `src/config/`; everything else receives this object.
 */
export class RelayConfig {
  readonly host: string;
  readonly port: number;
  readonly publicUrl: string | null;
  readonly trustProxy: number | string[] | null;
  readonly tokenPlaceEnv: string;
  readonly deployEnv: string;
  readonly releaseVersion: string;
  readonly imageTag: string;
  readonly gitSha: string;
  readonly chartVersion: string;
  readonly logLevel: string;

  readonly upstreamUrl: string;
  readonly gpuHost: string;
  readonly gpuPort: number;
  readonly requireUpstreamHealth: boolean;
  readonly explicitUpstreamConfig: boolean;
  /** TOKENPLACE_RELAY_UPSTREAM_URL was set (it then is the one active upstream in /healthz). */
  readonly upstreamUrlConfigured: boolean;
  /** An upstream URL or GPU host was set, or upstream health is required: /healthz reports them. */
  readonly upstreamReported: boolean;
  /** The configured upstream pool; empty when none is configured. */
  readonly configuredUpstreams: string[];

  /** Tokens from the environment (the token file is read by the token service). */
  readonly serverTokens: string[];
  readonly serverTokensFile: string | null;
  readonly operatorToken: string | null;
  readonly metricsToken: string | undefined;
  readonly metricsDisabled: boolean;

  readonly legacyRoutesEnabled: boolean;
  readonly sinkPingSeconds: number;
  readonly sinkHoldMs: number;
  readonly retrieveHoldMs: number;
  readonly maxBodyBytes: number;
  /** Bounds and deadline of request bodies being read. */
  readonly bodies: BodyLimits;

  readonly v1LeaseSeconds: number;
  readonly pollWaitSeconds: number;
  /** Send `next_ping_in_x_seconds: 0` with API v1 work (see the env table). */
  readonly v1WorkPingHint: boolean;
  readonly maxQueuePerNode: number;
  /** Open registration: most nodes one address group holds (TOKENPLACE_RELAY_MAX_NODES_PER_ADDRESS). */
  readonly maxNodesPerAddress: number;

  readonly publicRateLimits: RateLimit[];
  /**
   * The public limits are left out for requests from this machine that did not come through a
   * proxy: true only when the relay listens on loopback alone, neither API_RATE_LIMIT nor
   * API_DAILY_QUOTA is set, and no trusted proxy is configured (see docs/decisions.md).
   */
  readonly publicLimitsLocalExempt: boolean;
  readonly controlRateLimits: Record<ControlRoute, RateLimit | null>;
  readonly controlIpRateLimit: RateLimit | null;
  /** Per-address limit on the full `/relay/diagnostics` body. */
  readonly diagnosticsRateLimit: RateLimit | null;

  readonly stateStore: 'memory' | 'redis';
  readonly redisUrl: string;
  readonly redisKeyPrefix: string;
  readonly redisCommandTimeoutMs: number;
  /** Where Redis is: one server (the URL), Sentinels that name the primary, or a Cluster. */
  readonly redisTopology: RedisTopology;
  /** Data-node password that overrides the URL's ('' keeps it). */
  readonly redisPassword: string;
  /** TLS to the data nodes (rediss:// or TOKENPLACE_RELAY_REDIS_TLS). */
  readonly redisTls: boolean;
  readonly redisTlsCaFile: string | null;
  /** Replicas every acknowledged transition waits for (0: none), and for how long. */
  readonly redisWaitReplicas: number;
  readonly redisWaitTimeoutMs: number;
  /** Earlier prefix whose keys are renamed to {@link redisKeyPrefix} at boot, or null. */
  readonly redisMigrateFromPrefix: string | null;

  readonly drainMs: number;
  readonly shutdownGraceMs: number;
  readonly sweepIntervalMs: number;
  readonly healthExposeKeys: boolean;
  readonly uiEnabled: boolean;

  /** The OpenAI-compatible gateway (gateway.md). */
  readonly gateway: GatewayConfig;

  readonly limits: StoreLimits;
  /** How the byte-holding caps were sized from the memory limit (logged at boot). */
  readonly memory: MemoryPlan;
  /** Memory sizing problems that do not stop the relay (logged as warnings at boot). */
  readonly memoryWarnings: readonly string[];
  /** Variables that look like settings but are not (typos): logged at boot, never fatal. */
  readonly warnings: readonly EnvWarning[];

  constructor(
    s: RelayEnvSchema,
    memory: MemoryPlan,
    extras: {
      memoryWarnings?: readonly string[];
      warnings?: readonly EnvWarning[];
      /** Schema properties the environment set (the rest took their defaults). */
      explicit?: ReadonlySet<string>;
    } = {},
  ) {
    this.warnings = extras.warnings ?? [];
    this.memoryWarnings = extras.memoryWarnings ?? [];
    const explicit = extras.explicit ?? new Set<string>();
    this.host = s.host;
    this.port = s.port;
    this.publicUrl = s.publicUrl ? s.publicUrl.replace(/\/+$/, '') : null;
    this.trustProxy = parseTrustProxy(s.trustProxy);
    this.tokenPlaceEnv = s.tokenPlaceEnv;
    this.deployEnv = s.deployEnv;
    this.releaseVersion = s.releaseVersion;
    this.imageTag = s.imageTag;
    this.gitSha = s.gitSha;
    this.chartVersion = s.chartVersion;
    this.logLevel = s.logLevel;

    const upstream = parseUrl(s.upstreamUrl);
    this.gpuHost = s.gpuHost || upstream?.hostname || 'gpu-server';
    this.gpuPort = s.gpuPort ?? (upstream?.port ? Number(upstream.port) : 3000);
    this.upstreamUrl = s.upstreamUrl || `http://${this.gpuHost}:${this.gpuPort}`;
    this.requireUpstreamHealth = s.requireUpstreamHealth;
    const pool = [...splitList(s.upstreams), ...splitList(s.personalGamingPcUrl)];
    this.configuredUpstreams = pool;
    this.explicitUpstreamConfig = pool.length > 0 || s.upstreamUrl !== '';
    this.upstreamUrlConfigured = s.upstreamUrl !== '';
    this.upstreamReported =
      s.upstreamUrl !== '' ||
      s.gpuHost !== '' ||
      s.gpuPort !== undefined ||
      s.requireUpstreamHealth;

    this.serverTokens = [
      ...new Set(
        [s.serverToken, s.serverTokenLegacy, ...s.serverTokens.split(/[,\n]/)]
          .map((t) => t.trim())
          .filter(Boolean),
      ),
    ];
    this.serverTokensFile = s.serverTokensFile.trim() || null;
    this.operatorToken = s.operatorToken.trim() || null;
    this.metricsToken = s.metricsToken === undefined ? undefined : s.metricsToken.trim();
    this.metricsDisabled = s.metricsDisabled;

    this.legacyRoutesEnabled = s.legacyRoutesEnabled;
    this.sinkPingSeconds = s.sinkPingSeconds;
    this.sinkHoldMs = s.sinkHoldSeconds * 1000;
    this.retrieveHoldMs = s.retrieveHoldSeconds * 1000;
    this.maxBodyBytes = s.maxBodyBytes;
    this.bodies = bodyLimits(s);

    this.v1LeaseSeconds = s.v1LeaseSeconds;
    this.pollWaitSeconds = s.pollWaitSeconds;
    this.v1WorkPingHint = s.v1WorkPingHint;
    this.maxQueuePerNode = s.maxQueuePerNode;
    this.maxNodesPerAddress = s.maxNodesPerAddress;

    this.publicRateLimits = [s.apiRateLimit, s.apiDailyQuota]
      .map(parseRateLimit)
      .filter((r): r is RateLimit => r !== null);
    this.publicLimitsLocalExempt =
      isLoopbackHost(s.host) &&
      !explicit.has('apiRateLimit') &&
      !explicit.has('apiDailyQuota') &&
      !explicit.has('streamRateLimit') &&
      this.trustProxy === null;
    const shared = s.controlPlaneRateLimit;
    const perRoute: Record<ControlRoute, string> = {
      register: s.registerRateLimit,
      unregister: s.unregisterRateLimit,
      poll: s.pollRateLimit,
      control: s.controlRateLimit,
      response: s.responseRateLimit,
      progress: s.progressRateLimit,
    };
    const control = {} as Record<ControlRoute, RateLimit | null>;
    for (const route of CONTROL_ROUTES) {
      control[route] = parseRateLimit(perRoute[route] || shared || CONTROL_DEFAULTS[route]);
    }
    this.controlRateLimits = control;
    this.controlIpRateLimit = parseRateLimit(s.controlPlaneIpRateLimit);
    this.diagnosticsRateLimit = parseRateLimit(s.diagnosticsRateLimit);

    this.stateStore = s.stateStore === 'redis' ? 'redis' : 'memory';
    this.redisUrl = s.redisUrl;
    this.redisKeyPrefix = s.redisKeyPrefix;
    this.redisCommandTimeoutMs = s.redisCommandTimeoutMs;
    this.redisTopology = redisTopologyOf(s);
    this.redisPassword = s.redisPassword;
    this.redisTls = s.redisTls || s.redisUrl.startsWith('rediss://');
    this.redisTlsCaFile = s.redisTlsCaFile || null;
    this.redisWaitReplicas = s.redisWaitReplicas;
    this.redisWaitTimeoutMs = s.redisWaitTimeoutMs;
    this.redisMigrateFromPrefix = migrateFromPrefix(s, explicit.has('redisKeyPrefix'));

    this.drainMs = s.drainSeconds * 1000;
    this.shutdownGraceMs = s.shutdownGraceSeconds * 1000;
    this.sweepIntervalMs = s.sweepIntervalSeconds * 1000;
    this.healthExposeKeys = s.healthExposeKeys;
    this.uiEnabled = s.uiEnabled;

    const moderationMode = s.moderationMode.toLowerCase();
    this.gateway = {
      enabled: s.gatewayEnabled,
      timeoutMs: Math.round(s.gatewayTimeoutSeconds * 1000),
      maxConcurrent: s.gatewayMaxConcurrent,
      keyPoolSize: s.gatewayKeyPoolSize,
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
    };

    const deadlineMin = clamp(s.deadlineMinSeconds, 1, 3600);
    const deadlineMax = clamp(s.deadlineMaxSeconds, deadlineMin, 3600);
    const deadline = clamp(s.deadlineSeconds, deadlineMin, deadlineMax);
    this.limits = {
      maxNodes: s.maxNodes,
      maxQueuePerNode: s.maxQueuePerNode,
      maxQueuedTotal: s.maxQueuedTotal,
      maxQueuedBytes: memory.maxQueuedBytes,
      maxPendingPerClient: s.maxPendingPerClient,
      maxResponsesPerClient: s.maxResponsesPerClient,
      maxStoredResponses: memory.maxStoredResponses,
      maxTerminalRecords: s.maxTerminalRecords,
      maxStreamSessions: memory.maxStreamSessions,
      maxStreamChunks: 4096,
      maxStreamBytes: s.maxStreamBytes,
      maxRateLimitBuckets: s.maxRateLimitBuckets,
      maxTieCursors: 1024,
      legacyLeaseMs: s.sinkStaleSeconds * 1000,
      v1LeaseMs: s.v1LeaseSeconds * 1000,
      inFlightTtlMs: (s.inFlightTtlSeconds ?? s.v1LeaseSeconds) * 1000,
      lapseGraceMs: s.nodeLapseGraceSeconds * 1000,
      v1DeadlineMs: deadline * 1000,
      legacyRequestTtlMs: s.legacyRequestTtlSeconds * 1000,
      responseTtlMs: s.responseTtlSeconds * 1000,
      deliveryGraceMs: s.deliveryGraceSeconds * 1000,
      terminalTtlMs: s.terminalTtlSeconds * 1000,
      tombstoneTtlMs: s.tombstoneTtlSeconds * 1000,
      streamTtlMs: s.streamTtlSeconds * 1000,
    };
    this.memory = memory;
  }

  /** `next_poll_seconds` hint for active control answers (spec §4.4.3). */
  get controlNextPollSeconds(): number {
    const hint = Math.max(this.limits.inFlightTtlMs / 2000, 1);
    return Math.max(1, Math.min(this.pollWaitSeconds, 10, hint));
  }

  /** Names and docs of every variable, for the README table check. */
  static describe(): Array<{ property: string; names: readonly string[]; doc: string }> {
    return envSpecs(RelayEnvSchema.prototype).map(([property, spec]) => ({
      property,
      names: spec.names,
      doc: spec.doc,
    }));
  }

  /**
   * Reads the relay's variables from `env` (first alias found wins) plus `--host`/`--port` flags,
   * validates all of them, sizes the memory caps from `runtime` (the process's own cgroup and heap
   * limits unless given), and throws one {@link ConfigError} listing every problem.
   */
  static load(
    env: EnvSource,
    argv: readonly string[] = [],
    runtime: RuntimeMemory = runtimeMemory(),
  ): RelayConfig {
    const raw: Record<string, string> = {};
    const source: Record<string, string> = {};
    const secret = new Set<string>();
    for (const [property, spec] of envSpecs(RelayEnvSchema.prototype)) {
      const name = spec.names.find((n) => env[n] !== undefined);
      if (name !== undefined) {
        raw[property] = env[name] as string;
        source[property] = name;
      }
      if (spec.secret) {
        secret.add(property);
      }
    }
    const problems: string[] = [];
    const flags = parseFlags(argv, problems);
    Object.assign(raw, flags);
    for (const key of Object.keys(flags)) {
      source[key] = `--${key}`;
    }

    // A node token set to nothing (a Secret with an empty key) must never mean "open" in silence.
    for (const property of ['serverToken', 'serverTokenLegacy', 'serverTokens']) {
      const value = raw[property];
      const parts = property === 'serverTokens' ? (value ?? '').split(/[,\n]/) : [value ?? ''];
      if (value !== undefined && parts.every((t) => t.trim() === '')) {
        problems.push(
          `${source[property]} is set but blank: node routes would be open to anyone. Put the token in it, or unset it to run with open node registration on purpose`,
        );
      }
    }

    const schema = plainToInstance(RelayEnvSchema, raw);
    const errors = validateSync(schema, { forbidUnknownValues: false });
    for (const error of errors) {
      problems.push(describeError(error, source, secret, raw));
    }
    if (problems.length === 0) {
      problems.push(...redisProblems(schema, source.redisKeyPrefix !== undefined));
      const redisUrlProblem = schema.stateStore === 'redis' ? checkRedisUrl(schema.redisUrl) : null;
      if (redisUrlProblem !== null) {
        problems.push(
          `${source.redisUrl ?? 'TOKENPLACE_RELAY_REDIS_URL'}=(hidden): ${redisUrlProblem}`,
        );
      }
      if (
        schema.stateStore === 'memory' &&
        schema.redisUrl &&
        source.redisUrl === 'TOKENPLACE_RELAY_REDIS_URL'
      ) {
        problems.push(
          'TOKENPLACE_RELAY_REDIS_URL is set but TOKENPLACE_RELAY_STATE_STORE is memory: set TOKENPLACE_RELAY_STATE_STORE=redis or unset the URL',
        );
      }
      if (schema.shutdownGraceSeconds <= schema.drainSeconds) {
        problems.push(
          `TOKENPLACE_RELAY_SHUTDOWN_GRACE_SECONDS (${schema.shutdownGraceSeconds}) must be greater than TOKENPLACE_RELAY_DRAIN_SECONDS (${schema.drainSeconds})`,
        );
      }
      const bodies = bodyLimits(schema);
      if (bodies.maxInFlightBytes < schema.maxBodyBytes) {
        problems.push(
          `TOKENPLACE_RELAY_MAX_BODY_BYTES_IN_FLIGHT (${bodies.maxInFlightBytes}) must be at least TOKENPLACE_RELAY_MAX_BODY_BYTES (${schema.maxBodyBytes}), or no body of the largest size could be read`,
        );
      }
      if (bodies.maxInFlightBytesPerAddress < schema.maxBodyBytes) {
        problems.push(
          `TOKENPLACE_RELAY_MAX_BODY_BYTES_IN_FLIGHT_PER_ADDRESS (${bodies.maxInFlightBytesPerAddress}) must be at least TOKENPLACE_RELAY_MAX_BODY_BYTES (${schema.maxBodyBytes}), or no body of the largest size could be read`,
        );
      }
      if (bodies.maxInFlightBytesPerAddress > bodies.maxInFlightBytes) {
        problems.push(
          `TOKENPLACE_RELAY_MAX_BODY_BYTES_IN_FLIGHT_PER_ADDRESS (${bodies.maxInFlightBytesPerAddress}) must not exceed TOKENPLACE_RELAY_MAX_BODY_BYTES_IN_FLIGHT (${bodies.maxInFlightBytes})`,
        );
      }
      if (schema.inFlightTtlSeconds !== undefined && schema.inFlightTtlSeconds > 86400) {
        problems.push('TOKEN_PLACE_API_V1_IN_FLIGHT_TTL_SECONDS is too large');
      }
    }
    if (problems.length > 0) {
      throw new ConfigError(problems);
    }
    const memory = planMemory({
      configuredLimitBytes: schema.memoryLimitBytes,
      runtime,
      maxBodyBytes: schema.maxBodyBytes,
      bodyBytesInFlight: bodyLimits(schema).maxInFlightBytes,
      maxQueuedBytes: schema.maxQueuedBytes,
      maxStoredResponses: schema.maxStoredResponses,
      maxStreamSessions: schema.maxStreamSessions,
      maxStreamBytes: schema.maxStreamBytes,
      store: schema.stateStore === 'redis' ? 'redis' : 'memory',
    });
    if (memory.plan === null) {
      throw new ConfigError(memory.problems);
    }
    const known = envSpecs(RelayEnvSchema.prototype).flatMap(([, spec]) => spec.names);
    return new RelayConfig(schema, memory.plan, {
      memoryWarnings: memory.warnings,
      warnings: unknownVariableWarnings(env, known),
      explicit: new Set(Object.keys(source)),
    });
  }
}

/** The body bounds from the schema: unset ones are derived from the body limit. */
function bodyLimits(s: RelayEnvSchema): BodyLimits {
  const maxInFlightBytes = s.maxBodyBytesInFlight ?? MEMORY_MODEL.concurrentBodies * s.maxBodyBytes;
  return {
    maxBodyBytes: s.maxBodyBytes,
    maxInFlightBytes,
    maxInFlightBytesPerAddress:
      s.maxBodyBytesInFlightPerAddress ?? Math.min(4 * s.maxBodyBytes, maxInFlightBytes),
    minChargeBytes: MIN_BODY_CHARGE_BYTES,
    timeoutMs: s.bodyTimeoutSeconds * 1000,
    minBytesPerSecond: s.minUploadBytesPerSecond,
  };
}

const KIND_CONSTRAINTS = ['isInt', 'isNumber', 'isBoolean', 'isString', 'isIn'];

function describeError(
  error: ValidationError,
  source: Record<string, string>,
  secret: Set<string>,
  raw: Record<string, string>,
): string {
  const name =
    source[error.property] ??
    envSpecs(RelayEnvSchema.prototype).find(([p]) => p === error.property)?.[1].names[0];
  const shown = secret.has(error.property)
    ? '(hidden)'
    : JSON.stringify(raw[error.property] ?? error.value);
  const constraints = error.constraints ?? {};
  // A value of the wrong kind gets one clear reason ("must be a number"), not its range checks.
  const kind = KIND_CONSTRAINTS.find((name) => constraints[name] !== undefined);
  const messages = kind !== undefined ? [constraints[kind] as string] : Object.values(constraints);
  const reasons = messages.map((m) => m.replace(error.property, 'value'));
  return `${name}=${shown}: ${reasons.join('; ')}`;
}

function parseFlags(argv: readonly string[], problems: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i] as string;
    if (arg === '--use_mock_llm' || arg === '--use-mock-llm') {
      out.useMockLlm = 'true';
      continue;
    }
    const m = /^--(host|port)(?:=(.*))?$/.exec(arg);
    if (!m) {
      if (arg.startsWith('--')) {
        problems.push(`unknown flag ${arg} (accepted: --host, --port, --use_mock_llm)`);
      }
      continue;
    }
    const value = m[2] ?? argv[i + 1];
    if (m[2] === undefined) {
      i += 1;
    }
    if (value === undefined) {
      problems.push(`--${m[1]} needs a value`);
    } else {
      out[m[1] as string] = value;
    }
  }
  return out;
}

/** One Redis address. */
export interface RedisEndpoint {
  host: string;
  port: number;
}

/** Where the Redis store connects. */
export type RedisTopology =
  | { kind: 'standalone' }
  | {
      kind: 'sentinel';
      sentinels: RedisEndpoint[];
      master: string;
      sentinelPassword: string;
      sentinelTls: boolean;
    }
  | { kind: 'cluster'; nodes: RedisEndpoint[] };

function endpoints(list: string): RedisEndpoint[] {
  return splitList(list).map((item) => {
    const at = item.lastIndexOf(':');
    return { host: item.slice(0, at).replace(/^\[|\]$/g, ''), port: Number(item.slice(at + 1)) };
  });
}

function redisTopologyOf(s: RelayEnvSchema): RedisTopology {
  if (s.redisSentinels) {
    return {
      kind: 'sentinel',
      sentinels: endpoints(s.redisSentinels),
      master: s.redisSentinelMaster,
      sentinelPassword: s.redisSentinelPassword,
      sentinelTls: s.redisSentinelTls,
    };
  }
  if (s.redisClusterNodes) {
    return { kind: 'cluster', nodes: endpoints(s.redisClusterNodes) };
  }
  return { kind: 'standalone' };
}

/** The prefix of the layout before hash tags (0.1): its keys move to the default prefix at boot. */
export const PRE_HASH_TAG_PREFIX = 'tokenplace:';

/** The prefix to migrate keys from at boot, or null. */
function migrateFromPrefix(s: RelayEnvSchema, explicitPrefix: boolean): string | null {
  const from =
    s.redisMigrateFromPrefix === '' && !explicitPrefix
      ? PRE_HASH_TAG_PREFIX
      : s.redisMigrateFromPrefix;
  return from === '' || from === 'off' || from === s.redisKeyPrefix ? null : from;
}

/** The Redis settings that only make sense together. */
function redisProblems(s: RelayEnvSchema, explicitPrefix: boolean): string[] {
  const problems: string[] = [];
  if (s.stateStore !== 'redis') {
    return problems;
  }
  const sentinel = s.redisSentinels !== '';
  const cluster = s.redisClusterNodes !== '';
  if (!s.redisUrl && !sentinel && !cluster) {
    problems.push('TOKENPLACE_RELAY_STATE_STORE=redis needs TOKENPLACE_RELAY_REDIS_URL');
  }
  if (sentinel && cluster) {
    problems.push(
      'TOKENPLACE_RELAY_REDIS_SENTINELS and TOKENPLACE_RELAY_REDIS_CLUSTER_NODES exclude each other: a deployment runs on Sentinel or on a Cluster',
    );
  }
  if (sentinel && !s.redisSentinelMaster) {
    problems.push(
      'TOKENPLACE_RELAY_REDIS_SENTINELS needs TOKENPLACE_RELAY_REDIS_SENTINEL_MASTER (the name the Sentinels monitor)',
    );
  }
  if (badPort(s.redisSentinels) || badPort(s.redisClusterNodes)) {
    problems.push('Redis Sentinel and Cluster ports must be 1-65535');
  }
  if (cluster && !/\{[^{}]+\}/.test(s.redisKeyPrefix)) {
    problems.push(
      `TOKENPLACE_RELAY_REDIS_KEY_PREFIX=${JSON.stringify(s.redisKeyPrefix)}: a Redis Cluster needs a hash tag in the prefix (e.g. {tokenplace}:) so every key of the deployment is in one slot`,
    );
  }
  if (s.redisWaitReplicas > 0 && s.redisWaitTimeoutMs >= s.redisCommandTimeoutMs) {
    problems.push(
      `TOKENPLACE_RELAY_REDIS_WAIT_TIMEOUT_MS (${s.redisWaitTimeoutMs}) must be less than TOKENPLACE_RELAY_REDIS_COMMAND_TIMEOUT_MS (${s.redisCommandTimeoutMs})`,
    );
  }
  const from = migrateFromPrefix(s, explicitPrefix);
  if (from !== null && (from.startsWith(s.redisKeyPrefix) || s.redisKeyPrefix.startsWith(from))) {
    problems.push(
      `TOKENPLACE_RELAY_REDIS_MIGRATE_FROM_PREFIX=${JSON.stringify(from)}: one prefix may not start with the other (${JSON.stringify(s.redisKeyPrefix)}); set it empty to turn the migration off`,
    );
  }
  return problems;
}

/** True when a host:port list holds a port outside 1-65535. */
function badPort(list: string): boolean {
  return endpoints(list).some((e) => !(e.port >= 1 && e.port <= 65535));
}

/** Why a Redis URL cannot be used (unparsable, no host, a non-numeric db), or null. */
function checkRedisUrl(value: string): string | null {
  if (value === '') {
    return null;
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'is not a valid URL (redis://[:password@]host[:port][/db] or rediss://...)';
  }
  if (url.hostname === '') {
    return 'needs a host';
  }
  if (!/^\/?(\d{1,5})?$/.test(url.pathname)) {
    return 'the database after the host must be a number (e.g. redis://redis:6379/0)';
  }
  return null;
}

function parseTrustProxy(value: string): number | string[] | null {
  if (value === '') {
    return null;
  }
  if (/^\d+$/.test(value)) {
    return Number(value);
  }
  return value
    .split(',')
    .map((v) => v.trim())
    .filter(Boolean);
}

function parseUrl(value: string): URL | null {
  try {
    return value ? new URL(value) : null;
  } catch {
    return null;
  }
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** True for an address that only this machine can reach (127.0.0.0/8, ::1, localhost). */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') {
    return true;
  }
  const family = isIP(host);
  return family !== 0 && LOOPBACK.check(host, family === 4 ? 'ipv4' : 'ipv6');
}

function splitList(value: string): string[] {
  return value
    .split(/[,\s]+/)
    .map((v) => v.trim())
    .filter(Boolean);
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(Math.max(value, min), max);
}

/** The process environment: the only place `process.env` is read (CLIs such as smoke use it too). */
export function processEnv(): EnvSource {
  return process.env;
}

/** The relay's configuration from the process environment and command line. */
export function loadProcessConfig(): RelayConfig {
  return RelayConfig.load(processEnv(), process.argv.slice(2));
}
