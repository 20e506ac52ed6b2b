import { Injectable } from '@nestjs/common';
import {
  collectDefaultMetrics,
  Counter,
  Gauge,
  Histogram,
  Registry,
  type Counter as CounterT,
  type Histogram as HistogramT,
} from 'prom-client';
import { RelayConfig } from '../config/relay-config';
import type { TransitionSink } from '../state/transition.sink';
import {
  CONTROL_STATES,
  EVICTION_REASONS,
  REQUEST_OUTCOMES,
  type ControlState,
  type RequestOutcome,
  type StoreStats,
  type TransitionCounts,
} from '../state/state.types';

export const HTTP_METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD'] as const;
export const DURATION_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

const SELF_ROUTES = new Set([
  '/api/v1/relay/requests',
  '/api/v1/relay/requests/cancel',
  '/api/v1/relay/responses',
  '/api/v1/relay/responses/retrieve',
  '/api/v1/relay/progress',
  '/api/v1/relay/servers/register',
  '/api/v1/relay/servers/unregister',
  '/api/v1/relay/servers/poll',
  '/api/v1/relay/servers/control',
  '/api/v1/relay/servers/next',
  '/healthz',
  '/livez',
  '/metrics',
  '/relay/diagnostics',
]);

/** Spec §5.5 route normalisation: a bounded label whatever path was requested. */
export function normaliseRoute(path: string): string {
  if (SELF_ROUTES.has(path)) {
    return path;
  }
  if (
    path === '/api/v1' ||
    path.startsWith('/api/v1/') ||
    path === '/v1' ||
    path.startsWith('/v1/')
  ) {
    return '/api/v1/*';
  }
  if (
    path === '/api/v2' ||
    path.startsWith('/api/v2/') ||
    path === '/v2' ||
    path.startsWith('/v2/')
  ) {
    return '/api/v2/*';
  }
  return 'other';
}

export function methodLabel(method: string): string {
  return (HTTP_METHODS as readonly string[]).includes(method) ? method : 'other';
}

interface HttpChildren {
  count: CounterT.Internal;
  duration: HistogramT.Internal<string>;
}

/**
 * Every metric the relay exports, declared once on the relay's own registry with bounded labels
 * (spec §5.5 names, labels and buckets; ops.md §4 for the dashboards that read them).
 */
@Injectable()
export class RelayMetrics implements TransitionSink {
  readonly registry = new Registry();

