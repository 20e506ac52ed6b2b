import fc from 'fast-check';
import { V1ClientSim, V1NodeSim } from '../helpers/simulators';
import { call, createTestApp, type TestApp } from '../helpers/test-app';

/** Every route of both protocols (and the ops routes), with the method it answers. */
const ROUTES: Array<[string, string]> = [
  ['POST', '/sink'],
  ['POST', '/faucet'],
  ['POST', '/source'],
  ['POST', '/retrieve'],
  ['POST', '/stream/source'],
  ['POST', '/stream/retrieve'],
  ['POST', '/unregister'],
  ['GET', '/next_server'],
  ['POST', '/api/v1/relay/servers/register'],
  ['POST', '/api/v1/relay/servers/poll'],
  ['POST', '/api/v1/relay/servers/control'],
  ['POST', '/api/v1/relay/servers/unregister'],
  ['GET', '/api/v1/relay/servers/next'],
  ['POST', '/api/v1/relay/requests'],
  ['POST', '/api/v1/relay/requests/cancel'],
  ['POST', '/api/v1/relay/responses'],
  ['POST', '/api/v1/relay/responses/retrieve'],
  ['POST', '/api/v1/relay/progress'],
  ['POST', '/api/v1/relay/unregister'],
  ['GET', '/relay/diagnostics'],
  ['GET', '/api/v1/models'],
  ['GET', '/api/v1/meta'],
  ['GET', '/healthz'],
  ['GET', '/livez'],
  ['GET', '/metrics'],
  ['POST', '/relay/api/v1/chat/completions'],
  ['POST', '/api/v1/chat/completions'],
  ['POST', '/v1/completions'],
  ['POST', '/api/v2/chat/completions'],
  ['POST', '/v2/completions'],
  ['POST', '/v1/images/generations'],
  ['POST', '/api/v1/public-key/rotate'],
  ['GET', '/v1/models/x'],
  ['GET', '/api/v2/models'],
];

const FIELDS = [
  'server_public_key',
  'client_public_key',
  'chat_history',
  'ciphertext',
  'cipherkey',
  'iv',
  'request_id',
  'cancel_token',
  'control_credential',
  'capabilities',
  'max_batch_size',
  'protocol',
  'version',
  'session_id',
  'chunk',
  'final',
  'stream',
  'acknowledge',
  'status',
  'reason',
  'model',
  'messages',
  'encrypted',
  'metadata',
  'prompt',
  'temperature',
];

/** Deeply nested JSON, the kind that stack-overflows naive recursive validators. */
function deep(depth: number): unknown {
  let value: unknown = 'leaf';
  for (let i = 0; i < depth; i += 1) {
    value = i % 2 === 0 ? { a: value } : [value];
  }
  return value;
}

const hostileValue = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.string({ maxLength: 40 }),
  fc.integer(),
  fc.constantFrom(null, true, false, '', ' ', '\u0000', 'NaN', 1e308, -0),
  fc.integer({ min: 100, max: 3000 }).map((d) => deep(d)),
  fc.integer({ min: 1000, max: 60_000 }).map((n) => 'x'.repeat(n)),
);

/** Bodies shaped like the real ones with hostile values, plus arbitrary JSON. */
const hostileBody = fc.oneof(
  fc.dictionary(fc.constantFrom(...FIELDS), hostileValue, { maxKeys: 8 }),
  fc.jsonValue({ maxDepth: 4 }),
  fc.dictionary(fc.string({ maxLength: 12 }), hostileValue, { maxKeys: 6 }),
);

const hostileHeaders = fc.record(
  {
    token: fc.oneof(fc.string({ maxLength: 64 }), fc.constantFrom('', ' ', 'x'.repeat(5000))),
    requestId: fc.oneof(fc.string({ maxLength: 300 }), fc.constant('a'.repeat(1000))),
    prefer: fc.oneof(fc.constant('wait=0'), fc.constant('wait=abc'), fc.string({ maxLength: 20 })),
    contentType: fc.constantFrom(
      'application/json',
      'text/plain',
      'application/x-www-form-urlencoded',
      'application/json; charset=latin1',
      '',
    ),
  },
  { requiredKeys: [] },
);

/** Header values fetch can send (it refuses control characters and non-latin1). */
const sendable = (v: string | undefined): string | undefined =>
  v === undefined ? undefined : v.replace(/[^\x20-\x7e]/g, '') || undefined;

