import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ManualClock } from '../../src/common/clock';
import { call, createTestApp, type TestApp } from '../helpers/test-app';
import {
  apiError,
  capabilities,
  caps64k,
  fakeKey,
  get,
  MANUAL_SWEEP,
  post,
  raw,
  registerNode,
  submit,
  V1,
} from './api-v1-fixtures';

/** Spec §4.4.12: release version, else the packaged version (here: this relay's package.json). */
const PACKAGE_VERSION = (
  JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as {
    version: string;
  }
).version;

describe('GET /relay/diagnostics', () => {
  let t: TestApp;
  let clock: ManualClock;

  beforeEach(async () => {
    clock = new ManualClock();
    t = await createTestApp(MANUAL_SWEEP, clock);
  });

  afterEach(async () => {
    await t.close();
  });

  it('should describe an empty relay-only relay', async () => {
    const res = await get(t, '/relay/diagnostics');

    expect(res.status).toBe(200);
    expect(res.headers.get('cache-control')).toBe('no-store');
    expect(res.body).toEqual({
      relay_only: true,
      upstream_health_required: false,
      active_upstream_servers: [],
      required_upstream_servers: [],
      registered_compute_nodes: [],
      total_registered_compute_nodes: 0,
      api_v1_registered_compute_nodes: [],
      total_api_v1_registered_compute_nodes: 0,
      configured_upstream_servers: [],
    });
  });

  it('should list API v1 and legacy nodes with their load, sorted by key', async () => {
    // API v1 keys are base64 PEM ('LS0t...'); a legacy /sink key may be any string.
    const v1 = await registerNode(t, { caps: capabilities({ max_concurrency: 2 }) });
    const legacyKey = `A-legacy-${fakeKey()}`.slice(0, 64);
    await post(t, '/sink', { server_public_key: legacyKey });
    await submit(t, v1.key);
    await submit(t, v1.key);
    await submit(t, v1.key);
    await post(t, `${V1}/servers/poll`, { server_public_key: v1.key });
    clock.advance(1_234);

    const res = await get(t, '/relay/diagnostics');

    const v1View = {
      server_public_key: v1.key,
      age_seconds: 1.234,
      next_ping_in_x_seconds: 30,
      queue_depth: 2,
      in_flight_count: 1,
      max_concurrency: 2,
      load_score: 1.5,
      capabilities: capabilities({ max_concurrency: 2 }),
    };
    const legacyView = {
      server_public_key: legacyKey,
      age_seconds: 1.234,
      next_ping_in_x_seconds: expect.any(Number),
      queue_depth: 0,
      in_flight_count: 0,
      max_concurrency: null,
      load_score: 0,
      capabilities: null,
    };
    expect(res.body).toMatchObject({
      registered_compute_nodes: [legacyView, v1View],
      total_registered_compute_nodes: 2,
      api_v1_registered_compute_nodes: [v1View],
      total_api_v1_registered_compute_nodes: 1,
    });
  });

  it('should count a node past its lease until the end of its lapse grace, then not', async () => {
    await registerNode(t);

    clock.advance(30_001);
    const lapsed = await get(t, '/relay/diagnostics');
    clock.advance(20_000);
    const gone = await get(t, '/relay/diagnostics');

    expect(lapsed.body.total_api_v1_registered_compute_nodes).toBe(1);
    expect(gone.body.total_api_v1_registered_compute_nodes).toBe(0);
  });
});

describe('GET /api/v1/models', () => {
  let t: TestApp;

  beforeEach(async () => {
    t = await createTestApp();
  });

  afterEach(async () => {
    await t.close();
  });

  it('should be an empty OpenAI-style list with no nodes', async () => {
    const res = await get(t, '/api/v1/models');

    expect(res.status).toBe(200);
    expect(res.body).toEqual({ object: 'list', data: [] });
  });

  it('should list what live API v1 nodes serve, most widely served first, default model first on ties', async () => {
    await registerNode(t, {
      caps: capabilities({ supported_model_ids: ['alpha-1b', 'qwen3-8b-instruct'] }),
    });
    await registerNode(t, { caps: caps64k({ supported_model_ids: ['zeta-70b', 'alpha-1b'] }) });
    await registerNode(t, { caps: null });
    await post(t, '/sink', { server_public_key: fakeKey('legacy') });

    const res = await get(t, '/v1/models');

    expect(res.status).toBe(200);
    expect(res.body.object).toBe('list');
    const data = res.body.data as Array<Record<string, unknown>>;
    expect(data.map((m) => m.id)).toEqual(['alpha-1b', 'qwen3-8b-instruct', 'zeta-70b']);
    expect(data[0]).toMatchObject({ id: 'alpha-1b', object: 'model' });
  });
});

describe('GET /api/v1/relay/server-nodes', () => {
  it('should report the configured upstream pool', async () => {
    const t = await createTestApp({
      TOKEN_PLACE_RELAY_UPSTREAMS: 'https://a.example, https://b.example',
    });
    try {
      const res = await get(t, '/api/v1/relay/server-nodes');

      expect(res.status).toBe(200);
      expect(res.body).toEqual({
        configured_servers: ['https://a.example', 'https://b.example'],
        primary: 'https://a.example',
        secondary: ['https://b.example'],
        total: 2,
      });
    } finally {
      await t.close();
    }
  });

  it('should list nothing when no upstream pool is configured', async () => {
    const t = await createTestApp();
    try {
      const res = await get(t, '/api/v1/relay/server-nodes');

      expect(res.body).toEqual({
        configured_servers: [],
        primary: null,
        secondary: [],
        total: 0,
      });
    } finally {
      await t.close();
    }
  });
});

