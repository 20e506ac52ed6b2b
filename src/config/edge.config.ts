import { IntEnv, NumberEnv, RateLimitEnv } from './env-kinds';
import { isLoopbackHost, type ListenerSettings } from './listener.config';
import { MEMORY_MODEL } from './memory-budget';

/** What the HTTP edge admits (edge/): request bodies being read, and the rate limits. */
export class EdgeEnv {
  @IntEnv(
    'TOKENPLACE_RELAY_MAX_BODY_BYTES',
    'Largest accepted request body (413 beyond); /api/v1/relay/progress is fixed at 16384',
    16384,
    64 * 1024 * 1024,
  )
  maxBodyBytes = 1024 * 1024;

  @IntEnv(
    'TOKENPLACE_RELAY_MAX_BODY_BYTES_IN_FLIGHT',
    'Most request-body bytes read at once over all callers, each body counted at its Content-Length (at least 16384; chunked or compressed: the body limit); beyond: 503 with Retry-After before the body is read. Counted in the memory budget. Default: 32 times TOKENPLACE_RELAY_MAX_BODY_BYTES',
    16384,
    2 ** 40,
    { optional: true },
  )
  maxBodyBytesInFlight?: number;

  @IntEnv(
    'TOKENPLACE_RELAY_MAX_BODY_BYTES_IN_FLIGHT_PER_ADDRESS',
    'The same bound per client address (IPv6: per /64); beyond: 503 with Retry-After for that address only. Default: 4 times TOKENPLACE_RELAY_MAX_BODY_BYTES, at most the total',
    16384,
    2 ** 40,
    { optional: true },
  )
  maxBodyBytesInFlightPerAddress?: number;

  @NumberEnv(
    'TOKENPLACE_RELAY_BODY_TIMEOUT_SECONDS',
    'A request body must arrive within this many seconds plus its size at TOKENPLACE_RELAY_MIN_UPLOAD_BYTES_PER_SECOND (408 and the connection closed beyond)',
    1,
    600,
  )
  bodyTimeoutSeconds = 10;

  @IntEnv(
    'TOKENPLACE_RELAY_MIN_UPLOAD_BYTES_PER_SECOND',
    'Slowest upload rate a request body is given time for, on top of TOKENPLACE_RELAY_BODY_TIMEOUT_SECONDS',
    1024,
    1024 * 1024 * 1024,
  )
  minUploadBytesPerSecond = 32768;

  // ---- rate limits (spec §2.4)
  @RateLimitEnv(
    'API_RATE_LIMIT',
    'Public limit per client address per route (submit/cancel/models/legacy submit)',
  )
  apiRateLimit = '60/hour';

  @RateLimitEnv('API_DAILY_QUOTA', 'Second public limit per client address per route')
  apiDailyQuota = '1000/day';

  @RateLimitEnv(
    'API_RELAY_CONTROL_PLANE_RATE_LIMIT',
    'Identity limit for all six compute-node routes (overridden per route below); unset: the per-route defaults (register and unregister 240/hour, poll and responses 6000/minute, control 9000/minute, progress 12000/minute)',
    true,
  )
  controlPlaneRateLimit = '';

  @RateLimitEnv(
    'API_RELAY_CONTROL_PLANE_IP_RATE_LIMIT',
    'Per-address limit on each compute-node route (room for two busy nodes behind one address)',
  )
  controlPlaneIpRateLimit = '24000/minute';

  @RateLimitEnv(
    'TOKENPLACE_RELAY_DIAGNOSTICS_RATE_LIMIT',
    'Per-address limit on the full /relay/diagnostics body (its ?summary=1 form is not limited)',
  )
  diagnosticsRateLimit = '120/minute';

  @RateLimitEnv(
    'API_RELAY_CONTROL_PLANE_REGISTER_RATE_LIMIT',
    'Identity limit of /servers/register (default 240/hour)',
    true,
  )
  registerRateLimit = '';

  @RateLimitEnv(
    'API_RELAY_CONTROL_PLANE_UNREGISTER_RATE_LIMIT',
    'Identity limit of /servers/unregister (default 240/hour)',
    true,
  )
  unregisterRateLimit = '';

  @RateLimitEnv(
    'API_RELAY_CONTROL_PLANE_POLL_RATE_LIMIT',
    'Identity limit of /servers/poll and /sink (default 6000/minute)',
    true,
  )
  pollRateLimit = '';

