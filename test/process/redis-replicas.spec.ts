import { spawnSync } from 'node:child_process';
import { Redis } from 'ioredis';
import { MAIN_JS, startRelayProcess, type RelayProcess } from '../helpers/relay-process';
import { randomPrefix, RedisServer, redisServerBin } from '../helpers/redis-server';
import { describeIf, requirement } from '../helpers/requirements';
import {
  LegacyClientSim,
  LegacyNodeSim,
  simulatedAnswer,
  V1ClientSim,
  V1NodeSim,
  type ChatMessage,
} from '../helpers/simulators';
import { call, type WireResult } from '../helpers/test-app';
import { eventually } from '../helpers/eventually';

const bin = redisServerBin();
const available = requirement(
  'Redis replica process',
  bin !== null,
  'TOKENPLACE_REQUIRE_REDIS',
  'install redis-server (Debian: apt-get install redis-server) or set REDIS_SERVER_BIN',
);

/** The same simulated node or client (same keys, same credential), talking to another replica. */
function via<T extends object>(sim: T, baseUrl: string): T {
  return Object.assign(Object.create(Object.getPrototypeOf(sim) as object) as T, sim, { baseUrl });
}

/** A held request that dies with its replica rejects; this turns that into a value. */
function settle(request: Promise<WireResult>): Promise<WireResult | Error> {
  return request.then(
    (res) => res,
    (error: unknown) => (error instanceof Error ? error : new Error(String(error))),
  );
}

const history: ChatMessage[] = [{ role: 'user', content: 'across replicas' }];
const legacyAnswer = [...history, { role: 'assistant', content: simulatedAnswer(history) }];

