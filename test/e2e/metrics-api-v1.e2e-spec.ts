import { spawnSync } from 'node:child_process';
import { ManualClock } from '../../src/common/clock';
import { requirement } from '../helpers/requirements';
import { call, createTestApp, type TestApp } from '../helpers/test-app';
import {
  cancel,
  control,
  fakeKey,
  get,
  hex,
  MANUAL_SWEEP,
  poll,
  post,
  raw,
  registerNode,
  respond,
  retrieve,
  sampleValue,
  submit,
  V1,
} from './api-v1-fixtures';

const OUTCOMES = [
  'completed',
  'cancelled',
  'expired',
  'timed_out',
  'rate_limited',
  'dependency_failure',
  'failed',
];
const EVICTIONS = ['stale_lease', 'unregistered', 'capacity_loss'];
const CONTROL_STATES = ['active', 'cancelled', 'expired', 'acknowledged', 'completed_unavailable'];
const BUCKETS = [
  '0.005',
  '0.01',
  '0.025',
  '0.05',
  '0.1',
  '0.25',
  '0.5',
  '1',
  '2.5',
  '5',
  '10',
  '30',
  '+Inf',
];
const ROUTES = new Set([
  '/api/v1/relay/requests',
  '/api/v1/relay/requests/cancel',
  '/api/v1/relay/responses',
  '/api/v1/relay/responses/retrieve',
  '/api/v1/relay/progress',
  '/api/v1/relay/servers/register',
  '/api/v1/relay/servers/unregister',
  '/api/v1/relay/servers/poll',
  '/api/v1/relay/servers/control',
  '/api/v1/relay/servers/next',
  '/healthz',
  '/livez',
  '/metrics',
  '/relay/diagnostics',
  '/api/v1/*',
  '/api/v2/*',
  'other',
]);

/** The HEAD metric families of spec 5.5: name → type and label names. */
const FAMILIES: Record<string, { type: string; labels: string[] }> = {
  tokenplace_relay_requests_total: { type: 'counter', labels: ['method', 'endpoint', 'status'] },
  tokenplace_http_requests_total: {
    type: 'counter',
    labels: ['method', 'route', 'status_class', 'provider_mode', 'outcome'],
  },
  tokenplace_http_request_duration_seconds: {
    type: 'histogram',
    labels: ['method', 'route', 'status_class', 'provider_mode', 'outcome'],
  },
  tokenplace_relay_queue_depth: { type: 'gauge', labels: ['provider_mode'] },
  tokenplace_relay_oldest_queued_request_age_seconds: { type: 'gauge', labels: ['provider_mode'] },
  tokenplace_compute_nodes_registered: { type: 'gauge', labels: [] },
  tokenplace_compute_nodes_healthy: { type: 'gauge', labels: [] },
  tokenplace_compute_node_lease_age_seconds: { type: 'gauge', labels: [] },
  tokenplace_compute_node_evictions_total: { type: 'counter', labels: ['reason'] },
  tokenplace_relay_in_flight_requests: { type: 'gauge', labels: [] },
  tokenplace_relay_oldest_in_flight_age_seconds: { type: 'gauge', labels: [] },
  tokenplace_relay_request_outcomes_total: { type: 'counter', labels: ['outcome'] },
  tokenplace_relay_compute_control_requests_total: { type: 'counter', labels: ['state'] },
  tokenplace_relay_compute_control_lease_renewals_total: { type: 'counter', labels: [] },
  tokenplace_build_info: { type: 'gauge', labels: ['version', 'revision'] },
  tokenplace_instrumentation_up: { type: 'gauge', labels: [] },
};

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function samples(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) {
      continue;
    }
    const labels: Record<string, string> = {};
    for (const pair of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[pair[1] as string] = pair[2] as string;
    }
    out.push({ name: m[1] as string, labels, value: Number(m[3]) });
  }
  return out;
}

async function scrape(t: TestApp): Promise<string> {
  const res = await get(t, '/metrics');
  expect(res.status).toBe(200);
  return res.text;
}

