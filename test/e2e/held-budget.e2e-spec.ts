import { ManualClock } from '../../src/common/clock';
import { call, createTestApp, type TestApp, type WireResult } from '../helpers/test-app';
import {
  apiError,
  from,
  metric,
  parked,
  poll,
  post,
  registerNode,
  respond,
  responseBody,
  storeVariants,
  submit,
  type StoreVariant,
  TRUST_LOOPBACK,
  V1,
  type FakeNode,
  type FakeRequest,
} from './api-v1-fixtures';

const RETRIEVE = `${V1}/responses/retrieve`;
const REFUSED = 'tokenplace_relay_held_waits_refused_total';
/** An idle poll's answer when its wait ends (poll_wait_seconds as the shares' relay sets it). */
const NO_WORK = {
  message: 'No requests available',
  next_ping_in_x_seconds: 0,
  poll_wait_seconds: 5,
};
/** Resolves after every callback queued so far (a held request that answered has answered). */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function heldRetrieve(
  t: TestApp,
  req: FakeRequest,
  seconds = 5,
  headers: Record<string, string> = {},
): Promise<WireResult> {
  return post(
    t,
    RETRIEVE,
    { client_public_key: req.clientKey, request_id: req.requestId },
    { Prefer: `wait=${seconds}`, ...headers },
  );
}

/** A node's poll refused a held place: 503 `relay_overloaded` with `Retry-After: 5`. */
function expectPollRefused(refused: WireResult): void {
  expect(refused.status).toBe(503);
  expect(refused.headers.get('retry-after')).toBe('5');
  expect(refused.body).toEqual(
    apiError(
      'The relay holds as many long-polls as its memory allows; poll again shortly',
      'relay_overloaded',
    ),
  );
}

/**
 * A `Prefer: wait` retrieve past its place answered at once (202, `Preference-Applied: wait=0`),
 * `waiting` waits still held, and that one refusal counted.
 */
async function expectAnsweredAtOnce(t: TestApp, over: WireResult, waiting: number): Promise<void> {
  expect(over.status).toBe(202);
  expect(over.headers.get('preference-applied')).toBe('wait=0');
  expect(t.lifecycle.waiting).toBe(waiting);
  expect(await metric(t, REFUSED)).toBe(1);
}

/**
 * Hooks giving each test a fresh relay on `variant`'s store with `env`, its manual clock and one
 * registered node; the relay is closed after the test.
 */
function relayPerTest(
  variant: StoreVariant,
  env: Record<string, string>,
): { t: TestApp; clock: ManualClock; node: FakeNode } {
  const r = {} as { t: TestApp; clock: ManualClock; node: FakeNode };
  beforeEach(async () => {
    r.clock = new ManualClock();
    r.t = await createTestApp({ ...variant.env(), ...env }, r.clock);
    r.node = await registerNode(r.t);
  });
  afterEach(async () => {
    await r.t.close();
    await variant.cleanup();
  });
  return r;
}

/**
 * The held-wait budget (TOKENPLACE_RELAY_MAX_HELD_WAITS, derived from the memory plan when unset)
 * on the wire: past it nothing dies and nothing accepted is lost. A retrieve is answered at once as
 * with `Prefer: wait=0`, a poll and a gateway chat are refused 503 + Retry-After, a legacy /sink
 * gets no work; a wait inside it is held and woken as always, and the budget frees as waits end.
 */
