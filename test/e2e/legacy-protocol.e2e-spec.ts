import { connect } from 'node:net';
import { ManualClock } from '../../src/common/clock';
import { LegacyClientSim, LegacyNodeSim } from '../helpers/simulators';
import { call, createTestApp, type TestApp } from '../helpers/test-app';

const NO_RESPONSE = { error: 'No response available for the given public key' };

function envelope(server: string, client = 'client-key', n = 0): Record<string, unknown> {
  return {
    server_public_key: server,
    client_public_key: client,
    chat_history: `c${n}`,
    cipherkey: `k${n}`,
    iv: `i${n}`,
  };
}

/** Sends raw bytes as an HTTP/1.1 request (for header bytes fetch refuses to send). */
function rawRequest(baseUrl: string, head: Buffer, body: string): Promise<string> {
  const { hostname, port } = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), hostname, () => {
      socket.write(
        Buffer.concat([
          head,
          Buffer.from(
            `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
          ),
        ]),
      );
    });
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    socket.on('error', reject);
  });
}

describe('legacy relay protocol (spec §3, checklist §10.1)', () => {
  describe('with default settings', () => {
    let t: TestApp;

    beforeEach(async () => {
      t = await createTestApp();
    });

    afterEach(async () => {
      await t.close();
    });

    it('should answer an idle /sink with exactly {"next_ping_in_x_seconds":10}', async () => {
      const res = await call(t.baseUrl, 'POST', '/sink', { server_public_key: 'node-a' });

      expect(res.status).toBe(200);
      expect(res.text).toBe('{"next_ping_in_x_seconds":10}');
    });

    it('should return 404 from /faucet for an unregistered key', async () => {
      const res = await call(t.baseUrl, 'POST', '/faucet', envelope('nobody'));

      expect(res.status).toBe(404);
      expect(res.body).toEqual({
        error: { message: 'Server with the specified public key not found', code: 404 },
      });
    });

    it.each(['server_public_key', 'chat_history', 'cipherkey', 'iv'])(
      'should return 400 Invalid request data from /faucet without %s',
      async (field) => {
        await call(t.baseUrl, 'POST', '/sink', { server_public_key: 'node-a' });
        const body = envelope('node-a');
        delete body[field];

        const res = await call(t.baseUrl, 'POST', '/faucet', body);

        expect(res.status).toBe(400);
        expect(res.body).toEqual({ error: { message: 'Invalid request data', code: 400 } });
      },
    );

    it('should hand queued work to /sink FIFO, one item per call, byte-identical, then empty', async () => {
      await call(t.baseUrl, 'POST', '/sink', { server_public_key: 'node-a' });
      for (const n of [1, 2]) {
        expect(
          (await call(t.baseUrl, 'POST', '/faucet', envelope('node-a', `client-${n}`, n))).body,
        ).toEqual({
          message: 'Request received',
        });
      }

      const first = await call(t.baseUrl, 'POST', '/sink', { server_public_key: 'node-a' });
      const second = await call(t.baseUrl, 'POST', '/sink', { server_public_key: 'node-a' });
      const third = await call(t.baseUrl, 'POST', '/sink', { server_public_key: 'node-a' });

      expect(first.body).toEqual({
        next_ping_in_x_seconds: 10,
        client_public_key: 'client-1',
        chat_history: 'c1',
        cipherkey: 'k1',
        iv: 'i1',
      });
      expect(second.body).toEqual({
        next_ping_in_x_seconds: 10,
        client_public_key: 'client-2',
        chat_history: 'c2',
        cipherkey: 'k2',
        iv: 'i2',
      });
      expect(third.body).toEqual({ next_ping_in_x_seconds: 10 });
    });

    it('should return the first item at top level plus a batch of all items for max_batch_size 3', async () => {
      await call(t.baseUrl, 'POST', '/sink', { server_public_key: 'node-a' });
      for (const n of [1, 2, 3]) {
        await call(t.baseUrl, 'POST', '/faucet', envelope('node-a', `client-${n}`, n));
      }

      const res = await call(t.baseUrl, 'POST', '/sink', {
        server_public_key: 'node-a',
        max_batch_size: '3',
      });

      expect(res.body).toMatchObject({
        client_public_key: 'client-1',
        chat_history: 'c1',
        cipherkey: 'k1',
        iv: 'i1',
      });
      expect(res.body.batch).toEqual(
        [1, 2, 3].map((n) => ({
          chat_history: `c${n}`,
          client_public_key: `client-${n}`,
          cipherkey: `k${n}`,
          iv: `i${n}`,
          stream: false,
        })),
      );
    });

    it.each([0, 'x', -1, [], {}, '1e3x'])(
      'should reject max_batch_size %p with 400 Invalid max_batch_size',
      async (value) => {
        const res = await call(t.baseUrl, 'POST', '/sink', {
          server_public_key: 'node-a',
          max_batch_size: value,
        });

        expect(res.status).toBe(400);
        expect(res.body).toEqual({ error: 'Invalid max_batch_size' });
      },
    );

    it.each([2.9, true, '2'])(
      'should truncate max_batch_size %p like the existing relay',
      async (value) => {
        const res = await call(t.baseUrl, 'POST', '/sink', {
          server_public_key: 'node-a',
          max_batch_size: value,
        });

        expect(res.status).toBe(200);
      },
    );

    it.each([
      {},
      { server_public_key: null },
      { server_public_key: 42 },
      { server_public_key: '' },
    ])('should reject /sink body %p with 400 Invalid public key', async (body) => {
      const res = await call(t.baseUrl, 'POST', '/sink', body);

      expect(res.status).toBe(400);
      expect(res.body).toEqual({ error: 'Invalid public key' });
    });

    it('should return a stored response from /retrieve exactly once', async () => {
      await call(t.baseUrl, 'POST', '/source', {
        client_public_key: 'c',
        chat_history: 'r',
        cipherkey: 'k',
        iv: 'i',
      });

      const first = await call(t.baseUrl, 'POST', '/retrieve', { client_public_key: 'c' });
      const second = await call(t.baseUrl, 'POST', '/retrieve', { client_public_key: 'c' });

      expect(first.body).toEqual({ chat_history: 'r', cipherkey: 'k', iv: 'i' });
      expect(second.status).toBe(200);
      expect(second.body).toEqual(NO_RESPONSE);
    });

    it('should keep only the last /source for a client (last one wins)', async () => {
      await call(t.baseUrl, 'POST', '/source', {
        client_public_key: 'c',
        chat_history: 'old',
        cipherkey: 'k',
        iv: 'i',
      });
      await call(t.baseUrl, 'POST', '/source', {
        client_public_key: 'c',
        chat_history: 'new',
        cipherkey: 'k2',
        iv: 'i2',
      });

      const res = await call(t.baseUrl, 'POST', '/retrieve', { client_public_key: 'c' });

      expect(res.body).toEqual({ chat_history: 'new', cipherkey: 'k2', iv: 'i2' });
    });

    it.each([
      ['/retrieve', {}],
      ['/retrieve', { client_public_key: 7 }],
      ['/source', { client_public_key: 'c', chat_history: 'r', cipherkey: 'k' }],
      ['/source', { chat_history: 'r', cipherkey: 'k', iv: 'i' }],
      ['/stream/retrieve', {}],
      ['/stream/source', { session_id: 's' }],
    ])('should answer %s %p with 400 {"error":"Invalid request data"}', async (path, body) => {
      const res = await call(t.baseUrl, 'POST', path, body);

      expect(res.status).toBe(400);
      expect(res.body).toEqual({ error: 'Invalid request data' });
    });

    it('should answer /next_server with 503 when no node is registered and with a registered key otherwise', async () => {
      const empty = await call(t.baseUrl, 'GET', '/next_server');
      await call(t.baseUrl, 'POST', '/sink', { server_public_key: 'node-a' });
      await call(t.baseUrl, 'POST', '/sink', { server_public_key: 'node-b' });

      const picks = new Set<unknown>();
      for (let i = 0; i < 20; i += 1) {
        picks.add((await call(t.baseUrl, 'GET', '/next_server')).body.server_public_key);
      }

      expect(empty.status).toBe(503);
      expect(empty.body).toEqual({ error: { message: 'No servers available', code: 503 } });
      expect([...picks].every((k) => k === 'node-a' || k === 'node-b')).toBe(true);
    });

    it('should run a legacy stream session from /faucet to /stream/retrieve', async () => {
      await call(t.baseUrl, 'POST', '/sink', { server_public_key: 'node-a' });
      const noKey = await call(t.baseUrl, 'POST', '/faucet', {
        ...envelope('node-a'),
        client_public_key: undefined,
        stream: true,
      });
      await call(t.baseUrl, 'POST', '/faucet', { ...envelope('node-a', 'streamer'), stream: true });

      const work = await call(t.baseUrl, 'POST', '/sink', { server_public_key: 'node-a' });
      const sessionId = work.body.stream_session_id as string;
      const unknown = await call(t.baseUrl, 'POST', '/stream/source', {
        session_id: 'nope',
        chunk: 'x',
      });
      await call(t.baseUrl, 'POST', '/stream/source', {
        session_id: sessionId,
        chunk: { part: 1 },
      });
      const partial = await call(t.baseUrl, 'POST', '/stream/retrieve', {
        client_public_key: 'streamer',
      });
      const last = await call(t.baseUrl, 'POST', '/stream/source', {
        session_id: sessionId,
        chunk: { part: 2 },
        final: true,
      });
      const rest = await call(t.baseUrl, 'POST', '/stream/retrieve', {
        client_public_key: 'streamer',
      });
      const after = await call(t.baseUrl, 'POST', '/stream/retrieve', {
        client_public_key: 'streamer',
      });

      expect(noKey.status).toBe(400);
      expect(noKey.body).toEqual({
        error: { message: 'Streaming requests require a client public key', code: 400 },
      });
      expect(work.body).toMatchObject({ stream: true, client_public_key: 'streamer' });
      expect(sessionId).toMatch(/^[A-Za-z0-9_-]{22}$/);
      expect(unknown.status).toBe(404);
      expect(unknown.body).toEqual({ error: 'Unknown stream session' });
      expect(partial.body).toEqual({ stream: true, session_id: sessionId, chunks: [{ part: 1 }] });
      expect(last.body).toEqual({ message: 'Chunk stored', final: true });
      expect(rest.body).toEqual({
        stream: true,
        session_id: sessionId,
        chunks: [{ part: 2 }],
        final: true,
      });
      expect(after.body).toEqual({ error: 'No active stream for the given public key' });
    });

    it('should report ok health with an integer knownServers and details.knownServers empty', async () => {
      const empty = await call(t.baseUrl, 'GET', '/healthz');
      await call(t.baseUrl, 'POST', '/sink', { server_public_key: 'node-a' });
      const one = await call(t.baseUrl, 'GET', '/healthz');

      expect(empty.status).toBe(200);
      expect(empty.body).toMatchObject({
        status: 'ok',
        knownServers: 0,
        details: { knownServers: 'empty' },
      });
      expect(one.body).toMatchObject({ status: 'ok', knownServers: 1 });
      expect(one.headers.get('cache-control')).toBe('no-store');
    });

    it('should answer /healthz 503 draining with Retry-After 0 once draining starts, while /livez stays alive', async () => {
      t.lifecycle.startDraining('SIGTERM');

      const health = await call(t.baseUrl, 'GET', '/healthz');
      const live = await call(t.baseUrl, 'GET', '/livez');

      expect(health.status).toBe(503);
      expect(health.body).toMatchObject({ status: 'draining', details: { shutdown: true } });
      expect(health.headers.get('retry-after')).toBe('0');
      expect(health.headers.get('cache-control')).toBe('no-store');
      expect(live.status).toBe(200);
      expect(live.body).toEqual({ status: 'alive' });
    });

    it('should export tokenplace_relay_requests_total with method, endpoint and status', async () => {
      await call(t.baseUrl, 'POST', '/sink', { server_public_key: 'node-a' });

      const res = await call(t.baseUrl, 'GET', '/metrics');

      expect(res.status).toBe(200);
      expect(res.text).toContain(
        'tokenplace_relay_requests_total{method="POST",endpoint="/sink",status="200"} 1',
      );
    });

    it('should echo X-Request-Id, or generate 16 hex chars, on every response', async () => {
      const echoed = await call(
        t.baseUrl,
        'POST',
        '/sink',
        { server_public_key: 'n' },
        { 'X-Request-Id': 'trace-123' },
      );
      const generated = await call(t.baseUrl, 'GET', '/no-such-route');
      const failed = await call(t.baseUrl, 'POST', '/sink', '{not json');

      expect(echoed.headers.get('x-request-id')).toBe('trace-123');
      expect(generated.headers.get('x-request-id')).toMatch(/^[0-9a-f]{16}$/);
      expect(failed.headers.get('x-request-id')).toMatch(/^[0-9a-f]{16}$/);
    });

    it.each(['messages', 'prompt', 'input', 'content', 'response', 'text'])(
      'should reject /faucet with the plaintext field %s',
      async (field) => {
        const res = await call(t.baseUrl, 'POST', '/faucet', {
          ...envelope('node-a'),
          [field]: 'hi',
        });

        expect(res.status).toBe(400);
        expect(res.body).toEqual({
          error: {
            message: 'Plaintext relay payload fields are forbidden; send ciphertext envelope only',
            code: 400,
          },
        });
      },
    );

    it('should reject /faucet with an unknown field', async () => {
      const res = await call(t.baseUrl, 'POST', '/faucet', { ...envelope('node-a'), extra: 1 });

      expect(res.status).toBe(400);
      expect(res.body).toEqual({
        error: {
          message: 'Unexpected relay payload fields are forbidden; send ciphertext envelope only',
          code: 400,
        },
      });
    });

    it('should reject a /faucet without a client key instead of queueing work no node can answer', async () => {
      await call(t.baseUrl, 'POST', '/sink', { server_public_key: 'node-a' });

      const res = await call(t.baseUrl, 'POST', '/faucet', {
        ...envelope('node-a'),
        client_public_key: undefined,
      });

      expect(res.status).toBe(400);
      expect(res.body).toEqual({ error: { message: 'Missing client public key', code: 400 } });
    });

    it('should remove a /sink node on /unregister and report removed:false the second time', async () => {
      await call(t.baseUrl, 'POST', '/sink', { server_public_key: 'node-a' });

      const first = await call(t.baseUrl, 'POST', '/unregister', { server_public_key: 'node-a' });
      const second = await call(t.baseUrl, 'POST', '/unregister', { server_public_key: 'node-a' });
      const bad = await call(t.baseUrl, 'POST', '/unregister', { server_public_key: '  ' });

      expect(first.body).toEqual({ message: 'Server unregistered', removed: true });
      expect(second.body).toEqual({ message: 'Server unregistered', removed: false });
      expect(bad.status).toBe(400);
      expect(bad.body).toEqual({ error: 'Invalid public key' });
      expect((await call(t.baseUrl, 'GET', '/next_server')).status).toBe(503);
    });

    it('should complete a real encrypted chat for a client polling like client.py', async () => {
      const node = new LegacyNodeSim(t.baseUrl);
      const client = new LegacyClientSim(t.baseUrl, { padding: 'pkcs1' });
      await node.sink();
      const picked = await call(t.baseUrl, 'GET', '/next_server');

      await client.send(picked.body.server_public_key as string, [
        { role: 'user', content: 'héllo ✓' },
      ]);
      await node.serveOnce();
      const answer = await client.receive();

      expect(answer[1]).toEqual({ role: 'assistant', content: 'echo: ✓ olléh' });
    });
  });

  describe('bad input never crashes the relay and never loses queued work', () => {
    let t: TestApp;

    beforeAll(async () => {
      t = await createTestApp({ TOKENPLACE_RELAY_MAX_BODY_BYTES: '16384' });
      await call(t.baseUrl, 'POST', '/sink', { server_public_key: 'node-a' });
      await call(t.baseUrl, 'POST', '/faucet', envelope('node-a', 'kept', 9));
    });

    afterAll(async () => {
      await t.close();
    });

    it.each([
      [
        'malformed JSON',
        '/faucet',
        '{"server_public_key":',
        { 'content-type': 'application/json' },
        400,
      ],
      ['a text/plain body', '/faucet', 'hello', { 'content-type': 'text/plain' }, 415],
      ['a form body', '/sink', 'a=b', { 'content-type': 'application/x-www-form-urlencoded' }, 415],
      ['a JSON array', '/sink', '[]', { 'content-type': 'application/json' }, 400],
      ['a JSON string', '/retrieve', '"x"', { 'content-type': 'application/json' }, 400],
      ['JSON null', '/source', 'null', { 'content-type': 'application/json' }, 400],
      ['a JSON number', '/faucet', '42', { 'content-type': 'application/json' }, 400],
      ['an empty body', '/faucet', '', {}, 400],
    ])(
      'should answer %s on %s with a JSON error (%#)',
      async (_what, path, body, headers, status) => {
        const res = await fetch(`${t.baseUrl}${path}`, { method: 'POST', headers, body });
        const json = (await res.json()) as { error: unknown };

        expect(res.status).toBe(status);
        expect(json.error).toBeDefined();
      },
    );

    it('should answer an oversized body with 413', async () => {
      const res = await call(t.baseUrl, 'POST', '/faucet', {
        ...envelope('node-a'),
        chat_history: 'x'.repeat(20000),
      });

      expect(res.status).toBe(413);
      expect(res.body).toEqual({
        error: { message: 'Request body too large (limit 16384 bytes)', code: 413 },
      });
    });

    it('should answer unknown routes with 404 and known routes with the wrong method with 405', async () => {
      const unknown = await call(t.baseUrl, 'POST', '/nothing-here', {});
      const wrongMethod = await call(t.baseUrl, 'GET', '/faucet');

      expect(unknown.status).toBe(404);
      expect(unknown.body).toEqual({ error: { message: 'Not found', code: 404 } });
      expect(wrongMethod.status).toBe(405);
      expect(wrongMethod.headers.get('allow')).toBe('POST');
    });

    it.each([
      {
        server_public_key: 'node-a',
        chat_history: 1,
        cipherkey: 'k',
        iv: 'i',
        client_public_key: 'c',
      },
      {
        server_public_key: ['node-a'],
        chat_history: 'c',
        cipherkey: 'k',
        iv: 'i',
        client_public_key: 'c',
      },
      {
        server_public_key: 'node-a',
        chat_history: 'c',
        cipherkey: { a: 1 },
        iv: 'i',
        client_public_key: 'c',
      },
      {
        server_public_key: 'node-a',
        chat_history: 'c',
        cipherkey: 'k',
        iv: 'i',
        client_public_key: 5,
      },
    ])('should reject wrongly typed fields with 400 (%#)', async (body) => {
      const res = await call(t.baseUrl, 'POST', '/faucet', body);

      expect(res.status).toBe(400);
    });

    it.each(['/source', '/retrieve', '/sink', '/stream/source'])(
      'should not let a __proto__ key switch off validation on %s',
      async (path) => {
        const res = await call(
          t.baseUrl,
          'POST',
          path,
          '{"__proto__":{"polluted":true},"client_public_key":5,"server_public_key":5,"session_id":5}',
        );

        expect(res.status).toBe(400);
        expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      },
    );

    it('should still deliver the request queued before all the bad input', async () => {
      const res = await call(t.baseUrl, 'POST', '/sink', { server_public_key: 'node-a' });

      expect(res.body).toMatchObject({
        client_public_key: 'kept',
        chat_history: 'c9',
        cipherkey: 'k9',
        iv: 'i9',
      });
      expect((await call(t.baseUrl, 'GET', '/livez')).status).toBe(200);
    });
  });

  describe('compute-node token (spec §2.1)', () => {
    let t: TestApp;

    beforeAll(async () => {
      t = await createTestApp({
        TOKENPLACE_RELAY_SERVER_TOKEN: 'runbook-token',
        TOKEN_PLACE_RELAY_SERVER_TOKEN: 'legacy-token',
        TOKEN_PLACE_RELAY_SERVER_TOKENS: 'rotating-1,rotating-2\nrotating-3',
        TOKENPLACE_RELAY_SERVER_TOKENS_FILE: '',
      });
    });

    afterAll(async () => {
      await t.close();
    });

    const unauthorized = { error: { message: 'Missing or invalid relay server token', code: 401 } };

    it.each([
      ['/sink', { server_public_key: 'n' }],
      ['/source', { client_public_key: 'c', chat_history: 'r', cipherkey: 'k', iv: 'i' }],
      ['/stream/source', { session_id: 's', chunk: 1 }],
      ['/unregister', { server_public_key: 'n' }],
    ])('should answer %s with 401 without the token, and with a wrong one', async (path, body) => {
      const missing = await call(t.baseUrl, 'POST', path, body);
      const wrong = await call(t.baseUrl, 'POST', path, body, { 'X-Relay-Server-Token': 'nope' });
      const empty = await call(t.baseUrl, 'POST', path, body, { 'X-Relay-Server-Token': '  ' });

      for (const res of [missing, wrong, empty]) {
        expect(res.status).toBe(401);
        expect(res.body).toEqual(unauthorized);
      }
    });

    it.each(['runbook-token', 'legacy-token', 'rotating-2', 'rotating-3', '  rotating-1  '])(
      'should accept the configured token %p on /sink',
      async (token) => {
        const res = await call(
          t.baseUrl,
          'POST',
          '/sink',
          { server_public_key: 'n' },
          { 'X-Relay-Server-Token': token },
        );

        expect(res.status).toBe(200);
      },
    );

    it('should never ask clients for the token on /faucet, /retrieve and /next_server', async () => {
      await call(
        t.baseUrl,
        'POST',
        '/sink',
        { server_public_key: 'n' },
        { 'X-Relay-Server-Token': 'rotating-1' },
      );

      const faucet = await call(t.baseUrl, 'POST', '/faucet', envelope('n'));
      const retrieve = await call(t.baseUrl, 'POST', '/retrieve', { client_public_key: 'c' });
      const next = await call(t.baseUrl, 'GET', '/next_server');

      expect([faucet.status, retrieve.status, next.status]).toEqual([200, 200, 200]);
    });

    it('should answer a token with non-ASCII bytes with 401, not 500', async () => {
      const head = Buffer.concat([
        Buffer.from(
          'POST /sink HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Relay-Server-Token: ',
        ),
        Buffer.from([0xe2, 0x82, 0xac, 0xff, 0x41]),
        Buffer.from('\r\n'),
      ]);

      const raw = await rawRequest(t.baseUrl, head, '{"server_public_key":"n"}');

      expect(raw.split('\r\n')[0]).toBe('HTTP/1.1 401 Unauthorized');
      expect(raw).toContain('Missing or invalid relay server token');
    });
  });

  describe('a token containing UTF-8 is compared as bytes', () => {
    let t: TestApp;

    beforeAll(async () => {
      t = await createTestApp({ TOKEN_PLACE_RELAY_SERVER_TOKEN: 'pässwörd-€' });
    });

    afterAll(async () => {
      await t.close();
    });

    it('should accept the UTF-8 bytes of the configured token', async () => {
      const head = Buffer.concat([
        Buffer.from(
          'POST /sink HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Relay-Server-Token: ',
        ),
        Buffer.from('pässwörd-€', 'utf8'),
        Buffer.from('\r\n'),
      ]);

      const raw = await rawRequest(t.baseUrl, head, '{"server_public_key":"n"}');

      expect(raw.split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    });
  });

  describe('legacy routes switched off (HEAD gate, spec §3.10)', () => {
    let t: TestApp;

    beforeAll(async () => {
      t = await createTestApp({
        TOKENPLACE_ENABLE_LEGACY_RELAY_ROUTES: 'false',
        TOKEN_PLACE_RELAY_SERVER_TOKEN: 'tok',
      });
    });

    afterAll(async () => {
      await t.close();
    });

    it.each([
      ['GET', '/next_server'],
      ['POST', '/faucet'],
      ['POST', '/sink'],
      ['POST', '/source'],
      ['POST', '/retrieve'],
    ])('should answer %s %s with 410 before checking the token', async (method, path) => {
      const res = await call(t.baseUrl, method, path, method === 'POST' ? {} : undefined);

      expect(res.status).toBe(410);
      expect(res.body).toEqual({
        error: {
          message: `Legacy relay endpoint '${path}' is deprecated. Use API v1 relay E2EE routes.`,
          code: 'legacy_relay_endpoint_deprecated',
          deprecated: true,
        },
      });
    });

    it('should keep /stream/retrieve and /unregister available', async () => {
      const stream = await call(t.baseUrl, 'POST', '/stream/retrieve', { client_public_key: 'c' });
      const unregister = await call(
        t.baseUrl,
        'POST',
        '/unregister',
        { server_public_key: 'n' },
        { 'X-Relay-Server-Token': 'tok' },
      );

      expect(stream.status).toBe(200);
      expect(unregister.status).toBe(200);
    });
  });

  describe('staleness and bounds', () => {
    let t: TestApp;
    let clock: ManualClock;

    beforeEach(async () => {
      clock = new ManualClock();
      t = await createTestApp(
        {
          TOKENPLACE_RELAY_SINK_STALE_SECONDS: '30',
          TOKENPLACE_RELAY_NODE_LAPSE_GRACE_SECONDS: '5',
          TOKEN_PLACE_API_V1_MAX_QUEUE_DEPTH_PER_NODE: '2',
          TOKENPLACE_RELAY_MAX_QUEUED_REQUESTS: '3',
          TOKENPLACE_RELAY_LEGACY_REQUEST_TTL_SECONDS: '600',
        },
        clock,
      );
    });

    afterEach(async () => {
      await t.close();
    });

    it('should evict a /sink node that stops pinging past its window and grace and stop handing it out', async () => {
      await call(t.baseUrl, 'POST', '/sink', { server_public_key: 'node-a' });
      clock.advance(29_000);
      const fresh = await call(t.baseUrl, 'GET', '/next_server');
      clock.advance(2_000);
      await t.sweep();
      const lapsed = await call(t.baseUrl, 'GET', '/next_server');

      clock.advance(5_000);
      await t.sweep();
      const stale = await call(t.baseUrl, 'GET', '/next_server');
      const faucet = await call(t.baseUrl, 'POST', '/faucet', envelope('node-a'));
      const metrics = await call(t.baseUrl, 'GET', '/metrics');

      expect(fresh.body).toEqual({ server_public_key: 'node-a' });
      expect(lapsed.body).toEqual({ server_public_key: 'node-a' });
      expect(stale.status).toBe(503);
      expect(faucet.status).toBe(404);
      expect(metrics.text).toContain(
        'tokenplace_compute_node_evictions_total{reason="stale_lease"} 1',
      );
    });

    it('should refuse work beyond the per-node and total caps with 429/503 and keep what was accepted', async () => {
      await call(t.baseUrl, 'POST', '/sink', { server_public_key: 'node-a' });
      await call(t.baseUrl, 'POST', '/sink', { server_public_key: 'node-b' });
      const accepted = [
        await call(t.baseUrl, 'POST', '/faucet', envelope('node-a', 'c1', 1)),
        await call(t.baseUrl, 'POST', '/faucet', envelope('node-a', 'c2', 2)),
      ];

      const nodeFull = await call(t.baseUrl, 'POST', '/faucet', envelope('node-a', 'c3', 3));
      await call(t.baseUrl, 'POST', '/faucet', envelope('node-b', 'c4', 4));
      const relayFull = await call(t.baseUrl, 'POST', '/faucet', envelope('node-b', 'c5', 5));
      const delivered = [
        await call(t.baseUrl, 'POST', '/sink', { server_public_key: 'node-a' }),
        await call(t.baseUrl, 'POST', '/sink', { server_public_key: 'node-a' }),
      ];

      expect(accepted.map((r) => r.status)).toEqual([200, 200]);
      expect(nodeFull.status).toBe(429);
      expect(nodeFull.headers.get('retry-after')).toBe('5');
      expect(relayFull.status).toBe(503);
      expect(relayFull.headers.get('retry-after')).toBe('5');
      expect(delivered.map((r) => r.body.chat_history)).toEqual(['c1', 'c2']);
    });

    it('should drop an answer nobody retrieves after the response TTL', async () => {
      await call(t.baseUrl, 'POST', '/source', {
        client_public_key: 'c',
        chat_history: 'r',
        cipherkey: 'k',
        iv: 'i',
      });

      clock.advance(301_000);
      await t.sweep();
      const res = await call(t.baseUrl, 'POST', '/retrieve', { client_public_key: 'c' });
      const stats = await t.store.stats(clock.now());

      expect(res.body).toEqual(NO_RESPONSE);
      expect(stats.storedResponses).toBe(0);
    });

    it('should hand a /sink node silent past its window its queued work when it comes back within the grace', async () => {
      await call(t.baseUrl, 'POST', '/sink', { server_public_key: 'node-a' });
      await call(t.baseUrl, 'POST', '/sink', { server_public_key: 'node-b' });
      await call(t.baseUrl, 'POST', '/faucet', envelope('node-a'));
      clock.advance(34_000);
      await call(t.baseUrl, 'POST', '/sink', { server_public_key: 'node-b' });
      await t.sweep();

      const picks = new Set<unknown>();
      for (let i = 0; i < 10; i += 1) {
        picks.add((await call(t.baseUrl, 'GET', '/next_server')).body.server_public_key);
      }
      const back = await call(t.baseUrl, 'POST', '/sink', { server_public_key: 'node-a' });

      expect([...picks]).toEqual(['node-b']);
      expect(back.body).toMatchObject({ chat_history: 'c0', client_public_key: 'client-key' });
    });

    it('should cancel the queued work of an evicted node instead of keeping it forever', async () => {
      await call(t.baseUrl, 'POST', '/sink', { server_public_key: 'node-a' });
      await call(t.baseUrl, 'POST', '/faucet', envelope('node-a'));

      clock.advance(36_000);
      await t.sweep();
      const stats = await t.store.stats(clock.now());
      const metrics = await call(t.baseUrl, 'GET', '/metrics');

      expect(stats.queueDepth).toBe(0);
      expect(metrics.text).toContain(
        'tokenplace_relay_request_outcomes_total{outcome="cancelled"} 1',
      );
    });
  });

  describe('legacy request TTL', () => {
    it('should expire a queued legacy request after its TTL', async () => {
      const clock = new ManualClock();
      const t = await createTestApp({ TOKENPLACE_RELAY_LEGACY_REQUEST_TTL_SECONDS: '20' }, clock);
      await call(t.baseUrl, 'POST', '/sink', { server_public_key: 'node-a' });
      await call(t.baseUrl, 'POST', '/faucet', envelope('node-a'));

      clock.advance(21_000);
      await t.sweep();
      const sink = await call(t.baseUrl, 'POST', '/sink', { server_public_key: 'node-a' });
      const metrics = await call(t.baseUrl, 'GET', '/metrics');
      await t.close();

      expect(sink.body).toEqual({ next_ping_in_x_seconds: 10 });
      expect(metrics.text).toContain(
        'tokenplace_relay_request_outcomes_total{outcome="expired"} 1',
      );
    });
  });

  describe('low-latency delivery (bounded holds on /sink and /retrieve)', () => {
    let t: TestApp;

    beforeAll(async () => {
      t = await createTestApp({
        TOKENPLACE_RELAY_SINK_HOLD_SECONDS: '5',
        TOKENPLACE_RELAY_RETRIEVE_HOLD_SECONDS: '5',
        TOKENPLACE_RELAY_SINK_PING_SECONDS: '0',
      });
    });

    afterAll(async () => {
      await t.close();
    });

    it('should answer a held /sink the moment work arrives and a held /retrieve the moment the answer arrives', async () => {
      await t.store.upsertNode({ nodeId: 'node-a', dialect: 'legacy', now: t.clock.now() });
      const held = call(t.baseUrl, 'POST', '/sink', { server_public_key: 'node-a' });
      await new Promise((r) => setImmediate(r));
      const waiting = call(t.baseUrl, 'POST', '/retrieve', { client_public_key: 'c' });

      await call(t.baseUrl, 'POST', '/faucet', envelope('node-a', 'c', 1));
      const work = await held;
      await call(t.baseUrl, 'POST', '/source', {
        client_public_key: 'c',
        chat_history: 'answer',
        cipherkey: 'k',
        iv: 'i',
      });
      const answer = await waiting;

      expect(work.body).toMatchObject({ next_ping_in_x_seconds: 0, chat_history: 'c1' });
      expect(answer.body).toEqual({ chat_history: 'answer', cipherkey: 'k', iv: 'i' });
    });

    it('should answer a held /sink at once with no work when draining starts', async () => {
      const held = call(t.baseUrl, 'POST', '/sink', { server_public_key: 'node-z' });
      await new Promise((r) => setTimeout(r, 50));

      t.lifecycle.startDraining('SIGTERM');
      const res = await held;

      expect(res.body).toEqual({ next_ping_in_x_seconds: 0 });
    });
  });

  describe('public URL in health', () => {
    it.each(['TOKENPLACE_RELAY_PUBLIC_URL', 'TOKEN_PLACE_RELAY_PUBLIC_URL', 'RELAY_PUBLIC_URL'])(
      'should echo %s as publicUrl and publicBaseUrl without a trailing slash',
      async (name) => {
        const t = await createTestApp({ [name]: 'https://staging.token.place/' });

        const res = await call(t.baseUrl, 'GET', '/healthz');
        await t.close();

        expect(res.body).toMatchObject({
          publicUrl: 'https://staging.token.place',
          publicBaseUrl: 'https://staging.token.place',
        });
      },
    );
  });
});
