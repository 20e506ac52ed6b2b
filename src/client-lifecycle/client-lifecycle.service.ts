import { Inject, Injectable } from '@nestjs/common';
import type { CallerWatch } from '../common/client-gone.decorator';
import { CLOCK, type Clock } from '../common/clock';
import { RelayConfig } from '../config/relay-config';
import { LifecycleService } from '../lifecycle/lifecycle.service';
import { isUsableNodeKey } from '../registry/node-key';
import {
  STATE_STORE,
  type AtCapacityPolicy,
  type CancelResult,
  type EnqueueResult,
  type SelectNodeResult,
  type StateStore,
  type StreamTakeResult,
} from '../state/state-store';
import type {
  ContextTier,
  Dialect,
  Envelope,
  JobInput,
  TerminalReason,
  TerminalStatus,
} from '../state/state.types';

/** Why new work was not admitted: the store's refusals, and the drain rule. */
export type AdmitRefusal = 'draining' | Exclude<EnqueueResult['status'], 'queued'>;

export type AdmitResult = { status: 'queued'; deadlineAt: number } | { status: AdmitRefusal };

export interface AdmitOptions {
  /**
   * The outcome is awaited inside this process (the gateway holds the caller and the one-time
   * key): nothing but this process could see it through, whatever the store.
   */
  awaitedHere: boolean;
  /** The store's cap on live requests of this client key, when not the default (the gateway's key). */
  clientCap?: number;
}

/** Whose answer is awaited: the dialect and the client's key (API v1: with its request id). */
export interface OutcomeClient {
  dialect: Dialect;
  clientKey: string;
}

/** A request still waiting, as the store reports it (API v1 with a request id only). */
export interface PendingRequest {
  deadlineAt: number;
  progress: Envelope | null;
  queuePosition: number;
  estimatedWaitSeconds: number | null;
}

/**
 * Why a wait ended without an answer or an end. `no_room`: it was never held, the relay holding as
 * many waits as its memory allows (the held-wait budget).
 */
export type WaitEnd = 'progress' | 'until' | 'draining' | 'caller_gone' | 'no_room';

/** What {@link ClientLifecycleService.awaitOutcome} found. */
export type Outcome =
  | { status: 'answered'; envelope: Envelope }
  | { status: 'pending'; ended: WaitEnd; request: PendingRequest | null }
  /** The node left with the request queued or in flight (`cancelled/server_unregistered`). */
  | { status: 'node_gone'; terminal: TerminalStatus; reason: TerminalReason }
  | { status: 'ended'; terminal: TerminalStatus; reason: TerminalReason }
  | { status: 'unknown' };

/** The caller a wait belongs to: its leaving, or the drain, ends the wait. */
export type Waiter = Pick<CallerWatch, 'gone' | 'signal' | 'hold'>;

export interface Placement {
  model: string;
  tier: ContextTier;
  /** Nodes this request must not go to (one it already failed on). */
  exclude: readonly string[];
  /** Every matching node busy: refuse (`/servers/next`), or queue in the shortest line. */
  atCapacity: AtCapacityPolicy;
}

/**
 * The node chosen for a request, or why none: the store's answer, `exhausted` when only nodes
 * the request was kept from could take it, `too_many_unusable` past {@link MAX_UNUSABLE_KEYS}.
 */
export type Choice =
  | SelectNodeResult
  | { status: 'exhausted'; unusable: number }
  | { status: 'too_many_unusable'; unusable: number };

/**
 * Where a request placed by the relay went: queued (with the job as admitted, and whether a node
 * that left before admission was replaced), or why not. `exhausted`: only nodes the request was
 * kept from could take it (`unusable` of them for a key it could not use). `too_many_unusable`:
 * it stepped over more than {@link MAX_UNUSABLE_KEYS} excluded nodes.
 */
export type PlaceResult =
  | { status: 'queued'; job: JobInput; deadlineAt: number; replaced: boolean }
  | { status: 'exhausted'; unusable: number }
  | { status: 'too_many_unusable'; unusable: number }
  | { status: 'no_nodes' | 'no_match' | 'no_capacity' }
  | { status: AdmitRefusal };

export interface PlaceOptions extends AdmitOptions {
  /** A node that left between choice and admission may be replaced (once). */
  mayReplace: boolean;
  /** Told of each node whose key could not be used (logs). */
  onUnusable?: (nodeId: string) => void;
}

/** Nodes with unusable keys one request steps over before it gives up. */
export const MAX_UNUSABLE_KEYS = 4;
/**
 * The client half of a request's life, one service for the legacy routes, the API v1 routes and
 * the gateway: admit it (one drain rule), place it on a node the store chooses (the gateway),
 * await its outcome (answered, pending, node gone, ended, unknown; every wait ends when the caller
 * leaves or the relay starts draining), confirm its delivery and cancel it. It speaks domain
 * results only; each adapter maps them to its own wire errors.
 */
