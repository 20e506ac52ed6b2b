import { ManualClock } from '../../src/common/clock';
import {
  HeadClientSim,
  HeadNodeSim,
  OldClientSim,
  OldNodeSim,
  simulatedAnswer,
  type TurnResult,
} from '../helpers/simulators';
import { createTestApp, type TestApp } from '../helpers/test-app';
import { VirtualTime } from '../helpers/virtual-time';
import { metric, MANUAL_SWEEP } from './api-v1-fixtures';

const PROMPTS = Array.from({ length: 10 }, (_, i) => `message ${i + 1} of a conversation`);

/** The existing relay never sends a hint with work, so today's nodes sleep a whole lease. */
const LIKE_THE_EXISTING_RELAY = { TOKENPLACE_RELAY_V1_WORK_PING_HINT: 'false' };

interface Rig {
  t: TestApp;
  clock: ManualClock;
  vt: VirtualTime;
}

async function rig(env: Record<string, string>): Promise<Rig> {
  const clock = new ManualClock();
  const t = await createTestApp({ ...MANUAL_SWEEP, ...env }, clock);
  const vt = new VirtualTime(clock, () => t.sweep());
  return { t, clock, vt };
}

/** Resolves once a request is queued (checked between the driver's ticks). */
async function queued(t: TestApp): Promise<void> {
  while ((await t.store.stats(t.clock.now())).queueDepth === 0) {
    await new Promise((resolve) => setImmediate(resolve));
  }
}

function expectAllAnswered(results: TurnResult[], prompts = PROMPTS): void {
  expect(results.map((r) => r.failure)).toEqual(prompts.map(() => null));
  expect(results.map((r) => r.content)).toEqual(
    prompts.map((p) => simulatedAnswer([{ role: 'user', content: p }])),
  );
}

