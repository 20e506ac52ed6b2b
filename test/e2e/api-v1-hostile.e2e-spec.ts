import { createTestApp, type TestApp } from '../helpers/test-app';
import {
  capabilities,
  fakeKey,
  get,
  post,
  progressBody,
  registerNode,
  requestBody,
  responseBody,
  submit,
  V1,
  type FakeNode,
  type FakeRequest,
} from './api-v1-fixtures';

const deep = (depth: number): string => `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
const deepList = (depth: number): string => `${'['.repeat(depth)}1${']'.repeat(depth)}`;
const PLACEHOLDER = '__HOSTILE_VALUE__';

/** Values of every JSON type and shape a hostile caller might put in a field, as raw JSON text. */
const HOSTILE: Array<[string, string]> = [
  ['null', 'null'],
  ['true', 'true'],
  ['false', 'false'],
  ['zero', '0'],
  ['negative', '-1'],
  ['huge number', '1e308'],
  ['fraction', '0.5'],
  ['empty string', '""'],
  ['blank string', '"   "'],
  ['NUL bytes', '"\\u0000\\u0000"'],
  ['lone surrogate', '"\\ud800"'],
  ['RTL and emoji', JSON.stringify('\u202e😀')],
  ['100k string', JSON.stringify('x'.repeat(100_000))],
  ['empty list', '[]'],
  ['list of mixed', '[1,"a",null,{}]'],
  ['10k-item list', JSON.stringify(Array.from({ length: 10_000 }, (_, i) => i))],
  ['empty object', '{}'],
  [
    'object with __proto__',
    '{"__proto__":{"polluted":true},"constructor":{"prototype":{"polluted":true}}}',
  ],
  ['20k-deep object', deep(20_000)],
  ['20k-deep list', deepList(20_000)],
];

interface Route {
  path: string;
  fields: string[];
  body: () => Record<string, unknown>;
}

describe('hostile input on every API v1 route and field never yields a 500', () => {
  let t: TestApp;
  let node: FakeNode;
  let req: FakeRequest;
  let routes: Route[];

  beforeAll(async () => {
    t = await createTestApp({
      TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '0',
      TOKENPLACE_RELAY_MAX_PENDING_PER_CLIENT: '100000',
    });
    node = await registerNode(t);
    req = await submit(t, node.key);
    await post(t, `${V1}/servers/poll`, { server_public_key: node.key });
    routes = [
      {
        path: `${V1}/servers/register`,
        fields: ['server_public_key', 'capabilities'],
        body: () => ({ server_public_key: fakeKey(), capabilities: capabilities() }),
      },
      {
        path: `${V1}/servers/poll`,
        fields: ['server_public_key', 'capabilities'],
        body: () => ({ server_public_key: node.key, capabilities: capabilities() }),
      },
      {
        path: `${V1}/servers/control`,
        fields: ['server_public_key', 'request_id', 'control_credential', 'acknowledge', 'ack'],
        body: () => ({
          server_public_key: node.key,
          request_id: req.requestId,
          control_credential: node.credential,
          acknowledge: false,
        }),
      },
      {
        path: `${V1}/servers/unregister`,
        fields: ['server_public_key', 'control_credential'],
        body: () => ({ server_public_key: fakeKey('gone'), control_credential: 'c' }),
      },
      {
        path: '/unregister',
        fields: ['server_public_key', 'control_credential'],
        body: () => ({ server_public_key: fakeKey('gone'), control_credential: 'c' }),
      },
      {
        path: `${V1}/requests`,
        fields: Object.keys(requestBody('n', 'c')),
        body: () => requestBody(node.key, fakeKey()),
      },
      {
        path: `${V1}/responses`,
        fields: Object.keys(responseBody({ clientKey: 'c', requestId: 'r' })),
        body: () => responseBody({ clientKey: fakeKey(), requestId: 'unknown' }),
      },
      {
        path: `${V1}/responses/retrieve`,
        fields: ['client_public_key', 'request_id'],
        body: () => ({ client_public_key: req.clientKey, request_id: req.requestId }),
      },
      {
        path: `${V1}/requests/cancel`,
        fields: ['client_public_key', 'request_id', 'cancel_token', 'status', 'reason'],
        body: () => ({
          client_public_key: fakeKey(),
          request_id: 'r',
          cancel_token: 't',
          status: 'cancelled',
          reason: 'requester_cancelled',
        }),
      },
      {
        path: `${V1}/progress`,
        fields: Object.keys(progressBody(node, req)),
        body: () => progressBody(node, req),
      },
    ];
  });

  afterAll(async () => {
    await t.close();
  });

  it('should answer every (route, field, value) with a non-5xx status and a JSON error object', async () => {
    const failures: string[] = [];
    for (const route of routes) {
      for (const field of route.fields) {
        for (const [name, value] of HOSTILE) {
          const body = route.body();
          body[field] = PLACEHOLDER;
          const payload = JSON.stringify(body).replace(`"${PLACEHOLDER}"`, value);
          if (route.path.endsWith('/progress') && payload.length > 16_384) {
            continue;
          }
          const res = await post(t, route.path, payload);
          const error = (res.body as { error?: unknown }).error;
          if (
            res.status >= 500 ||
            (res.status >= 400 && res.status !== 413 && error === undefined)
          ) {
            failures.push(
              `${route.path} ${field}=${name}: ${res.status} ${res.text.slice(0, 120)}`,
            );
          }
        }
      }
    }

    expect(failures).toEqual([]);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect((await get(t, '/livez')).status).toBe(200);
  });

  it('should refuse a deeply nested legacy stream chunk with 400 instead of overflowing', async () => {
    const res = await post(t, '/stream/source', `{"session_id":"s","chunk":${deep(20_000)}}`);
    const shallow = await post(t, '/stream/source', {
      session_id: 's',
      chunk: { ciphertext: 'x' },
    });

    expect(res.status).toBe(400);
    expect(res.body).toEqual({ error: 'Invalid request data' });
    expect(shallow.status).toBe(404);
  });

  it('should still serve the original request after the barrage', async () => {
    const control = await post(t, `${V1}/servers/control`, {
      server_public_key: node.key,
      request_id: req.requestId,
      control_credential: node.credential,
    });

    expect(control.body.status).toBe('active');
  });
});
