/**
 * Keys with an expiry instant, kept in insertion order. Every category the relay stores has one
 * fixed TTL, so insertion order is expiry order and the expired keys are always at the head:
 * finding them costs O(expired), not O(stored). `set` on an existing key moves it to the tail.
 */
export class TtlIndex<K> {
  private readonly entries = new Map<K, number>();

  get size(): number {
    return this.entries.size;
  }

  set(key: K, expiresAt: number): void {
    this.entries.delete(key);
    this.entries.set(key, expiresAt);
  }

  get(key: K): number | undefined {
    return this.entries.get(key);
  }

  has(key: K): boolean {
    return this.entries.has(key);
  }

  delete(key: K): boolean {
    return this.entries.delete(key);
  }

  /** The oldest entry, if any. */
  first(): [K, number] | undefined {
    const next = this.entries.entries().next();
    return next.done ? undefined : next.value;
  }

  /** Removes and returns the keys expired at `now` (expiry `<= now`), oldest first. */
  takeExpired(now: number, limit = Number.POSITIVE_INFINITY): K[] {
    const out: K[] = [];
    for (const [key, at] of this.entries) {
      if (at > now || out.length >= limit) {
        break;
      }
      out.push(key);
    }
    for (const key of out) {
      this.entries.delete(key);
    }
    return out;
  }

  keys(): IterableIterator<K> {
    return this.entries.keys();
  }
}
