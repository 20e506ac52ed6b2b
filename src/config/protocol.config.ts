import { BoolEnv, IntEnv, NumberEnv } from './env-kinds';
import type { StoreLimits } from './store-limits';

/**
 * The timings of a request's life on the legacy routes (`/sink`, `/faucet`, `/retrieve`, streams)
 * and the API v1 routes (spec §4.2): node leases, long-poll holds, deadlines, record lifetimes
 * (client/, sink/, source/, client-lifecycle/, and the store's TTLs).
 */
export class ProtocolEnv {
  @BoolEnv(
    'TOKENPLACE_ENABLE_LEGACY_RELAY_ROUTES',
    'Serve the legacy routes (/sink, /faucet, ...); off: they answer 410',
  )
  legacyRoutesEnabled = true;

  @NumberEnv(
    'TOKENPLACE_RELAY_SINK_PING_SECONDS',
    'next_ping_in_x_seconds sent to /sink nodes',
    0,
    60,
  )
  sinkPingSeconds = 10;

  @NumberEnv(
    ['TOKENPLACE_RELAY_SINK_STALE_SECONDS', 'TOKEN_PLACE_RELAY_SERVER_TTL_SECONDS'],
    'A /sink node silent this long is lapsed: handed out only when no fresh node is, evicted after the lapse grace',
    1,
    3600,
  )
  sinkStaleSeconds = 60;

  @NumberEnv(
    'TOKENPLACE_RELAY_SINK_HOLD_SECONDS',
    "Long-poll: hold an idle /sink up to this long for work (0: answer at once; keep below the nodes' 10 s timeout)",
    0,
    8,
  )
  sinkHoldSeconds = 0;

  @NumberEnv(
    'TOKENPLACE_RELAY_RETRIEVE_HOLD_SECONDS',
    'Long-poll: hold an empty /retrieve up to this long for the answer (0: answer at once)',
    0,
    8,
  )
  retrieveHoldSeconds = 0;

  @NumberEnv(
    ['TOKENPLACE_RELAY_LEGACY_REQUEST_TTL_SECONDS', 'TOKENPLACE_PENDING_REQUEST_TTL_SECONDS'],
    'How long a legacy request may wait for a node and its answer',
    1,
    86400,
  )
  legacyRequestTtlSeconds = 300;

  @NumberEnv(
    'TOKENPLACE_RELAY_STREAM_TTL_SECONDS',
    'Idle lifetime of a legacy stream session',
    1,
    86400,
  )
  streamTtlSeconds = 300;

  @IntEnv(
    'TOKEN_PLACE_API_V1_RELAY_SERVER_LEASE_SECONDS',
    'API v1 node lease; next_ping_in_x_seconds in /servers/register',
    1,
    3600,
  )
  v1LeaseSeconds = 30;

  @NumberEnv(
    'TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS',
    'Long-poll hold of /servers/poll (poll_wait_seconds)',
    0,
    120,
  )
  pollWaitSeconds = 10;

  @NumberEnv(
    'TOKEN_PLACE_API_V1_IN_FLIGHT_TTL_SECONDS',
    'In-flight accounting lease renewed by /servers/control (default: the node lease)',
    1,
    3600,
    { optional: true },
  )
  inFlightTtlSeconds?: number;

  @NumberEnv(
    'TOKENPLACE_RELAY_NODE_LAPSE_GRACE_SECONDS',
    'A node silent past its lease keeps its queued and claimed work this much longer (not offered while another node is fresh); back within it, it gets the work, else the work ends cancelled/server_unregistered',
    0,
    600,
  )
  nodeLapseGraceSeconds = 20;

  @BoolEnv(
    'TOKENPLACE_RELAY_V1_WORK_PING_HINT',
    "Send next_ping_in_x_seconds: 0 with work on /servers/poll, so today's nodes poll again right after answering (the existing relay omits it and they sleep a whole lease)",
  )
  v1WorkPingHint = true;

  @NumberEnv(
    'TOKEN_PLACE_API_V1_REQUEST_DEADLINE_SECONDS',
    'Authoritative request deadline (clamped to [MIN, MAX])',
    0.001,
    86400,
  )
  deadlineSeconds = 480;