describeIf(available)('two relay processes sharing one Redis (real processes)', () => {
  let redis: RedisServer;
  const relays: RelayProcess[] = [];

  async function replica(
    prefix: string,
    extra: Record<string, string> = {},
  ): Promise<RelayProcess> {
    const relay = await startRelayProcess({
      TOKENPLACE_RELAY_STATE_STORE: 'redis',
      TOKENPLACE_RELAY_REDIS_URL: redis.url,
      TOKENPLACE_RELAY_REDIS_KEY_PREFIX: prefix,
      TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '25',
      TOKENPLACE_RELAY_SINK_HOLD_SECONDS: '8',
      ...extra,
    });
    relays.push(relay);
    return relay;
  }

  beforeAll(async () => {
    redis = await RedisServer.start(bin as string, { aof: true });
  });

  afterEach(() => {
    for (const relay of relays.splice(0)) {
      if (relay.child.exitCode === null) {
        relay.child.kill('SIGKILL');
      }
    }
  });

  afterAll(async () => {
    await redis.stop();
  });

  it('should carry an API v1 chat from a client on one replica to a node long-polling the other and back', async () => {
    const prefix = randomPrefix('replicas');
    const [a, b] = await Promise.all([replica(prefix), replica(prefix)]);
    const node = new V1NodeSim(a.baseUrl);
    const client = new V1ClientSim(b.baseUrl);
    expect((await node.register()).status).toBe(200);
    const next = await client.next();

    const held = node.take();
    await new Promise((r) => setTimeout(r, 100));
    const submission = await client.submit(node.key, 'hello from replica b');
    const work = await held;
    const responded = await node.respond(work!);
    const answer = await client.await(submission.requestId);

    expect(next.body.server_public_key).toBe(node.key);
    expect(submission.response.status).toBe(200);
    expect(work?.raw).toMatchObject({
      ciphertext: submission.sealed.ciphertext,
      cipherkey: submission.sealed.cipherkey,
      iv: submission.sealed.iv,
      request_id: submission.requestId,
    });
    expect(responded.status).toBe(200);
    expect(answer.status).toBe(200);
    expect(client.openResponse(answer.body, submission.requestId).content).toBe(
      simulatedAnswer([{ role: 'user', content: 'hello from replica b' }]),
    );
  });

  it('should hand a request sent to one replica to the node poll held on the other in one turn, counted there', async () => {
    const prefix = randomPrefix('replicas');
    const [a, b] = await Promise.all([replica(prefix), replica(prefix)]);
    const admin = new Redis(redis.url);
    const handOffs = async (relay: RelayProcess): Promise<Record<string, number>> => {
      const text = (await call(relay.baseUrl, 'GET', '/metrics')).text;
      const found: Record<string, number> = {};
      for (const m of text.matchAll(
        /^tokenplace_relay_redis_handoffs_total\{result="(\w+)"\} (\S+)$/gm,
      )) {
        found[m[1] as string] = Number(m[2]);
      }
      return found;
    };
    try {
      const node = new V1NodeSim(a.baseUrl);
      const client = new V1ClientSim(b.baseUrl);
      expect((await node.register()).status).toBe(200);

      const held = node.take();
      await eventually(async () => ((await admin.hlen(`${prefix}hold`)) === 1 ? true : undefined));
      const submission = await client.submit(node.key, 'handed over');
      const work = await held;

      expect(submission.response.status).toBe(200);
      expect(work?.raw).toMatchObject({ request_id: submission.requestId });
      expect(await admin.hlen(`${prefix}hold`)).toBe(0);
      expect(await handOffs(a)).toEqual({
        taken: 1,
        given_back: 0,
        already_ended: 0,
        left_to_lease: 0,
      });
      expect((await handOffs(b)).taken).toBe(0);
      expect((await node.respond(work!)).status).toBe(200);
      expect((await client.await(submission.requestId)).status).toBe(200);
    } finally {
      admin.disconnect();
    }
  });

  it('should carry a legacy chat from a client on one replica to a node holding /sink on the other and back', async () => {
    const prefix = randomPrefix('replicas');
    const [a, b] = await Promise.all([replica(prefix), replica(prefix)]);
    const node = new LegacyNodeSim(a.baseUrl);
    const client = new LegacyClientSim(b.baseUrl);

    const held = node.serveOnce();
    const picked = await eventually(async () => {
      const res = await call(b.baseUrl, 'GET', '/next_server');
      return res.status === 200 ? res : undefined;
    });
    const sent = await client.send(node.key, history);
    const served = await held;
    const answer = await client.receive();

    expect(picked.body).toEqual({ server_public_key: node.key });
    expect(sent.status).toBe(200);
    expect(served).toBe(true);
    expect(node.received[0]).toMatchObject({
      chat_history: client.lastSent?.ciphertext,
      cipherkey: client.lastSent?.cipherkey,
      iv: client.lastSent?.iv,
    });
    expect(answer).toEqual(legacyAnswer);
  });

  it('should keep serving the node and the client with nothing lost when a replica is killed mid-request', async () => {
    const prefix = randomPrefix('replicas');
    const noHold = { TOKENPLACE_RELAY_SINK_HOLD_SECONDS: '0' };
    const [a, b] = await Promise.all([replica(prefix, noHold), replica(prefix, noHold)]);
    const node = new V1NodeSim(a.baseUrl);
    const idleNode = new V1NodeSim(a.baseUrl);
    const client = new V1ClientSim(a.baseUrl);
    const legacyNode = new LegacyNodeSim(a.baseUrl);
    const legacyClient = new LegacyClientSim(a.baseUrl);
    await node.register();
    await idleNode.register();
    await legacyNode.sink();
    const inFlight = await client.submit(node.key, 'claimed before the kill');
    const work = await node.take();
    const queued = await client.submit(node.key, 'queued before the kill');
    await legacyClient.send(legacyNode.key, history);
    const heldRetrieve = settle(client.retrieve(inFlight.requestId, { Prefer: 'wait=8' }));
    const heldPoll = settle(idleNode.poll());
    await new Promise((r) => setTimeout(r, 100));

    a.child.kill('SIGKILL');
    await a.exited;
    const nodeOnB = via(node, b.baseUrl);
    const clientOnB = via(client, b.baseUrl);
    const answered = await nodeOnB.respond(work!);
    const first = await clientOnB.await(inFlight.requestId);
    const second = await nodeOnB.take();
    await nodeOnB.respond(second!);
    const secondAnswer = await clientOnB.await(queued.requestId);
    const served = await via(legacyNode, b.baseUrl).serveOnce();
    const legacy = await via(legacyClient, b.baseUrl).receive();

    expect(await heldRetrieve).toBeInstanceOf(Error);
    expect(await heldPoll).toBeInstanceOf(Error);
    expect(answered.status).toBe(200);
    expect(clientOnB.openResponse(first.body, inFlight.requestId).content).toBe(
      simulatedAnswer([{ role: 'user', content: 'claimed before the kill' }]),
    );
    expect(second?.requestId).toBe(queued.requestId);
    expect(clientOnB.openResponse(secondAnswer.body, queued.requestId).content).toBe(
      simulatedAnswer([{ role: 'user', content: 'queued before the kill' }]),
    );
    expect(served).toBe(true);
    expect(legacy).toEqual(legacyAnswer);
  });

  it('should report degraded while Redis restarts, then finish every request accepted before it', async () => {
    const prefix = randomPrefix('restart');
    const noHold = { TOKENPLACE_RELAY_SINK_HOLD_SECONDS: '0' };
    const [a, b] = await Promise.all([replica(prefix, noHold), replica(prefix, noHold)]);
    const node = new V1NodeSim(a.baseUrl);
    const client = new V1ClientSim(b.baseUrl);
    const legacyNode = new LegacyNodeSim(a.baseUrl);
    const legacyClient = new LegacyClientSim(b.baseUrl);
    await node.register();
    await legacyNode.sink();
    const inFlight = await client.submit(node.key, 'in flight across the restart');
    const work = await node.take();
    const queued = await client.submit(node.key, 'queued across the restart');
    await legacyClient.send(legacyNode.key, history);

    await redis.crash();
    const degraded = await eventually(async () => {
      const res = await call(a.baseUrl, 'GET', '/healthz');
      return res.status === 503 ? res : undefined;
    });
    const refused = await client.submit(node.key, 'while redis is down');
    await redis.spawn();
    await eventually(async () => {
      const [ha, hb] = await Promise.all([
        call(a.baseUrl, 'GET', '/healthz'),
        call(b.baseUrl, 'GET', '/healthz'),
      ]);
      return ha.status === 200 && hb.status === 200 ? true : undefined;
    });
    const answered = await node.respond(work!);
    const first = await client.await(inFlight.requestId);
    const second = await node.take();
    await node.respond(second!);
    const secondAnswer = await client.await(queued.requestId);
    const served = await legacyNode.serveOnce();
    const legacy = await legacyClient.receive();

    expect(degraded.body).toMatchObject({
      status: 'degraded',
      details: { store: 'unreachable' },
    });
    expect(refused.response.status).toBe(503);
    expect(refused.response.headers.get('retry-after')).toBe('2');
    expect(answered.status).toBe(200);
    expect(client.openResponse(first.body, inFlight.requestId).content).toBe(
      simulatedAnswer([{ role: 'user', content: 'in flight across the restart' }]),
    );
    expect(second?.requestId).toBe(queued.requestId);
    expect(client.openResponse(secondAnswer.body, queued.requestId).content).toBe(
      simulatedAnswer([{ role: 'user', content: 'queued across the restart' }]),
    );
    expect(served).toBe(true);
    expect(legacy).toEqual(legacyAnswer);
  });

  it('should refuse to boot with an unusable Redis configuration, saying why', () => {
    const boot = (env: Record<string, string>) =>
      spawnSync(process.execPath, [MAIN_JS], {
        env: { PATH: process.env.PATH ?? '', RELAY_PORT: '0', ...env },
        encoding: 'utf8',
        timeout: 20_000,
      });

    const noUrl = boot({ TOKENPLACE_RELAY_STATE_STORE: 'redis' });
    const badDb = boot({
      TOKENPLACE_RELAY_STATE_STORE: 'redis',
      TOKENPLACE_RELAY_REDIS_URL: 'redis://:secret@redis:6379/zero',
    });
    const notRedis = boot({
      TOKENPLACE_RELAY_STATE_STORE: 'redis',
      TOKENPLACE_RELAY_REDIS_URL: 'http://redis:6379',
    });

    expect(noUrl.status).toBe(78);
    expect(noUrl.stderr).toContain(
      'TOKENPLACE_RELAY_STATE_STORE=redis needs TOKENPLACE_RELAY_REDIS_URL',
    );
    expect(badDb.status).toBe(78);
    expect(badDb.stderr).toContain('the database after the host must be a number');
    expect(badDb.stderr).not.toContain('secret');
    expect(notRedis.status).toBe(78);
    expect(notRedis.stderr).toContain('must be a redis:// or rediss:// URL');
  });
});
