import { ManualClock } from '../../src/common/clock';
import { call, createTestApp, type TestApp } from '../helpers/test-app';
import {
  control,
  type FakeRequest,
  MANUAL_SWEEP,
  poll,
  registerNode,
  respond,
  retrieve,
  storeVariants,
  submit,
} from './api-v1-fixtures';

const KiB = 1024;
/** The smallest answer budget the relay takes: 1 MiB, of which the last 256 KiB is the reserve. */
const TINY_BUDGET = { TOKENPLACE_RELAY_MAX_ANSWER_BYTES: String(1024 * KiB) };
/** Answers of 300 KiB: three fit the budget, two fit below its reserve. */
const answerText = (tag: string): string => `${tag}:`.padEnd(300 * KiB, 'A');

describe.each(storeVariants('answer budget'))('answers budgeted in bytes ($label)', (variant) => {
  let t: TestApp;
  let clock: ManualClock;

  beforeEach(async () => {
    clock = new ManualClock();
    t = await createTestApp({ ...variant.env(), ...MANUAL_SWEEP, ...TINY_BUDGET }, clock);
  });

  afterEach(async () => {
    await t.close();
    await variant.cleanup();
  });

  const sink = (key: string) => call(t.baseUrl, 'POST', '/sink', { server_public_key: key });
  const faucet = (client: string, n: number) =>
    call(t.baseUrl, 'POST', '/faucet', {
      server_public_key: 'legacy-node',
      client_public_key: client,
      chat_history: `request-${n}`,
      cipherkey: `k${n}`,
      iv: `i${n}`,
    });
  const source = (client: string, tag: string) =>
    call(t.baseUrl, 'POST', '/source', {
      client_public_key: client,
      chat_history: answerText(tag),
      cipherkey: `ck-${tag}`,
      iv: `iv-${tag}`,
    });
  const legacyRetrieve = (client: string) =>
    call(t.baseUrl, 'POST', '/retrieve', { client_public_key: client });

  it('should refuse a legacy answer it has no room for with 503 + Retry-After, requeue its request, and deliver it when answered again', async () => {
    await sink('legacy-node');
    const clients = ['client-a', 'client-b', 'client-c', 'client-d'];
    for (const [n, client] of clients.entries()) {
      expect((await faucet(client, n)).status).toBe(200);
    }
    // The node takes the four requests, one /sink each (as OLD and HEAD server.py do).
    const taken: string[] = [];
    for (let i = 0; i < clients.length; i += 1) {
      taken.push((await sink('legacy-node')).body.client_public_key as string);
    }

    const stored = [];
    for (const client of clients.slice(0, 3)) {
      stored.push((await source(client, client)).status);
    }
    const refused = await source('client-d', 'client-d');
    const newChat = await faucet('client-e', 9);
    // The node does not send the refused answer again; after Retry-After the request is queued
    // again, at the head of the node's queue.
    clock.advance(5000);
    await t.sweep();
    const again = await sink('legacy-node');
    const first = await legacyRetrieve('client-a');
    const answeredAgain = await source('client-d', 'client-d');
    const delivered = await legacyRetrieve('client-d');

    expect(taken).toEqual(clients);
    expect(stored).toEqual([200, 200, 200]);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('5');
    expect(JSON.stringify(refused.body)).toMatch(/answer was not stored/);
    expect(newChat.status).toBe(503);
    expect(newChat.headers.get('retry-after')).not.toBeNull();
    expect(again.body).toMatchObject({ client_public_key: 'client-d', chat_history: 'request-3' });
    expect(first.body).toMatchObject({ chat_history: answerText('client-a') });
    expect(answeredAgain.status).toBe(200);
    expect(delivered.status).toBe(200);
    expect(delivered.body).toMatchObject({ chat_history: answerText('client-d') });
  });

  it('should refuse an API v1 answer it has no room for with 503 + Retry-After, keep it answerable, and requeue it for a node that does not resend', async () => {
    const node = await registerNode(t);
    const chats: FakeRequest[] = [];
    for (let i = 0; i < 4; i += 1) {
      chats.push(await submit(t, node.key));
    }
    for (let i = 0; i < 4; i += 1) {
      const work = await poll(t, node);
      await control(t, node, work.body.request_id as string);
    }
    const answer = (chat: FakeRequest) =>
      respond(t, chat, { chat_history: answerText(chat.requestId) });

    const stored = [];
    for (const chat of chats.slice(0, 3)) {
      stored.push((await answer(chat)).status);
    }
    const refused = await answer(chats[3]!);
    const pending = await retrieve(t, chats[3]!.clientKey, chats[3]!.requestId);
    const newChat = await submit(t, node.key);
    await retrieve(t, chats[0]!.clientKey, chats[0]!.requestId);
    // A node that retries after Retry-After gets its answer in (none of today's nodes does).
    const resent = await answer(chats[3]!);
    const collected = await retrieve(t, chats[3]!.clientKey, chats[3]!.requestId);

    expect(stored).toEqual([200, 200, 200]);
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBe('5');
    expect(pending.status).toBe(202);
    expect(newChat.res.status).toBe(503);
    expect(resent.status).toBe(200);
    expect(collected.status).toBe(200);
    expect(collected.body).toMatchObject({ chat_history: answerText(chats[3]!.requestId) });
  });

  it('should give an API v1 request whose answer was refused to the next poll once Retry-After passed', async () => {
    const node = await registerNode(t);
    const chats: FakeRequest[] = [];
    for (let i = 0; i < 4; i += 1) {
      chats.push(await submit(t, node.key));
    }
    for (let i = 0; i < 4; i += 1) {
      await poll(t, node);
    }
    for (const chat of chats.slice(0, 3)) {
      await respond(t, chat, { chat_history: answerText(chat.requestId) });
    }
    const refused = await respond(t, chats[3]!, { chat_history: answerText('lost') });

    clock.advance(5000);
    await t.sweep();
    const again = await poll(t, node);
    await retrieve(t, chats[0]!.clientKey, chats[0]!.requestId);
    const answered = await respond(t, chats[3]!, { chat_history: answerText('again') });
    const collected = await retrieve(t, chats[3]!.clientKey, chats[3]!.requestId);

    expect(refused.status).toBe(503);
    expect(again.body).toMatchObject({ request_id: chats[3]!.requestId });
    expect(answered.status).toBe(200);
    expect(collected.body).toMatchObject({ chat_history: answerText('again') });
  });

  it('should report the answer bytes it holds on /metrics', async () => {
    await sink('legacy-node');
    await faucet('client-a', 0);
    await sink('legacy-node');
    await source('client-a', 'client-a');

    const metrics = await call(t.baseUrl, 'GET', '/metrics');

    expect(metrics.text).toMatch(/^tokenplace_relay_answer_bytes \d{6}/m);
  });
});
