import { Inject, Injectable } from '@nestjs/common';
import {
  ClientLifecycleService,
  type AdmitRefusal,
  type Outcome,
  type OutcomeClient,
} from '../client-lifecycle/client-lifecycle.service';
import type { CallerWatch } from '../common/client-gone.decorator';
import { CLOCK, type Clock } from '../common/clock';
import { newJobId } from '../common/ids';
import { Errors, type RelayError } from '../common/relay-error';
import { WireResponse } from '../common/wire-response';
import { RelayConfig } from '../config/relay-config';
import { DEFAULT_MODEL, resolveModel } from '../registry/capabilities';
import { RegistryViewService } from '../registry/registry-view.service';
import { RegistryService } from '../registry/registry.service';
import {
  CONTEXT_TIERS,
  TERMINAL_REASONS,
  type ContextTier,
  type Envelope,
  type JobInput,
  type TerminalReason,
} from '../state/state.types';
import type {
  CancelDto,
  FaucetDto,
  LegacyRetrieveDto,
  RequestsDto,
  RetrieveDto,
} from './client.dto';

const SELECTION_POLICY = 'best_fit_smallest_capable_least_loaded_v1';
/** Most a client may ask a retrieve to be held (`Prefer: wait=N`), inside browsers' fetch budgets. */
export const MAX_RETRIEVE_WAIT_SECONDS = 8;
const CANCEL_REASONS = new Set<string>(
  TERMINAL_REASONS.filter((r) => r !== 'response_ttl_exceeded'),
);

const seconds = (ms: number): number => Math.max(0, ms) / 1000;

/** The relay routes' answer to each admission refusal (legacy and API v1 share these errors). */
const ADMIT_ERRORS: Record<AdmitRefusal, () => RelayError> = {
  draining: () => Errors.draining(),
  node_not_found: () => Errors.serverNotFound(),
  node_queue_full: () => Errors.capacity('The compute node queue is full; retry with backoff', 5),
  client_pending_full: () =>
    Errors.capacity('Too many pending requests for this client; retry when one finishes', 5),
  queue_full: () => Errors.capacity('The relay queue is full; retry shortly', 5, 503),
  request_in_use: () => Errors.requestInUse(),
};

/** Envelope bytes counted against the queue's byte cap. */
function envelopeBytes(e: Envelope): number {
  return e.ciphertext.length + e.cipherkey.length + e.iv.length;
}

/** Browser- and client-facing routes of both dialects: pick a node, submit, retrieve, cancel. */
@Injectable()
export class ClientService {
  constructor(
    @Inject(CLOCK) private readonly clock: Clock,
    private readonly config: RelayConfig,
    private readonly registry: RegistryService,
    private readonly views: RegistryViewService,
    private readonly requests: ClientLifecycleService,
  ) {}

  // ------------------------------------------------------------ legacy

  async nextServer(): Promise<object> {
    const key = await this.registry.pickLegacy();
    if (key === null) {
      throw Errors.noServers();
    }
    return { server_public_key: key };
  }

  async faucet(dto: FaucetDto): Promise<object> {
    const stream = Boolean(dto.stream);
    const clientKey = dto.client_public_key ?? null;
    if (stream && !clientKey) {
      throw Errors.streamNeedsClientKey();
    }
    if (!clientKey) {
      // The existing relay queued such work, and nodes then dropped it (their schema needs a string).
      throw Errors.missingClientKey();
    }
    this.refuseWhileDraining();
    const envelope: Envelope = {
      ciphertext: dto.chat_history,
      cipherkey: dto.cipherkey,
      iv: dto.iv,
      extra: {},
    };
    await this.admit({
      jobId: newJobId(),
      dialect: 'legacy',
      nodeId: dto.server_public_key,
      clientKey,
      requestId: null,
      cancelToken: null,
      stream,
      envelope,
      bytes: envelopeBytes(envelope),
    });
    return { message: 'Request received' };
  }

  async legacyRetrieve(dto: LegacyRetrieveDto, caller: CallerWatch): Promise<object> {
    const client: OutcomeClient = { dialect: 'legacy', clientKey: dto.client_public_key };
    const until = this.clock.now() + this.config.retrieveHoldMs;
    const outcome = await this.requests.awaitOutcome(client, null, until, caller);
    if (outcome.status !== 'answered') {
      return { error: 'No response available for the given public key' };
    }
    this.requests.confirmDelivery(client, null, caller);
    return {
      chat_history: outcome.envelope.ciphertext,
      cipherkey: outcome.envelope.cipherkey,
      iv: outcome.envelope.iv,
    };
  }

