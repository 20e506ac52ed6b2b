import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ManualClock } from '../common/clock';
import { RelayConfig } from '../config/relay-config';
import { RelayMetrics } from '../metrics/relay-metrics';
import { InMemoryStateStore } from './in-memory-state.store';
import { MeteredStateStore } from './metered-state.store';
import type { NodeCapabilities } from './state.types';

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

async function counted(metrics: RelayMetrics, name: string): Promise<Record<string, number>> {
  const metric = metrics.registry.getSingleMetric(name);
  const values = (await metric?.get())?.values ?? [];
  return Object.fromEntries(
    values.filter((v) => v.value > 0).map((v) => [String(Object.values(v.labels)[0]), v.value]),
  );
}

describe(MeteredStateStore.name, () => {
  const config = RelayConfig.load({});
  let clock: ManualClock;
  let metrics: RelayMetrics;
  let store: MeteredStateStore;

  beforeEach(() => {
    clock = new ManualClock();
    metrics = new RelayMetrics(config);
    store = new MeteredStateStore(new InMemoryStateStore(config.limits, clock), metrics);
  });

  it('should record each outcome and eviction a transition reports, once, and pass results through', async () => {
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
    expect(await counted(metrics, 'tokenplace_relay_request_outcomes_total')).toEqual({
      cancelled: 2,
      completed: 1,
    });
    expect(await counted(metrics, 'tokenplace_compute_node_evictions_total')).toEqual({
      stale_lease: 1,
    });
  });

  it('should be the only caller of recordTransitions in src/ (services cannot count twice)', () => {
    const root = join(__dirname, '..');
    const files = (dir: string): string[] =>
      readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? files(join(dir, e.name)) : [join(dir, e.name)],
      );
    const callers = files(root)
      .filter((f) => f.endsWith('.ts') && !f.endsWith('.spec.ts'))
      .filter((f) => readFileSync(f, 'utf8').includes('recordTransitions('))
      .map((f) => relative(root, f));

    expect(callers.sort()).toEqual(['metrics/relay-metrics.ts', 'state/metered-state.store.ts']);
  });
});
