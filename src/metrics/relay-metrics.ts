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
import {
  HAND_OFF_RESULTS,
  type HandOffResult,
  type TransitionSink,
} from '../state/transition.sink';
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

/**
 * Spec §5.5 route normalisation: a bounded label whatever path was requested. Routes that are
 * their own label declare it (`@OwnMetricsLabel()`) and never reach this; the rest share one label
 * per API prefix.
 */
export function normaliseRoute(path: string): string {
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

  private gauge<L extends string = string>(
    name: string,
    help: string,
    labelNames: readonly L[] = [],
  ): Gauge<L> {
    return new Gauge({ name, help, labelNames, registers: [this.registry] });
  }

  private counter<L extends string = string>(
    name: string,
    help: string,
    labelNames: readonly L[] = [],
  ): Counter<L> {
    return new Counter({ name, help, labelNames, registers: [this.registry] });
  }

  private readonly legacyRequests = this.counter(
    'tokenplace_relay_requests_total',
    'HTTP responses by method, endpoint (route template) and status code',
    ['method', 'endpoint', 'status'],
  );
  private readonly httpRequests = this.counter(
    'tokenplace_http_requests_total',
    'HTTP requests by normalised route, status class and outcome',
    ['method', 'route', 'status_class', 'provider_mode', 'outcome'],
  );
  private readonly httpDuration = new Histogram({
    name: 'tokenplace_http_request_duration_seconds',
    help: 'HTTP request latency by normalised route, status class and outcome',
    labelNames: ['method', 'route', 'status_class', 'provider_mode', 'outcome'] as const,
    buckets: DURATION_BUCKETS,
    registers: [this.registry],
  });
  readonly queueDepth = this.gauge(
    'tokenplace_relay_queue_depth',
    'Requests queued for compute nodes',
    ['provider_mode'],
  );
  readonly oldestQueuedAge = this.gauge(
    'tokenplace_relay_oldest_queued_request_age_seconds',
    'Age of the oldest queued request',
    ['provider_mode'],
  );
  readonly nodesRegistered = this.gauge(
    'tokenplace_compute_nodes_registered',
    'API v1 compute nodes in the registry',
  );
  readonly nodesHealthy = this.gauge(
    'tokenplace_compute_nodes_healthy',
    'API v1 compute nodes whose lease is current',
  );
  readonly leaseAge = this.gauge(
    'tokenplace_compute_node_lease_age_seconds',
    'Seconds since the least recently seen node last pinged',
  );
  private readonly evictions = this.counter(
    'tokenplace_compute_node_evictions_total',
    'Compute nodes removed from the registry, by reason',
    ['reason'],
  );
  readonly inFlight = this.gauge(
    'tokenplace_relay_in_flight_requests',
    'Requests claimed by a compute node and not yet answered',
  );
  readonly oldestInFlightAge = this.gauge(
    'tokenplace_relay_oldest_in_flight_age_seconds',
    'Age of the oldest in-flight request',
  );
  private readonly outcomes = this.counter(
    'tokenplace_relay_request_outcomes_total',
    'Terminal request outcomes, once per request',
    ['outcome'],
  );
  private readonly controlRequests = this.counter(
    'tokenplace_relay_compute_control_requests_total',
    '/servers/control results by state',
    ['state'],
  );
  private readonly leaseRenewals = this.counter(
    'tokenplace_relay_compute_control_lease_renewals_total',
    'Active /servers/control calls that renewed an in-flight lease',
  );
  private readonly buildInfo = this.gauge('tokenplace_build_info', 'Build metadata (always 1)', [
    'version',
    'revision',
  ]);
  readonly instrumentationUp = this.gauge(
    'tokenplace_instrumentation_up',
    '1 when every collector was created',
  );
  /**
   * Size of every bounded collection in the store, for soak checks and capacity alerts. One
   * unlabelled family each: Sugarkube's metrics verifier only admits its own label names.
   */
  readonly storedResponses = this.gauge(
    'tokenplace_relay_stored_responses',
    'Answers waiting to be retrieved (capped, expire after the response TTL)',
  );
  readonly terminalRecords = this.gauge(
    'tokenplace_relay_terminal_records',
    'Remembered cancelled/expired/completed request records (capped, TTL)',
  );
  readonly tombstones = this.gauge(
    'tokenplace_relay_control_tombstones',
    'Control tombstones for compute nodes (capped, TTL)',
  );
  readonly streamSessions = this.gauge(
    'tokenplace_relay_stream_sessions',
    'Open legacy stream sessions (capped, TTL)',
  );
  readonly rateLimitBuckets = this.gauge(
    'tokenplace_relay_rate_limit_buckets',
    'Rate-limit buckets held (capped, expire with their window)',
  );
  readonly registeredNodes = this.gauge(
    'tokenplace_relay_registered_nodes',
    'Registered compute nodes of both protocols (capped)',
  );
  readonly queuedBytes = this.gauge(
    'tokenplace_relay_queued_bytes',
    'Bytes of queued ciphertext over all nodes',
  );
  readonly answerBytes = this.gauge(
    'tokenplace_relay_answer_bytes',
    'Bytes of answers waiting for their clients and of buffered legacy stream chunks',
  );
  readonly waitingRequests = this.gauge(
    'tokenplace_relay_waiting_requests',
    'Requests this replica holds open waiting for work or an answer (long-polls)',
  );
  private readonly heldWaitsRefused = this.counter(
    'tokenplace_relay_held_waits_refused_total',
    'Waits not held because this replica held as many as its memory allows (TOKENPLACE_RELAY_MAX_HELD_WAITS): retrieves answered at once, polls and gateway chats refused 503, legacy /sink answered without work',
  );
  private heldWaitsRefusedSeen = 0;
  readonly replicationTimeouts = this.counter(
    'tokenplace_relay_redis_replication_timeouts_total',
    'Acknowledged transitions answered 503 because fewer than TOKENPLACE_RELAY_REDIS_WAIT_REPLICAS replicas confirmed them in time',
  );
  private readonly handOffs = this.counter(
    'tokenplace_relay_redis_handoffs_total',
    "Jobs an enqueue claimed for a held API v1 poll (Redis one-turn delivery), counted on the poll's replica by what became of them: taken by the poll; given_back to the queue (the poll had ended); already_ended (answered, cancelled or expired meanwhile); left_to_lease (not given back: it returns when its in-flight lease lapses)",
    ['result'],
  );
  readonly storeUp = this.gauge(
    'tokenplace_relay_state_store_up',
    '1 when the state store (memory or redis, see /healthz) answered the last check',
  );

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
    for (const result of HAND_OFF_RESULTS) {
      this.handOffs.inc({ result }, 0);
    }
    this.queueDepth.set({ provider_mode: 'relay' }, 0);
    this.oldestQueuedAge.set({ provider_mode: 'relay' }, 0);
    const version = config.imageTag || config.releaseVersion || 'dev';
    const revision = config.imageTag || config.gitSha || config.releaseVersion || 'unknown';
    this.buildInfo.set({ version, revision }, 1);
    this.storeUp.set(1);
    this.instrumentationUp.set(1);
  }

  /** One HTTP exchange; labels are bounded by construction. */
  /**
   * One finished exchange. `ownLabel` is the route's own label when it declares one; otherwise
   * the route template (or the path, when nothing matched) is normalised.
   */
  observeHttp(
    method: string,
    path: string,
    template: string | null,
    ownLabel: string | null,
    status: number,
    seconds: number,
  ): void {
    const m = methodLabel(method);
    const route = ownLabel ?? normaliseRoute(template ?? path);
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

  /** {@link TransitionSink}: what became of a hand-off to a held poll of this replica. */
  handOff(result: HandOffResult): void {
    this.handOffs.inc({ result });
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

  /** The lifecycle's running count of waits not held (read on scrape, like the held count). */
  applyHeldWaitsRefused(total: number): void {
    if (total > this.heldWaitsRefusedSeen) {
      this.heldWaitsRefused.inc(total - this.heldWaitsRefusedSeen);
      this.heldWaitsRefusedSeen = total;
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
    this.answerBytes.set(stats.answerBytes);
    this.registeredNodes.set(stats.nodesRegistered);
    this.storedResponses.set(stats.storedResponses);
    this.terminalRecords.set(stats.terminalRecords);
    this.tombstones.set(stats.tombstones);
    this.streamSessions.set(stats.streamSessions);
    this.rateLimitBuckets.set(stats.rateLimitBuckets);
  }
}