  async streamRetrieve(dto: LegacyRetrieveDto): Promise<object> {
    const result = await this.requests.takeStream(dto.client_public_key);
    if (result.status === 'none') {
      return { error: 'No active stream for the given public key' };
    }
    return {
      stream: true,
      session_id: result.sessionId,
      chunks: result.chunks.map((text) => JSON.parse(text) as unknown),
      ...(result.final ? { final: true } : {}),
    };
  }

  // ------------------------------------------------------------ API v1

  async next(modelQuery: unknown, tierQuery: unknown): Promise<object> {
    const requestedModel =
      typeof modelQuery === 'string' && modelQuery.trim() !== ''
        ? modelQuery.trim()
        : DEFAULT_MODEL;
    const requestedTier =
      typeof tierQuery === 'string' && tierQuery.trim() !== '' ? tierQuery.trim() : '8k-fast';
    const model = resolveModel(requestedModel.slice(0, 256));
    if (!Object.hasOwn(CONTEXT_TIERS, requestedTier)) {
      // Spec order: no node known at all (either protocol) is 503, before the tier is checked.
      const { summary } = await this.views.view();
      if (summary.legacy + summary.v1 + summary.fallback === 0) {
        throw Errors.noComputeNodes();
      }
      throw Errors.invalidContextTier();
    }
    const result = await this.requests.choose({
      model,
      tier: requestedTier as ContextTier,
      exclude: [],
      atCapacity: 'refuse',
    });
    if (
      result.status === 'no_nodes' ||
      result.status === 'exhausted' ||
      result.status === 'too_many_unusable'
    ) {
      // Only keys nothing can be encrypted to are left: as if there were no node.
      throw Errors.noComputeNodes();
    }
    const base = {
      selection_policy: SELECTION_POLICY,
      requested_context_tier: requestedTier,
      requested_model: requestedModel,
      eligible_node_count: result.eligibleCount,
      eligible_tier_counts: result.eligibleTierCounts,
    };
    if (result.status === 'no_match') {
      throw Errors.unavailable(
        'no_matching_compute_node',
        'Registered compute nodes are available, but none match the requested model/context tier.',
        base,
      );
    }
    if (result.status !== 'selected') {
      throw Errors.unavailable(
        'no_available_capacity',
        'Registered compute nodes match the requested model/context tier, but all matching nodes are at capacity. Retry with backoff.',
        {
          ...base,
          capacity_limited_node_count: result.capacityLimitedCount,
          capacity_limited_tier_counts: result.capacityLimitedTierCounts,
        },
        { 'Retry-After': '2' },
      );
    }
    const { selected } = result;
    const spillover = CONTEXT_TIERS[selected.tier] > CONTEXT_TIERS[requestedTier as ContextTier];
    return {
      server_public_key: selected.nodeId,
      requested_context_tier: requestedTier,
      requested_model: requestedModel,
      resolved_model: model,
      selected_context_tier: selected.tier,
      selected_context_window_tokens: CONTEXT_TIERS[selected.tier],
      selected_model_support: selected.modelSupport,
      selection_policy: SELECTION_POLICY,
      eligible_node_count: result.eligibleCount,
      eligible_tier_counts: result.eligibleTierCounts,
      selected_queue_depth: selected.queueDepth,
      selected_in_flight_count: selected.inFlightCount,
      selected_load_score: selected.loadScore,
      spillover,
      ...(spillover ? { spillover_reason: 'no_smaller_eligible_node_available' } : {}),
    };
  }

  async submit(dto: RequestsDto): Promise<object> {
    this.refuseWhileDraining();
    const extra: Record<string, string | number> = {};
    if (dto.protocol !== undefined) {
      extra.protocol = dto.protocol;
    }
    if (dto.version !== undefined) {
      extra.version = dto.version;
    }
    const envelope: Envelope = {
      ciphertext: (dto.ciphertext ?? dto.chat_history) as string,
      cipherkey: dto.cipherkey,
      iv: dto.iv,
      extra,
    };
    const result = await this.admit({
      jobId: newJobId(),
      dialect: 'v1',
      nodeId: dto.server_public_key,
      clientKey: dto.client_public_key,
      requestId: dto.request_id ?? null,
      cancelToken: dto.cancel_token ?? null,
      stream: false,
      envelope,
      bytes: envelopeBytes(envelope),
    });
    const remaining = seconds(result.deadlineAt - this.clock.now());
    return {
      message: 'Request received',
      request_deadline_remaining_seconds: remaining,
      request_ttl_seconds: remaining,
    };
  }

