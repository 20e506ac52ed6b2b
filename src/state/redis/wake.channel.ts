import type { Clock } from '../../common/clock';
import type { StopSignal } from '../../common/wait-signal';
import { Waiters } from '../waiters';
import type { WakeSubscriber } from './connection';

/** While the subscription is down, waits re-check the store this often instead of hanging. */
const UNSUBSCRIBED_RECHECK_MS = 250;

/**
 * Long-poll wake-ups across replicas: every transition that may end a wait publishes the waiter's
 * key on one channel (from inside its Lua script); each process holds one dedicated subscriber
 * connection and wakes its local waiters for that key.
 *
 * No wake-up is lost between "found nothing" and "waiting": a wait registers its local waiter
 * first and then asks the store once more (`recheck`), so a change is either seen by that check
 * or published after the waiter exists. While the subscription is down, waits fall back to short
 * re-checks; when it comes back every local waiter is woken to look again.
 */
export class WakeChannel {
  private readonly waiters: Waiters;
  private subscribed = false;

  constructor(
    private readonly subscriber: WakeSubscriber,
    private readonly channel: string,
    private readonly clock: Clock,
  ) {
    this.waiters = new Waiters(clock);
    subscriber.on('message', (from: string, key: string) => {
      if (from === this.channel) {
        this.waiters.notify(key);
      }
    });
  }

  get ready(): boolean {
    return this.subscribed;
  }

  /** (Re)subscribes, then wakes every local waiter: anything published meanwhile was missed. */
  async subscribe(): Promise<void> {
    await this.subscriber.subscribe(this.channel);
    this.subscribed = true;
    this.waiters.notifyAll();
  }

  /** The subscriber connection dropped: waits end now and fall back to re-checks. */
  lost(): void {
    this.subscribed = false;
    this.waiters.notifyAll();
  }

  /**
   * Wakes this process's waiters for `key` at once, without waiting for the published message to
   * come back from Redis (the message still reaches the other replicas). Saves a pub/sub round trip
   * on the delivery path when the node long-polls the replica the client submitted to.
   */
  notifyLocal(key: string): void {
    this.waiters.notify(key);
  }

  /** Wakes every waiter of this process. */
  wakeAll(): void {
    this.waiters.notifyAll();
  }

  /**
   * Resolves on a wake-up for `key`, at `until`, on abort, or at once when `recheck` (run after the
   * waiter is registered) reports that there is something to look at. A failing re-check also
   * resolves: the caller's next store call then reports the outage.
   */
  async wait(
    key: string,
    until: number,
    signal: StopSignal,
    recheck: () => Promise<boolean>,
  ): Promise<void> {
    const now = this.clock.now();
    if (until <= now || signal.aborted) {
      return;
    }
    const bounded = this.subscribed ? until : Math.min(until, now + UNSUBSCRIBED_RECHECK_MS);
    const waiting = this.waiters.wait(key, bounded, signal);
    let ready: boolean;
    try {
      ready = await recheck();
    } catch {
      ready = true;
    }
    if (ready) {
      // Wakes every local waiter of this key: one that finds nothing simply waits again.
      this.waiters.notify(key);
    }
    await waiting;
  }
}
