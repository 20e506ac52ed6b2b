import { ManualClock } from '../../src/common/clock';
import { createTestApp, type TestApp } from '../helpers/test-app';
import {
  apiError,
  fakeKey,
  hex,
  parked,
  poll,
  post,
  registerNode,
  respond,
  responseBody,
  retrieve,
  submit,
  V1,
  type FakeNode,
  PROTOCOL,
} from './api-v1-fixtures';

const RESPONSES = `${V1}/responses`;
const RETRIEVE = `${V1}/responses/retrieve`;
const INVALID = apiError('Invalid request data', 400);
const gone = (code: string): unknown =>
  apiError('Request is no longer waiting for a response', code, { status: code });

describe('API v1 /responses and /responses/retrieve', () => {
  let t: TestApp;
  let clock: ManualClock;
  let node: FakeNode;

  beforeEach(async () => {
    clock = new ManualClock();
    t = await createTestApp({}, clock);
    node = await registerNode(t);
  });

  afterEach(async () => {
    await t.close();
  });

  it('should walk pending (queued) → pending (in flight) → 200 envelope → 404', async () => {
    const req = await submit(t, node.key);

    const queued = await retrieve(t, req.clientKey, req.requestId);
    await poll(t, node);
    clock.advance(2_500);
    const inFlight = await retrieve(t, req.clientKey, req.requestId);
    const answer = responseBody(req);
    const posted = await post(t, RESPONSES, answer);
    const done = await retrieve(t, req.clientKey, req.requestId);
    const after = await retrieve(t, req.clientKey, req.requestId);

    expect(queued.status).toBe(202);
    expect(queued.body).toEqual({
      status: 'pending',
      request_deadline_remaining_seconds: 480,
      request_ttl_seconds: 480,
      queue_position: 0,
    });
    expect(queued.headers.get('cache-control')).toBe('no-store');
    expect(inFlight.status).toBe(202);
    expect(inFlight.body).toEqual({
      status: 'pending',
      request_deadline_remaining_seconds: 477.5,
      request_ttl_seconds: 477.5,
      queue_position: 0,
    });
    expect(posted.status).toBe(200);
    expect(posted.body).toEqual({ message: 'Response received and queued for client' });
    expect(done.status).toBe(200);
    expect(done.body).toEqual({
      client_public_key: req.clientKey,
      request_id: req.requestId,
      protocol: PROTOCOL,
      version: 1,
      ciphertext: answer.chat_history,
      chat_history: answer.chat_history,
      cipherkey: answer.cipherkey,
      iv: answer.iv,
    });
    expect(after.status).toBe(404);
    expect(after.body).toEqual(apiError(`Unknown request_id: ${req.requestId}`, 404));
  });

  it('should tell a waiting request its place in line and, once the node has answered, an estimate: counts and times only', async () => {
    const [a, b, c] = [
      await submit(t, node.key),
      await submit(t, node.key),
      await submit(t, node.key),
    ];
    const line = async (): Promise<unknown[]> => {
      const out: unknown[] = [];
      for (const req of [a, b, c]) {
        const res = await retrieve(t, req.clientKey, req.requestId);
        const { status, queue_position, estimated_wait_seconds } = res.body;
        out.push(
          res.status === 202 ? [status, queue_position, estimated_wait_seconds] : res.status,
        );
      }
      return out;
    };

    const arrived = await line();
    const first = await retrieve(t, c.clientKey, c.requestId);
    await poll(t, node);
    const claimedA = await line();
    clock.advance(6_000);
    await post(t, RESPONSES, responseBody(a));
    const answeredA = await line();
    await poll(t, node);
    clock.advance(2_000);
    const claimedB = await line();

    expect(arrived).toEqual([
      ['pending', 0, undefined],
      ['pending', 1, undefined],
      ['pending', 2, undefined],
    ]);
    // Nothing about the requests ahead but their number: no key, no request id, no ciphertext.
    expect(Object.keys(first.body).sort()).toEqual([
      'queue_position',
      'request_deadline_remaining_seconds',
      'request_ttl_seconds',
      'status',
    ]);
    expect(claimedA).toEqual([
      ['pending', 0, undefined],
      ['pending', 0, undefined],
      ['pending', 1, undefined],
    ]);
    // The node took 6 s for A: B is next (6 s), C one round later (12 s).
    expect(answeredA).toEqual([200, ['pending', 0, 6], ['pending', 1, 12]]);
    // B in flight for 2 s of its 6: 4 s left; C waits for B's round and its own.
    expect(claimedB).toEqual([404, ['pending', 0, 4], ['pending', 0, 12]]);
  });

  it('should answer an already-answered request idempotently and keep the first answer', async () => {
    const req = await submit(t, node.key);
    await poll(t, node);
    const first = responseBody(req);
    await post(t, RESPONSES, first);

    const dup = await respond(t, req);
    const done = await retrieve(t, req.clientKey, req.requestId);

    expect(dup.status).toBe(200);
    expect(dup.body).toEqual({ message: 'Response already queued for client' });
    expect(done.body.chat_history).toBe(first.chat_history);
  });

  it('should answer 410 gone for an unknown request id and 410 completed after completion and retrieval', async () => {
    const req = await submit(t, node.key);
    await poll(t, node);
    await respond(t, req);
    await retrieve(t, req.clientKey, req.requestId);

    const unknown = await respond(t, { clientKey: req.clientKey, requestId: 'never-admitted' });
    const completed = await respond(t, req);

    expect(unknown.status).toBe(410);
    expect(unknown.body).toEqual(gone('gone'));
    expect(completed.status).toBe(410);
    expect(completed.body).toEqual(gone('completed'));
  });

  it('should refuse an answer to a still-queued request (no node holds it) and keep it queued', async () => {
    const req = await submit(t, node.key);

    const posted = await respond(t, req);
    const work = await poll(t, node);
    const pending = await retrieve(t, req.clientKey, req.requestId);

    expect(posted.status).toBe(403);
    expect(posted.body).toEqual(apiError('This request is not held by the answering node', 403));
    expect(work.body.request_id).toBe(req.requestId);
    expect(pending.status).toBe(202);
  });

  it('should keep a response bound to its client: another client cannot take it', async () => {
    const req = await submit(t, node.key);
    await poll(t, node);
    await respond(t, req);
    const mallory = fakeKey('mallory');

    const byId = await retrieve(t, mallory, req.requestId);
    const byKeyOnly = await retrieve(t, mallory);
    const owner = await retrieve(t, req.clientKey, req.requestId);

    expect(byId.status).toBe(404);
    expect(byId.body).toEqual(apiError(`Unknown request_id: ${req.requestId}`, 404));
    expect(byKeyOnly.status).toBe(404);
    expect(owner.status).toBe(200);
  });

  it('should not let a response for one client land on another client with the same request id', async () => {
    const requestId = hex();
    const a = await submit(t, node.key, { extra: { request_id: requestId } });
    const b = await submit(t, node.key, { extra: { request_id: requestId } });
    await poll(t, node);
    await poll(t, node);

    await respond(t, a);
    const forB = await retrieve(t, b.clientKey, requestId);
    const forA = await retrieve(t, a.clientKey, requestId);

    expect(forB.status).toBe(202);
    expect(forA.status).toBe(200);
    expect(forA.body.client_public_key).toBe(a.clientKey);
  });

  it('should reflect an unknown request id verbatim in the 404 message', async () => {
    const odd = 'weird <id> "quoted" ünïcode';

    const res = await retrieve(t, fakeKey(), odd);

    expect(res.status).toBe(404);
    expect(res.body).toEqual(apiError(`Unknown request_id: ${odd}`, 404));
  });

  it('should report a pending tracked request as 404 to a retrieve without request_id', async () => {
    const req = await submit(t, node.key);

    const res = await retrieve(t, req.clientKey);

    expect(res.status).toBe(404);
    expect(res.body).toEqual(apiError('No response available for the given public key', 404));
  });

  it('should store answers without request_id unconditionally and pop them FIFO per client', async () => {
    const client = fakeKey('client');
    const first = responseBody({ clientKey: client, requestId: '' }, { request_id: undefined });
    const second = responseBody({ clientKey: client, requestId: '' }, { request_id: undefined });

    const a = await post(t, RESPONSES, first);
    const b = await post(t, RESPONSES, second);
    const one = await retrieve(t, client);
    const two = await retrieve(t, client);
    const none = await retrieve(t, client);

    expect(a.body).toEqual({ message: 'Response received and queued for client' });
    expect(b.status).toBe(200);
    expect(one.body.chat_history).toBe(first.chat_history);
    expect(two.body.chat_history).toBe(second.chat_history);
    expect(none.status).toBe(404);
    expect(none.body).toEqual(apiError('No response available for the given public key', 404));
  });

  it('should cap untracked answers per client with 429', async () => {
    const client = fakeKey('flooded');
    const results: number[] = [];
    for (let i = 0; i < 9; i += 1) {
      results.push(
        (
          await post(
            t,
            RESPONSES,
            responseBody({ clientKey: client, requestId: '' }, { request_id: undefined }),
          )
        ).status,
      );
    }
    const other = await post(
      t,
      RESPONSES,
      responseBody({ clientKey: fakeKey(), requestId: '' }, { request_id: undefined }),
    );

    expect(results.slice(0, 8)).toEqual(Array(8).fill(200));
    expect(results[8]).toBe(429);
    expect(other.status).toBe(200);
  });

  it('should drop answers of a cancelled request and answer the client 410', async () => {
    const req = await submit(t, node.key);
    await poll(t, node);
    await post(t, `${V1}/requests/cancel`, {
      client_public_key: req.clientKey,
      request_id: req.requestId,
      cancel_token: req.cancelToken,
    });

    const late = await respond(t, req);
    const client = await retrieve(t, req.clientKey, req.requestId);

    expect(late.status).toBe(410);
    expect(late.body).toEqual(gone('cancelled'));
    expect(client.status).toBe(410);
  });

  describe('/responses guardrails', () => {
    it.each(['messages', 'prompt', 'input', 'content', 'response', 'text'])(
      'should refuse the plaintext key %p',
      async (key) => {
        const res = await post(t, RESPONSES, {
          ...responseBody({ clientKey: 'c', requestId: 'r' }),
          [key]: 'x',
        });

        expect(res.status).toBe(400);
        expect(res.body).toEqual(
          apiError(
            'Plaintext relay payload fields are forbidden; send ciphertext envelope only',
            400,
          ),
        );
      },
    );

    it.each(['server_public_key', 'e2ee_v1', 'api_v1_response', 'status'])(
      'should refuse the unexpected key %p',
      async (key) => {
        const res = await post(t, RESPONSES, {
          ...responseBody({ clientKey: 'c', requestId: 'r' }),
          [key]: 'x',
        });

        expect(res.status).toBe(400);
        expect(res.body).toEqual(
          apiError(
            'Unexpected relay payload fields are forbidden; send ciphertext envelope only',
            400,
          ),
        );
      },
    );

    it.each([
      ['no ciphertext or chat_history', { chat_history: undefined }],
      ['no cipherkey', { cipherkey: undefined }],
      ['no iv', { iv: undefined }],
      ['no client key', { client_public_key: undefined }],
      ['an empty client key', { client_public_key: '' }],
      ['a numeric client key', { client_public_key: 1 }],
      ['chat_history an object', { chat_history: { a: 1 } }],
      ['cipherkey a number', { cipherkey: 5 }],
      ['iv a list', { iv: ['x'] }],
      ['request_id a number', { request_id: 5 }],
      ['request_id too long', { request_id: 'r'.repeat(257) }],
      ['protocol an object', { protocol: {} }],
      ['version a list', { version: [1] }],
    ])('should answer Invalid request data for %s', async (_name, extra) => {
      const res = await post(t, RESPONSES, responseBody({ clientKey: 'c', requestId: 'r' }, extra));

      expect(res.status).toBe(400);
      expect(res.body).toEqual(INVALID);
    });

    it.each([
      ['a list', '[]'],
      ['null', 'null'],
      ['a number', '1'],
    ])('should answer Invalid request data when the body is %s', async (_name, raw) => {
      const res = await post(t, RESPONSES, raw);

      expect(res.status).toBe(400);
      expect(res.body).toEqual(INVALID);
    });
  });

  describe('/responses/retrieve bad input', () => {
    it.each([
      ['no client key', { request_id: 'r' }],
      ['an empty client key', { client_public_key: '' }],
      ['a numeric client key', { client_public_key: 3 }],
      ['a numeric request id', { client_public_key: 'c', request_id: 3 }],
      ['an empty request id', { client_public_key: 'c', request_id: '' }],
      ['an oversize request id', { client_public_key: 'c', request_id: 'r'.repeat(257) }],
    ])('should answer Invalid request data for %s', async (_name, body) => {
      const res = await post(t, RETRIEVE, body);

      expect(res.status).toBe(400);
      expect(res.body).toEqual(INVALID);
    });

    it.each([
      ['a list', '[]'],
      ['null', 'null'],
      ['empty', ''],
    ])('should answer Invalid request data when the body is %s', async (_name, raw) => {
      const res = await post(t, RETRIEVE, raw);

      expect(res.status).toBe(400);
      expect(res.body).toEqual(INVALID);
    });

    it('should ignore unknown keys on retrieve', async () => {
      const res = await post(t, RETRIEVE, {
        client_public_key: fakeKey(),
        request_id: 'x',
        junk: true,
      });

      expect(res.status).toBe(404);
    });
  });

  describe('held retrieve (Prefer: wait)', () => {
    it('should hold a pending retrieve and answer the moment the response arrives', async () => {
      const req = await submit(t, node.key);
      await poll(t, node);
      const held = post(
        t,
        RETRIEVE,
        { client_public_key: req.clientKey, request_id: req.requestId },
        { Prefer: 'wait=5' },
      );
      await parked(t.lifecycle);

      await respond(t, req);
      const res = await held;

      expect(res.status).toBe(200);
    });

    it('should answer 202 when the hold ends without news', async () => {
      const req = await submit(t, node.key);
      const held = post(
        t,
        RETRIEVE,
        { client_public_key: req.clientKey, request_id: req.requestId },
        { Prefer: 'wait=3' },
      );
      await parked(t.lifecycle);

      clock.advance(3_000);
      const res = await held;

      expect(res.status).toBe(202);
      expect(res.body).toEqual({
        status: 'pending',
        request_deadline_remaining_seconds: 477,
        request_ttl_seconds: 477,
        queue_position: 0,
      });
    });
  });
});
