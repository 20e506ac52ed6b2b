import { createTestApp, type TestApp } from '../helpers/test-app';
import { fakeKey, raw, registerNode, requestBody, V1 } from './api-v1-fixtures';

const PUBLIC_PATHS = [
  `${V1}/requests`,
  `${V1}/requests/cancel`,
  `${V1}/responses/retrieve`,
  `${V1}/servers/next`,
  '/api/v1/models',
  '/api/v1/models/qwen3-8b-instruct',
  '/v1/models',
  '/api/v1/health',
  '/api/v1/public-key',
  '/api/v1/chat/completions',
];

const EXCLUDED_PATHS = [
  `${V1}/responses`,
  `${V1}/progress`,
  `${V1}/servers/register`,
  `${V1}/servers/unregister`,
  `${V1}/servers/poll`,
  `${V1}/servers/control`,
  `${V1}/unregister`,
  '/relay/api/v1/chat/completions',
  '/relay/api/v1/source',
  '/relay/diagnostics',
  '/healthz',
  '/livez',
  '/metrics',
];

const PREFLIGHT = {
  'access-control-allow-origin': '*',
  'access-control-expose-headers': 'Retry-After',
  'access-control-allow-methods': 'GET, POST, OPTIONS',
  'access-control-allow-headers': 'Content-Type, Accept',
  'access-control-max-age': '600',
};

const BROWSER = { Origin: 'https://token.place', 'Access-Control-Request-Method': 'POST' };

describe('CORS (spec 2.3)', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await createTestApp({ API_RATE_LIMIT: '1/hour' });
  });

  afterAll(async () => {
    await t.close();
  });

  it.each(PUBLIC_PATHS)(
    'should answer a preflight on %s with 204 and the fixed policy',
    async (path) => {
      const res = await raw(t, 'OPTIONS', path, { headers: BROWSER });

      expect(res.status).toBe(204);
      expect(res.text).toBe('');
      for (const [name, value] of Object.entries(PREFLIGHT)) {
        expect(res.headers[name]).toBe(value);
      }
      expect(res.headers['access-control-allow-credentials']).toBeUndefined();
    },
  );

  it('should answer preflights before rate limiting', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 5; i += 1) {
      statuses.push((await raw(t, 'OPTIONS', `${V1}/requests`, { headers: BROWSER })).status);
    }

    expect(statuses).toEqual([204, 204, 204, 204, 204]);
  });

  it('should put the wildcard origin and Retry-After exposure on every public answer, errors included', async () => {
    const node = await registerNode(t);
    const json = { 'content-type': 'application/json', Origin: 'https://token.place' };

    const ok = await raw(t, 'GET', `${V1}/servers/next`, { headers: json });
    const accepted = await raw(t, 'POST', `${V1}/requests`, {
      headers: json,
      body: JSON.stringify(requestBody(node.key, fakeKey())),
    });
    const limited = await raw(t, 'POST', `${V1}/requests`, {
      headers: json,
      body: JSON.stringify(requestBody(node.key, fakeKey())),
    });
    const bad = await raw(t, 'POST', `${V1}/responses/retrieve`, { headers: json, body: '[]' });
    const missing = await raw(t, 'POST', `${V1}/responses/retrieve`, {
      headers: json,
      body: JSON.stringify({ client_public_key: 'c', request_id: 'r' }),
    });
    const proof = await raw(t, 'POST', `${V1}/requests/cancel`, {
      headers: json,
      body: JSON.stringify({ client_public_key: 'c', request_id: 'r', cancel_token: 'x' }),
    });

    expect([
      ok.status,
      accepted.status,
      limited.status,
      bad.status,
      missing.status,
      proof.status,
    ]).toEqual([200, 200, 429, 400, 404, 403]);
    for (const res of [ok, accepted, limited, bad, missing, proof]) {
      expect(res.headers['access-control-allow-origin']).toBe('*');
      expect(res.headers['access-control-expose-headers']).toBe('Retry-After');
      expect(res.headers['access-control-allow-credentials']).toBeUndefined();
      expect(res.headers['access-control-allow-methods']).toBeUndefined();
    }
    expect(limited.headers['retry-after']).toEqual(expect.any(String));
  });

  it.each(EXCLUDED_PATHS)(
    'should send no CORS headers on %s, not even to a preflight',
    async (path) => {
      const preflight = await raw(t, 'OPTIONS', path, { headers: BROWSER });
      const post = await raw(t, 'POST', path, {
        headers: { 'content-type': 'application/json', Origin: 'https://x.example' },
        body: '{}',
      });
      const get = await raw(t, 'GET', path, { headers: { Origin: 'https://x.example' } });

      expect(preflight.status).not.toBe(204);
      for (const res of [preflight, post, get]) {
        expect(res.headers['access-control-allow-origin']).toBeUndefined();
        expect(res.headers['access-control-allow-methods']).toBeUndefined();
        expect(res.headers['access-control-expose-headers']).toBeUndefined();
      }
    },
  );

  it('should not reflect the Origin header', async () => {
    const res = await raw(t, 'GET', `${V1}/servers/next`, {
      headers: { Origin: 'https://evil.example' },
    });

    expect(res.headers['access-control-allow-origin']).toBe('*');
    expect(res.headers.vary ?? '').not.toMatch(/origin/i);
  });
});