  @NumberEnv(
    'TOKEN_PLACE_API_V1_REQUEST_DEADLINE_MIN_SECONDS',
    'Deadline floor (clamped to [1, 3600])',
    0.001,
    86400,
  )
  deadlineMinSeconds = 1;

  @NumberEnv(
    'TOKEN_PLACE_API_V1_REQUEST_DEADLINE_MAX_SECONDS',
    'Deadline ceiling (clamped to [MIN, 3600])',
    0.001,
    86400,
  )
  deadlineMaxSeconds = 3600;

  @NumberEnv(
    'TOKEN_PLACE_API_V1_CONTROL_TOMBSTONE_TTL_SECONDS',
    'Lifetime of node-facing control tombstones',
    1,
    300,
  )
  tombstoneTtlSeconds = 60;

  @NumberEnv(
    'TOKENPLACE_TERMINAL_REQUEST_TTL_SECONDS',
    'Lifetime of client-facing cancelled/expired/completed records',
    1,
    86400,
  )
  terminalTtlSeconds = 300;
}

export interface ProtocolSettings {
  readonly legacyRoutesEnabled: boolean;
  readonly sinkPingSeconds: number;
  readonly sinkHoldMs: number;
  readonly retrieveHoldMs: number;
  readonly v1LeaseSeconds: number;
  readonly pollWaitSeconds: number;
  /** Send `next_ping_in_x_seconds: 0` with API v1 work (see the env table). */
  readonly v1WorkPingHint: boolean;
}

export function protocolSettings(s: ProtocolEnv): ProtocolSettings {
  return {
    legacyRoutesEnabled: s.legacyRoutesEnabled,
    sinkPingSeconds: s.sinkPingSeconds,
    sinkHoldMs: s.sinkHoldSeconds * 1000,
    retrieveHoldMs: s.retrieveHoldSeconds * 1000,
    v1LeaseSeconds: s.v1LeaseSeconds,
    pollWaitSeconds: s.pollWaitSeconds,
    v1WorkPingHint: s.v1WorkPingHint,
  };
}

/** The store's leases, deadlines and lifetimes (the rest of {@link StoreLimits} is store.config.ts). */
export type ProtocolTimings = Pick<
  StoreLimits,
  | 'legacyLeaseMs'
  | 'v1LeaseMs'
  | 'inFlightTtlMs'
  | 'lapseGraceMs'
  | 'v1DeadlineMs'
  | 'legacyRequestTtlMs'
  | 'terminalTtlMs'
  | 'tombstoneTtlMs'
  | 'streamTtlMs'
>;

export function protocolTimings(s: ProtocolEnv): ProtocolTimings {
  const deadlineMin = clamp(s.deadlineMinSeconds, 1, 3600);
  const deadlineMax = clamp(s.deadlineMaxSeconds, deadlineMin, 3600);
  const deadline = clamp(s.deadlineSeconds, deadlineMin, deadlineMax);
  return {
    legacyLeaseMs: s.sinkStaleSeconds * 1000,
    v1LeaseMs: s.v1LeaseSeconds * 1000,
    inFlightTtlMs: (s.inFlightTtlSeconds ?? s.v1LeaseSeconds) * 1000,
    lapseGraceMs: s.nodeLapseGraceSeconds * 1000,
    v1DeadlineMs: deadline * 1000,
    legacyRequestTtlMs: s.legacyRequestTtlSeconds * 1000,
    terminalTtlMs: s.terminalTtlSeconds * 1000,
    tombstoneTtlMs: s.tombstoneTtlSeconds * 1000,
    streamTtlMs: s.streamTtlSeconds * 1000,
  };
}

export function protocolProblems(s: ProtocolEnv): string[] {
  return s.inFlightTtlSeconds !== undefined && s.inFlightTtlSeconds > 86400
    ? ['TOKEN_PLACE_API_V1_IN_FLIGHT_TTL_SECONDS is too large']
    : [];
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(Math.max(value, min), max);
}
