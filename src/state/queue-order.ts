/**
 * A node's FIFO queue of job ids with the rank of any member in O(log n): the in-memory twin of
 * the Redis sorted set `q:<node>`, whose members are scored by an enqueue counter (the tail) or
 * by head − 1 (a redelivered claim goes back to the head), and whose `ZRANK` answers the same.
 *
 * Scores live in one sorted array (binary search for rank and removal); claims remove from the
 * head in O(1) amortized, a removal from the middle (cancel, expiry) moves the entries after it,
 * which the per-node cap (`maxQueuePerNode`) bounds. Iteration follows the scores, so members
 * removed or added while iterating behave as with a `Set`: removed ones are not visited, added
 * ones with a later score are.
 */
export class QueueOrder implements Iterable<string> {
  private readonly scoreOf = new Map<string, number>();
  private scores: number[] = [];
  private ids: string[] = [];
  /** Entries before `start` were taken from the head and are dropped at the next compaction. */
  private start = 0;
  private last = 0;

  get size(): number {
    return this.scoreOf.size;
  }

  has(id: string): boolean {
    return this.scoreOf.has(id);
  }

  /** Appends at the tail (enqueue). */
  add(id: string): this {
    if (this.scoreOf.has(id)) {
      return this;
    }
    const tail = this.scores.length > this.start ? (this.scores.at(-1) as number) : this.last;
    this.last = Math.max(this.last, tail) + 1;
    this.scoreOf.set(id, this.last);
    this.scores.push(this.last);
    this.ids.push(id);
    return this;
  }

  /** Puts a member before every other (a redelivered claim). */
  prepend(id: string): void {
    this.delete(id);
    this.compact(true);
    const score = this.scores.length > 0 ? (this.scores[0] as number) - 1 : this.last;
    this.scoreOf.set(id, score);
    this.scores.unshift(score);
    this.ids.unshift(id);
  }

  delete(id: string): boolean {
    const score = this.scoreOf.get(id);
    if (score === undefined) {
      return false;
    }
    this.scoreOf.delete(id);
    const at = this.lowerBound(score);
    if (at === this.start) {
      this.start += 1;
      this.compact(false);
    } else {
      this.scores.splice(at, 1);
      this.ids.splice(at, 1);
    }
    return true;
  }

  /** How many members are ahead of `id` (Redis `ZRANK`), or null when it is not queued. */
  rank(id: string): number | null {
    const score = this.scoreOf.get(id);
    return score === undefined ? null : this.lowerBound(score) - this.start;
  }

  *[Symbol.iterator](): Iterator<string> {
    let after = -Infinity;
    for (;;) {
      const at = this.upperBound(after);
      if (at >= this.scores.length) {
        return;
      }
      after = this.scores[at] as number;
      yield this.ids[at] as string;
    }
  }

  /** First index at or past `start` whose score is ≥ `score`. */
  private lowerBound(score: number): number {
    let lo = this.start;
    let hi = this.scores.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.scores[mid] as number) < score) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    return lo;
  }

  /** First index at or past `start` whose score is > `score`. */
  private upperBound(score: number): number {
    let lo = this.start;
    let hi = this.scores.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if ((this.scores[mid] as number) <= score) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    return lo;
  }

  /** Drops the taken head entries once they are half the array (or now, when `force`). */
  private compact(force: boolean): void {
    if (this.start === 0 || (!force && this.start * 2 < this.scores.length)) {
      return;
    }
    this.scores = this.scores.slice(this.start);
    this.ids = this.ids.slice(this.start);
    this.start = 0;
  }
}
