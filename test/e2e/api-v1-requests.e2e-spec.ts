import { ManualClock } from '../../src/common/clock';
import { createTestApp, type TestApp } from '../helpers/test-app';
import {
  apiError,
  fakeKey,
  get,
  hex,
  poll,
  post,
  registerNode,
  requestBody,
  submit,
  V1,
  type FakeNode,
} from './api-v1-fixtures';

const REQUESTS = `${V1}/requests`;
const PLAINTEXT = apiError(
  'Plaintext relay payload fields are forbidden; send ciphertext envelope only',
  400,
);
const UNEXPECTED = apiError(
  'Unexpected relay payload fields are forbidden; send ciphertext envelope only',
  400,
);
const INVALID = apiError('Invalid request data', 400);
const MISSING_CLIENT = apiError('Missing client public key', 400);
const NOT_FOUND = apiError('Server with the specified public key not found', 404);

function without(body: Record<string, unknown>, ...keys: string[]): Record<string, unknown> {
  const copy = { ...body };
  for (const key of keys) {
    delete copy[key];
  }
  return copy;
}

async function queueDepth(t: TestApp, key: string): Promise<number> {
  const diag = await get(t, '/relay/diagnostics');
  const node = (diag.body.api_v1_registered_compute_nodes as Array<Record<string, unknown>>).find(
    (n) => n.server_public_key === key,
  );
  return node?.queue_depth as number;
}

