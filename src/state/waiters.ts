import type { Clock } from '../common/clock';
import type { StopSignal, WaitListener, WaitSignal } from '../common/wait-signal';

/**
 * One waiting request: its key, its deadline and its promise's resolve, linked into its key's list
 * and placed in the deadline heap. A held long-poll costs this record and nothing else here.
 */
class Waiter implements WaitListener {
  prev: Waiter | null = null;
  next: Waiter | null = null;
  /** Position in the deadline heap; -1 once the wait has ended. */
  slot = -1;

  constructor(
    private readonly owner: Waiters,
    readonly key: string,
    readonly until: number,
    private readonly resolve: () => void,
    /** Only an AbortSignal: its listener is removed when the wait ends. */
    readonly abortSignal: AbortSignal | null,
  ) {}

  stop(): void {
    this.owner.end(this);
  }

  /** As an `AbortSignal` listener (EventTarget calls `handleEvent` on a listener object). */
  handleEvent(): void {
    this.owner.end(this);
  }

  settle(): void {
    this.resolve();
  }
}

/**
 * In-process long-poll wake-ups. Each waiter is one record, linked into a list per key and kept in
 * one heap of deadlines swept by a single timer (not a timer, an AbortSignal listener and closures
 * per wait: thousands of held polls are normal). Each is removed the moment it resolves, whether by
 * a wake-up, its deadline or its signal, so no state outlives its request.
 */
/** A key's waiters in arrival order: both ends, so a new wait is appended in O(1). */
interface KeyList {
  head: Waiter;
  tail: Waiter;
}

export class Waiters {
  private readonly byKey = new Map<string, KeyList>();
  private readonly deadlines: Waiter[] = [];
  private cancelTimer: (() => void) | null = null;
  private timerAt = Infinity;

  constructor(private readonly clock: Clock) {}

  get size(): number {
    return this.deadlines.length;
  }

  wait(key: string, until: number, signal: StopSignal): Promise<void> {
    if (until - this.clock.now() <= 0 || signal.aborted) {
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      this.add(key, until, signal, resolve);
    });
  }

  /**
   * As {@link wait}, with `end`, which ends this wait alone and says whether it was still waiting
   * (false once a wake-up, its deadline or its signal ended it).
   */
  waitOne(key: string, until: number, signal: StopSignal): { done: Promise<void>; end(): boolean } {
    if (until - this.clock.now() <= 0 || signal.aborted) {
      return { done: Promise.resolve(), end: () => false };
    }
    let w: Waiter | null = null;
    const done = new Promise<void>((resolve) => {
      w = this.add(key, until, signal, resolve);
    });
    const waiter = w as unknown as Waiter;
    return {
      done,
      end: () => {
        if (waiter.slot < 0) {
          return false;
        }
        this.end(waiter);
        return true;
      },
    };
  }

  private add(key: string, until: number, signal: StopSignal, resolve: () => void): Waiter {
    const abortSignal = signal instanceof AbortSignal ? signal : null;
    const w = new Waiter(this, key, until, resolve, abortSignal);
    // Appended: a key's waiters are woken in the order they came.
    const list = this.byKey.get(key);
    if (list) {
      list.tail.next = w;
      w.prev = list.tail;
      list.tail = w;
    } else {
      this.byKey.set(key, { head: w, tail: w });
    }
    this.push(w);
    if (abortSignal) {
      abortSignal.addEventListener('abort', w, { once: true });
    } else {
      (signal as WaitSignal).listener = w;
    }
    this.schedule();
    return w;
  }

  notify(key: string): void {
    let w = this.byKey.get(key)?.head;
    while (w) {
      const next = w.next;
      this.end(w);
      w = next ?? undefined;
    }
  }

  notifyAll(): void {
    for (const key of [...this.byKey.keys()]) {
      this.notify(key);
    }
  }

  /** Ends a wait (idempotent): out of its list and the heap, then resolved. */
  end(w: Waiter): void {
    if (w.slot < 0) {
      return;
    }
    const list = this.byKey.get(w.key) as KeyList;
    if (!w.prev && !w.next) {
      this.byKey.delete(w.key);
    } else {
      if (w.prev) {
        w.prev.next = w.next;
      } else {
        list.head = w.next as Waiter;
      }
      if (w.next) {
        w.next.prev = w.prev;
      } else {
        list.tail = w.prev as Waiter;
      }
    }
    w.prev = null;
    w.next = null;
    this.remove(w.slot);
    w.slot = -1;
    w.abortSignal?.removeEventListener('abort', w);
    if (this.deadlines.length === 0 && this.cancelTimer) {
      this.cancelTimer();
      this.cancelTimer = null;
      this.timerAt = Infinity;
    }
    w.settle();
  }

  /** One timer, at the earliest deadline; moved earlier when an earlier one arrives. */
  private schedule(): void {
    const first = this.deadlines[0];
    if (!first || first.until >= this.timerAt) {
      return;
    }
    this.cancelTimer?.();
    this.timerAt = first.until;
    this.cancelTimer = this.clock.setTimer(() => this.sweep(), first.until - this.clock.now());
  }

  private sweep(): void {
    this.cancelTimer = null;
    this.timerAt = Infinity;
    const now = this.clock.now();
    for (let first = this.deadlines[0]; first && first.until <= now; first = this.deadlines[0]) {
      this.end(first);
    }
    this.schedule();
  }

  // A binary min-heap on `until`; each waiter knows its slot, so any one is removed in O(log n).

  private push(w: Waiter): void {
    w.slot = this.deadlines.length;
    this.deadlines.push(w);
    this.up(w.slot);
  }

  private remove(slot: number): void {
    const last = this.deadlines.pop() as Waiter;
    if (slot < this.deadlines.length) {
      this.place(last, slot);
      this.up(slot);
      this.down(last.slot);
    }
  }

  private place(w: Waiter, slot: number): void {
    this.deadlines[slot] = w;
    w.slot = slot;
  }

  private up(slot: number): void {
    const w = this.deadlines[slot] as Waiter;
    while (slot > 0) {
      const parent = (slot - 1) >> 1;
      const p = this.deadlines[parent] as Waiter;
      if (p.until <= w.until) {
        break;
      }
      this.place(p, slot);
      slot = parent;
    }
    this.place(w, slot);
  }

  private down(slot: number): void {
    const w = this.deadlines[slot] as Waiter;
    const n = this.deadlines.length;
    for (;;) {
      let child = 2 * slot + 1;
      if (child >= n) {
        break;
      }
      const right = this.deadlines[child + 1];
      if (right && right.until < (this.deadlines[child] as Waiter).until) {
        child += 1;
      }
      const c = this.deadlines[child] as Waiter;
      if (c.until >= w.until) {
        break;
      }
      this.place(c, slot);
      slot = child;
    }
    this.place(w, slot);
  }
}

export function workKey(nodeId: string): string {
  return `w\n${nodeId}`;
}

export function responseKey(clientKey: string, requestId: string | null): string {
  return `r\n${clientKey}\n${requestId ?? ''}`;
}
