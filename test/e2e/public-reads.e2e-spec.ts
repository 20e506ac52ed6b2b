import { ManualClock } from '../../src/common/clock';
import { createTestApp, type TestApp } from '../helpers/test-app';
import {
  capabilities,
  fakeKey,
  from,
  get,
  MANUAL_SWEEP,
  post,
  registerNode,
  storeVariants,
  TRUST_LOOPBACK,
  V1,
} from './api-v1-fixtures';

/**
 * Issue 18 item 3: `/healthz` and `/relay/diagnostics` cost the same whatever strangers
 * registered: exact counts, bounded lists, one shared rendering per second, and a rate limit on
 * the full diagnostics body (its `?summary=1` form, which the page polls, is as cheap as /healthz).
 */

/** Capabilities as large as registration allows: 64 model ids of 128 characters. */
function maxCapabilities(seed: number): Record<string, unknown> {
  const ids = Array.from({ length: 64 }, (_, i) => `m${seed}-${i}-`.padEnd(128, 'x'));
  return capabilities({ supported_model_ids: ids });
}

/** Registers `count` maximum-size nodes, eight per address (the default share). */
async function fill(t: TestApp, count: number): Promise<string[]> {
  const keys: string[] = [];
  for (let i = 0; i < count; i += 1) {
    const key = fakeKey('junk');
    const res = await post(
      t,
      `${V1}/servers/register`,
      { server_public_key: key, capabilities: maxCapabilities(i) },
      from(`192.0.2.${1 + Math.floor(i / 8)}`),
    );
    if (res.status !== 200) {
      throw new Error(`registration ${i} answered ${res.status}: ${res.text}`);
    }
    keys.push(key);
  }
  return keys;
}

describe.each(storeVariants('public reads'))('public read routes ($label)', (variant) => {
  let t: TestApp;
  let clock: ManualClock;

  afterEach(async () => {
    await t.close();
    await variant.cleanup();
  });

  it('should keep /healthz and /relay/diagnostics bounded with 128 maximum-size nodes, with exact counts', async () => {
    clock = new ManualClock();
    t = await createTestApp(
      {
        ...variant.env(),
        ...TRUST_LOOPBACK,
        ...MANUAL_SWEEP,
        TOKENPLACE_RELAY_MAX_NODES_PER_ADDRESS: undefined, // the default share, 8
      },
      clock,
    );
    await fill(t, 128);

    const health = await get(t, '/healthz');
    const diagnostics = await get(t, '/relay/diagnostics');

    expect(health.status).toBe(200);
    expect(Buffer.byteLength(health.text)).toBeLessThanOrEqual(64 * 1024);
    expect(health.body.knownServers).toBe(128);
    const listed = health.body.registeredServers as Array<Record<string, unknown>>;
    expect(listed.length).toBe(16);
    expect(health.body.registeredServersListed).toBe(16);
    const caps = listed[0]!.capabilities as Record<string, unknown>;
    expect((caps.supported_model_ids as string[]).length).toBe(8);
    expect(caps.supported_model_count).toBe(64);

    expect(diagnostics.status).toBe(200);
    expect(Buffer.byteLength(diagnostics.text)).toBeLessThanOrEqual(1024 * 1024);
    expect(diagnostics.body).toMatchObject({
      total_registered_compute_nodes: 128,
      total_api_v1_registered_compute_nodes: 128,
      listed_compute_nodes_limit: 32,
    });
    const v1 = diagnostics.body.api_v1_registered_compute_nodes as Array<Record<string, unknown>>;
    expect(v1.length).toBe(32);
    expect((diagnostics.body.registered_compute_nodes as unknown[]).length).toBe(32);
    const full = v1[0]!.capabilities as Record<string, unknown>;
    expect((full.supported_model_ids as string[]).length).toBe(16);
    expect(full.supported_model_count).toBe(64);
  });

  it('should render /relay/diagnostics at most once a second and hand every reader the same body', async () => {
    clock = new ManualClock();
    t = await createTestApp({ ...variant.env(), ...MANUAL_SWEEP }, clock);
    await registerNode(t);

    const first = await get(t, '/relay/diagnostics');
    clock.advance(500);
    const readers = await Promise.all([1, 2, 3].map(() => get(t, '/relay/diagnostics')));
    clock.advance(600);
    const later = await get(t, '/relay/diagnostics');

    for (const reader of readers) {
      expect(reader.text).toBe(first.text);
    }
    const [view] = later.body.api_v1_registered_compute_nodes as Array<Record<string, unknown>>;
    expect(view!.age_seconds).toBe(1.1);
  });

  it('should limit the full /relay/diagnostics per address, never its summary form', async () => {
    clock = new ManualClock();
    t = await createTestApp(
      {
        ...variant.env(),
        ...TRUST_LOOPBACK,
        ...MANUAL_SWEEP,
        TOKENPLACE_RELAY_DIAGNOSTICS_RATE_LIMIT: '3/minute',
      },
      clock,
    );
    await registerNode(t);

    const full = [];
    for (let i = 0; i < 4; i += 1) {
      full.push(await get(t, '/relay/diagnostics', from('203.0.113.1')));
    }
    const summaries = [];
    for (let i = 0; i < 5; i += 1) {
      summaries.push(await get(t, '/relay/diagnostics?summary=1', from('203.0.113.1')));
    }
    const elsewhere = await get(t, '/relay/diagnostics', from('203.0.113.2'));

    expect(full.map((r) => r.status)).toEqual([200, 200, 200, 429]);
    expect(full[3]!.body).toMatchObject({
      error: {
        message: 'Rate limit exceeded: 3 per 1 minute. Try again in 60 seconds.',
        code: 'rate_limit_exceeded',
      },
    });
    expect(full[3]!.headers.get('retry-after')).toBe('60');
    expect(summaries.map((r) => r.status)).toEqual([200, 200, 200, 200, 200]);
    expect(elsewhere.status).toBe(200);
  });

  it('should give the counts without node lists in the summary form', async () => {
    t = await createTestApp({ ...variant.env(), ...MANUAL_SWEEP });
    await registerNode(t);
    await registerNode(t);
    await post(t, '/sink', { server_public_key: 'legacy-node' });

    const res = await get(t, '/relay/diagnostics?summary=1');

    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.body).toEqual({
      relay_only: true,
      upstream_health_required: false,
      active_upstream_servers: [],
      required_upstream_servers: [],
      total_registered_compute_nodes: 3,
      total_api_v1_registered_compute_nodes: 2,
      demo_compute_nodes_count: 0,
      unusable_compute_nodes_count: 0,
      configured_upstream_servers: [],
    });
  });
});