describe('API v1 /requests guardrails and admission', () => {
  let t: TestApp;
  let clock: ManualClock;
  let node: FakeNode;

  beforeEach(async () => {
    clock = new ManualClock();
    t = await createTestApp({ TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '0' }, clock);
    node = await registerNode(t);
  });

  afterEach(async () => {
    await t.close();
  });

  it('should accept a browser-shaped envelope with the 480 s deadline in both fields', async () => {
    const res = await post(t, REQUESTS, requestBody(node.key, fakeKey('client')));

    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      message: 'Request received',
      request_deadline_remaining_seconds: 480,
      request_ttl_seconds: 480,
    });
  });

  it.each(['messages', 'prompt', 'input', 'content', 'response', 'text'])(
    'should refuse the plaintext key %p before anything else',
    async (key) => {
      const full = await post(t, REQUESTS, { ...requestBody(node.key, fakeKey()), [key]: 'hello' });
      const withUnknown = await post(t, REQUESTS, {
        [key]: [{ role: 'user', content: 'hi' }],
        bogus: 1,
      });
      const alone = await post(t, REQUESTS, { [key]: null });

      for (const res of [full, withUnknown, alone]) {
        expect(res.status).toBe(400);
        expect(res.body).toEqual(PLAINTEXT);
      }
    },
  );

  it.each([
    'model',
    'stream',
    'e2ee_v1',
    'server_public_key ',
    'Ciphertext',
    '__proto__x',
    'capabilities',
  ])('should refuse the unexpected key %p before checking required fields', async (key) => {
    const full = await post(t, REQUESTS, { ...requestBody(node.key, fakeKey()), [key]: 1 });
    const bare = await post(t, REQUESTS, { [key]: 1 });

    expect(full.status).toBe(400);
    expect(full.body).toEqual(UNEXPECTED);
    expect(bare.status).toBe(400);
    expect(bare.body).toEqual(UNEXPECTED);
  });

  it.each([['server_public_key'], ['cipherkey'], ['iv'], ['ciphertext']])(
    'should answer Invalid request data when %s is missing',
    async (key) => {
      const res = await post(t, REQUESTS, without(requestBody(node.key, fakeKey()), key));

      expect(res.status).toBe(400);
      expect(res.body).toEqual(INVALID);
    },
  );

  it('should check required fields before the client key', async () => {
    const res = await post(
      t,
      REQUESTS,
      without(requestBody(node.key, fakeKey()), 'cipherkey', 'client_public_key'),
    );

    expect(res.status).toBe(400);
    expect(res.body).toEqual(INVALID);
  });

  it.each([
    ['missing', undefined],
    ['empty', ''],
    ['null', null],
    ['a number', 7],
    ['an object', { pem: 'x' }],
    ['longer than 8192 chars', 'C'.repeat(8193)],
  ])('should answer Missing client public key when the client key is %s', async (_name, value) => {
    const body = requestBody(node.key, fakeKey());
    if (value === undefined) {
      delete body.client_public_key;
    } else {
      body.client_public_key = value;
    }

    const res = await post(t, REQUESTS, body);

    expect(res.status).toBe(400);
    expect(res.body).toEqual(MISSING_CLIENT);
  });

  it.each([
    ['server_public_key', 12],
    ['server_public_key', ''],
    ['server_public_key', 'S'.repeat(8193)],
    ['ciphertext', { data: 'x' }],
    ['ciphertext', ''],
    ['ciphertext', 5],
    ['cipherkey', ['k']],
    ['cipherkey', true],
    ['iv', 16],
    ['iv', null],
    ['request_id', 99],
    ['request_id', ''],
    ['request_id', 'r'.repeat(257)],
    ['protocol', { id: 1 }],
    ['version', { v: 1 }],
    ['version', [1]],
    ['cancel_token', 5],
    ['cancel_token', 't'.repeat(1025)],
  ])('should answer Invalid request data when %s is %p', async (key, value) => {
    const res = await post(t, REQUESTS, { ...requestBody(node.key, fakeKey()), [key]: value });

    expect(res.status).toBe(400);
    expect(res.body).toEqual(INVALID);
    expect(await queueDepth(t, node.key)).toBe(0);
  });

  it.each([
    ['a list', '[]'],
    ['a string', '"hello"'],
    ['null', 'null'],
    ['a number', '3'],
  ])('should answer Invalid request data when the body is %s', async (_name, raw) => {
    const res = await post(t, REQUESTS, raw);

    expect(res.status).toBe(400);
    expect(res.body).toEqual(INVALID);
  });

  it('should answer 400 for malformed JSON and 415 for a non-JSON content type', async () => {
    const malformed = await post(t, REQUESTS, '{"server_public_key":');
    const text = await post(t, REQUESTS, 'hello', { 'content-type': 'text/plain' });

    expect(malformed.status).toBe(400);
    expect(text.status).toBe(415);
  });

  it('should answer 413 for a body over the limit, and 200 just under it', async () => {
    const big = requestBody(node.key, fakeKey(), { ciphertext: 'A'.repeat(1024 * 1024) });
    const fits = requestBody(node.key, fakeKey(), { ciphertext: 'A'.repeat(1024 * 1024 - 2048) });

    const tooLarge = await post(t, REQUESTS, big);
    const ok = await post(t, REQUESTS, fits);

    expect(tooLarge.status).toBe(413);
    expect(tooLarge.body).toEqual(apiError('Request body too large (limit 1048576 bytes)', 413));
    expect(ok.status).toBe(200);
  });

  it('should answer 404 for an unknown node', async () => {
    const res = await post(t, REQUESTS, requestBody(fakeKey('nobody'), fakeKey()));

    expect(res.status).toBe(404);
    expect(res.body).toEqual(NOT_FOUND);
  });

  it('should store chat_history as ciphertext and hand out both keys with the same value', async () => {
    const body = without(requestBody(node.key, fakeKey()), 'ciphertext');
    body.chat_history = 'Q0hBVA==';

    const res = await post(t, REQUESTS, body);
    const work = await poll(t, node);

    expect(res.status).toBe(200);
    expect(work.body.ciphertext).toBe('Q0hBVA==');
    expect(work.body.chat_history).toBe('Q0hBVA==');
  });

  it('should let ciphertext win when both aliases are sent', async () => {
    const res = await post(t, REQUESTS, {
      ...requestBody(node.key, fakeKey()),
      ciphertext: 'V0lO',
      chat_history: 'TE9TRQ==',
    });
    const work = await poll(t, node);

    expect(res.status).toBe(200);
    expect(work.body.ciphertext).toBe('V0lO');
    expect(work.body.chat_history).toBe('V0lO');
  });

  it('should pass protocol and version through unvalidated', async () => {
    await post(t, REQUESTS, {
      ...requestBody(node.key, fakeKey()),
      protocol: 'something-else',
      version: '7',
    });
    const work = await poll(t, node);

    expect(work.body.protocol).toBe('something-else');
    expect(work.body.version).toBe('7');
  });

  it('should accept work without request_id or cancel_token and hand it out without them', async () => {
    const body = without(
      requestBody(node.key, fakeKey()),
      'request_id',
      'cancel_token',
      'protocol',
      'version',
    );

    const res = await post(t, REQUESTS, body);
    const work = await poll(t, node);

    expect(res.status).toBe(200);
    expect(Object.keys(work.body).sort()).toEqual(
      [
        'chat_history',
        'cipherkey',
        'ciphertext',
        'client_public_key',
        'e2ee_v1',
        'iv',
        'next_ping_in_x_seconds',
        'request_deadline_remaining_seconds',
        'request_ttl_seconds',
      ].sort(),
    );
  });

  it('should expire untracked work (no request_id) at its deadline instead of keeping it forever', async () => {
    await post(
      t,
      REQUESTS,
      without(requestBody(node.key, fakeKey()), 'request_id', 'cancel_token'),
    );
    expect(await queueDepth(t, node.key)).toBe(1);

    clock.advance(480_001);
    await post(t, `${V1}/servers/register`, { server_public_key: node.key });
    await t.sweep();

    expect(await queueDepth(t, node.key)).toBe(0);
    expect((await poll(t, node)).body.message).toBe('No requests available');
  });

  it('should deliver every accepted request once, in FIFO order', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i += 1) {
      const req = await submit(t, node.key, { clientKey: fakeKey(`c${i}`) });
      ids.push(req.requestId);
    }

    const delivered: string[] = [];
    for (let i = 0; i < 6; i += 1) {
      const res = await poll(t, node);
      if (typeof res.body.request_id === 'string') {
        delivered.push(res.body.request_id);
      }
    }

    expect(delivered).toEqual(ids);
  });

  it('should supersede a repeat of the same (client, request_id) with its cancel token without growing the queue', async () => {
    const client = fakeKey('client');
    const requestId = hex();
    const cancelToken = hex();
    await post(
      t,
      REQUESTS,
      requestBody(node.key, client, {
        request_id: requestId,
        cancel_token: cancelToken,
        ciphertext: 'Rmlyc3Q=',
      }),
    );

    const stranger = await post(
      t,
      REQUESTS,
      requestBody(node.key, client, { request_id: requestId, ciphertext: 'RXZpbA==' }),
    );
    const again = await post(
      t,
      REQUESTS,
      requestBody(node.key, client, {
        request_id: requestId,
        cancel_token: cancelToken,
        ciphertext: 'U2Vjb25k',
      }),
    );
    const depth = await queueDepth(t, node.key);
    const work = await poll(t, node);
    const nothing = await poll(t, node);

    expect(stranger.status).toBe(409);
    expect(again.status).toBe(200);
    expect(depth).toBe(1);
    expect(work.body.ciphertext).toBe('U2Vjb25k');
    expect(nothing.body.message).toBe('No requests available');
  });

  it('should keep two clients with the same request_id apart', async () => {
    const requestId = hex();
    const a = await submit(t, node.key, { extra: { request_id: requestId } });
    const b = await submit(t, node.key, { extra: { request_id: requestId } });

    const first = await poll(t, node);
    const second = await poll(t, node);

    expect(a.res.status).toBe(200);
    expect(b.res.status).toBe(200);
    expect([first.body.client_public_key, second.body.client_public_key]).toEqual([
      a.clientKey,
      b.clientKey,
    ]);
  });
});