describe('/metrics: the HEAD metric set', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await createTestApp({
      TOKENPLACE_IMAGE_TAG: 'main-1a2b3c4',
      TOKENPLACE_RELEASE_VERSION: '1.2.3',
    });
  });

  afterAll(async () => {
    await t.close();
  });

  it('should serve Prometheus text with no-store', async () => {
    const res = await get(t, '/metrics');

    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    expect(res.headers.get('cache-control')).toBe('no-store');
  });

  it.each(Object.entries(FAMILIES))(
    'should declare %s with its type and labels',
    async (name, { type, labels }) => {
      await get(t, '/healthz');

      const text = await scrape(t);

      expect(text).toContain(`# TYPE ${name} ${type}\n`);
      const series = samples(text).filter((s) => s.name === name || s.name.startsWith(`${name}_`));
      expect(series.length).toBeGreaterThan(0);
      for (const s of series) {
        const names = Object.keys(s.labels).filter((l) => l !== 'le');
        expect(names.sort()).toEqual([...labels].sort());
      }
    },
  );

  it('should pre-initialise every outcome, eviction reason, control state and the relay queue gauges to 0', async () => {
    const fresh = await createTestApp();
    try {
      const text = await scrape(fresh);

      for (const outcome of OUTCOMES) {
        expect(text).toContain(`tokenplace_relay_request_outcomes_total{outcome="${outcome}"} 0\n`);
      }
      for (const reason of EVICTIONS) {
        expect(text).toContain(`tokenplace_compute_node_evictions_total{reason="${reason}"} 0\n`);
      }
      for (const state of CONTROL_STATES) {
        expect(text).toContain(
          `tokenplace_relay_compute_control_requests_total{state="${state}"} 0\n`,
        );
      }
      expect(text).toContain('tokenplace_relay_compute_control_lease_renewals_total 0\n');
      expect(text).toContain('tokenplace_relay_queue_depth{provider_mode="relay"} 0\n');
      expect(text).toContain(
        'tokenplace_relay_oldest_queued_request_age_seconds{provider_mode="relay"} 0\n',
      );
      expect(text).toContain('tokenplace_instrumentation_up 1\n');
    } finally {
      await fresh.close();
    }
  });

  it('should use exactly the spec histogram buckets', async () => {
    await get(t, '/livez');

    const text = await scrape(t);

    const les = samples(text)
      .filter(
        (s) =>
          s.name === 'tokenplace_http_request_duration_seconds_bucket' &&
          s.labels.route === '/livez',
      )
      .map((s) => s.labels.le);
    expect(les).toEqual(BUCKETS);
  });

  it('should take both build_info labels from TOKENPLACE_IMAGE_TAG', async () => {
    const text = await scrape(t);

    expect(text).toContain(
      'tokenplace_build_info{version="main-1a2b3c4",revision="main-1a2b3c4"} 1\n',
    );
  });

  it.each([
    [{}, 'dev', 'unknown'],
    [{ TOKENPLACE_RELEASE_VERSION: '2.0.0' }, '2.0.0', '2.0.0'],
    [
      { TOKENPLACE_RELEASE_VERSION: '2.0.0', TOKENPLACE_GIT_SHA: 'abcdef1234567' },
      '2.0.0',
      'abcdef1234567',
    ],
  ])('should derive build_info from %p', async (env, version, revision) => {
    const other = await createTestApp(env);
    try {
      const text = await scrape(other);

      expect(text).toContain(
        `tokenplace_build_info{version="${version}",revision="${revision}"} 1\n`,
      );
    } finally {
      await other.close();
    }
  });

  it('should label HTTP traffic with the normalised route, status class, provider mode and outcome', async () => {
    await get(t, `${V1}/servers/next`);
    await post(t, `${V1}/requests`, '[]');

    const text = await scrape(t);

    expect(
      sampleValue(text, 'tokenplace_http_requests_total', {
        method: 'GET',
        route: '/api/v1/relay/servers/next',
        status_class: '5xx',
        provider_mode: 'relay',
        outcome: 'failed',
      }),
    ).toBeGreaterThanOrEqual(1);
    expect(
      sampleValue(text, 'tokenplace_http_requests_total', {
        method: 'POST',
        route: '/api/v1/relay/requests',
        status_class: '4xx',
        outcome: 'failed',
      }),
    ).toBeGreaterThanOrEqual(1);
    expect(
      sampleValue(text, 'tokenplace_relay_requests_total', {
        method: 'GET',
        endpoint: '/api/v1/relay/servers/next',
        status: '503',
      }),
    ).toBeGreaterThanOrEqual(1);
  });

  it('should keep label cardinality bounded whatever paths and methods are requested', async () => {
    const before = samples(await scrape(t)).filter((s) => s.name.startsWith('tokenplace_')).length;

    for (let i = 0; i < 60; i += 1) {
      const id = hex(6);
      await Promise.all([
        get(t, `/nowhere/${id}`),
        get(t, `/api/v1/${id}`),
        post(t, `/v1/${id}/x`, {}),
        get(t, `/api/v2/${id}`),
        get(t, `/static/${id}.js`),
        get(t, `/api/v1/relay/${id}`),
        raw(t, 'PROPFIND', `/${id}`),
      ]);
    }
    const text = await scrape(t);
    const after = samples(text).filter((s) => s.name.startsWith('tokenplace_'));

    const routes = new Set(
      after.filter((s) => s.labels.route !== undefined).map((s) => s.labels.route),
    );
    const endpoints = new Set(
      after.filter((s) => s.labels.endpoint !== undefined).map((s) => s.labels.endpoint),
    );
    const methods = new Set(
      after.filter((s) => s.labels.method !== undefined).map((s) => s.labels.method),
    );
    for (const route of routes) {
      expect(ROUTES.has(route as string)).toBe(true);
    }
    for (const endpoint of endpoints) {
      expect(endpoint).not.toMatch(/[0-9a-f]{12}/);
    }
    expect(
      [...methods].every((m) =>
        ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS', 'HEAD', 'other'].includes(m as string),
      ),
    ).toBe(true);
    expect(methods.has('other')).toBe(true);
    expect(after.length - before).toBeLessThan(400);
    const labelSets = text
      .split('\n')
      .filter((line) => line.startsWith('tokenplace_'))
      .map((line) => /\{(.*)\}/.exec(line)?.[1] ?? '');
    expect(labelSets.filter((l) => /[0-9a-f]{12}/.test(l))).toEqual([]);
  });
});

