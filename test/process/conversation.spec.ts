import { startRelayProcess, type RelayProcess } from '../helpers/relay-process';
import { randomPrefix, RedisServer, redisServerBin } from '../helpers/redis-server';
import { describeIf, requirement } from '../helpers/requirements';
import {
  HeadClientSim,
  HeadNodeSim,
  OldClientSim,
  OldNodeSim,
  simulatedAnswer,
  type TurnResult,
} from '../helpers/simulators';

/**
 * Real relay processes, real time: peers keep the timing of the real ones, scaled down (lease 1 s,
 * so each silence is 1 s). Today's node is silent for exactly its lease after every answer, as it
 * is against the existing relay (which sends no poll hint with work), and comes back by
 * re-registering; the legacy node sleeps its ping interval, equal to its staleness window.
 */
const PROMPTS = Array.from({ length: 10 }, (_, i) => `process message ${i + 1}`);
const V1_TIMING = {
  TOKEN_PLACE_API_V1_RELAY_SERVER_LEASE_SECONDS: '1',
  TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '1',
  TOKENPLACE_RELAY_NODE_LAPSE_GRACE_SECONDS: '3',
  TOKENPLACE_RELAY_V1_WORK_PING_HINT: 'false',
};
const LEGACY_TIMING = {
  TOKENPLACE_RELAY_SINK_STALE_SECONDS: '1',
  TOKENPLACE_RELAY_SINK_PING_SECONDS: '1',
  TOKENPLACE_RELAY_NODE_LAPSE_GRACE_SECONDS: '3',
};

function expectAllAnswered(results: TurnResult[]): void {
  expect(results.map((r) => r.failure)).toEqual(PROMPTS.map(() => null));
  expect(results.map((r) => r.content)).toEqual(
    PROMPTS.map((p) => simulatedAnswer([{ role: 'user', content: p }])),
  );
}

async function evictions(relay: RelayProcess): Promise<string> {
  const text = await (await fetch(`${relay.baseUrl}/metrics`)).text();
  return (
    /tokenplace_compute_node_evictions_total\{reason="stale_lease"\} (\S+)/.exec(text)?.[1] ?? ''
  );
}

describe('10-message conversations with peers keeping their real timing (real processes)', () => {
  const relays: RelayProcess[] = [];
  const stop = new AbortController();

  afterAll(() => {
    stop.abort();
    for (const relay of relays) {
      relay.child.kill('SIGKILL');
    }
  });

  it("should answer every message of today's node and client, the node silent for its lease after each", async () => {
    const relay = await startRelayProcess(V1_TIMING);
    relays.push(relay);
    const node = new HeadNodeSim(relay.baseUrl);
    const client = new HeadClientSim(relay.baseUrl, { pollMs: 200 });
    void node.run(stop.signal).catch(() => undefined);
    await node.registered;

    const results = await client.converse(PROMPTS);

    expectAllAnswered(results);
    expect(
      node.events.filter((e) => e.route === '/servers/register').length,
    ).toBeGreaterThanOrEqual(10);
    expect(await evictions(relay)).toBe('0');
  }, 90_000);

  it('should answer every message of the legacy node and client, the node sleeping its whole window', async () => {
    const relay = await startRelayProcess(LEGACY_TIMING);
    relays.push(relay);
    const node = new OldNodeSim(relay.baseUrl);
    const client = new OldClientSim(relay.baseUrl, { pollMs: 200 });
    void node.run(stop.signal).catch(() => undefined);
    await node.registered;

    const results = await client.converse(PROMPTS);

    expectAllAnswered(results);
    expect(await evictions(relay)).toBe('0');
  }, 90_000);
});

const bin = redisServerBin();
const available = requirement(
  'Redis replica process',
  bin !== null,
  'TOKENPLACE_REQUIRE_REDIS',
  'install redis-server (Debian: apt-get install redis-server) or set REDIS_SERVER_BIN',
);

describeIf(available)(
  '10-message conversations across two Redis-backed replicas (real processes)',
  () => {
    let redis: RedisServer;
    const relays: RelayProcess[] = [];
    const stop = new AbortController();

    async function pair(env: Record<string, string>): Promise<[RelayProcess, RelayProcess]> {
      const prefix = randomPrefix('conversation');
      const shared = {
        TOKENPLACE_RELAY_STATE_STORE: 'redis',
        TOKENPLACE_RELAY_REDIS_URL: redis.url,
        TOKENPLACE_RELAY_REDIS_KEY_PREFIX: prefix,
        ...env,
      };
      const [a, b] = await Promise.all([startRelayProcess(shared), startRelayProcess(shared)]);
      relays.push(a, b);
      return [a, b];
    }

    beforeAll(async () => {
      redis = await RedisServer.start(bin as string);
    });

    afterAll(async () => {
      stop.abort();
      for (const relay of relays) {
        relay.child.kill('SIGKILL');
      }
      await redis.stop();
    });

    it("should answer every message when today's node goes silent on one replica and comes back on the other", async () => {
      const [a, b] = await pair(V1_TIMING);
      const node = new HeadNodeSim(a.baseUrl, { relays: [a.baseUrl, b.baseUrl] });
      const client = new HeadClientSim(b.baseUrl, { pollMs: 200 });
      void node.run(stop.signal).catch(() => undefined);
      await node.registered;

      const results = await client.converse(PROMPTS);
      const registeredOn = new Set(
        node.events.filter((e) => e.route === '/servers/register').map((e) => e.relay),
      );
      const answeredOn = new Set(
        node.events.filter((e) => e.route === '/responses').map((e) => e.relay),
      );

      expectAllAnswered(results);
      expect([...registeredOn].sort()).toEqual([a.baseUrl, b.baseUrl].sort());
      expect([...answeredOn].sort()).toEqual([a.baseUrl, b.baseUrl].sort());
      expect((await evictions(a)) === '0' && (await evictions(b)) === '0').toBe(true);
    }, 120_000);

    it('should answer every message when the legacy node sleeps on one replica and comes back on the other', async () => {
      const [a, b] = await pair(LEGACY_TIMING);
      const node = new OldNodeSim(a.baseUrl, { relays: [a.baseUrl, b.baseUrl] });
      const client = new OldClientSim(b.baseUrl, { pollMs: 200 });
      void node.run(stop.signal).catch(() => undefined);
      await node.registered;

      const results = await client.converse(PROMPTS);

      expectAllAnswered(results);
    }, 120_000);
  },
);