describe.each(storeVariants('held-wait budget'))('held-wait budget ($label)', (variant) => {
  const relay = relayPerTest(variant, {
    TOKENPLACE_RELAY_MAX_HELD_WAITS: '2',
    TOKENPLACE_RELAY_SINK_HOLD_SECONDS: '5',
    TOKENPLACE_RELAY_SINK_PING_SECONDS: '0',
  });
  let t: TestApp;
  let clock: ManualClock;
  let node: FakeNode;
  beforeEach(() => ({ t, clock, node } = relay));

  /** Two requests claimed by `node` (in flight, nothing queued), each with a retrieve held. */
  async function fillWithRetrieves(): Promise<{
    reqs: FakeRequest[];
    held: Promise<WireResult>[];
  }> {
    const reqs = [await submit(t, node.key), await submit(t, node.key)];
    await poll(t, node);
    await poll(t, node);
    const held = reqs.map((req) => heldRetrieve(t, req));
    await parked(t.lifecycle, 2);
    return { reqs, held };
  }

  it('should answer the retrieve past the budget at once with its pending answer, as with Prefer: wait=0', async () => {
    const { held } = await fillWithRetrieves();
    const third = await submit(t, node.key);

    const over = await heldRetrieve(t, third);
    const plain = await post(t, RETRIEVE, {
      client_public_key: third.clientKey,
      request_id: third.requestId,
    });

    expect(over.status).toBe(202);
    expect(over.headers.get('preference-applied')).toBe('wait=0');
    expect(over.body).toEqual(plain.body);
    expect(over.body).toMatchObject({ status: 'pending', queue_position: 0 });
    expect(plain.headers.get('preference-applied')).toBeNull();
    expect(t.lifecycle.waiting).toBe(2);
    expect(await metric(t, REFUSED)).toBe(1);
    clock.advance(5_000);
    await Promise.all(held);
  });

  it('should still hold a wait inside the budget and wake it with its answer, byte for byte', async () => {
    const { reqs, held } = await fillWithRetrieves();
    const [first, second] = reqs as [FakeRequest, FakeRequest];
    const answer = responseBody(first);

    const accepted = await post(t, `${V1}/responses`, answer);
    const woken = await held[0];

    expect(accepted.status).toBe(200);
    expect(woken?.status).toBe(200);
    expect(woken?.headers.get('preference-applied')).toBeNull();
    expect(woken?.body).toMatchObject({
      chat_history: answer.chat_history,
      cipherkey: answer.cipherkey,
      iv: answer.iv,
    });
    await respond(t, second);
    expect((await held[1])?.status).toBe(200);
  });

  it('should refuse the poll past the budget with 503, Retry-After and the error envelope', async () => {
    const { held } = await fillWithRetrieves();

    const refused = await poll(t, node);

    expectPollRefused(refused);
    expect(t.lifecycle.waiting).toBe(2);
    expect(await metric(t, REFUSED)).toBe(1);
    clock.advance(5_000);
    await Promise.all(held);
  });

  it('should hold waits again once earlier ones end: a poll is held and woken with work', async () => {
    const { held } = await fillWithRetrieves();
    clock.advance(5_000);
    const ended = await Promise.all(held);

    const pending = poll(t, node);
    await parked(t.lifecycle);
    let settled = false;
    void pending.then(() => (settled = true));
    await settle();
    const heldBeforeWork = !settled;
    const queued = await submit(t, node.key);
    const work = await pending;

    expect(ended.map((r) => r.status)).toEqual([202, 202]);
    expect(ended.map((r) => r.headers.get('preference-applied'))).toEqual([null, null]);
    expect(heldBeforeWork).toBe(true);
    expect(work.status).toBe(200);
    expect(work.body).toMatchObject({
      request_id: queued.requestId,
      ciphertext: queued.body.ciphertext,
    });
    expect(await metric(t, REFUSED)).toBe(0);
  });

  it('should answer a legacy /sink past the budget at once with no work', async () => {
    const { held } = await fillWithRetrieves();
    await t.store.upsertNode({ nodeId: 'legacy-node', dialect: 'legacy', now: clock.now() });

    const sink = await call(t.baseUrl, 'POST', '/sink', { server_public_key: 'legacy-node' });

    expect(sink.status).toBe(200);
    expect(sink.body).toEqual({ next_ping_in_x_seconds: 0 });
    expect(await metric(t, REFUSED)).toBe(1);
    clock.advance(5_000);
    await Promise.all(held);
  });

  it('should refuse a gateway chat past the budget with 503 gateway_busy and Retry-After, queueing nothing', async () => {
    const { held } = await fillWithRetrieves();

    const chat = await call(t.baseUrl, 'POST', '/api/v1/chat/completions', {
      model: 'gpt-5-chat-latest',
      messages: [{ role: 'user', content: 'Hello' }],
    });
    const stats = await t.store.stats(clock.now());

    expect(chat.status).toBe(503);
    expect(chat.headers.get('retry-after')).toBe('2');
    expect(chat.body).toMatchObject({
      error: { type: 'service_unavailable_error', code: 'gateway_busy' },
    });
    expect(stats.queueDepth).toBe(0);
    expect(await metric(t, REFUSED)).toBe(1);
    clock.advance(5_000);
    await Promise.all(held);
  });
});

/**
 * How the budget is shared: one address holds at most TOKENPLACE_RELAY_MAX_HELD_WAITS_PER_ADDRESS,
 * and clients' waits never take the places kept for the nodes' polls (a quarter of the budget, at
 * most the registry's cap). Budget 8: two places kept for polls, three per address.
 */
