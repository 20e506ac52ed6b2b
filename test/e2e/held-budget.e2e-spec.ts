import { ManualClock } from '../../src/common/clock';
import { call, createTestApp, type TestApp, type WireResult } from '../helpers/test-app';
import {
  apiError,
  metric,
  parked,
  poll,
  post,
  registerNode,
  respond,
  responseBody,
  storeVariants,
  submit,
  V1,
  type FakeNode,
  type FakeRequest,
} from './api-v1-fixtures';

const RETRIEVE = `${V1}/responses/retrieve`;
const REFUSED = 'tokenplace_relay_held_waits_refused_total';
/** Resolves after every callback queued so far (a held request that answered has answered). */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function heldRetrieve(t: TestApp, req: FakeRequest, seconds = 5): Promise<WireResult> {
  return post(
    t,
    RETRIEVE,
    { client_public_key: req.clientKey, request_id: req.requestId },
    { Prefer: `wait=${seconds}` },
  );
}

/**
 * The held-wait budget (TOKENPLACE_RELAY_MAX_HELD_WAITS, derived from the memory plan when unset)
 * on the wire: past it nothing dies and nothing accepted is lost. A retrieve is answered at once as
 * with `Prefer: wait=0`, a poll and a gateway chat are refused 503 + Retry-After, a legacy /sink
 * gets no work; a wait inside it is held and woken as always, and the budget frees as waits end.
 */
describe.each(storeVariants('held-wait budget'))('held-wait budget ($label)', (variant) => {
  let t: TestApp;
  let clock: ManualClock;
  let node: FakeNode;

  beforeEach(async () => {
    clock = new ManualClock();
    t = await createTestApp(
      {
        ...variant.env(),
        TOKENPLACE_RELAY_MAX_HELD_WAITS: '2',
        TOKENPLACE_RELAY_SINK_HOLD_SECONDS: '5',
        TOKENPLACE_RELAY_SINK_PING_SECONDS: '0',
      },
      clock,
    );
    node = await registerNode(t);
  });

  afterEach(async () => {
    await t.close();
    await variant.cleanup();
  });

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

    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('5');
    expect(refused.body).toEqual(
      apiError(
        'The relay holds as many long-polls as its memory allows; poll again shortly',
        'relay_overloaded',
      ),
    );
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