  private readonly legacyRequests = new Counter({
    name: 'tokenplace_relay_requests_total',
    help: 'HTTP responses by method, endpoint (route template) and status code',
    labelNames: ['method', 'endpoint', 'status'] as const,
    registers: [this.registry],
  });
  private readonly httpRequests = new Counter({
    name: 'tokenplace_http_requests_total',
    help: 'HTTP requests by normalised route, status class and outcome',
    labelNames: ['method', 'route', 'status_class', 'provider_mode', 'outcome'] as const,
    registers: [this.registry],
  });
  private readonly httpDuration = new Histogram({
    name: 'tokenplace_http_request_duration_seconds',
    help: 'HTTP request latency by normalised route, status class and outcome',
    labelNames: ['method', 'route', 'status_class', 'provider_mode', 'outcome'] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });
  readonly queueDepth = new Gauge({
    name: 'tokenplace_relay_queue_depth',
    help: 'Requests queued for compute nodes',
    labelNames: ['provider_mode'] as const,
    registers: [this.registry],
  });
  readonly oldestQueuedAge = new Gauge({
    name: 'tokenplace_relay_oldest_queued_request_age_seconds',
    help: 'Age of the oldest queued request',
    labelNames: ['provider_mode'] as const,
    registers: [this.registry],
  });
  readonly nodesRegistered = new Gauge({
    name: 'tokenplace_compute_nodes_registered',
    help: 'API v1 compute nodes in the registry',
    registers: [this.registry],
  });
  readonly nodesHealthy = new Gauge({
    name: 'tokenplace_compute_nodes_healthy',
    help: 'API v1 compute nodes whose lease is current',
    registers: [this.registry],
  });
  readonly leaseAge = new Gauge({
    name: 'tokenplace_compute_node_lease_age_seconds',
    help: 'Seconds since the least recently seen node last pinged',
    registers: [this.registry],
  });
  private readonly evictions = new Counter({
    name: 'tokenplace_compute_node_evictions_total',
    help: 'Compute nodes removed from the registry, by reason',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly inFlight = new Gauge({
    name: 'tokenplace_relay_in_flight_requests',
    help: 'Requests claimed by a compute node and not yet answered',
    registers: [this.registry],
  });
  readonly oldestInFlightAge = new Gauge({
    name: 'tokenplace_relay_oldest_in_flight_age_seconds',
    help: 'Age of the oldest in-flight request',
    registers: [this.registry],
  });
  private readonly outcomes = new Counter({
    name: 'tokenplace_relay_request_outcomes_total',
    help: 'Terminal request outcomes, once per request',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  private readonly controlRequests = new Counter({
    name: 'tokenplace_relay_compute_control_requests_total',
    help: '/servers/control results by state',
    labelNames: ['state'] as const,
    registers: [this.registry],
  });
  private readonly leaseRenewals = new Counter({
    name: 'tokenplace_relay_compute_control_lease_renewals_total',
    help: 'Active /servers/control calls that renewed an in-flight lease',
    registers: [this.registry],
  });
  private readonly buildInfo = new Gauge({
    name: 'tokenplace_build_info',
    help: 'Build metadata (always 1)',
    labelNames: ['version', 'revision'] as const,
    registers: [this.registry],
  });
  readonly instrumentationUp = new Gauge({
    name: 'tokenplace_instrumentation_up',
    help: '1 when every collector was created',
    registers: [this.registry],
  });
  /**
   * Size of every bounded collection in the store, for soak checks and capacity alerts. One
   * unlabelled family each: Sugarkube's metrics verifier only admits its own label names.
   */
  readonly storedResponses = new Gauge({
    name: 'tokenplace_relay_stored_responses',
    help: 'Answers waiting to be retrieved (capped, expire after the response TTL)',
    registers: [this.registry],
  });
  readonly terminalRecords = new Gauge({
    name: 'tokenplace_relay_terminal_records',
    help: 'Remembered cancelled/expired/completed request records (capped, TTL)',
    registers: [this.registry],
  });
  readonly tombstones = new Gauge({
    name: 'tokenplace_relay_control_tombstones',
    help: 'Control tombstones for compute nodes (capped, TTL)',
    registers: [this.registry],
  });
  readonly streamSessions = new Gauge({
    name: 'tokenplace_relay_stream_sessions',
    help: 'Open legacy stream sessions (capped, TTL)',
    registers: [this.registry],
  });
  readonly rateLimitBuckets = new Gauge({
    name: 'tokenplace_relay_rate_limit_buckets',
    help: 'Rate-limit buckets held (capped, expire with their window)',
    registers: [this.registry],
  });
  readonly registeredNodes = new Gauge({
    name: 'tokenplace_relay_registered_nodes',
    help: 'Registered compute nodes of both protocols (capped)',
    registers: [this.registry],
  });
  readonly queuedBytes = new Gauge({
    name: 'tokenplace_relay_queued_bytes',
    help: 'Bytes of queued ciphertext over all nodes',
    registers: [this.registry],
  });
  readonly waitingRequests = new Gauge({
    name: 'tokenplace_relay_waiting_requests',
    help: 'Requests this replica holds open waiting for work or an answer (long-polls)',
    registers: [this.registry],
  });
  readonly replicationTimeouts = new Counter({
    name: 'tokenplace_relay_redis_replication_timeouts_total',
    help: 'Acknowledged transitions answered 503 because fewer than TOKENPLACE_RELAY_REDIS_WAIT_REPLICAS replicas confirmed them in time',
    registers: [this.registry],
  });
  readonly storeUp = new Gauge({
    name: 'tokenplace_relay_state_store_up',
    help: '1 when the state store (memory or redis, see /healthz) answered the last check',
    registers: [this.registry],
  });

  private readonly children = new Map<string, HttpChildren>();
  private readonly legacyChildren = new Map<string, CounterT.Internal>();

  constructor(config: RelayConfig) {
    collectDefaultMetrics({ register: this.registry });
    // prom-client names these gauges *_total, which promtool rejects for non-counters.
    for (const name of [
      'nodejs_active_handles_total',
      'nodejs_active_requests_total',
      'nodejs_active_resources_total',
    ]) {
      this.registry.removeSingleMetric(name);
    }
    for (const outcome of REQUEST_OUTCOMES) {
      this.outcomes.inc({ outcome }, 0);
    }
    for (const reason of EVICTION_REASONS) {
      this.evictions.inc({ reason }, 0);
    }
    for (const state of CONTROL_STATES) {
      this.controlRequests.inc({ state }, 0);
    }
    this.leaseRenewals.inc(0);
    this.queueDepth.set({ provider_mode: 'relay' }, 0);
    this.oldestQueuedAge.set({ provider_mode: 'relay' }, 0);
    const version = config.imageTag || config.releaseVersion || 'dev';
    const revision = config.imageTag || config.gitSha || config.releaseVersion || 'unknown';
    this.buildInfo.set({ version, revision }, 1);
    this.storeUp.set(1);
    this.instrumentationUp.set(1);
  }

  /** One HTTP exchange; labels are bounded by construction. */
  observeHttp(
    method: string,
    path: string,
    template: string | null,
    status: number,
    seconds: number,
  ): void {
    const m = methodLabel(method);
    const route = normaliseRoute(template ?? path);
    const key = `${m} ${route} ${status}`;
    let child = this.children.get(key);
    if (!child) {
      const statusClass =
        status >= 100 && status < 600 ? `${Math.floor(status / 100)}xx` : 'unknown';
      const outcome = status === 429 ? 'rate_limited' : status < 400 ? 'completed' : 'failed';
      const labels = {
        method: m,
        route,
        status_class: statusClass,
        provider_mode: 'relay',
        outcome,
      };
      child = {
        count: this.httpRequests.labels(labels),
        duration: this.httpDuration.labels(labels),
      };
      this.children.set(key, child);
    }
    child.count.inc();
    child.duration.observe(seconds);
    const endpoint = template ?? 'unknown';
    const legacyKey = `${m} ${endpoint} ${status}`;
    let legacy = this.legacyChildren.get(legacyKey);
    if (!legacy) {
      legacy = this.legacyRequests.labels({ method: m, endpoint, status: String(status) });
      this.legacyChildren.set(legacyKey, legacy);
    }
    legacy.inc();
  }

  /** {@link TransitionSink}: the store reports each transition's counts here, once. */
  transitions(t: TransitionCounts): void {
    this.recordTransitions(t);
  }

  /** {@link TransitionSink}: an acknowledged transition its replicas did not confirm in time. */
  replicationTimeout(): void {
    this.replicationTimeouts.inc();
  }

  private recordTransitions(t: TransitionCounts): void {
    for (const [outcome, n] of Object.entries(t.outcomes)) {
      if (n) {
        this.outcomes.inc({ outcome }, n);
      }
    }
    for (const [reason, n] of Object.entries(t.evictions)) {
      if (n) {
        this.evictions.inc({ reason }, n);
      }
    }
  }

  recordOutcome(outcome: RequestOutcome): void {
    this.outcomes.inc({ outcome });
  }

  recordControl(state: ControlState, renewed: boolean): void {
    this.controlRequests.inc({ state });
    if (renewed) {
      this.leaseRenewals.inc();
    }
  }

  applyStats(stats: StoreStats): void {
    this.queueDepth.set({ provider_mode: 'relay' }, stats.queueDepth);
    this.oldestQueuedAge.set({ provider_mode: 'relay' }, stats.oldestQueuedAgeSeconds);
    this.nodesRegistered.set(stats.v1NodesRegistered);
    this.nodesHealthy.set(stats.v1NodesHealthy);
    this.leaseAge.set(stats.maxLeaseAgeSeconds);
    this.inFlight.set(stats.inFlight);
    this.oldestInFlightAge.set(stats.oldestInFlightAgeSeconds);
    this.queuedBytes.set(stats.queuedBytes);
    this.registeredNodes.set(stats.nodesRegistered);
    this.storedResponses.set(stats.storedResponses);
    this.terminalRecords.set(stats.terminalRecords);
    this.tombstones.set(stats.tombstones);
    this.streamSessions.set(stats.streamSessions);
    this.rateLimitBuckets.set(stats.rateLimitBuckets);
  }
}