@Injectable()
export class ClientLifecycleService {
  constructor(
    @Inject(STATE_STORE) private readonly store: StateStore,
    @Inject(CLOCK) private readonly clock: Clock,
    private readonly config: RelayConfig,
    private readonly lifecycle: LifecycleService,
  ) {}

  /**
   * The drain rule for new work, on both stores and every entry point: while draining, work is
   * refused when nothing but this process could see it through: every submission with the memory
   * store (it dies with the process), and work whose outcome this process awaits itself (the
   * gateway) with either store. With Redis a browser's or client's request is still accepted:
   * another replica hands it out and returns its answer.
   */
  refusesNewWork(opts: AdmitOptions): boolean {
    return this.lifecycle.draining && (opts.awaitedHere || this.config.stateStore === 'memory');
  }

  /** Queues a request at the node it names. */
  async admit(job: JobInput, opts: AdmitOptions): Promise<AdmitResult> {
    if (this.refusesNewWork(opts)) {
      return { status: 'draining' };
    }
    const result = await this.store.enqueue({
      job,
      now: this.clock.now(),
      ...(opts.clientCap !== undefined ? { clientCap: opts.clientCap } : {}),
    });
    return result.status === 'queued'
      ? { status: 'queued', deadlineAt: result.deadlineAt }
      : { status: result.status };
  }

  /**
   * Lets the store choose a node for the request (the one place node choice lives: fresh, lapsed
   * and fallback tiers, unusable keys, `exclude`; every matching node busy: the shortest line
   * with room), seals it there with `seal` (null: the key cannot be used; it is marked, so no one
   * is offered it again, and another node is chosen), and admits it. A node that left between
   * choice and admission is replaced once.
   */
  async place(
    placement: Placement,
    seal: (nodeId: string) => JobInput | null,
    opts: PlaceOptions,
  ): Promise<PlaceResult> {
    if (this.refusesNewWork(opts)) {
      return { status: 'draining' };
    }
    const exclude = [...placement.exclude];
    let unusable = 0;
    let replaced = false;
    for (;;) {
      const choice = await this.choose({ ...placement, exclude }, opts.onUnusable);
      if (choice.status === 'exhausted' || choice.status === 'too_many_unusable') {
        return { status: choice.status, unusable: unusable + choice.unusable };
      }
      if (choice.status !== 'selected') {
        return { status: choice.status };
      }
      const nodeId = choice.selected.nodeId;
      const job = seal(nodeId);
      if (job === null) {
        // The key passed the check but still could not be used: the same treatment.
        opts.onUnusable?.(nodeId);
        await this.markUnusable(nodeId);
        exclude.push(nodeId);
        unusable += 1;
        if (exclude.length > MAX_UNUSABLE_KEYS) {
          return { status: 'too_many_unusable', unusable };
        }
        continue;
      }
      const admitted = await this.admit(job, opts);
      if (admitted.status === 'node_not_found' && opts.mayReplace && !replaced) {
        // The node left between choice and admission: another one, once (as the page does).
        replaced = true;
        exclude.splice(0, exclude.length, nodeId);
        unusable = 0;
        continue;
      }
      return admitted.status === 'queued'
        ? { status: 'queued', job, deadlineAt: admitted.deadlineAt, replaced }
        : admitted;
    }
  }

  /**
   * The store's choice of node (the one place node choice lives: fresh, lapsed and fallback tiers,
   * marked keys, `exclude`, the busy policy). A chosen key nothing can be encrypted to is marked,
   * so no one is offered it again, and another node is chosen: `/servers/next` and the gateway
   * step over such nodes alike, before any client tries them.
   */
  async choose(placement: Placement, onUnusable?: (nodeId: string) => void): Promise<Choice> {
    const exclude = [...placement.exclude];
    let unusable = 0;
    for (;;) {
      const selection = await this.select(placement, exclude);
      if (selection.status !== 'selected') {
        return selection.status === 'exhausted' ? { status: 'exhausted', unusable } : selection;
      }
      const nodeId = selection.selected.nodeId;
      if (isUsableNodeKey(nodeId)) {
        return selection;
      }
      onUnusable?.(nodeId);
      await this.markUnusable(nodeId);
      exclude.push(nodeId);
      unusable += 1;
      if (exclude.length > MAX_UNUSABLE_KEYS) {
        return { status: 'too_many_unusable', unusable };
      }
    }
  }

  private async markUnusable(nodeId: string): Promise<void> {
    await this.store.markKeyUnusable(nodeId, this.clock.now()).catch(() => undefined);
  }