describe.each(storeVariants('held-wait shares'))('held-wait shares ($label)', (variant) => {
  const relay = relayPerTest(variant, {
    ...TRUST_LOOPBACK,
    TOKENPLACE_RELAY_MAX_HELD_WAITS: '8',
    TOKENPLACE_RELAY_MAX_HELD_WAITS_PER_ADDRESS: '3',
    TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '5',
  });
  let t: TestApp;
  let clock: ManualClock;
  let node: FakeNode;
  beforeEach(() => ({ t, clock, node } = relay));

  async function submitted(n: number): Promise<FakeRequest[]> {
    const reqs: FakeRequest[] = [];
    for (let i = 0; i < n; i += 1) {
      reqs.push(await submit(t, node.key));
    }
    return reqs;
  }

  it('should hold no more than its share for one address, and still hold another address', async () => {
    const reqs = await submitted(5);
    const held = reqs.slice(0, 3).map((req) => heldRetrieve(t, req, 5, from('203.0.113.7')));
    await parked(t.lifecycle, 3);

    const over = await heldRetrieve(t, reqs[3] as FakeRequest, 5, from('203.0.113.7'));
    const other = heldRetrieve(t, reqs[4] as FakeRequest, 5, from('203.0.113.8'));
    await parked(t.lifecycle, 4);

    await expectAnsweredAtOnce(t, over, 4);
    clock.advance(5_000);
    const ended = await Promise.all([...held, other]);
    expect(ended.map((r) => [r.status, r.headers.get('preference-applied')])).toEqual(
      Array(4).fill([202, null]),
    );
  });

  it("should keep the nodes' places: past the clients' part a retrieve is answered at once, a poll is still held", async () => {
    const reqs = await submitted(7);
    const addresses = ['203.0.113.1', '203.0.113.2'];
    const held = reqs
      .slice(0, 6)
      .map((req, i) => heldRetrieve(t, req, 5, from(addresses[i % 2] as string)));
    await parked(t.lifecycle, 6);

    const over = await heldRetrieve(t, reqs[6] as FakeRequest, 5, from('203.0.113.3'));
    const idle = await registerNode(t);
    const pending = poll(t, idle);
    await parked(t.lifecycle, 7);

    await expectAnsweredAtOnce(t, over, 7);
    clock.advance(5_000);
    await Promise.all(held);
    const empty = await pending;
    expect([empty.status, empty.body]).toEqual([200, NO_WORK]);
  });
});

/**
 * Node polls and the address share: while registration is open a node's address bounds its polls
 * like any caller's; nodes an operator vouched for with a node token are bounded by the budget and
 * the registry's cap only (as their registrations are), so a farm behind one address keeps polling.
 */
describe.each(storeVariants('held-wait shares of nodes'))(
  'node polls and the address share ($label)',
  (variant) => {
    const TOKEN = 'held-share-node-token-0123456789abcdef';
    let t: TestApp;
    let clock: ManualClock;

    afterEach(async () => {
      await t.close();
      await variant.cleanup();
    });

    /** Four nodes of one address (budget 8, 3 per address): three polls held, then the fourth. */
    async function pollsFromOneAddress(token: string | null): Promise<{
      first: Promise<WireResult>[];
      fourth: Promise<WireResult>;
    }> {
      clock = new ManualClock();
      t = await createTestApp(
        {
          ...variant.env(),
          TOKENPLACE_RELAY_MAX_HELD_WAITS: '8',
          TOKENPLACE_RELAY_MAX_HELD_WAITS_PER_ADDRESS: '3',
          TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '5',
          ...(token === null ? {} : { TOKENPLACE_RELAY_SERVER_TOKEN: token }),
        },
        clock,
      );
      const nodes: FakeNode[] = [];
      for (let i = 0; i < 4; i += 1) {
        nodes.push(await registerNode(t, token === null ? {} : { token }));
      }
      const first = nodes.slice(0, 3).map((n) => poll(t, n));
      await parked(t.lifecycle, 3);
      return { first, fourth: poll(t, nodes[3] as FakeNode) };
    }

    it("should refuse a fourth node's poll from one address while registration is open", async () => {
      const { first, fourth } = await pollsFromOneAddress(null);

      const refused = await fourth;

      expectPollRefused(refused);
      clock.advance(5_000);
      await Promise.all(first);
    });

    it('should hold every poll of nodes vouched for by a node token, whatever their address', async () => {
      const { first, fourth } = await pollsFromOneAddress(TOKEN);
      await parked(t.lifecycle, 4);

      const heldAtOnce = t.lifecycle.waiting;
      clock.advance(5_000);
      const ended = await Promise.all([...first, fourth]);

      expect(heldAtOnce).toBe(4);
      expect(ended.map((r) => [r.status, r.body])).toEqual(Array(4).fill([200, NO_WORK]));
      expect(await metric(t, REFUSED)).toBe(0);
    });
  },
);