describe('conversations with peers that keep their real timing (virtual time)', () => {
  let r: Rig;
  let stop: AbortController;

  afterEach(async () => {
    stop.abort();
    await r.t.close();
  });

  async function converseV1(
    env: Record<string, string>,
    nodeOpts: ConstructorParameters<typeof HeadNodeSim>[1] = {},
  ): Promise<{ results: TurnResult[]; node: HeadNodeSim }> {
    r = await rig(env);
    stop = new AbortController();
    const node = new HeadNodeSim(r.t.baseUrl, {
      time: r.vt.time,
      transport: r.vt.transport,
      ...nodeOpts,
    });
    const client = new HeadClientSim(r.t.baseUrl, { time: r.vt.time, transport: r.vt.transport });
    void node.run(stop.signal).catch(() => undefined);
    await r.vt.runUntil(node.registered, 5_000);
    const results = await r.vt.runUntil(client.converse(PROMPTS), 20 * 60_000);
    return { results, node };
  }

  it("should answer all 10 messages when today's node goes silent for exactly its lease after every answer", async () => {
    const { results, node } = await converseV1(LIKE_THE_EXISTING_RELAY);
    const evictions = await metric(r.t, 'tokenplace_compute_node_evictions_total', {
      reason: 'stale_lease',
    });

    expectAllAnswered(results);
    // Every message after the first waited out the node's silence (its 30 s lease).
    expect(results.slice(1).every((x) => x.latencyMs >= 29_000 && x.latencyMs <= 33_000)).toBe(
      true,
    );
    expect(node.events.filter((e) => e.route === '/servers/register')).toHaveLength(10);
    expect(evictions).toBe(0);
  });

  it("should answer all 10 messages when each silence runs 15 s past the lease (the node's poll timeout)", async () => {
    const { results } = await converseV1(LIKE_THE_EXISTING_RELAY, { extraSilenceMs: 15_000 });

    expectAllAnswered(results);
    expect(results.slice(1).every((x) => x.latencyMs >= 44_000)).toBe(true);
  });

  it('should lose the second message without the lapse grace (what the issue reported), proving the test can fail', async () => {
    const { results } = await converseV1({
      ...LIKE_THE_EXISTING_RELAY,
      TOKENPLACE_RELAY_NODE_LAPSE_GRACE_SECONDS: '0',
    });

    expect(results[0]?.answered).toBe(true);
    expect(results[1]).toMatchObject({
      answered: false,
      failure: 'retrieve 410 cancelled/server_unregistered',
    });
  });

  it("should not make any message wait for the node's lease when the relay tells it to poll again at once (the default)", async () => {
    const { results, node } = await converseV1({});

    expectAllAnswered(results);
    // The client polls every 2 s like client.py; nothing waits the node's 30 s lease any more.
    expect(Math.max(...results.map((x) => x.latencyMs))).toBeLessThanOrEqual(3_000);
    expect(node.events.filter((e) => e.route === '/servers/register')).toHaveLength(1);
  });

  it("should end a really gone node's queued message 410 within lease + grace, count it once, and fail over to a live node", async () => {
    r = await rig(LIKE_THE_EXISTING_RELAY);
    stop = new AbortController();
    const dying = new AbortController();
    const dead = new HeadNodeSim(r.t.baseUrl, { time: r.vt.time, transport: r.vt.transport });
    const client = new HeadClientSim(r.t.baseUrl, {
      time: r.vt.time,
      transport: r.vt.transport,
      failovers: 1,
      pollMs: 500,
    });
    void dead.run(dying.signal).catch(() => undefined);
    await r.vt.runUntil(dead.registered, 5_000);
    const first = await r.vt.runUntil(client.converse([PROMPTS[0] as string]), 60_000);
    dying.abort(); // the node dies in its silence; nothing of it reaches the relay again
    const alive = new HeadNodeSim(r.t.baseUrl, { time: r.vt.time, transport: r.vt.transport });
    const diedAt = r.clock.now();

    // While the dead node is the only one, the next message is queued for it and waits.
    const second = client.converse([PROMPTS[1] as string]);
    await r.vt.runUntil(queued(r.t), 5_000);
    void alive.run(stop.signal).catch(() => undefined);
    const [answer] = await r.vt.runUntil(second, 120_000);
    const evictions = await metric(r.t, 'tokenplace_compute_node_evictions_total', {
      reason: 'stale_lease',
    });
    const cancelled = await metric(r.t, 'tokenplace_relay_request_outcomes_total', {
      outcome: 'cancelled',
    });

    expect(first[0]?.answered).toBe(true);
    expect(answer).toMatchObject({ answered: true, attempts: 2 });
    // Lease 30 s + grace 20 s + one sweep, from the dead node's last answer.
    expect(r.clock.now() - diedAt).toBeLessThanOrEqual(30_000 + 20_000 + 2_000);
    expect(evictions).toBe(1);
    expect(cancelled).toBe(1);
  });

  it("should answer all 10 messages of a legacy conversation when the node's ping interval equals its staleness window", async () => {
    r = await rig({
      TOKENPLACE_RELAY_SINK_STALE_SECONDS: '10',
      TOKENPLACE_RELAY_SINK_PING_SECONDS: '10',
    });
    stop = new AbortController();
    const node = new OldNodeSim(r.t.baseUrl, { time: r.vt.time, transport: r.vt.transport });
    const client = new OldClientSim(r.t.baseUrl, { time: r.vt.time, transport: r.vt.transport });
    void node.run(stop.signal).catch(() => undefined);
    await r.vt.runUntil(node.registered, 5_000);

    const results = await r.vt.runUntil(client.converse(PROMPTS), 20 * 60_000);
    const evictions = await metric(r.t, 'tokenplace_compute_node_evictions_total', {
      reason: 'stale_lease',
    });

    expectAllAnswered(results);
    expect(node.answeredCount.value).toBe(10);
    expect(evictions).toBe(0);
  });

  it('should lose a legacy message without the lapse grace, proving that test can fail too', async () => {
    r = await rig({
      TOKENPLACE_RELAY_SINK_STALE_SECONDS: '10',
      TOKENPLACE_RELAY_SINK_PING_SECONDS: '10',
      TOKENPLACE_RELAY_NODE_LAPSE_GRACE_SECONDS: '0',
    });
    stop = new AbortController();
    const node = new OldNodeSim(r.t.baseUrl, { time: r.vt.time, transport: r.vt.transport });
    const client = new OldClientSim(r.t.baseUrl, { time: r.vt.time, transport: r.vt.transport });
    void node.run(stop.signal).catch(() => undefined);
    await r.vt.runUntil(node.registered, 5_000);

    const results = await r.vt.runUntil(client.converse(PROMPTS.slice(0, 2)), 5 * 60_000);

    // Each message is queued while the node sleeps its ping interval; the node is evicted and the
    // message dropped as its next /sink arrives just past the window.
    expect(results.map((x) => x.failure)).toEqual([
      'no answer within the timeout',
      'no answer within the timeout',
    ]);
  });
});
