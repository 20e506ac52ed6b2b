import type { Redis } from 'ioredis';
import { StoreUnavailableError } from '../store-unavailable.error';

/** The replicas did not confirm a transition in time: 503 + Retry-After, counted in the metrics. */
export class ReplicationTimeoutError extends StoreUnavailableError {
  constructor(wanted: number, acknowledged: number, timeoutMs: number) {
    super(
      `redis: WAIT ${acknowledged} of ${wanted} replicas acknowledged within ${timeoutMs} ms; the transition is on the primary but not yet replicated`,
    );
    this.name = 'ReplicationTimeoutError';
  }
}

/** How often the number of connected replicas is read again (ROLE). */
const RECOUNT_MS = 1000;

/**
 * "Acknowledged means replicated": after a transition, waits until the replicas have every write
 * this connection made so far (Redis WAIT counts the connection's own writes, so WAIT is sent on
 * the very connection that ran the scripts).
 *
 * It waits for every connected replica, and at least `replicas`: Sentinel may promote any replica
 * (the one with the highest offset it knows of, from information up to a second old), so a write
 * held by only some of them can be lost in a failover even though WAIT succeeded. The transition
 * succeeds when all of them confirm, or at the timeout when at least `replicas` did (a slow
 * replica costs latency, not availability); fewer is a {@link ReplicationTimeoutError}.
 *
 * WAIT blocks its connection, so calls share them: a transition that finished while a WAIT was
 * already on the wire waits for the next one, which is sent as soon as that one returns and covers
 * every write before it (group commit). At most one WAIT is in flight and one queued.
 */
export class ReplicaAcks {
  private inFlight: Promise<unknown> = Promise.resolve();
  private queued: Promise<number> | null = null;
  private connected = 0;
  private countedAt = 0;

  constructor(
    private readonly replicas: number,
    private readonly timeoutMs: number,
    private readonly connection: () => Promise<Redis>,
  ) {}

  get enabled(): boolean {
    return this.replicas > 0;
  }

  /** Resolves once the writes finished before this call are on the replicas; rejects otherwise. */
  async after(): Promise<void> {
    if (!this.enabled) {
      return;
    }
    const acknowledged = await this.nextWait();
    if (acknowledged < this.replicas) {
      throw new ReplicationTimeoutError(this.replicas, acknowledged, this.timeoutMs);
    }
  }

  private nextWait(): Promise<number> {
    if (this.queued) {
      return this.queued;
    }
    const wait = this.inFlight
      .catch(() => undefined)
      .then(async () => {
        // From here on a newer transition must not join this WAIT: it may be on the wire already.
        this.queued = null;
        const connection = await this.connection();
        const everyone = Math.max(this.replicas, await this.connectedReplicas(connection));
        return Number(await connection.wait(everyone, this.timeoutMs));
      });
    this.queued = wait;
    this.inFlight = wait;
    return wait;
  }

  /** Replicas attached to the primary (ROLE), read at most once a second; 0 if ROLE is refused. */
  private async connectedReplicas(connection: Redis): Promise<number> {
    if (Date.now() - this.countedAt >= RECOUNT_MS) {
      this.countedAt = Date.now();
      try {
        const role = (await connection.call('ROLE')) as unknown[];
        this.connected = Array.isArray(role[2]) ? role[2].length : 0;
      } catch {
        this.connected = 0;
      }
    }
    return this.connected;
  }
}
