import type { Clock } from '../common/clock';

/**
 * In-process long-poll wake-ups: one set of resolvers per key, each waiter bounded by a timer and an
 * abort signal, each removed the moment it resolves (no state outlives its request).
 */
export class Waiters {
  private readonly byKey = new Map<string, Set<() => void>>();

  constructor(private readonly clock: Clock) {}

  get size(): number {
    let n = 0;
    for (const set of this.byKey.values()) {
      n += set.size;
    }
    return n;
  }

  wait(key: string, until: number, signal: AbortSignal): Promise<void> {
    const remaining = until - this.clock.now();
    if (remaining <= 0 || signal.aborted) {
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => {
      let set = this.byKey.get(key);
      if (!set) {
        set = new Set();
        this.byKey.set(key, set);
      }
      const done = (): void => {
        cancelTimer();
        signal.removeEventListener('abort', done);
        const current = this.byKey.get(key);
        if (current) {
          current.delete(done);
          if (current.size === 0) {
            this.byKey.delete(key);
          }
        }
        resolve();
      };
      set.add(done);
      const cancelTimer = this.clock.setTimer(done, remaining);
      signal.addEventListener('abort', done, { once: true });
    });
  }

  notify(key: string): void {
    const set = this.byKey.get(key);
    if (set) {
      for (const done of [...set]) {
        done();
      }
    }
  }

  notifyAll(): void {
    for (const key of [...this.byKey.keys()]) {
      this.notify(key);
    }
  }
}

export function workKey(nodeId: string): string {
  return `w\n${nodeId}`;
}

export function responseKey(clientKey: string, requestId: string | null): string {
  return `r\n${clientKey}\n${requestId ?? ''}`;
}