describe('hostile input (property-based)', () => {
  let t: TestApp;
  let node: V1NodeSim;
  let client: V1ClientSim;
  let honestRequestId: string;

  beforeAll(async () => {
    t = await createTestApp({
      TOKENPLACE_RELAY_MAX_BODY_BYTES: String(64 * 1024),
      TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '0',
      TOKENPLACE_RELAY_MAX_NODES: '200',
      TOKENPLACE_API_V1_DISTRIBUTED_TIMEOUT_SECONDS: '1',
    });
    node = new V1NodeSim(t.baseUrl);
    client = new V1ClientSim(t.baseUrl);
    await node.register();
    honestRequestId = (await client.submit(node.key, 'still here?')).requestId;
  });

  afterAll(async () => {
    await t.close();
  });

  it('should never answer 500, never hang and never crash on random bodies, types and headers', async () => {
    const heapBefore = process.memoryUsage().heapUsed;
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...ROUTES),
        hostileBody,
        hostileHeaders,
        async ([method, path], body, h) => {
          const headers: Record<string, string> = {};
          const token = sendable(h.token);
          const requestId = sendable(h.requestId);
          const prefer = sendable(h.prefer);
          if (token) {
            headers['X-Relay-Server-Token'] = token;
          }
          if (requestId) {
            headers['X-Request-Id'] = requestId;
          }
          if (prefer) {
            headers.Prefer = prefer;
          }
          if (h.contentType) {
            headers['content-type'] = h.contentType;
          }
          const res = await fetch(
            `${t.baseUrl}${path}${method === 'GET' ? '?model=x&context_tier=y' : ''}`,
            {
              method,
              headers,
              body: method === 'GET' ? undefined : JSON.stringify(body),
              signal: AbortSignal.timeout(10_000),
            },
          );
          const text = await res.text();

          // 503 is a legitimate answer (no node, registry or queue full, fail-closed stubs), and so
          // are the gateway's 501 (no image models) and 504 (the node did not answer); 500 never is.
          expect(res.status < 500 || [501, 503, 504].includes(res.status)).toBe(true);
          expect(res.headers.get('x-request-id')).toBeTruthy();
          if (path !== '/metrics') {
            expect(() => JSON.parse(text) as unknown).not.toThrow();
          }
        },
      ),
      { numRuns: 400 },
    );
    const growth = process.memoryUsage().heapUsed - heapBefore;

    expect((await call(t.baseUrl, 'GET', '/livez')).status).toBe(200);
    expect(growth).toBeLessThan(256 * 1024 * 1024);
  });

  it('should keep serving the honest client and node afterwards, with their work intact', async () => {
    const work = await node.take();
    await node.respond(work!);
    const answer = await client.await(honestRequestId);

    expect(work?.requestId).toBe(honestRequestId);
    expect(client.openResponse(answer.body, honestRequestId).content).toBe('echo: ?ereh llits');
  });

  it('should hold every cap under floods and keep metric labels bounded', async () => {
    const seriesBefore = (await call(t.baseUrl, 'GET', '/metrics')).text
      .split('\n')
      .filter((l) => l && !l.startsWith('#')).length;

    const registrations = await Promise.all(
      Array.from({ length: 260 }, (_, i) =>
        call(t.baseUrl, 'POST', '/sink', { server_public_key: `flood-node-${i}` }),
      ),
    );
    const flood = [];
    for (let i = 0; i < 1100; i += 1) {
      flood.push(
        call(t.baseUrl, 'POST', '/api/v1/relay/requests', {
          server_public_key: node.key,
          client_public_key: `flood-client-${i}`,
          request_id: `r${i}`,
          ciphertext: 'c',
          cipherkey: 'k',
          iv: 'i',
        }),
      );
    }
    const floodResults = await Promise.all(flood);
    const retrieves = await Promise.all(
      Array.from({ length: 300 }, (_, i) =>
        call(t.baseUrl, 'POST', '/api/v1/relay/responses/retrieve', {
          client_public_key: `random-${i}`,
          request_id: `x${i}`,
        }),
      ),
    );
    const randomPaths = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        call(t.baseUrl, 'GET', `/random/${i}/${Math.random()}`),
      ),
    );
    const stats = await t.store.stats(t.clock.now());
    const metrics = (await call(t.baseUrl, 'GET', '/metrics')).text;
    const seriesAfter = metrics.split('\n').filter((l) => l && !l.startsWith('#')).length;

    expect(registrations.filter((r) => r.status === 503).length).toBeGreaterThan(0);
    expect(stats.nodesRegistered).toBeLessThanOrEqual(200);
    expect(floodResults.filter((r) => r.status === 429).length).toBeGreaterThan(0);
    expect(stats.queueDepth).toBeLessThanOrEqual(1024);
    expect(retrieves.every((r) => r.status === 404)).toBe(true);
    expect(randomPaths.every((r) => r.status === 404)).toBe(true);
    expect(metrics).not.toContain('/random/');
    expect(seriesAfter - seriesBefore).toBeLessThan(150);
  });
});
