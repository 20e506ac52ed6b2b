import { ManualClock } from '../../src/common/clock';
import { RedisStateStore } from '../../src/state/redis-state.store';
import { StoreUnavailableError } from '../../src/state/store-unavailable.error';
import { NO_TRANSITION_SINK } from '../../src/state/transition.sink';
import { CONTRACT_LIMITS, CAPS } from '../contract/state-store.contract';
import { eventually } from '../helpers/eventually';
import {
  CapturedLog,
  randomTaggedPrefix,
  RedisServer,
  redisServerBin,
} from '../helpers/redis-server';
import { describeIf, requirement } from '../helpers/requirements';
import { simulatedAnswer, V1ClientSim, V1NodeSim } from '../helpers/simulators';
import { call, createTestApp, type TestApp, type WireResult } from '../helpers/test-app';

const bin = redisServerBin();
const available = requirement(
  'Redis replication',
  bin !== null,
  'TOKENPLACE_REQUIRE_REDIS',
  'install redis-server (Debian: apt-get install redis-server) or set REDIS_SERVER_BIN',
);

async function replicaOf(primary: RedisServer): Promise<RedisServer> {
  const replica = await RedisServer.start(bin as string, {
    extraArgs: ['--replicaof', '127.0.0.1', String(primary.port)],
  });
  const admin = replica.admin();
  try {
    await eventually(async () =>
      /master_link_status:up/.test(await admin.info('replication')) ? true : undefined,
    );
  } finally {
    admin.disconnect();
  }
  // After a diskless full sync the primary streams to a replica only once it acknowledged (about a
  // second later): wait for that, so the test's own WAIT timeout measures replication, not sync.
  const onPrimary = primary.admin();
  try {
    await onPrimary.set('tpt:sync-probe', '1', 'PX', 10_000);
    await onPrimary.wait(1, 10_000);
  } finally {
    onPrimary.disconnect();
  }
  return replica;
}

function expectUnavailable(res: WireResult): void {
  expect(res.status).toBe(503);
  expect(res.headers.get('retry-after')).toBe('2');
  expect(res.body).toMatchObject({ error: { code: 'state_store_unavailable' } });
}

