import type { ManualClock } from '../../src/common/clock';
import type { PeerTime, Transport } from './simulators';
import { call } from './test-app';

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Runs simulated peers against an app on a ManualClock, with their real timing but no real waits.
 * Peers sleep on the manual clock and reach the relay through {@link transport}, which delays each
 * request by a virtual network latency and tracks every request that the relay answers at once; the driver moves the clock one tick at a time, and only
 * when all of them are answered (requests the relay may hold, long-polls, are not waited for: the
 * clock is what releases them). Sweeps run once per virtual second, like the relay's timer.
 */
export class VirtualTime {
  private readonly inFlight = new Set<Promise<unknown>>();
  private sinceSweep = 0;

  constructor(
    private readonly clock: ManualClock,
    private readonly sweep: () => Promise<void>,
    private readonly tickMs = 20,
    /** Virtual time a request takes to reach the relay (so nothing lands exactly on a lease edge). */
    private readonly latencyMs = 20,
  ) {}

  readonly time: PeerTime = {
    now: () => this.clock.now(),
    sleep: (ms) => new Promise<void>((resolve) => this.clock.setTimer(resolve, ms)),
  };

  readonly transport: Transport = async (baseUrl, method, path, body, headers, mayHold) => {
    await this.time.sleep(this.latencyMs);
    const request = call(baseUrl, method, path, body, headers);
    if (!mayHold) {
      this.inFlight.add(request);
      void request.finally(() => this.inFlight.delete(request)).catch(() => undefined);
    }
    return request;
  };

  /** Waits until no tracked request is outstanding and every peer got to run. */
  private async settle(): Promise<void> {
    for (;;) {
      for (let i = 0; i < 5; i += 1) {
        await turn();
      }
      if (this.inFlight.size === 0) {
        return;
      }
      await Promise.race([...this.inFlight].map((p) => p.catch(() => undefined)));
    }
  }

  /** Moves virtual time until `done` settles; fails after `maxMs` of virtual time. */
  async runUntil<T>(done: Promise<T>, maxMs: number): Promise<T> {
    let finished = false;
    void done.finally(() => {
      finished = true;
    });
    const deadline = this.clock.now() + maxMs;
    for (;;) {
      await this.settle();
      if (finished) {
        return done;
      }
      if (this.clock.now() >= deadline) {
        throw new Error(`still running after ${maxMs} ms of virtual time`);
      }
      this.clock.advance(this.tickMs);
      this.sinceSweep += this.tickMs;
      if (this.sinceSweep >= 1000) {
        this.sinceSweep = 0;
        await this.sweep();
      }
    }
  }
}
