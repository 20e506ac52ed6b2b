import pino from 'pino';
import { HeadNodeLoop } from '../helpers/gateway';
import { V1ClientSim, V1NodeSim } from '../helpers/simulators';
import { call, createTestApp, type TestApp, type WireResult } from '../helpers/test-app';
import { freePort, randomPrefix, RedisServer, redisServerBin } from '../helpers/redis-server';
import { describeIf, requirement } from '../helpers/requirements';
import { eventually } from '../helpers/eventually';

const bin = redisServerBin();
const available = requirement(
  'Redis fault',
  bin !== null,
  'TOKENPLACE_REQUIRE_REDIS',
  'install redis-server (Debian: apt-get install redis-server) or set REDIS_SERVER_BIN',
);

function redisEnv(url: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    TOKENPLACE_RELAY_STATE_STORE: 'redis',
    TOKENPLACE_RELAY_REDIS_URL: url,
    TOKENPLACE_RELAY_REDIS_KEY_PREFIX: randomPrefix('faults'),
    TOKENPLACE_RELAY_REDIS_COMMAND_TIMEOUT_MS: '300',
    ...extra,
  };
}

function expectUnavailable(res: WireResult): void {
  expect(res.status).toBe(503);
  expect(res.headers.get('retry-after')).toBe('2');
  expect(res.body).toMatchObject({ error: { code: 'state_store_unavailable' } });
}

const healthy = (t: TestApp) => async (): Promise<WireResult | undefined> => {
  const res = await call(t.baseUrl, 'GET', '/healthz');
  return res.status === 200 ? res : undefined;
};

describeIf(available)('Redis state store faults (own redis-server)', () => {
  let server: RedisServer | undefined;
  let app: TestApp | undefined;

  afterEach(async () => {
    await app?.close();
    await server?.stop();
    app = undefined;
    server = undefined;
  });

  it('should boot while Redis is down, report degraded (the reason in the log, not in the body), refuse with 503 and recover on its own', async () => {
    const port = await freePort();
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    app = await createTestApp(
      { ...redisEnv(`redis://127.0.0.1:${port}`), TOKENPLACE_LOG_LEVEL: 'info' },
      undefined,
      logger,
    );
    const node = new V1NodeSim(app.baseUrl);

    const health = await call(app.baseUrl, 'GET', '/healthz');
    const live = await call(app.baseUrl, 'GET', '/livez');
    const refused = await node.register();
    server = await RedisServer.start(bin as string, { port });
    const recovered = await eventually(healthy(app));
    const registered = await node.register();

    expect(health.status).toBe(503);
    expect(health.body).toMatchObject({
      status: 'degraded',
      details: { store: 'unreachable' },
    });
    expect(health.text).not.toMatch(/ECONNREFUSED|127\.0\.0\.1/);
    expect(lines.join('\n')).toMatch(/ECONNREFUSED/);
    expect(live.status).toBe(200);
    expectUnavailable(refused);
    expect(recovered.body).toMatchObject({ status: 'ok' });
    expect(registered.status).toBe(200);
  });

  it('should end held long-polls with 503 when Redis drops, report degraded, and serve again after it returns', async () => {
    server = await RedisServer.start(bin as string);
    app = await createTestApp(
      redisEnv(server.url, { TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '60' }),
    );
    const polling = new V1NodeSim(app.baseUrl);
    const busy = new V1NodeSim(app.baseUrl);
    const client = new V1ClientSim(app.baseUrl);
    await polling.register();
    await busy.register();
    const submitted = await client.submit(busy.key, 'hello');
    const heldPoll = polling.poll();
    const heldRetrieve = client.retrieve(submitted.requestId, { Prefer: 'wait=8' });
    await new Promise((r) => setTimeout(r, 200));

    await server.crash();
    const [poll, retrieve] = await Promise.all([heldPoll, heldRetrieve]);
    const degraded = await call(app.baseUrl, 'GET', '/healthz');
    await server.spawn();
    await eventually(healthy(app));
    const afterRestart = await polling.poll();

    expect(submitted.response.status).toBe(200);
    expectUnavailable(poll);
    expectUnavailable(retrieve);
    expect(degraded.status).toBe(503);
    expect(degraded.body).toMatchObject({ status: 'degraded' });
    // No persistence on this server: the node learns it must register again.
    expect(afterRestart.status).toBe(404);
    expect((await polling.register()).status).toBe(200);
  });

  it('should answer 503 when Redis is too slow and serve normally once it is fast again', async () => {
    server = await RedisServer.start(bin as string);
    app = await createTestApp(redisEnv(server.url));
    const node = new V1NodeSim(app.baseUrl);
    const client = new V1ClientSim(app.baseUrl);
    await node.register();
    const admin = server.admin();

    await admin.call('CLIENT', 'PAUSE', '20000', 'WRITE');
    const slow = await client.submit(node.key, 'slow');
    await admin.call('CLIENT', 'UNPAUSE');
    const fast = await client.submit(node.key, 'fast');
    admin.disconnect();

    expectUnavailable(slow.response);
    expect(fast.response.status).toBe(200);
  });

  it('should report a wrong password as degraded and refuse requests', async () => {
    server = await RedisServer.start(bin as string, { password: 'right-password' });
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    app = await createTestApp(
      { ...redisEnv(server.urlWithPassword('wrong-password')), TOKENPLACE_LOG_LEVEL: 'info' },
      undefined,
      logger,
    );

    const health = await call(app.baseUrl, 'GET', '/healthz');
    const refused = await new V1NodeSim(app.baseUrl).register();

    expect(health.status).toBe(503);
    expect(health.body).toMatchObject({ status: 'degraded', details: { store: 'unreachable' } });
    expect(lines.join('\n')).toMatch(/WRONGPASS/);
    expect(lines.join('\n')).not.toContain('wrong-password');
    expectUnavailable(refused);
  });

  it('should refuse a Redis that may evict keys, and serve once the policy is noeviction', async () => {
    server = await RedisServer.start(bin as string, {
      extraArgs: ['--maxmemory-policy', 'allkeys-lru'],
    });
    const lines: string[] = [];
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(line) });
    app = await createTestApp(
      { ...redisEnv(server.url), TOKENPLACE_LOG_LEVEL: 'info' },
      undefined,
      logger,
    );
    const node = new V1NodeSim(app.baseUrl);

    const health = await call(app.baseUrl, 'GET', '/healthz');
    const refused = await node.register();
    const admin = server.admin();
    await admin.config('SET', 'maxmemory-policy', 'noeviction');
    admin.disconnect();
    await eventually(healthy(app));
    const registered = await node.register();

    expect(health.status).toBe(503);
    expect(health.body).toMatchObject({ details: { store: 'unreachable' } });
    expect(lines.join('\n')).toMatch(/maxmemory-policy is allkeys-lru/);
    expectUnavailable(refused);
    expect(registered.status).toBe(200);
  });

  it('should answer 503, not 500, when Redis is out of memory', async () => {
    server = await RedisServer.start(bin as string);
    app = await createTestApp(redisEnv(server.url));
    const node = new V1NodeSim(app.baseUrl);
    const client = new V1ClientSim(app.baseUrl);
    await node.register();
    const admin = server.admin();

    await admin.config('SET', 'maxmemory', '1');
    const full = await client.submit(node.key, 'no room');
    await admin.config('SET', 'maxmemory', '0');
    admin.disconnect();
    const roomAgain = await client.submit(node.key, 'room');

    expectUnavailable(full.response);
    expect(roomAgain.response.status).toBe(200);
  });
});

