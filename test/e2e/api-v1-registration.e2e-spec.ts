import { createTestApp, type TestApp } from '../helpers/test-app';
import { apiError, capabilities, fakeKey, get, post, registerNode, V1 } from './api-v1-fixtures';

const REGISTER = `${V1}/servers/register`;
const invalidCaps = (message: string): unknown => apiError(message, 'invalid_capabilities');

describe('API v1 registration and capabilities', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await createTestApp();
  });

  afterAll(async () => {
    await t.close();
  });

  it('should register with valid capabilities and issue a 43-char control credential once', async () => {
    const key = fakeKey();

    const first = await post(t, REGISTER, { server_public_key: key, capabilities: capabilities() });
    const second = await post(t, REGISTER, {
      server_public_key: key,
      capabilities: capabilities(),
    });

    expect(first.status).toBe(200);
    expect(first.body).toEqual({
      next_ping_in_x_seconds: 30,
      poll_wait_seconds: 10,
      relay_capabilities: { encrypted_progress_v1: true },
      control_credential: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/),
    });
    expect(second.status).toBe(200);
    expect(second.body).toEqual({
      next_ping_in_x_seconds: 30,
      poll_wait_seconds: 10,
      relay_capabilities: { encrypted_progress_v1: true },
    });
    expect(first.headers.get('content-type')).toMatch(/^application\/json/);
  });

  it('should keep the first credential valid after re-registration (never rotated)', async () => {
    const node = await registerNode(t);
    await post(t, REGISTER, { server_public_key: node.key, capabilities: capabilities() });

    const control = await post(t, `${V1}/servers/control`, {
      server_public_key: node.key,
      request_id: 'nothing',
      control_credential: node.credential,
    });

    expect(control.status).toBe(200);
    expect(control.body).toEqual({ status: 'completed/unavailable', next_poll_seconds: 10 });
  });

  it('should normalise capabilities: lower-cased, trimmed, de-duplicated models, known backends, aliases', async () => {
    const key = fakeKey();

    const res = await post(t, REGISTER, {
      server_public_key: key,
      capabilities: {
        api_version: 1,
        model_ids: ['  Qwen3-8B-Instruct ', 'qwen3-8b-instruct', 'Llama-X'],
        context_tier: ' 64k-full ',
        maximum_total_context_tokens: 70000,
        default_output_token_reservation: 512,
        maximum_output_tokens: 4096,
        max_concurrency: 4,
        backend_class: 'CUDA',
      },
    });
    const diag = await get(t, '/relay/diagnostics');

    expect(res.status).toBe(200);
    const node = (diag.body.api_v1_registered_compute_nodes as Array<Record<string, unknown>>).find(
      (n) => n.server_public_key === key,
    );
    expect(node?.capabilities).toEqual({
      api_version: 'v1',
      supported_model_ids: ['qwen3-8b-instruct', 'llama-x'],
      active_context_tier: '64k-full',
      maximum_total_context_tokens: 70000,
      default_output_token_reservation: 512,
      maximum_output_tokens: 4096,
      max_concurrency: 4,
      backend_class: 'cuda',
    });
  });

  it('should coerce an unknown backend class to unknown', async () => {
    const key = fakeKey();

    await post(t, REGISTER, {
      server_public_key: key,
      capabilities: capabilities({ backend_class: 'TPU' }),
    });
    const diag = await get(t, '/relay/diagnostics');

    const node = (diag.body.api_v1_registered_compute_nodes as Array<Record<string, unknown>>).find(
      (n) => n.server_public_key === key,
    );
    expect((node?.capabilities as Record<string, unknown>).backend_class).toBe('unknown');
  });

  it.each([
    ['not an object (array)', [], 'capabilities must be an object'],
    ['not an object (string)', 'caps', 'capabilities must be an object'],
    ['not an object (number)', 7, 'capabilities must be an object'],
    ['api_version 2', { ...capabilities(), api_version: 2 }, 'capabilities.api_version must be v1'],
    [
      'api_version "v2"',
      { ...capabilities(), api_version: 'v2' },
      'capabilities.api_version must be v1',
    ],
    [
      'api_version true',
      { ...capabilities(), api_version: true },
      'capabilities.api_version must be v1',
    ],
    [
      'tier a number',
      { ...capabilities(), active_context_tier: 8192 },
      'capabilities.active_context_tier must be a string',
    ],
    [
      'tier an object',
      { ...capabilities(), active_context_tier: {} },
      'capabilities.active_context_tier must be a string',
    ],
    [
      'alias tier a list',
      { ...capabilities({ active_context_tier: undefined }), context_tier: ['8k-fast'] },
      'capabilities.active_context_tier must be a string',
    ],
    [
      'tier unsupported',
      { ...capabilities(), active_context_tier: '16k' },
      'capabilities.active_context_tier is unsupported',
    ],
    [
      'tier upper-case',
      { ...capabilities(), active_context_tier: '8K-FAST' },
      'capabilities.active_context_tier is unsupported',
    ],
    [
      'models missing',
      { ...capabilities({ supported_model_ids: undefined }) },
      'capabilities.supported_model_ids must be a non-empty string list',
    ],
    [
      'models empty',
      { ...capabilities(), supported_model_ids: [] },
      'capabilities.supported_model_ids must be a non-empty string list',
    ],
    [
      'models a string',
      { ...capabilities(), supported_model_ids: 'qwen3-8b-instruct' },
      'capabilities.supported_model_ids must be a non-empty string list',
    ],
    [
      'models with a number',
      { ...capabilities(), supported_model_ids: ['a', 5] },
      'capabilities.supported_model_ids must be a non-empty string list',
    ],
    [
      'models with a blank',
      { ...capabilities(), supported_model_ids: ['a', '   '] },
      'capabilities.supported_model_ids must be a non-empty string list',
    ],
    [
      'models with a null',
      { ...capabilities(), supported_model_ids: [null] },
      'capabilities.supported_model_ids must be a non-empty string list',
    ],
    [
      '65 models',
      { ...capabilities(), supported_model_ids: Array.from({ length: 65 }, (_, i) => `m${i}`) },
      'capabilities.supported_model_ids must be a non-empty string list',
    ],
    [
      'a 129-char model',
      { ...capabilities(), supported_model_ids: ['m'.repeat(129)] },
      'capabilities.supported_model_ids must be a non-empty string list',
    ],
    [
      'nested model lists',
      { ...capabilities(), supported_model_ids: [['qwen3-8b-instruct']] },
      'capabilities.supported_model_ids must be a non-empty string list',
    ],
    [
      'total tokens a string',
      { ...capabilities(), maximum_total_context_tokens: '8192' },
      'capabilities.maximum_total_context_tokens must be a positive integer',
    ],
    [
      'total tokens a bool',
      { ...capabilities(), maximum_total_context_tokens: true },
      'capabilities.maximum_total_context_tokens must be a positive integer',
    ],
    [
      'total tokens fractional',
      { ...capabilities(), maximum_total_context_tokens: 8192.5 },
      'capabilities.maximum_total_context_tokens must be a positive integer',
    ],
    [
      'total tokens zero',
      { ...capabilities(), maximum_total_context_tokens: 0 },
      'capabilities.maximum_total_context_tokens must be a positive integer',
    ],
    [
      'total tokens over 1e6',
      { ...capabilities(), maximum_total_context_tokens: 1_000_001 },
      'capabilities.maximum_total_context_tokens must be a positive integer',
    ],
    [
      'total tokens null',
      { ...capabilities(), maximum_total_context_tokens: null, active_context_tier: '8k-fast' },
      null,
    ],
    [
      'total tokens below the tier',
      { ...capabilities(), maximum_total_context_tokens: 8191 },
      'capabilities.maximum_total_context_tokens is below the active tier',
    ],
    [
      '64k tier with 8k tokens',
      { ...capabilities(), active_context_tier: '64k-full', maximum_total_context_tokens: 8192 },
      'capabilities.maximum_total_context_tokens is below the active tier',
    ],
    [
      'reservation zero',
      { ...capabilities(), default_output_token_reservation: 0 },
      'capability token reservations and concurrency must be positive integers',
    ],
    [
      'reservation a string',
      { ...capabilities(), default_output_token_reservation: '1' },
      'capability token reservations and concurrency must be positive integers',
    ],
    [
      'max output negative',
      { ...capabilities(), maximum_output_tokens: -1 },
      'capability token reservations and concurrency must be positive integers',
    ],
    [
      'max output over 1e6',
      { ...capabilities(), maximum_output_tokens: 1_000_001 },
      'capability token reservations and concurrency must be positive integers',
    ],
    [
      'concurrency 0',
      { ...capabilities(), max_concurrency: 0 },
      'capability token reservations and concurrency must be positive integers',
    ],
    [
      'concurrency 129',
      { ...capabilities(), max_concurrency: 129 },
      'capability token reservations and concurrency must be positive integers',
    ],
    [
      'concurrency a bool',
      { ...capabilities(), max_concurrency: true },
      'capability token reservations and concurrency must be positive integers',
    ],
    [
      'reservation above max output',
      { ...capabilities(), default_output_token_reservation: 2048, maximum_output_tokens: 1024 },
      'default output reservation cannot exceed maximum output tokens',
    ],
    [
      'backend a number',
      { ...capabilities(), backend_class: 3 },
      'capabilities.backend_class must be a string',
    ],
    [
      'backend a list',
      { ...capabilities(), backend_class: ['cuda'] },
      'capabilities.backend_class must be a string',
    ],
  ])('should reject capabilities with %s', async (_name, caps, message) => {
    const res = await post(t, REGISTER, { server_public_key: fakeKey(), capabilities: caps });

    if (message === null) {
      // null means "use the default" for optional numeric fields: the node registers.
      expect(res.status).toBe(200);
      return;
    }
    expect(res.status).toBe(400);
    expect(res.body).toEqual(invalidCaps(message));
  });

  it('should apply the first failing rule when several are broken', async () => {
    const res = await post(t, REGISTER, {
      server_public_key: fakeKey(),
      capabilities: { api_version: 'v9', active_context_tier: 5, supported_model_ids: [] },
    });

    expect(res.status).toBe(400);
    expect(res.body).toEqual(invalidCaps('capabilities.api_version must be v1'));
  });

  it('should register a node without capabilities but never select it', async () => {
    const key = fakeKey();

    const absent = await post(t, REGISTER, { server_public_key: key });
    const withNull = await post(t, REGISTER, { server_public_key: fakeKey(), capabilities: null });
    const next = await get(t, `${V1}/servers/next`);

    expect(absent.status).toBe(200);
    expect(absent.body.control_credential).toEqual(expect.any(String));
    expect(withNull.status).toBe(200);
    expect(next.body.server_public_key).not.toBe(key);
  });

  it.each([
    ['missing', {}],
    ['empty', { server_public_key: '' }],
    ['null', { server_public_key: null }],
    ['a number', { server_public_key: 42 }],
    ['an object', { server_public_key: { pem: 'x' } }],
    ['a list', { server_public_key: ['x'] }],
    ['longer than 8192 chars', { server_public_key: 'A'.repeat(8193) }],
  ])('should answer 400 Missing server public key when the key is %s', async (_name, body) => {
    const res = await post(t, REGISTER, { ...body, capabilities: capabilities() });

    expect(res.status).toBe(400);
    expect(res.body).toEqual(apiError('Missing server public key', 400));
  });

  it.each([
    ['a list', '[]'],
    ['a string', '"register me"'],
    ['a number', '12'],
    ['null', 'null'],
  ])('should answer 400 Invalid request data when the body is %s', async (_name, raw) => {
    const res = await post(t, REGISTER, raw);

    expect(res.status).toBe(400);
    expect(res.body).toEqual(apiError('Invalid request data', 400));
  });

  it('should answer 400 Invalid request data for a body that is not JSON (parsed leniently upstream)', async () => {
    const malformed = await post(t, REGISTER, '{"server_public_key": ');
    const plain = await post(t, REGISTER, 'server_public_key=x', { 'content-type': 'text/plain' });

    expect(malformed.status).toBe(400);
    expect(malformed.body).toEqual(apiError('Invalid request data', 400));
    expect(plain.status).toBe(400);
    expect(plain.body).toEqual(apiError('Invalid request data', 400));
  });

  it('should ignore unknown top-level keys on registration', async () => {
    const res = await post(t, REGISTER, {
      server_public_key: fakeKey(),
      capabilities: capabilities(),
      extra: { a: 1 },
    });

    expect(res.status).toBe(200);
  });

  describe('hostile capabilities', () => {
    it('should refuse a huge model list without storing anything', async () => {
      const key = fakeKey();
      const models = Array.from({ length: 20000 }, (_, i) => `model-${i}`);

      const res = await post(t, REGISTER, {
        server_public_key: key,
        capabilities: capabilities({ supported_model_ids: models }),
      });
      const diag = await get(t, '/relay/diagnostics');

      expect(res.status).toBe(400);
      expect(res.body).toEqual(
        invalidCaps('capabilities.supported_model_ids must be a non-empty string list'),
      );
      expect(JSON.stringify(diag.body)).not.toContain(key);
    });

    it.each([
      [
        'deeply nested objects in an unknown capability',
        (depth: number) => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`,
      ],
      [
        'deeply nested lists in an unknown capability',
        (depth: number) => `${'['.repeat(depth)}1${']'.repeat(depth)}`,
      ],
    ])('should survive %s', async (_name, nest) => {
      const caps = JSON.stringify(capabilities());
      const raw = `{"server_public_key":"${fakeKey()}","capabilities":${caps.slice(0, -1)},"junk":${nest(50000)}}}`;

      const res = await post(t, REGISTER, raw);
      const live = await get(t, '/livez');

      expect([200, 400]).toContain(res.status);
      expect(live.status).toBe(200);
    });

    it.each([
      [
        'deep nesting as the model list',
        (depth: number) => `${'['.repeat(depth)}"m"${']'.repeat(depth)}`,
      ],
      [
        'deep nesting as the capabilities',
        (depth: number) => `${'{"c":'.repeat(depth)}1${'}'.repeat(depth)}`,
      ],
    ])('should reject %s with invalid_capabilities, never 500', async (_name, nest) => {
      const field = _name.includes('model') ? 'supported_model_ids' : null;
      const raw =
        field !== null
          ? `{"server_public_key":"${fakeKey()}","capabilities":${JSON.stringify(capabilities()).slice(0, -1)},"${field}":${nest(50000)}}}`
          : `{"server_public_key":"${fakeKey()}","capabilities":${nest(50000)}}`;

      const res = await post(t, REGISTER, raw);

      expect(res.status).toBe(400);
      expect((res.body as { error: { code: unknown } }).error.code).toBe('invalid_capabilities');
    });

    it('should not let __proto__ or constructor keys change behaviour', async () => {
      const key = fakeKey();
      const raw = `{"server_public_key":"${key}","__proto__":{"server_public_key":"x","polluted":true},"constructor":{"prototype":{"polluted":true}},"capabilities":${JSON.stringify(
        { ...capabilities(), __proto__: { supported_model_ids: ['evil'] } },
      )}}`;

      const res = await post(t, REGISTER, raw);
      const next = await get(t, `${V1}/servers/next?model=evil`);

      expect(res.status).toBe(200);
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      expect(next.body.server_public_key).toBeUndefined();
    });

    it('should reject a 2 MiB registration body with 413, not 500', async () => {
      const res = await post(t, REGISTER, {
        server_public_key: fakeKey(),
        capabilities: capabilities({ backend_class: 'x'.repeat(2 * 1024 * 1024) }),
      });

      expect(res.status).toBe(413);
    });
  });
});

describe('API v1 node token boundary', () => {
  const TOKEN = 'node-secret';
  let t: TestApp;

  beforeAll(async () => {
    t = await createTestApp({ TOKEN_PLACE_RELAY_SERVER_TOKEN: TOKEN });
  });

  afterAll(async () => {
    await t.close();
  });

  const tokenError = apiError('Missing or invalid relay server token', 401);

  it.each([
    ['servers/register', { server_public_key: 'k', capabilities: capabilities() }],
    ['servers/poll', { server_public_key: 'k' }],
    ['servers/control', { server_public_key: 'k', request_id: 'r', control_credential: 'c' }],
    ['servers/unregister', { server_public_key: 'k', control_credential: 'c' }],
    [
      'responses',
      { client_public_key: 'c', request_id: 'r', ciphertext: 'x', cipherkey: 'y', iv: 'z' },
    ],
    ['progress', { server_public_key: 'k' }],
  ])(
    'should answer 401 on %s without the token, with a wrong one and with non-ASCII bytes',
    async (route, body) => {
      const missing = await post(t, `${V1}/${route}`, body);
      const wrong = await post(t, `${V1}/${route}`, body, { 'X-Relay-Server-Token': 'nope' });
      const blank = await post(t, `${V1}/${route}`, body, { 'X-Relay-Server-Token': '   ' });
      const binary = await fetch(`${t.baseUrl}${V1}/${route}`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'X-Relay-Server-Token': Buffer.from([0xe9, 0xff, 0x41]).toString('latin1'),
        },
        body: JSON.stringify(body),
      });

      for (const res of [missing, wrong, blank]) {
        expect(res.status).toBe(401);
        expect(res.body).toEqual(tokenError);
      }
      expect(binary.status).toBe(401);
      expect(await binary.json()).toEqual(tokenError);
    },
  );

  it('should accept the token with surrounding whitespace', async () => {
    const res = await post(
      t,
      `${V1}/servers/register`,
      { server_public_key: fakeKey(), capabilities: capabilities() },
      { 'X-Relay-Server-Token': `  ${TOKEN}\t` },
    );

    expect(res.status).toBe(200);
  });

  it('should check the token before the body (401 for a broken body without the token)', async () => {
    const res = await post(t, `${V1}/servers/register`, '[]');

    expect(res.status).toBe(401);
  });

  it('should never ask for the token on requests, retrieve, cancel, next and diagnostics', async () => {
    const node = await registerNode(t, { token: TOKEN });
    const client = fakeKey('client');

    const next = await get(t, `${V1}/servers/next`);
    const requests = await post(t, `${V1}/requests`, {
      server_public_key: node.key,
      client_public_key: client,
      request_id: 'r1',
      ciphertext: 'c',
      cipherkey: 'k',
      iv: 'i',
      cancel_token: 't',
    });
    const retrieve = await post(t, `${V1}/responses/retrieve`, {
      client_public_key: client,
      request_id: 'r1',
    });
    const cancel = await post(t, `${V1}/requests/cancel`, {
      client_public_key: client,
      request_id: 'r1',
      cancel_token: 't',
    });
    const diag = await get(t, '/relay/diagnostics');

    expect(next.status).toBe(200);
    expect(requests.status).toBe(200);
    expect(retrieve.status).toBe(202);
    expect(cancel.status).toBe(200);
    expect(diag.status).toBe(200);
  });

  it('should accept any of several configured tokens', async () => {
    const multi = await createTestApp({
      TOKEN_PLACE_RELAY_SERVER_TOKENS: 'alpha,\nbeta',
      TOKEN_PLACE_RELAY_SERVER_TOKEN: 'gamma',
    });
    try {
      const results = await Promise.all(
        ['alpha', 'beta', 'gamma', 'delta'].map((token) =>
          post(
            multi,
            `${V1}/servers/register`,
            { server_public_key: fakeKey(), capabilities: capabilities() },
            { 'X-Relay-Server-Token': token },
          ),
        ),
      );

      expect(results.map((r) => r.status)).toEqual([200, 200, 200, 401]);
    } finally {
      await multi.close();
    }
  });
});