describe('API v1 admission caps', () => {
  it('should answer 429 with Retry-After when a node queue is full, and admit again once it drains', async () => {
    const t = await createTestApp({
      TOKEN_PLACE_API_V1_MAX_QUEUE_DEPTH_PER_NODE: '2',
      TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '0',
    });
    try {
      const node = await registerNode(t);
      await submit(t, node.key);
      await submit(t, node.key);

      const full = await submit(t, node.key);
      await poll(t, node);
      const again = await submit(t, node.key);

      expect(full.res.status).toBe(429);
      expect(full.res.body).toEqual(
        apiError('The compute node queue is full; retry with backoff', 'relay_capacity_exceeded'),
      );
      expect(full.res.headers.get('retry-after')).toBe('5');
      expect(again.res.status).toBe(200);
    } finally {
      await t.close();
    }
  });

  it('should answer 429 when one client holds too many live requests, without affecting others', async () => {
    const t = await createTestApp({ TOKENPLACE_RELAY_MAX_PENDING_PER_CLIENT: '2' });
    try {
      const node = await registerNode(t, { caps: undefined });
      const client = fakeKey('greedy');
      await submit(t, node.key, { clientKey: client });
      await submit(t, node.key, { clientKey: client });

      const third = await submit(t, node.key, { clientKey: client });
      const other = await submit(t, node.key);

      expect(third.res.status).toBe(429);
      expect(third.res.body).toEqual(
        apiError(
          'Too many pending requests for this client; retry when one finishes',
          'relay_capacity_exceeded',
        ),
      );
      expect(third.res.headers.get('retry-after')).toBe('5');
      expect(other.res.status).toBe(200);
    } finally {
      await t.close();
    }
  });

  it('should answer 503 when the relay-wide queue is full', async () => {
    const t = await createTestApp({ TOKENPLACE_RELAY_MAX_QUEUED_REQUESTS: '2' });
    try {
      const a = await registerNode(t);
      const b = await registerNode(t);
      await submit(t, a.key);
      await submit(t, b.key);

      const third = await submit(t, a.key);

      expect(third.res.status).toBe(503);
      expect(third.res.body).toEqual(
        apiError('The relay queue is full; retry shortly', 'relay_overloaded'),
      );
      expect(third.res.headers.get('retry-after')).toBe('5');
    } finally {
      await t.close();
    }
  });
});
