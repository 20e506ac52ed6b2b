/**
 * Keys with an expiry instant, kept in insertion order. Every category the relay stores has one
 * fixed TTL, so insertion order is expiry order and the expired keys are always at the head:
 * finding them costs O(expired), not O(stored). `set` on an existing key moves it to the tail.
 *
 * Ties are broken as Redis breaks them in a sorted set (equal scores order by member bytes), so
 * the in-memory store expires and evicts in the same order as the Redis store.
 */
export class TtlIndex<K extends string = string> {
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

  /** The entry that expires first; among equal expiries the smallest key (Redis `ZRANGE 0 0`). */
  oldest(): [K, number] | undefined {
    let best: [K, number] | undefined;
    for (const [key, at] of this.entries) {
      if (best !== undefined && at !== best[1]) {
        break;
      }
      if (best === undefined || compareKeys(key, best[0]) < 0) {
        best = [key, at];
      }
    }
    return best;
  }

  /** Removes and returns the keys expired at `now` (expiry `<= now`), in Redis order. */
  takeExpired(now: number): K[] {
    return takeDue(now, false, this).map(([key]) => key);
  }

  /** The due entries (expiry `<= now`, or `< now` when strict) without removing them. */
  peekDue(now: number, strict: boolean): Array<[K, number]> {
    const out: Array<[K, number]> = [];
    for (const [key, at] of this.entries) {
      if (strict ? at >= now : at > now) {
        break;
      }
      out.push([key, at]);
    }
    return out;
  }

  keys(): IterableIterator<K> {
    return this.entries.keys();
  }
}

/**
 * Removes the due entries of several indexes and returns them as Redis would list one sorted set
 * holding them all (`ZRANGEBYSCORE -inf now`): by expiry, then by key bytes.
 */
export function takeDue<K extends string>(
  now: number,
  strict: boolean,
  ...indexes: Array<TtlIndex<K>>
): Array<[K, number]> {
  const due: Array<[K, number]> = [];
  for (const index of indexes) {
    for (const entry of index.peekDue(now, strict)) {
      index.delete(entry[0]);
      due.push(entry);
    }
  }
  return due.sort((a, b) => a[1] - b[1] || compareKeys(a[0], b[0]));
}

const SURROGATE = /[\uD800-\uDFFF]/;

/** Byte order of the UTF-8 encodings (Redis' member order); UTF-16 order agrees without surrogates. */
export function compareKeys(a: string, b: string): number {
  if (SURROGATE.test(a) || SURROGATE.test(b)) {
    return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
  }
  return a < b ? -1 : a > b ? 1 : 0;
}
