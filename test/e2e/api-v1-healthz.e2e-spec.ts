import { createHash } from 'node:crypto';
import { ManualClock } from '../../src/common/clock';
import { call, createTestApp, type TestApp } from '../helpers/test-app';
import {
  capabilities,
  fakeKey,
  get,
  MANUAL_SWEEP,
  post,
  registerNode,
  submit,
} from './api-v1-fixtures';

const fingerprint = (key: string): string =>
  `sha256:${createHash('sha256').update(key).digest('hex').slice(0, 16)}`;

async function health(
  env: Record<string, string>,
): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const t = await createTestApp(env);
  try {
    const res = await get(t, '/healthz');
    return { status: res.status, body: res.body, headers: res.headers };
  } finally {
    await t.close();
  }
}

describe('GET /healthz (HEAD fields)', () => {
  it('should report an empty relay-only relay as ok with details.knownServers empty, and only what is configured', async () => {
    const res = await health({});

    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.body).toEqual({
      status: 'ok',
      upstreamHealthRequired: false,
      relayOnly: true,
      activeUpstreamServers: [],
      requiredUpstreamServers: [],
      configuredUpstreamServers: [],
      store: 'memory',
      knownServers: 0,
      registeredServers: [],
      details: { knownServers: 'empty' },
    });
  });

  it('should echo the public URL (trailing slash removed) as publicBaseUrl and publicUrl', async () => {
    const res = await health({ TOKENPLACE_RELAY_PUBLIC_URL: 'https://staging.token.place/' });

    expect(res.body).toMatchObject({
      publicBaseUrl: 'https://staging.token.place',
      publicUrl: 'https://staging.token.place',
    });
  });

  it('should take the public URL from RELAY_PUBLIC_URL too', async () => {
    const res = await health({ RELAY_PUBLIC_URL: 'https://relay.example' });

    expect(res.body.publicBaseUrl).toBe('https://relay.example');
  });

  it('should make the upstream URL the one active upstream when it is set', async () => {
    const res = await health({ TOKENPLACE_RELAY_UPSTREAM_URL: 'http://gpu-box:8000' });

    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      upstream: 'http://gpu-box:8000',
      gpuHost: 'gpu-box',
      relayOnly: false,
      activeUpstreamServers: ['http://gpu-box:8000'],
      requiredUpstreamServers: [],
      upstreamHealthRequired: false,
    });
  });

  it('should make the configured pool active when only the pool is configured', async () => {
    const res = await health({
      TOKEN_PLACE_RELAY_UPSTREAMS: 'https://a.example,https://b.example',
    });

    expect(res.body).toMatchObject({
      relayOnly: false,
      activeUpstreamServers: ['https://a.example', 'https://b.example'],
      configuredUpstreamServers: ['https://a.example', 'https://b.example'],
    });
  });

  it('should require the upstream when told to, and stay ok while it resolves', async () => {
    const res = await health({
      TOKENPLACE_RELAY_REQUIRE_UPSTREAM_HEALTH: 'yes',
      TOKENPLACE_GPU_HOST: 'localhost',
    });

    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      upstream: 'http://localhost:3000',
      gpuHost: 'localhost',
      upstreamHealthRequired: true,
      relayOnly: false,
      activeUpstreamServers: ['http://localhost:3000'],
      requiredUpstreamServers: ['http://localhost:3000'],
      configuredUpstreamServers: [],
    });
  });

  it('should be degraded (503, no Retry-After) when a required upstream does not resolve', async () => {
    const res = await health({
      TOKENPLACE_RELAY_REQUIRE_UPSTREAM_HEALTH: '1',
      TOKENPLACE_GPU_HOST: 'no-such-host.invalid',
    });

    expect(res.status).toBe(503);
    expect(res.body).toMatchObject({
      status: 'degraded',
      details: { gpuHostResolution: 'failed' },
    });
    expect(res.headers.get('retry-after')).toBeNull();
  });

  it('should stay ok when the upstream does not resolve but is not required', async () => {
    const res = await health({ TOKENPLACE_GPU_HOST: 'no-such-host.invalid' });

    expect(res.status).toBe(200);
  });

  describe('with nodes', () => {
    let t: TestApp;
    let clock: ManualClock;

    beforeEach(async () => {
      clock = new ManualClock();
      t = await createTestApp(MANUAL_SWEEP, clock);
    });

    afterEach(async () => {
      await t.close();
    });

    it('should count legacy and API v1 nodes and list them with key fingerprints, not keys', async () => {
      const v1 = await registerNode(t, { caps: capabilities({ max_concurrency: 2 }) });
      const legacyKey = fakeKey('legacy');
      await post(t, '/sink', { server_public_key: legacyKey });
      await submit(t, v1.key);
      clock.advance(500);

      const res = await get(t, '/healthz');

      expect(res.status).toBe(200);
      expect(res.body.knownServers).toBe(2);
      expect(res.body.details).toBeUndefined();
      const servers = res.body.registeredServers as Array<Record<string, unknown>>;
      expect(servers).toEqual(
        expect.arrayContaining([
          {
            server_public_key: fingerprint(v1.key),
            age_seconds: 0.5,
            next_ping_in_x_seconds: 30,
            queue_depth: 1,
            in_flight_count: 0,
            max_concurrency: 2,
            load_score: 0.5,
            capabilities: capabilities({ max_concurrency: 2 }),
          },
          expect.objectContaining({
            server_public_key: fingerprint(legacyKey),
            capabilities: null,
            max_concurrency: null,
          }),
        ]),
      );
      expect(res.text).not.toContain(v1.key);
      expect(res.text).not.toContain(legacyKey);
    });

    it('should count a node past its lease until the end of its lapse grace, then not', async () => {
      await registerNode(t);

      clock.advance(30_001);
      const lapsed = await get(t, '/healthz');
      clock.advance(20_000);
      const res = await get(t, '/healthz');

      expect(lapsed.body.knownServers).toBe(1);
      expect(res.body.knownServers).toBe(0);
      expect(res.body.details).toEqual({ knownServers: 'empty' });
    });

    it('should answer 503 draining with Retry-After 0 and no-store once draining starts', async () => {
      t.lifecycle.startDraining('test');

      const res = await get(t, '/healthz');
      const live = await get(t, '/livez');

      expect(res.status).toBe(503);
      expect(res.body).toMatchObject({ status: 'draining', details: { shutdown: true } });
      expect(res.headers.get('retry-after')).toBe('0');
      expect(res.headers.get('cache-control')).toBe('no-store');
      expect(live.status).toBe(200);
      expect(live.body).toEqual({ status: 'alive' });
    });

    it('should answer 503 starting on /healthz, /api/v1/health and /v1/health while readiness is held (the demo node registering), and 200 once released', async () => {
      const release = t.lifecycle.holdReadiness('demo compute node');

      const held = await Promise.all(
        ['/healthz', '/api/v1/health', '/v1/health', '/livez'].map((p) => get(t, p)),
      );
      release();
      const after = await Promise.all(
        ['/healthz', '/api/v1/health', '/v1/health'].map((p) => get(t, p)),
      );

      const [healthz, apiV1, v1, live] = held;
      expect(healthz?.status).toBe(503);
      expect(healthz?.body).toMatchObject({
        status: 'starting',
        details: { startingFor: ['demo compute node'] },
      });
      expect(healthz?.headers.get('retry-after')).toBe('1');
      expect(healthz?.headers.get('cache-control')).toBe('no-store');
      for (const res of [apiV1, v1]) {
        expect(res?.status).toBe(503);
        expect(res?.body).toMatchObject({ status: 'starting', version: 'v1' });
        expect(res?.headers.get('retry-after')).toBe('1');
      }
      expect(live?.status).toBe(200);
      expect(after.map((r) => [r.status, r.body.status])).toEqual([
        [200, 'ok'],
        [200, 'ok'],
        [200, 'ok'],
      ]);
    });
  });

  it('should show whole keys when TOKENPLACE_RELAY_HEALTH_EXPOSE_KEYS=1', async () => {
    const t = await createTestApp({ TOKENPLACE_RELAY_HEALTH_EXPOSE_KEYS: '1' });
    try {
      const node = await registerNode(t);

      const res = await get(t, '/healthz');

      expect(
        (res.body.registeredServers as Array<Record<string, unknown>>)[0]?.server_public_key,
      ).toBe(node.key);
    } finally {
      await t.close();
    }
  });

  it('should answer HEAD /healthz and /livez without a body', async () => {
    const t = await createTestApp();
    try {
      const head = await call(t.baseUrl, 'HEAD', '/healthz');
      const live = await call(t.baseUrl, 'HEAD', '/livez');

      expect(head.status).toBe(200);
      expect(head.text).toBe('');
      expect(live.status).toBe(200);
    } finally {
      await t.close();
    }
  });
});
