import { Injectable, Logger } from '@nestjs/common';
import { RelayConfig } from '../config/relay-config';

/** What is told once when the relay starts draining. */
export interface Drainable {
  drained(): void;
}

/**
 * Whose wait a held request is: a compute node's poll or a client's wait (a retrieve, a gateway
 * chat), and the caller's address unit (`addressUnit()`: an IPv4 address or an IPv6 /64), or null
 * for a caller no address share bounds (nodes an operator vouched for with a node token).
 */
export interface HeldPlace {
  readonly kind: 'node' | 'client';
  readonly unit: string | null;
}

/** Tells waiters that the relay started draining. */
export interface DrainNotifier {
  /** Calls `fn` once when draining starts (at once if it already has); returns an unsubscribe. */
  onDrain(fn: () => void): () => void;
  /**
   * Tells `d` once when draining starts (at once if it already has), until `release(d)`: one Set
   * entry per held request, no closures.
   */
  hold(d: Drainable): void;
  /**
   * {@link hold} for a request about to be held open waiting: false, and nothing held, when this
   * process already holds as many as the memory plan's held-wait budget allows, when the caller's
   * address holds its share of it, or (a client's wait) when only the places kept for the nodes'
   * polls are left. A refusal is counted (the held-waits-refused metric) unless `quiet`: the
   * caller does not act on it yet (it looks for work first, and counts a refusal it answers).
   */
  tryHold(d: Drainable, place: HeldPlace, quiet?: boolean): boolean;
  /** Ends {@link hold}, or {@link tryHold} with the same place. */
  release(d: Drainable, place?: HeldPlace): void;
}

/**
 * The life of the process after boot: `starting` names what readiness still waits for (the demo
 * compute node until it has registered), `draining` flips the moment SIGTERM/SIGINT arrives, and
 * every waiter subscribed with `onDrain` is told at once, so every long-poll answers. Readiness,
 * long-polls and admission read it; nothing else does. Waiters live in a Set rather than as
 * listeners of one long-lived AbortSignal: thousands of held polls are normal, and an EventTarget
 * with more than ten listeners makes Node warn about a leak. The Set is also the count of requests
 * held open, which the memory plan bounds (`maxHeldWaits`: see {@link tryHold}).
 */
@Injectable()
export class LifecycleService implements DrainNotifier {
  private readonly logger = new Logger(LifecycleService.name);
  private readonly waiters = new Set<Drainable>();
  private skipWindow: (() => void) | null = null;
  private drainingSince: number | null = null;
  private lingeringSince: number | null = null;
  private readonly pending = new Set<string>();
  private readonly maxHeld: number;
  private readonly maxHeldPerAddress: number;
  /** Places clients' waits may take: the rest is kept for the nodes' polls. */
  private readonly maxClientHeld: number;
  private clientHeld = 0;
  /** Held waits per address unit (entries removed at zero). */
  private readonly heldByUnit = new Map<string, number>();
  private refused = 0;

  constructor(config: RelayConfig) {
    const { maxHeldWaits, maxHeldWaitsPerAddress } = config.memory;
    this.maxHeld = maxHeldWaits;
    this.maxHeldPerAddress = maxHeldWaitsPerAddress;
    // Every registered node can hold its poll however many clients wait, up to a quarter of the
    // budget: a flood of retrieves or chats leaves nodes polling, not shut out (docs/decisions.md).
    this.maxClientHeld =
      maxHeldWaits - Math.min(config.limits.maxNodes, Math.floor(maxHeldWaits / 4));
  }

  /** What readiness still waits for, in the order it was held (empty: ready to take work). */
  get starting(): string[] {
    return [...this.pending];
  }

  /**
   * Keeps readiness at 503 until the returned release is called: for what must be in place before
   * a client's first request can be served (DemoNodeService holds it until the demo node has registered).
   */
  holdReadiness(what: string): () => void {
    this.pending.add(what);
    return () => {
      if (this.pending.delete(what)) {
        this.logger.log({ msg: 'ready', was: what });
      }
    };
  }

  get draining(): boolean {
    return this.drainingSince !== null;
  }

  /** Requests waiting right now (held long-polls of this process). */
  get waiting(): number {
    return this.waiters.size;
  }

  /** Waits not held because the held-wait budget was spent, since boot. */
  get heldRefused(): number {
    return this.refused;
  }

  onDrain(fn: () => void): () => void {
    const d: Drainable = { drained: fn };
    this.hold(d);
    return () => this.release(d);
  }

  hold(d: Drainable): void {
    if (this.drainingSince !== null) {
      d.drained();
    } else {
      this.waiters.add(d);
    }
  }

  tryHold(d: Drainable, place: HeldPlace, quiet = false): boolean {
    if (this.drainingSince !== null) {
      d.drained();
      return true;
    }
    const byUnit = place.unit === null ? 0 : (this.heldByUnit.get(place.unit) ?? 0);
    if (
      this.waiters.size >= this.maxHeld ||
      byUnit >= this.maxHeldPerAddress ||
      (place.kind === 'client' && this.clientHeld >= this.maxClientHeld)
    ) {
      if (!quiet) {
        this.refused += 1;
      }
      return false;
    }
    this.waiters.add(d);
    if (place.unit !== null) {
      this.heldByUnit.set(place.unit, byUnit + 1);
    }
    if (place.kind === 'client') {
      this.clientHeld += 1;
    }
    return true;
  }

  release(d: Drainable, place?: HeldPlace): void {
    if (!this.waiters.delete(d) || place === undefined) {
      return;
    }
    if (place.unit !== null) {
      const byUnit = (this.heldByUnit.get(place.unit) ?? 1) - 1;
      if (byUnit > 0) {
        this.heldByUnit.set(place.unit, byUnit);
      } else {
        this.heldByUnit.delete(place.unit);
      }
    }
    if (place.kind === 'client') {
      this.clientHeld -= 1;
    }
  }

  /** Flips readiness and wakes every waiter. Idempotent. */
  startDraining(reason: string): void {
    if (this.drainingSince !== null) {
      return;
    }
    this.drainingSince = Date.now();
    this.logger.log({ msg: 'draining', reason });
    const waiters = [...this.waiters];
    this.waiters.clear();
    this.heldByUnit.clear();
    this.clientHeld = 0;
    for (const d of waiters) {
      d.drained();
    }
  }

  /** Waits out the drain window; a second signal (or SIGINT) ends it early. */
  waitDrainWindow(ms: number): Promise<void> {
    if (ms <= 0) {
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.skipWindow = () => {
        this.skipWindow = null;
        done();
      };
    });
  }

  /** Ends the drain window, or the linger after it, now (second signal). */
  skipDrainWindow(): void {
    this.skipWindow?.();
  }

  /**
   * After the drain window, with state held in this process only: work already handed out may
   * still be answered and collected. No new work is handed out (`lingering`); this resolves once
   * `settled()` says nothing handed out is left, or on a second signal. The grace deadline of
   * src/boot/shutdown.ts ends the process whatever this is waiting for.
   */
  async linger(settled: () => Promise<boolean>, everyMs = 200): Promise<void> {
    this.lingeringSince = Date.now();
    let skipped = false;
    this.skipWindow = () => {
      this.skipWindow = null;
      skipped = true;
    };
    this.logger.log({ msg: 'lingering for work already handed out' });
    while (!skipped && !(await settled().catch(() => true))) {
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
    this.skipWindow = null;
  }

  /** True once the drain window is over and the relay only waits for work it handed out. */
  get lingering(): boolean {
    return this.lingeringSince !== null;
  }
}
