import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ManualClock } from '../common/clock';
import { RelayConfig } from '../config/relay-config';
import { InMemoryStateStore } from './in-memory-state.store';
import type { NodeCapabilities, TransitionCounts } from './state.types';
import type { TransitionSink } from './transition.sink';

const CAPS: NodeCapabilities = {
  api_version: 'v1',
  supported_model_ids: ['m'],
  active_context_tier: '8k-fast',
  maximum_total_context_tokens: 8192,
  default_output_token_reservation: 512,
  maximum_output_tokens: 4096,
  max_concurrency: 1,
  backend_class: 'cpu',
};

const envelope = { ciphertext: 'c', cipherkey: 'k', iv: 'i', extra: {} };

/** A sink that sums what it is told, as the metrics counters do. */
class SummingSink implements TransitionSink {
  readonly outcomes: Record<string, number> = {};
  readonly evictions: Record<string, number> = {};
  readonly timeouts: string[] = [];

  transitions(t: TransitionCounts): void {
    for (const [k, n] of Object.entries(t.outcomes)) {
      this.outcomes[k] = (this.outcomes[k] ?? 0) + n;
    }
    for (const [k, n] of Object.entries(t.evictions)) {
      this.evictions[k] = (this.evictions[k] ?? 0) + n;
    }
  }

  replicationTimeout(operation: string): void {
    this.timeouts.push(operation);
  }

  handOff(): void {
    // The in-memory store hands nothing off.
  }
}

describe('TransitionSink (the in-memory store; the Redis twin in test/contract)', () => {
  const config = RelayConfig.load({});
  let clock: ManualClock;
  let sink: SummingSink;
  let store: InMemoryStateStore;

  beforeEach(() => {
    clock = new ManualClock();
    sink = new SummingSink();
    store = new InMemoryStateStore(config.limits, clock, sink);
  });

  it('should report each outcome and eviction a transition reports, once, and pass results through', async () => {
    const now = (): number => clock.now();
    await store.upsertNode({
      nodeId: 'n',
      dialect: 'v1',
      capabilities: CAPS,
      newCredentialDigest: 'd',
      now: now(),
    });
    const job = (id: string) => ({
      jobId: id,
      dialect: 'v1' as const,
      nodeId: 'n',
      clientKey: `c-${id}`,
      requestId: id,
      cancelToken: 't',
      stream: false,
      envelope,
      bytes: 3,
    });
    await store.enqueue({ job: job('a'), now: now() });
    await store.enqueue({ job: job('b'), now: now() });
    const cancelled = await store.cancel({
      clientKey: 'c-a',
      requestId: 'a',
      cancelToken: 't',
      status: 'cancelled',
      reason: 'requester_cancelled',
      now: now(),
    });
    await store.claimNext({ nodeId: 'n', dialect: 'v1', max: 1, now: now() });
    const completed = await store.complete({
      dialect: 'v1',
      clientKey: 'c-b',
      requestId: 'b',
      envelope,
      now: now(),
    });
    await store.enqueue({ job: job('c'), now: now() });

    clock.advance(config.limits.v1LeaseMs + config.limits.lapseGraceMs + 1);
    const swept = await store.sweep(now());

    expect(cancelled).toEqual({
      status: 'ok',
      removedFromQueue: 1,
      transitions: { outcomes: { cancelled: 1 }, evictions: {} },
    });
    expect(completed.transitions).toEqual({ outcomes: { completed: 1 }, evictions: {} });
    expect(swept).toEqual({ outcomes: { cancelled: 1 }, evictions: { stale_lease: 1 } });
    expect(sink.outcomes).toEqual({ cancelled: 2, completed: 1 });
    expect(sink.evictions).toEqual({ stale_lease: 1 });
  });

  it('should leave reporting to the stores (services cannot count twice)', () => {
    const root = join(__dirname, '..');
    const files = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? files(join(dir, e.name)) : [join(dir, e.name)],
      );
    const callers = files(root)
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.spec.ts'))
      .filter((f) => /recordTransitions\(|sink\.transitions\(/.test(readFileSync(f, 'utf8')))
      .map((f) => relative(root, f));

    expect(callers.sort()).toEqual([
      'metrics/relay-metrics.ts',
      'state/in-memory-state.store.ts',
      'state/redis/script-reply.ts',
    ]);
  });
});
