import { Inject, Injectable } from '@nestjs/common';
import type { CallerWatch } from '../common/client-gone.decorator';
import { CLOCK, type Clock } from '../common/clock';
import { sha256Hex } from '../common/ids';
import { Errors } from '../common/relay-error';
import { RelayConfig } from '../config/relay-config';
import { LifecycleService } from '../lifecycle/lifecycle.service';
import { RelayMetrics } from '../metrics/relay-metrics';
import { RegistryService } from '../registry/registry.service';
import { STATE_STORE, type StateStore } from '../state/state-store';
import type { ClaimedJob, Dialect, NodeOrigin } from '../state/state.types';
import type { WaitSignal } from '../common/wait-signal';
import type { NodeHelloDto, UnregisterDto } from './sink.dto';

export type LegacySinkBody = Record<string, unknown> & { next_ping_in_x_seconds: number };
export type PollBody = Record<string, unknown>;

/** Legacy work item as the existing compute nodes parse it (all fields strings). */
function legacyItem(job: ClaimedJob): Record<string, unknown> {
  const item: Record<string, unknown> = {
    chat_history: job.envelope.ciphertext,
    client_public_key: job.clientKey,
    cipherkey: job.envelope.cipherkey,
    iv: job.envelope.iv,
    stream: job.stream,
  };
  if (job.stream) {
    item.stream_session_id = job.jobId;
  }
  return item;
}

const seconds = (ms: number): number => Math.max(0, Math.round(ms) / 1000);

/** `Retry-After` of a poll refused for the held-wait budget: held waits end within seconds. */
const HELD_FULL_RETRY_SECONDS = 5;

/**
 * Compute nodes taking work, in both dialects: `/sink` (batch, optional bounded hold) and
 * `/servers/poll` (one item, long-poll woken the moment work arrives, answered at once on drain).
 */
@Injectable()
export class SinkService {
  constructor(
    @Inject(STATE_STORE) private readonly store: StateStore,
    @Inject(CLOCK) private readonly clock: Clock,
    private readonly config: RelayConfig,
    private readonly registry: RegistryService,
    private readonly metrics: RelayMetrics,
    private readonly lifecycle: LifecycleService,
  ) {}

  async sink(
    nodeId: string,
    maxBatch: number,
    origin: NodeOrigin,
    caller: CallerWatch,
  ): Promise<LegacySinkBody> {
    const holdMs = this.lifecycle.draining ? 0 : this.config.sinkHoldMs;
    const until = this.clock.now() + holdMs;
    const body: LegacySinkBody = { next_ping_in_x_seconds: this.config.sinkPingSeconds };
    if (!(await this.registry.pingLegacy(nodeId, origin, holdMs > 0 ? until : undefined))) {
      return body;
    }
    // Returned, not awaited: a held sink keeps no frame of this method alive while it waits.
    return this.claimOrWait(nodeId, 'legacy', maxBatch, until, caller).then((jobs) =>
      this.sinkBody(body, jobs, maxBatch),
    );
  }

  private sinkBody(
    body: LegacySinkBody,
    jobs: ClaimedJob[] | null,
    maxBatch: number,
  ): LegacySinkBody {
    const first = jobs?.[0];
    if (!jobs || !first) {
      return body;
    }
    const items = jobs.map(legacyItem);
    const head = items[0] as Record<string, unknown>;
    Object.assign(body, {
      client_public_key: head.client_public_key,
      chat_history: head.chat_history,
      cipherkey: head.cipherkey,
      iv: head.iv,
    });
    if (first.stream) {
      body.stream = true;
      body.stream_session_id = first.jobId;
    }
    if (maxBatch > 1) {
      body.batch = items;
    }
    return body;
  }

  async poll(hello: NodeHelloDto, origin: NodeOrigin, caller: CallerWatch): Promise<PollBody> {
    const nodeId = hello.server_public_key;
    const waitSeconds = this.config.pollWaitSeconds;
    const draining = this.lifecycle.draining;
    const until = this.clock.now() + (draining ? 0 : waitSeconds * 1000);
    await this.registry.renewV1(
      nodeId,
      hello.capabilities,
      until,
      origin,
      hello.control_credential,
    );
    // Returned, not awaited: a held poll keeps no frame of this method alive while it waits.
    return this.claimOrWait(nodeId, 'v1', 1, until, caller).then((jobs) =>
      this.pollBody(jobs, draining, waitSeconds),
    );
  }