describe('/metrics: outcomes, evictions and control states are counted once', () => {
  let t: TestApp;
  let clock: ManualClock;

  beforeEach(async () => {
    clock = new ManualClock();
    t = await createTestApp(
      {
        ...MANUAL_SWEEP,
        TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '0',
        TOKEN_PLACE_API_V1_REQUEST_DEADLINE_SECONDS: '60',
        API_RATE_LIMIT: '3/hour',
      },
      clock,
    );
  });

  afterEach(async () => {
    await t.close();
  });

  async function counters(): Promise<Record<string, number>> {
    const text = await scrape(t);
    const out: Record<string, number> = {};
    for (const o of OUTCOMES) {
      out[`outcome:${o}`] = sampleValue(text, 'tokenplace_relay_request_outcomes_total', {
        outcome: o,
      });
    }
    for (const r of EVICTIONS) {
      out[`eviction:${r}`] = sampleValue(text, 'tokenplace_compute_node_evictions_total', {
        reason: r,
      });
    }
    for (const s of CONTROL_STATES) {
      out[`control:${s}`] = sampleValue(text, 'tokenplace_relay_compute_control_requests_total', {
        state: s,
      });
    }
    out.renewals = sampleValue(text, 'tokenplace_relay_compute_control_lease_renewals_total');
    return out;
  }

  function delta(
    before: Record<string, number>,
    after: Record<string, number>,
  ): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(after)) {
      if (v !== before[k]) {
        out[k] = v - (before[k] ?? 0);
      }
    }
    return out;
  }

  it('should count completed once per request (not for duplicates or retrievals)', async () => {
    const node = await registerNode(t);
    const req = await submit(t, node.key);
    await poll(t, node);
    const before = await counters();

    await respond(t, req);
    await respond(t, req);
    await retrieve(t, req.clientKey, req.requestId);
    await respond(t, req);

    expect(delta(before, await counters())).toEqual({ 'outcome:completed': 1 });
  });

  it('should count cancelled once, with the node seeing cancelled then acknowledging', async () => {
    const node = await registerNode(t);
    const req = await submit(t, node.key);
    await poll(t, node);
    const before = await counters();

    await control(t, node, req.requestId);
    await cancel(t, req);
    await cancel(t, req);
    await control(t, node, req.requestId);
    await control(t, node, req.requestId, { acknowledge: true });
    await control(t, node, req.requestId);
    await retrieve(t, req.clientKey, req.requestId);

    expect(delta(before, await counters())).toEqual({
      'outcome:cancelled': 1,
      'control:active': 1,
      renewals: 1,
      'control:cancelled': 1,
      'control:acknowledged': 1,
      'control:completed_unavailable': 1,
    });
  });

  it('should count expired once for an undelivered request, however often it is observed', async () => {
    const node = await registerNode(t);
    const req = await submit(t, node.key);
    const before = await counters();

    clock.advance(60_000);
    await retrieve(t, req.clientKey, req.requestId);
    await t.sweep();
    await retrieve(t, req.clientKey, req.requestId);
    await respond(t, req);

    const d = delta(before, await counters());
    expect(d['outcome:expired']).toBe(1);
    expect(d['outcome:timed_out']).toBeUndefined();
  });

  it('should count timed_out once when the node observes the deadline on control', async () => {
    const node = await registerNode(t);
    const req = await submit(t, node.key);
    await poll(t, node);
    const before = await counters();

    clock.advance(60_000);
    await control(t, node, req.requestId);
    await control(t, node, req.requestId);
    await retrieve(t, req.clientKey, req.requestId);

    expect(delta(before, await counters())).toEqual({
      'outcome:timed_out': 1,
      'control:expired': 2,
    });
  });

  it('should count rate_limited once per refused /requests', async () => {
    const node = await registerNode(t);
    const before = await counters();

    for (let i = 0; i < 5; i += 1) {
      await submit(t, node.key);
    }

    expect(delta(before, await counters())['outcome:rate_limited']).toBe(2);
  });

  it('should count evictions by reason, and the queued work they end as cancelled', async () => {
    const leaving = await registerNode(t);
    const stale = await registerNode(t);
    await submit(t, leaving.key);
    const before = await counters();

    await post(t, `${V1}/servers/unregister`, {
      server_public_key: leaving.key,
      control_credential: leaving.credential,
    });
    await post(t, `${V1}/servers/unregister`, {
      server_public_key: leaving.key,
      control_credential: leaving.credential,
    });
    clock.advance(30_000 + 20_000 + 1); // default lease + lapse grace
    await t.sweep();
    await t.sweep();

    expect(stale.key).not.toBe(leaving.key);
    expect(delta(before, await counters())).toEqual({
      'eviction:unregistered': 1,
      'eviction:stale_lease': 1,
      'outcome:cancelled': 1,
    });
  });

  it('should recompute the gauges on every scrape', async () => {
    const a = await registerNode(t);
    const b = await registerNode(t);
    await submit(t, a.key, { clientKey: fakeKey('c1') });
    await submit(t, a.key, { clientKey: fakeKey('c2') });
    await submit(t, b.key, { clientKey: fakeKey('c3') });
    clock.advance(4_000);
    await post(t, `${V1}/servers/register`, { server_public_key: a.key });
    await poll(t, b);
    clock.advance(1_000);

    const text = await scrape(t);

    expect(sampleValue(text, 'tokenplace_relay_queue_depth', { provider_mode: 'relay' })).toBe(2);
    expect(
      sampleValue(text, 'tokenplace_relay_oldest_queued_request_age_seconds', {
        provider_mode: 'relay',
      }),
    ).toBe(5);
    expect(sampleValue(text, 'tokenplace_relay_in_flight_requests')).toBe(1);
    expect(sampleValue(text, 'tokenplace_relay_oldest_in_flight_age_seconds')).toBe(1);
    expect(sampleValue(text, 'tokenplace_compute_nodes_registered')).toBe(2);
    expect(sampleValue(text, 'tokenplace_compute_nodes_healthy')).toBe(2);
    expect(sampleValue(text, 'tokenplace_compute_node_lease_age_seconds')).toBe(1);
  });
});