async function metric(t: TestApp, name: string): Promise<number> {
  const text = (await call(t.baseUrl, 'GET', '/metrics')).text;
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

describeIf(available)(
  'Redis replication: acknowledged means replicated (own redis-servers)',
  () => {
    const servers: RedisServer[] = [];
    let app: TestApp | undefined;

    afterEach(async () => {
      await app?.close();
      app = undefined;
      await Promise.all(servers.splice(0).map((s) => s.stop()));
    });

    it('should answer 503 + Retry-After and count it when no replica confirms within WAIT_TIMEOUT_MS, then 200 once a replica is there', async () => {
      const primary = await RedisServer.start(bin as string);
      servers.push(primary);
      app = await createTestApp({
        TOKENPLACE_RELAY_STATE_STORE: 'redis',
        TOKENPLACE_RELAY_REDIS_URL: primary.url,
        TOKENPLACE_RELAY_REDIS_KEY_PREFIX: randomTaggedPrefix('wait'),
        TOKENPLACE_RELAY_REDIS_WAIT_REPLICAS: '1',
        TOKENPLACE_RELAY_REDIS_WAIT_TIMEOUT_MS: '100',
      });
      const node = new V1NodeSim(app.baseUrl);
      const client = new V1ClientSim(app.baseUrl);

      const unreplicated = await node.register();
      const timeouts = await metric(app, 'tokenplace_relay_redis_replication_timeouts_total');
      servers.push(await replicaOf(primary));
      const registered = await node.register();
      const submitted = await client.submit(node.key, 'replicated before the 200');
      const work = await node.take();
      const responded = await node.respond(work!);
      const answer = await client.await(submitted.requestId);

      expectUnavailable(unreplicated);
      expect(timeouts).toBe(1);
      expect(registered.status).toBe(200);
      expect(submitted.response.status).toBe(200);
      expect(responded.status).toBe(200);
      expect(client.openResponse(answer.body, submitted.requestId).content).toBe(
        simulatedAnswer([{ role: 'user', content: 'replicated before the 200' }]),
      );
    });

    it('should take a retried submission with the same request_id after a WAIT timeout, and hand its answer out once', async () => {
      const primary = await RedisServer.start(bin as string);
      servers.push(primary);
      const replica = await replicaOf(primary);
      servers.push(replica);
      app = await createTestApp({
        TOKENPLACE_RELAY_STATE_STORE: 'redis',
        TOKENPLACE_RELAY_REDIS_URL: primary.url,
        TOKENPLACE_RELAY_REDIS_KEY_PREFIX: randomTaggedPrefix('wait'),
        TOKENPLACE_RELAY_REDIS_WAIT_REPLICAS: '1',
        TOKENPLACE_RELAY_REDIS_WAIT_TIMEOUT_MS: '100',
      });
      const node = new V1NodeSim(app.baseUrl);
      const client = new V1ClientSim(app.baseUrl);
      await node.register();

      replica.pause();
      const first = await client.submit(node.key, 'retried');
      replica.resume();
      const again = await eventually(async () => {
        // A retry resends the same body: the same request_id and cancel_token.
        const res = await client.submit(
          node.key,
          'retried',
          { cancel_token: first.cancelToken },
          first.requestId,
        );
        return res.response.status === 200 ? res : undefined;
      });
      const work = await node.take();
      await node.respond(work!);
      const answer = await client.await(first.requestId);
      const nothingElse = await node.poll();

      expectUnavailable(first.response);
      expect(again.requestId).toBe(first.requestId);
      expect(work?.requestId).toBe(first.requestId);
      expect(answer.status).toBe(200);
      expect(nothingElse.body.chat_history).toBeUndefined();
    });

    it('should turn unready within a readiness probe when its primary is demoted under it, refuse writes with 503, and serve again once it is a primary', async () => {
      const primary = await RedisServer.start(bin as string);
      servers.push(primary);
      const other = await RedisServer.start(bin as string);
      servers.push(other);
      app = await createTestApp({
        TOKENPLACE_RELAY_STATE_STORE: 'redis',
        TOKENPLACE_RELAY_REDIS_URL: primary.url,
        TOKENPLACE_RELAY_REDIS_KEY_PREFIX: randomTaggedPrefix('role'),
      });
      const node = new V1NodeSim(app.baseUrl);
      const health = (): Promise<WireResult> => call(app!.baseUrl, 'GET', '/healthz');
      const before = await health();
      const admin = primary.admin();

      // Demoted with the relay's connection still open (what Sentinel does to a primary that comes
      // back): the next readiness probe must see it, not the 30 s policy re-check.
      await admin.call('REPLICAOF', '127.0.0.1', String(other.port));
      const demoted = await eventually(async () => {
        const res = await health();
        return res.status === 503 ? res : undefined;
      }, 20);
      const refused = await node.register();
      await admin.call('REPLICAOF', 'NO', 'ONE');
      admin.disconnect();
      const ready = await eventually(async () => {
        const res = await health();
        return res.status === 200 ? res : undefined;
      });
      const registered = await node.register();

      expect(before.status).toBe(200);
      expect(demoted.body).toMatchObject({ status: 'degraded', details: { store: 'unreachable' } });
      expectUnavailable(refused);
      expect(ready.body).toMatchObject({ status: 'ok' });
      expect(registered.status).toBe(200);
    });

    it('should send an idempotent transition that met READONLY again once the primary is back, and answer a claim 503', async () => {
      const primary = await RedisServer.start(bin as string);
      servers.push(primary);
      const other = await RedisServer.start(bin as string);
      servers.push(other);
      const clock = new ManualClock();
      const store = await RedisStateStore.open(
        {
          url: primary.url,
          keyPrefix: randomTaggedPrefix('readonly'),
          commandTimeoutMs: 2000,
          limits: CONTRACT_LIMITS,
        },
        clock,
        new CapturedLog(),
      );
      const admin = primary.admin();
      const register = () =>
        store.upsertNode({
          nodeId: 'node-a',
          dialect: 'v1',
          capabilities: CAPS,
          newCredentialDigest: 'd',
          now: clock.now(),
        });
      try {
        await register();
        await admin.call('REPLICAOF', '127.0.0.1', String(other.port));
        // A claim hands out work: not repeated, 503 at once.
        const claim = store.claimNext({
          nodeId: 'node-a',
          dialect: 'v1',
          max: 1,
          now: clock.now(),
        });
        await expect(claim).rejects.toThrow(/READONLY/);
        await admin.call('REPLICAOF', 'NO', 'ONE');
        // The connection dropped on READONLY and checks the server again (at most once a second
        // while refused): registration works again without a restart (created or renewed, as
        // the resync from the empty server may or may not have emptied it yet).
        const again = await eventually(async () => register().catch(() => undefined));

        expect(['created', 'renewed']).toContain(again.status);
      } finally {
        admin.disconnect();
        await store.close();
      }
    });

    it('should retry a registration that met READONLY on the primary found after it (demoted, then promoted back)', async () => {
      const primary = await RedisServer.start(bin as string);
      servers.push(primary);
      const other = await RedisServer.start(bin as string);
      servers.push(other);
      const clock = new ManualClock();
      const store = await RedisStateStore.open(
        {
          url: primary.url,
          keyPrefix: randomTaggedPrefix('readonly'),
          commandTimeoutMs: 2000,
          limits: CONTRACT_LIMITS,
        },
        clock,
        new CapturedLog(),
      );
      const admin = primary.admin();
      try {
        await store.upsertNode({
          nodeId: 'node-a',
          dialect: 'v1',
          capabilities: CAPS,
          newCredentialDigest: 'd',
          now: clock.now(),
        });
        await admin.call('REPLICAOF', '127.0.0.1', String(other.port));
        const renewal = store.upsertNode({
          nodeId: 'node-a',
          dialect: 'v1',
          now: clock.now(),
        });
        await new Promise((r) => setTimeout(r, 300));
        await admin.call('REPLICAOF', 'NO', 'ONE');

        // Resolved instead of 503: sent again once the server was a primary.
        expect(['created', 'renewed']).toContain((await renewal).status);
      } finally {
        admin.disconnect();
        await store.close();
      }
    });

    it('should share one WAIT among transitions that finish together (group commit)', async () => {
      const primary = await RedisServer.start(bin as string);
      servers.push(primary);
      servers.push(await replicaOf(primary));
      const clock = new ManualClock();
      const timeouts: string[] = [];
      const store = await RedisStateStore.open(
        {
          url: primary.url,
          keyPrefix: randomTaggedPrefix('group'),
          commandTimeoutMs: 2000,
          waitReplicas: 1,
          waitTimeoutMs: 500,
          sink: { ...NO_TRANSITION_SINK, replicationTimeout: (op) => timeouts.push(op) },
          limits: { ...CONTRACT_LIMITS, maxNodes: 100 },
        },
        clock,
        new CapturedLog(),
      );
      const admin = primary.admin();
      try {
        await admin.config('RESETSTAT');
        const results = await Promise.all(
          Array.from({ length: 40 }, (_, i) =>
            store.upsertNode({
              nodeId: `node-${i}`,
              dialect: 'v1',
              capabilities: CAPS,
              newCredentialDigest: `d${i}`,
              now: clock.now(),
            }),
          ),
        );
        const waits = Number(
          /cmdstat_wait:calls=(\d+)/.exec(await admin.info('commandstats'))?.[1],
        );

        expect(results.map((r) => r.status)).toEqual(Array(40).fill('created'));
        expect(waits).toBeGreaterThanOrEqual(1);
        expect(waits).toBeLessThan(40);
        expect(timeouts).toEqual([]);
      } finally {
        admin.disconnect();
        await store.close();
      }
    });

    it('should fail an acknowledged transition with StoreUnavailableError and report it when the replica is stalled', async () => {
      const primary = await RedisServer.start(bin as string);
      servers.push(primary);
      const replica = await replicaOf(primary);
      servers.push(replica);
      const clock = new ManualClock();
      const timeouts: string[] = [];
      const store = await RedisStateStore.open(
        {
          url: primary.url,
          keyPrefix: randomTaggedPrefix('stalled'),
          commandTimeoutMs: 2000,
          waitReplicas: 1,
          waitTimeoutMs: 100,
          sink: { ...NO_TRANSITION_SINK, replicationTimeout: (op) => timeouts.push(op) },
          limits: CONTRACT_LIMITS,
        },
        clock,
        new CapturedLog(),
      );
      try {
        replica.pause();
        const failed = store.upsertNode({
          nodeId: 'node-a',
          dialect: 'v1',
          capabilities: CAPS,
          newCredentialDigest: 'd',
          now: clock.now(),
        });
        await expect(failed).rejects.toBeInstanceOf(StoreUnavailableError);
        await expect(failed).rejects.toThrow(/WAIT 0 of 1 replicas/);
        const rateLimited = await store.hitRateLimit({
          key: 'k',
          limit: 5,
          windowMs: 1000,
          now: clock.now(),
        });
        expect(rateLimited.allowed).toBe(true);
        expect(timeouts).toEqual(['tpUpsertNode']);
      } finally {
        replica.resume();
        await store.close();
      }
    });
  },
);
