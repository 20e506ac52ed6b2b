import fc from 'fast-check';
import { ManualClock } from '../common/clock';
import type { WaitListener, WaitSignal } from '../common/wait-signal';
import { Waiters } from './waiters';

class Slot implements WaitSignal {
  aborted = false;
  listener: WaitListener | null = null;

  abort(): void {
    this.aborted = true;
    this.listener?.stop();
  }
}

/** Lets resolved promises run their continuations. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

type Op =
  | { op: 'wait'; key: number; ms: number }
  | { op: 'notify'; key: number }
  | { op: 'abort'; id: number }
  | { op: 'advance'; ms: number };

const OPS = fc.array(
  fc.oneof(
    {
      weight: 5,
      arbitrary: fc
        .record({ key: fc.nat(3), ms: fc.integer({ min: -5, max: 100 }) })
        .map((r): Op => ({ op: 'wait', ...r })),
    },
    { weight: 2, arbitrary: fc.nat(3).map((key): Op => ({ op: 'notify', key })) },
    { weight: 2, arbitrary: fc.nat(40).map((id): Op => ({ op: 'abort', id })) },
    { weight: 3, arbitrary: fc.nat(60).map((ms): Op => ({ op: 'advance', ms })) },
  ),
  { maxLength: 80 },
);

describe(Waiters.name, () => {
  it('should end every wait exactly when a model of deadlines, wake-ups and aborts says', async () => {
    await fc.assert(
      fc.asyncProperty(OPS, async (ops) => {
        const clock = new ManualClock(0);
        const waiters = new Waiters(clock);
        const ended: boolean[] = [];
        const model: { key: number; until: number; ended: boolean }[] = [];
        const signals: Slot[] = [];
        for (const step of ops) {
          switch (step.op) {
            case 'wait': {
              const id = model.length;
              const signal = new Slot();
              signals.push(signal);
              ended.push(false);
              model.push({ key: step.key, until: clock.now() + step.ms, ended: step.ms <= 0 });
              void waiters.wait(`k${step.key}`, clock.now() + step.ms, signal).then(() => {
                ended[id] = true;
              });
              break;
            }
            case 'notify':
              waiters.notify(`k${step.key}`);
              for (const m of model) {
                m.ended ||= m.key === step.key;
              }
              break;
            case 'abort': {
              const m = model[step.id];
              if (m) {
                signals[step.id]?.abort();
                m.ended = true;
              }
              break;
            }
            case 'advance':
              clock.advance(step.ms);
              for (const m of model) {
                m.ended ||= m.until <= clock.now();
              }
              break;
          }
          await settle();

          expect(ended).toEqual(model.map((m) => m.ended));
          expect(waiters.size).toBe(model.filter((m) => !m.ended).length);
        }
        expect(clock.pendingTimers()).toBe(waiters.size > 0 ? 1 : 0);
      }),
      { numRuns: 200 },
    );
  });

  it('should wake the waiters of one key in the order they came', async () => {
    const clock = new ManualClock(0);
    const waiters = new Waiters(clock);
    const order: string[] = [];
    for (const name of ['first', 'second', 'third']) {
      void waiters.wait('k', 1000, new Slot()).then(() => order.push(name));
    }

    waiters.notify('k');
    await settle();

    expect(order).toEqual(['first', 'second', 'third']);
  });

  it('should end a wait when its AbortSignal aborts, and stop listening once it has ended', async () => {
    const clock = new ManualClock(0);
    const waiters = new Waiters(clock);
    const aborted = new AbortController();
    const woken = new AbortController();
    let abortedEnded = false;
    void waiters.wait('a', 1000, aborted.signal).then(() => {
      abortedEnded = true;
    });
    const wokenWait = waiters.wait('b', 1000, woken.signal);

    aborted.abort();
    waiters.notify('b');
    await wokenWait;
    await settle();

    expect(abortedEnded).toBe(true);
    expect(waiters.size).toBe(0);
    expect(clock.pendingTimers()).toBe(0);
  });
});