describe('GET /api/v1/meta and /api/v1/version', () => {
  async function meta(
    env: Record<string, string>,
    host?: string,
  ): Promise<{ body: unknown; cache: unknown }> {
    const t = await createTestApp(env);
    try {
      const headers = host ? { Host: host } : undefined;
      const res = await raw(t, 'GET', '/api/v1/meta', { headers });
      const version = await raw(t, 'GET', '/api/v1/version', { headers });
      expect(res.status).toBe(200);
      expect(version.body).toEqual(res.body);
      return { body: res.body, cache: res.headers['cache-control'] };
    } finally {
      await t.close();
    }
  }

  it('should default to the dev environment and the packaged version', async () => {
    const res = await meta({});

    expect(res.body).toEqual({
      environment: 'dev',
      version: PACKAGE_VERSION,
      label: `dev ${PACKAGE_VERSION}`,
    });
    expect(res.cache).toBe('no-store');
  });

  it.each([
    ['production', 'prod'],
    ['prod', 'prod'],
    ['stage', 'staging'],
    ['staging', 'staging'],
    ['localhost', 'dev'],
    ['testing', 'dev'],
    ['mars', 'dev'],
  ])('should map TOKENPLACE_DEPLOY_ENV=%s to %s', async (value, environment) => {
    const res = await meta({ TOKENPLACE_DEPLOY_ENV: value });

    expect(res.body).toMatchObject({ environment });
  });

  it.each([
    ['token.place', 'prod'],
    ['staging.token.place', 'staging'],
    ['staging.token.place:443', 'staging'],
    ['example.org', 'dev'],
  ])('should infer the environment from Host %s', async (host, environment) => {
    const res = await meta({}, host);

    expect(res.body).toMatchObject({ environment });
  });

  it('should show the release version in prod', async () => {
    const res = await meta({
      TOKENPLACE_DEPLOY_ENV: 'prod',
      TOKENPLACE_RELEASE_VERSION: 'v1.4.2',
      TOKENPLACE_GIT_SHA: 'abcdef0123456789',
    });

    expect(res.body).toEqual({
      environment: 'prod',
      version: 'v1.4.2',
      label: 'prod v1.4.2',
      ref: 'main-abcdef0',
    });
  });

  it('should show the immutable image tag in staging', async () => {
    const res = await meta({
      TOKENPLACE_DEPLOY_ENV: 'staging',
      TOKENPLACE_RELEASE_VERSION: '1.4.2',
      TOKENPLACE_IMAGE_TAG: 'main-1a2b3c4',
    });

    expect(res.body).toEqual({
      environment: 'staging',
      version: '1.4.2',
      label: 'staging main-1a2b3c4',
      ref: 'main-1a2b3c4',
    });
  });

  it('should sanitise the release version and ignore "dev"', async () => {
    const dirty = await meta({ TOKENPLACE_RELEASE_VERSION: 'v2.0 <beta>!' });
    const dev = await meta({ TOKENPLACE_RELEASE_VERSION: 'dev' });

    expect(dirty.body).toMatchObject({ version: 'v2.0beta' });
    expect(dev.body).toMatchObject({ version: PACKAGE_VERSION });
  });
});

describe('public API health and fail-closed /relay/api/v1 stubs', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await createTestApp();
  });

  afterAll(async () => {
    await t.close();
  });

  it('should answer /api/v1/health', async () => {
    const res = await get(t, '/api/v1/health');

    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      status: 'ok',
      version: 'v1',
      service: 'token.place',
      timestamp: expect.any(Number),
    });
  });

  it.each([
    [
      'chat/completions',
      'Distributed relay API v1 chat completions are disabled pending an end-to-end encrypted relay design.',
    ],
    ['source', expect.stringContaining('source dispatch')],
  ])('should answer POST /relay/api/v1/%s with the 503 stub', async (route, message) => {
    const res = await post(t, `/relay/api/v1/${route}`, { model: 'x', messages: [] });

    expect(res.status).toBe(503);
    expect(res.body).toEqual({
      error: {
        type: 'service_unavailable_error',
        code: 'distributed_api_v1_relay_disabled',
        message,
      },
    });
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
  });

  it('should answer 405 for other methods and 404 for other paths under /relay/api/v1', async () => {
    const wrongMethod = await call(t.baseUrl, 'GET', '/relay/api/v1/chat/completions');
    const otherPath = await post(t, '/relay/api/v1/models', {});

    expect(wrongMethod.status).toBe(405);
    expect(otherPath.status).toBe(404);
  });

  it('should answer an unknown API v1 relay path with 404', async () => {
    const res = await post(t, `${V1}/nothing-here`, {});

    expect(res.status).toBe(404);
    expect(res.body).toEqual(apiError('Not found', 404));
  });
});