describeIf(available)('a gateway request caught in a Redis stall (own redis-server)', () => {
  let server: RedisServer | undefined;
  let app: TestApp | undefined;

  afterEach(async () => {
    await app?.close();
    await server?.stop();
    app = undefined;
    server = undefined;
  });

  it('should cancel a request whose enqueue timed out, so the node never does work nobody waits for', async () => {
    server = await RedisServer.start(bin as string);
    app = await createTestApp(redisEnv(server.url));
    const node = await new HeadNodeLoop(app.baseUrl).start();
    const admin = server.admin();
    // The stall starts as the gateway enqueues (after it chose the node): Redis holds the write,
    // the relay's command times out (503), and Redis runs the write once the pause ends.
    const store = app.store;
    const enqueue = store.enqueue.bind(store);
    store.enqueue = async (cmd) => {
      store.enqueue = enqueue;
      await admin.call('CLIENT', 'PAUSE', '1500', 'WRITE');
      return enqueue(cmd);
    };

    const chat = await call(app.baseUrl, 'POST', '/v1/chat/completions', {
      model: 'qwen3-8b-instruct',
      messages: [{ role: 'user', content: 'asked once' }],
    });
    // Once the pause is over, the write runs: the request is queued, and then (with the
    // follow-up cancel) ended before the node can take it.
    await eventually(async () => {
      const stats = await app!.store.stats(app!.clock.now()).catch(() => undefined);
      return stats && stats.queueDepth === 0 ? stats : undefined;
    });
    await new Promise((r) => setTimeout(r, 1000));
    const stats = await app.store.stats(app.clock.now());
    await node.stop();
    admin.disconnect();

    expect(chat.status).toBe(503);
    expect(chat.body).toMatchObject({ error: { code: 'state_store_unavailable' } });
    expect(node.works).toEqual([]);
    expect(stats).toMatchObject({ queueDepth: 0, inFlight: 0, terminalRecords: 1 });
  });
});