  @RateLimitEnv(
    'API_RELAY_CONTROL_PLANE_CONTROL_RATE_LIMIT',
    'Identity limit of /servers/control (default 9000/minute)',
    true,
  )
  controlRateLimit = '';

  @RateLimitEnv(
    'API_RELAY_CONTROL_PLANE_RESPONSE_RATE_LIMIT',
    'Identity limit of /responses and legacy answers (default 6000/minute)',
    true,
  )
  responseRateLimit = '';

  @RateLimitEnv(
    'API_RELAY_CONTROL_PLANE_PROGRESS_RATE_LIMIT',
    'Identity limit of /progress (default 12000/minute)',
    true,
  )
  progressRateLimit = '';
}

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

/** The body bounds from the schema: unset ones are derived from the body limit. */
export function bodyLimits(s: EdgeEnv): BodyLimits {
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

/** Body bounds that cannot work together (no body of the largest size could be read). */
export function bodyProblems(s: EdgeEnv): string[] {
  const bodies = bodyLimits(s);
  const problems: string[] = [];
  if (bodies.maxInFlightBytes < s.maxBodyBytes) {
    problems.push(
      `TOKENPLACE_RELAY_MAX_BODY_BYTES_IN_FLIGHT (${bodies.maxInFlightBytes}) must be at least TOKENPLACE_RELAY_MAX_BODY_BYTES (${s.maxBodyBytes}), or no body of the largest size could be read`,
    );
  }
  if (bodies.maxInFlightBytesPerAddress < s.maxBodyBytes) {
    problems.push(
      `TOKENPLACE_RELAY_MAX_BODY_BYTES_IN_FLIGHT_PER_ADDRESS (${bodies.maxInFlightBytesPerAddress}) must be at least TOKENPLACE_RELAY_MAX_BODY_BYTES (${s.maxBodyBytes}), or no body of the largest size could be read`,
    );
  }
  if (bodies.maxInFlightBytesPerAddress > bodies.maxInFlightBytes) {
    problems.push(
      `TOKENPLACE_RELAY_MAX_BODY_BYTES_IN_FLIGHT_PER_ADDRESS (${bodies.maxInFlightBytesPerAddress}) must not exceed TOKENPLACE_RELAY_MAX_BODY_BYTES_IN_FLIGHT (${bodies.maxInFlightBytes})`,
    );
  }
  return problems;
}

export interface EdgeSettings {
  readonly maxBodyBytes: number;
  /** Bounds and deadline of request bodies being read. */
  readonly bodies: BodyLimits;
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
}

/**
 * `listener` decides the loopback exemption; `explicit` holds the schema properties the
 * environment set (a public limit set on purpose applies on loopback too).
 */
export function edgeSettings(
  s: EdgeEnv,
  listener: ListenerSettings,
  explicit: ReadonlySet<string>,
): EdgeSettings {
  const perRoute: Record<ControlRoute, string> = {
    register: s.registerRateLimit,
    unregister: s.unregisterRateLimit,
    poll: s.pollRateLimit,
    control: s.controlRateLimit,
    response: s.responseRateLimit,
    progress: s.progressRateLimit,
  };
  const controlRateLimits = {} as Record<ControlRoute, RateLimit | null>;
  for (const route of CONTROL_ROUTES) {
    controlRateLimits[route] = parseRateLimit(
      perRoute[route] || s.controlPlaneRateLimit || CONTROL_DEFAULTS[route],
    );
  }
  return {
    maxBodyBytes: s.maxBodyBytes,
    bodies: bodyLimits(s),
    publicRateLimits: [s.apiRateLimit, s.apiDailyQuota]
      .map(parseRateLimit)
      .filter((r): r is RateLimit => r !== null),
    publicLimitsLocalExempt:
      isLoopbackHost(listener.host) &&
      !explicit.has('apiRateLimit') &&
      !explicit.has('apiDailyQuota') &&
      !explicit.has('streamRateLimit') &&
      listener.trustProxy === null,
    controlRateLimits,
    controlIpRateLimit: parseRateLimit(s.controlPlaneIpRateLimit),
    diagnosticsRateLimit: parseRateLimit(s.diagnosticsRateLimit),
  };
}
