import { randomBytes } from 'node:crypto';
import type { Clock } from '../../common/clock';
import type { StopSignal } from '../../common/wait-signal';
import type { ClaimedJob } from '../state.types';
import { readClaims } from '../transitions/work.redis';
import { Waiters } from '../waiters';
import type { WakeSubscriber } from './connection';
import { ScriptReply } from './script-reply';

/** Marks a hand-off message on the wake-up channel (a wake-up key starts `w\n` or `r\n`). */
const HAND_OFF = 'h\n';

/** While the subscription is down, waits re-check the store this often instead of hanging. */
const UNSUBSCRIBED_RECHECK_MS = 250;

/** What the store does with the hand-offs this process receives (one-turn delivery). */
export interface HandOffHandlers {
  /** Told each hand-off: taken by its held poll, or not (it ended first: give the jobs back). */
  handedOver(jobs: ClaimedJob[], taken: boolean): void;
  /** Told a hand-off message that cannot be read: its job waits for its in-flight lease. */
  unreadable(error: Error): void;
}

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
  /** This process in the holds it records (tpClaimNext with a holder): hand-offs name it. */
  readonly self = randomBytes(8).toString('hex');
  private readonly waiters: Waiters;
  /** This process's held polls, by token: each takes a hand-off while it still waits. */
  private readonly holds = new Map<string, (jobs: ClaimedJob[]) => boolean>();
  private holdSeq = 0;
  private subscribed = false;

  constructor(
    private readonly subscriber: WakeSubscriber,
    private readonly channel: string,
    private readonly clock: Clock,
    private readonly handOffs: HandOffHandlers,
  ) {
    this.waiters = new Waiters(clock);
    subscriber.on('message', (from: string, key: string) => {
      if (from !== this.channel) {
        return;
      }
      if (key.startsWith(HAND_OFF)) {
        this.handOffMessage(key);
      } else {
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
   * Jobs an enqueue claimed for the poll this process holds under `token`: that poll takes them
   * unless it has ended ({@link HandOffHandlers.handedOver} is told which).
   */
  handOver(token: string, jobs: ClaimedJob[]): void {
    const take = this.holds.get(token);
    this.handOffs.handedOver(jobs, take !== undefined && take(jobs));
  }

  /**
   * A work wait that may take its work in one turn: `claim` (run once the local waiter exists)
   * claims what is queued for the poll or records it in Redis as held under this process's id and
   * a token; an enqueue then claims for the poll and its claim arrives with the wake-up. Resolves
   * with the jobs claimed either way; with null when woken, at `until`, on abort, or when `claim`
   * has nothing to hold (null: the node is gone, or it failed; the caller claims as usual and sees
   * why). Only while subscribed: a hand-off needs the message.
   */
  async hold(
    key: string,
    until: number,
    signal: StopSignal,
    claim: (holder: string) => Promise<ClaimedJob[] | null>,
  ): Promise<ClaimedJob[] | null> {
    if (until <= this.clock.now() || signal.aborted) {
      return null;
    }
    const waiting = this.waiters.waitOne(key, until, signal);
    this.holdSeq += 1;
    const token = this.holdSeq.toString(36);
    let handed: ClaimedJob[] | null = null;
    this.holds.set(token, (jobs) => {
      if (!waiting.end()) {
        return false;
      }
      handed = jobs;
      return true;
    });
    try {
      let claimed: ClaimedJob[] | null;
      try {
        claimed = await claim(`${this.self}\n${token}`);
      } catch {
        claimed = null;
      }
      if (claimed === null || claimed.length > 0) {
        // Claimed in the re-check itself (the poll's own reply: its jobs even if a wake-up for
        // them ended the wait first), or nothing to hold.
        waiting.end();
        return claimed !== null && claimed.length > 0 ? claimed : null;
      }
      await waiting.done;
    } finally {
      this.holds.delete(token);
    }
    return handed;
  }

  /** `h\n<process>\n<token>\n<claim fields as JSON>`, published by tpEnqueue. */
  private handOffMessage(message: string): void {
    const at = message.indexOf('\n', HAND_OFF.length);
    const tokenEnd = at < 0 ? -1 : message.indexOf('\n', at + 1);
    if (tokenEnd < 0 || message.slice(HAND_OFF.length, at) !== this.self) {
      return;
    }
    let jobs: ClaimedJob[];
    try {
      const fields = JSON.parse(message.slice(tokenEnd + 1)) as unknown;
      // cjson writes a Lua false (a nil field) as false; a script reply carries it as null.
      const items = Array.isArray(fields)
        ? fields.map((f: unknown) => (f === false ? null : f))
        : fields;
      jobs = readClaims(ScriptReply.of('tpEnqueue hand-off', items), 1);
    } catch (error) {
      this.handOffs.unreadable(error as Error);
      return;
    }
    this.handOver(message.slice(at + 1, tokenEnd), jobs);
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