  /**
   * The store's choice with the request's exclusions. When it finds nothing, the choice without
   * them says why: if only an excluded node could take the request, it is `exhausted`.
   */
  private async select(
    placement: Placement,
    exclude: readonly string[],
  ): Promise<SelectNodeResult | { status: 'exhausted' }> {
    const cmd = {
      model: placement.model,
      tier: placement.tier,
      maxQueueDepth: this.config.maxQueuePerNode,
      atCapacity: placement.atCapacity,
    };
    const selection = await this.store.selectNode({ ...cmd, exclude, now: this.clock.now() });
    if (selection.status === 'selected' || exclude.length === 0) {
      return selection;
    }
    const unexcluded = await this.store.selectNode({ ...cmd, now: this.clock.now() });
    return unexcluded.status === 'selected' ? { status: 'exhausted' } : unexcluded;
  }

  /**
   * Waits for the request's outcome until `until` (never past its own deadline), the moment the
   * node reports progress, the caller leaves or the relay starts draining; not at all when the
   * relay holds as many waits as its memory allows (`no_room`). A legacy client has no
   * request id: anything but an answer means "nothing yet".
   */
  async awaitOutcome(
    client: OutcomeClient,
    requestId: string | null,
    until: number,
    waiter: Waiter,
  ): Promise<Outcome> {
    for (;;) {
      const now = this.clock.now();
      const result = await this.store.takeResponse({
        dialect: client.dialect,
        clientKey: client.clientKey,
        requestId,
        now,
      });
      let request: PendingRequest | null = null;
      switch (result.status) {
        case 'ok':
          return { status: 'answered', envelope: result.envelope };
        case 'terminal':
          return {
            status:
              result.terminal === 'cancelled' && result.reason === 'server_unregistered'
                ? 'node_gone'
                : 'ended',
            terminal: result.terminal,
            reason: result.reason,
          };
        case 'unknown':
          if (client.dialect !== 'legacy') {
            return { status: 'unknown' };
          }
          break;
        case 'pending':
          request = {
            deadlineAt: result.deadlineAt,
            progress: result.progress,
            queuePosition: result.queuePosition,
            estimatedWaitSeconds: result.estimatedWaitSeconds,
          };
          break;
        default: {
          const never: never = result;
          return never;
        }
      }
      const ended = this.waitEnd(request, now, until, waiter);
      if (ended !== null) {
        return { status: 'pending', ended, request };
      }
      if (!waiter.hold(this.lifecycle, 'client')) {
        return { status: 'pending', ended: 'no_room', request };
      }
      await this.store.waitForResponse(
        client.clientKey,
        requestId,
        request === null ? until : Math.min(until, request.deadlineAt + 1),
        waiter.signal(this.lifecycle),
      );
    }
  }

  /**
   * Takes the caller's place among the requests held open before work it will wait for is
   * admitted (the gateway), so what is accepted is never refused its wait; false: no room.
   */
  holdPlace(waiter: Waiter): boolean {
    return waiter.hold(this.lifecycle, 'client');
  }

  private waitEnd(
    request: PendingRequest | null,
    now: number,
    until: number,
    waiter: Waiter,
  ): WaitEnd | null {
    if (request?.progress) {
      return 'progress';
    }
    if (this.lifecycle.draining) {
      return 'draining';
    }
    if (waiter.gone) {
      return 'caller_gone';
    }
    return now >= until ? 'until' : null;
  }

  /**
   * An answer leaves the store only once it was delivered: with a caller, once it is written out
   * (if this process dies first, a retry on any replica gets it again within the delivery grace);
   * without one (the gateway read it in process), now.
   */
  confirmDelivery(
    client: OutcomeClient,
    requestId: string | null,
    writtenTo: CallerWatch | null,
  ): void {
    const confirm = (): void => {
      this.store
        .confirmDelivery({
          dialect: client.dialect,
          clientKey: client.clientKey,
          requestId,
          now: this.clock.now(),
        })
        .catch(() => undefined); // the delivery grace forgets it anyway
    };
    if (writtenTo === null) {
      confirm();
    } else {
      writtenTo.afterDelivered(confirm);
    }
  }

  /** The chunks a legacy stream holds for its client, each handed out once (`/stream/retrieve`). */
  takeStream(clientKey: string): Promise<StreamTakeResult> {
    return this.store.takeStream(clientKey, this.clock.now());
  }

  /** Ends a request with its cancel token as proof; the node sees the status on its control. */
  cancel(
    clientKey: string,
    requestId: string,
    cancelToken: string,
    status: TerminalStatus,
    reason: TerminalReason,
  ): Promise<CancelResult> {
    return this.store.cancel({
      clientKey,
      requestId,
      cancelToken,
      status,
      reason,
      now: this.clock.now(),
    });
  }
}