  async cancel(dto: CancelDto): Promise<object> {
    if (dto.cancel_token === undefined || dto.cancel_token === '') {
      throw Errors.cancelProof();
    }
    const status = dto.status === 'expired' ? 'expired' : 'cancelled';
    const reason: TerminalReason =
      typeof dto.reason === 'string' && CANCEL_REASONS.has(dto.reason)
        ? (dto.reason as TerminalReason)
        : status;
    const result = await this.requests.cancel(
      dto.client_public_key,
      dto.request_id,
      dto.cancel_token,
      status,
      reason,
    );
    if (result.status === 'forbidden') {
      throw Errors.cancelProof();
    }
    return { status, request_id: dto.request_id, removed_from_queue: result.removedFromQueue };
  }

  /**
   * `/responses/retrieve`: 200 answer, 202 pending (with progress once), 404, 410. With
   * `Prefer: wait=N` a pending retrieve is held up to N seconds for the answer, progress or an end;
   * past the held-wait budget it is answered at once, as with `Prefer: wait=0`.
   */
  retrieve(dto: RetrieveDto, waitSeconds: number, caller: CallerWatch): Promise<WireResponse> {
    const requestId = dto.request_id ?? null;
    const client: OutcomeClient = { dialect: 'v1', clientKey: dto.client_public_key };
    const hold = Math.min(Math.max(waitSeconds, 0), MAX_RETRIEVE_WAIT_SECONDS);
    // A callback, not an async frame: a held retrieve keeps less alive while it waits.
    return this.requests
      .awaitOutcome(client, requestId, this.clock.now() + hold * 1000, caller)
      .then((outcome) => this.retrieved(outcome, client, requestId, caller));
  }

  private retrieved(
    outcome: Outcome,
    client: OutcomeClient,
    requestId: string | null,
    caller: CallerWatch,
  ): WireResponse {
    switch (outcome.status) {
      case 'answered': {
        const e = outcome.envelope;
        this.requests.confirmDelivery(client, requestId, caller);
        return new WireResponse(200, {
          ...e.extra,
          ciphertext: e.ciphertext,
          chat_history: e.ciphertext,
          cipherkey: e.cipherkey,
          iv: e.iv,
        });
      }
      case 'node_gone':
      case 'ended':
        throw Errors.requestEnded(outcome.terminal, outcome.reason);
      case 'unknown':
        throw requestId !== null ? Errors.unknownRequestId(requestId) : Errors.noResponse();
      case 'pending': {
        const r = outcome.request;
        if (r === null) {
          throw Errors.noResponse(); // only a legacy wait has no request state
        }
        const remaining = seconds(r.deadlineAt - this.clock.now());
        const body: Record<string, unknown> = {
          status: 'pending',
          request_deadline_remaining_seconds: remaining,
          request_ttl_seconds: remaining,
          // Counts and times only: no other client's request or key (docs/api.md).
          queue_position: r.queuePosition,
        };
        if (r.estimatedWaitSeconds !== null) {
          body.estimated_wait_seconds = r.estimatedWaitSeconds;
        }
        if (r.progress !== null) {
          const p = r.progress;
          body.encrypted_progress = {
            ...p.extra,
            ciphertext: p.ciphertext,
            cipherkey: p.cipherkey,
            iv: p.iv,
          };
        }
        // Not held (the relay holds as many waits as its memory allows): said as RFC 7240 does.
        return outcome.ended === 'no_room'
          ? new WireResponse(202, body, { 'Preference-Applied': 'wait=0' })
          : new WireResponse(202, body);
      }
      default: {
        const never: never = outcome;
        return never;
      }
    }
  }

  private async admit(job: JobInput): Promise<{ deadlineAt: number }> {
    const result = await this.requests.admit(job, { awaitedHere: false });
    if (result.status !== 'queued') {
      throw ADMIT_ERRORS[result.status]();
    }
    return result;
  }

  /** The lifecycle's drain rule, checked before the body is turned into a job. */
  private refuseWhileDraining(): void {
    if (this.requests.refusesNewWork({ awaitedHere: false })) {
      throw Errors.draining();
    }
  }
}