describe('/metrics authentication', () => {
  async function scrapeWith(env: Record<string, string>, headers: Record<string, string> = {}) {
    const t = await createTestApp(env);
    try {
      return await call(t.baseUrl, 'GET', '/metrics', undefined, headers);
    } finally {
      await t.close();
    }
  }

  function expectUnauthorized(res: { status: number; text: string; headers: Headers }): void {
    expect(res.status).toBe(401);
    expect(res.text).toBe('unauthorized\n');
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
  }

  it('should be open when TOKENPLACE_METRICS_TOKEN is unset', async () => {
    expect((await scrapeWith({})).status).toBe(200);
  });

  it('should always answer 401 when the token is set but empty', async () => {
    expectUnauthorized(await scrapeWith({ TOKENPLACE_METRICS_TOKEN: '' }));
    expectUnauthorized(
      await scrapeWith({ TOKENPLACE_METRICS_TOKEN: '' }, { Authorization: 'Bearer ' }),
    );
  });

  it('should require the Bearer token when set', async () => {
    const env = { TOKENPLACE_METRICS_TOKEN: 's3cret' };

    expectUnauthorized(await scrapeWith(env));
    expectUnauthorized(await scrapeWith(env, { Authorization: 'Bearer wrong' }));
    expectUnauthorized(await scrapeWith(env, { Authorization: 's3cret' }));
    expectUnauthorized(await scrapeWith(env, { Authorization: 'Basic czNjcmV0' }));
    expect((await scrapeWith(env, { Authorization: 'Bearer s3cret' })).status).toBe(200);
  });

  it('should always answer 401 when metrics are disabled, even with the right token', async () => {
    expectUnauthorized(
      await scrapeWith(
        { TOKENPLACE_METRICS_DISABLED: '1', TOKENPLACE_METRICS_TOKEN: 's3cret' },
        { Authorization: 'Bearer s3cret' },
      ),
    );
    expectUnauthorized(await scrapeWith({ TOKENPLACE_METRICS_DISABLED: 'true' }));
  });
});

const promtool = spawnSync('promtool', ['--version'], { encoding: 'utf8' }).status === 0;
const describePromtool = requirement(
  'promtool',
  promtool,
  'TOKENPLACE_REQUIRE_PROMTOOL',
  'apt-get install prometheus',
)
  ? describe
  : describe.skip;

describePromtool('/metrics passes promtool check metrics', () => {
  it('should be accepted after API v1 traffic', async () => {
    const clock = new ManualClock();
    const t = await createTestApp(
      { ...MANUAL_SWEEP, TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '0' },
      clock,
    );
    try {
      const node = await registerNode(t);
      const done = await submit(t, node.key);
      await poll(t, node);
      await control(t, node, done.requestId);
      await respond(t, done);
      await retrieve(t, done.clientKey, done.requestId);
      const gone = await submit(t, node.key);
      await cancel(t, gone);
      await get(t, `/nowhere/${hex(4)}`);
      await get(t, '/healthz');
      clock.advance(31_000);
      await t.sweep();

      const text = await scrape(t);
      const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });

      expect({ status: check.status, output: `${check.stdout}${check.stderr}` }).toEqual({
        status: 0,
        output: '',
      });
    } finally {
      await t.close();
    }
  });
});