  private pollBody(jobs: ClaimedJob[] | null, draining: boolean, waitSeconds: number): PollBody {
    if (jobs === null) {
      throw Errors.serverNotFound();
    }
    const job = jobs[0];
    if (!job) {
      const nextPing = draining ? 1 : waitSeconds > 0 ? 0 : Math.max(this.config.v1LeaseSeconds, 1);
      return {
        message: 'No requests available',
        next_ping_in_x_seconds: nextPing,
        poll_wait_seconds: waitSeconds,
      };
    }
    const remaining = seconds(job.deadlineAt - this.clock.now());
    return {
      client_public_key: job.clientKey,
      ciphertext: job.envelope.ciphertext,
      chat_history: job.envelope.ciphertext,
      cipherkey: job.envelope.cipherkey,
      iv: job.envelope.iv,
      ...job.envelope.extra,
      ...(job.requestId !== null ? { request_id: job.requestId } : {}),
      ...(job.cancelToken !== null ? { cancel_token: job.cancelToken } : {}),
      e2ee_v1: true,
      request_deadline_remaining_seconds: remaining,
      request_ttl_seconds: remaining,
      // Today's nodes sleep this long after answering and default to their whole lease when the
      // field is absent (as the existing relay sends it): 0 brings them straight back to a poll.
      ...(this.config.v1WorkPingHint ? { next_ping_in_x_seconds: 0 } : {}),
    };
  }

  /** `/servers/control`: renews an in-flight lease or reports the request's fate (spec §4.4.3). */
  async control(
    nodeId: string,
    requestId: string,
    credential: string,
    acknowledge: boolean,
  ): Promise<Record<string, unknown>> {
    const now = this.clock.now();
    const result = await this.store.control({
      nodeId,
      requestId,
      credentialDigest: sha256Hex(credential),
      acknowledge,
      now,
    });
    if (result.status === 'forbidden') {
      throw Errors.controlCredential();
    }
    const { state, deadlineAt } = result;
    const metricState =
      acknowledge && (state === 'cancelled' || state === 'expired') ? 'acknowledged' : state;
    this.metrics.recordControl(metricState, state === 'active');
    const nextPoll =
      state === 'active'
        ? this.config.controlNextPollSeconds
        : Math.max(1, Math.min(this.config.pollWaitSeconds, 10));
    const body: Record<string, unknown> = {
      status: state === 'completed_unavailable' ? 'completed/unavailable' : state,
      next_poll_seconds: nextPoll,
    };
    if (deadlineAt !== null && state !== 'completed_unavailable') {
      const remaining = seconds(deadlineAt - now);
      body.request_deadline_remaining_seconds = remaining;
      body.request_ttl_seconds = remaining;
    }
    return body;
  }

  /**
   * Claims work now, or waits until work is signalled, `until` passes, the caller disconnects or
   * the relay starts draining; then claims once more. Null when the node vanished meanwhile. With
   * no room for another held wait (the memory plan's budget) it does not wait: a legacy `/sink`
   * gets no work, a `/servers/poll` 503 + `Retry-After`.
   */
  private async claimOrWait(
    nodeId: string,
    dialect: Dialect,
    max: number,
    until: number,
    caller: CallerWatch,
  ): Promise<ClaimedJob[] | null> {
    let signal: WaitSignal | null = null;
    // A store whose wait claims (Redis, API v1: its re-check claims what is queued, else records
    // the hold) lets a poll that can be held go straight to the wait: one script, not two.
    let claim = true;
    if (
      dialect === 'v1' &&
      this.store.claimsWhileWaiting &&
      !this.lifecycle.draining &&
      this.clock.now() < until &&
      // Quiet: with no room, the poll claims first and counts a refusal only if it answers one.
      caller.hold(this.lifecycle, 'node', this.registry.boundsNodesByAddress, true)
    ) {
      signal = caller.signal(this.lifecycle);
      claim = false;
    }
    for (;;) {
      if (caller.gone || this.lifecycle.lingering) {
        // Lingering (memory store, drain window over): work handed out now would die unanswered.
        return [];
      }
      if (claim) {
        const result = await this.store.claimNext({ nodeId, dialect, max, now: this.clock.now() });
        if (result.status !== 'ok') {
          return dialect === 'legacy' ? [] : null;
        }
        if (result.jobs.length > 0 || this.lifecycle.draining || this.clock.now() >= until) {
          return result.jobs;
        }
      }
      // After a wake-up the poll claims first (the wait's re-check would find the same work).
      claim = true;
      if (signal === null) {
        if (!caller.hold(this.lifecycle, 'node', this.registry.boundsNodesByAddress)) {
          // The relay holds as many waits as its memory allows: a legacy node gets its un-held
          // answer (no work; it pings again), an API v1 node is told to poll again shortly.
          if (dialect === 'legacy') {
            return [];
          }
          throw Errors.capacity(
            'The relay holds as many long-polls as its memory allows; poll again shortly',
            HELD_FULL_RETRY_SECONDS,
            503,
          );
        }
        signal = caller.signal(this.lifecycle);
      }
      const handed = await this.store.waitForWork(nodeId, until, signal, { dialect, max });
      if (handed !== null) {
        // Claimed for this poll by its re-check or by the enqueue itself (Redis, API v1).
        return handed;
      }
      if (this.lifecycle.draining && !caller.gone) {
        // Draining: hand out what is already queued, then stop waiting.
        until = this.clock.now();
      }
    }
  }

  /** `/unregister` and `/servers/unregister`: the node leaves (spec §4.4.4). */
  async unregister(dto: UnregisterDto): Promise<object> {
    const removed = await this.registry.unregister(
      dto.server_public_key,
      dto.control_credential ?? null,
    );
    return { message: 'Server unregistered', removed };
  }
}
