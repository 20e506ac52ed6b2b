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

/**
 * "Acknowledged means replicated": after a transition, waits until `replicas` replicas have every
 * write this connection made so far (Redis WAIT counts the connection's own writes, so WAIT is sent
 * on the very connection that ran the scripts).
 *
 * WAIT blocks its connection, so calls share them: a transition that finished while a WAIT was
 * already on the wire waits for the next one, which is sent as soon as that one returns and covers
 * every write before it (group commit). At most one WAIT is in flight and one queued.
 */
export class ReplicaAcks {
  private inFlight: Promise<unknown> = Promise.resolve();
  private queued: Promise<number> | null = null;

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
        return Number(await connection.wait(this.replicas, this.timeoutMs));
      });
    this.queued = wait;
    this.inFlight = wait;
    return wait;
  }
}
