import { ManualClock } from '../../src/common/clock';
import { createTestApp, type TestApp } from '../helpers/test-app';
import {
  apiError,
  cancel,
  fakeKey,
  MANUAL_SWEEP,
  poll,
  post,
  progressBody,
  raw,
  registerNode,
  respond,
  retrieve,
  submit,
  V1,
  type FakeNode,
  type FakeRequest,
  PROTOCOL,
} from './api-v1-fixtures';

const PROGRESS = `${V1}/progress`;
const SCHEMA = apiError('Invalid encrypted progress schema', 400);
const PROTOCOL_ERROR = apiError('Invalid encrypted progress protocol', 400);
const ENVELOPE = apiError('Invalid encrypted progress envelope', 400);
const TOO_LARGE = apiError('Progress envelope too large', 413);

describe('API v1 /progress', () => {
  let t: TestApp;
  let clock: ManualClock;
  let node: FakeNode;
  let req: FakeRequest;

  beforeEach(async () => {
    clock = new ManualClock();
    t = await createTestApp(MANUAL_SWEEP, clock);
    node = await registerNode(t);
    req = await submit(t, node.key);
    await poll(t, node);
  });

  afterEach(async () => {
    await t.close();
  });

  it('should accept progress for an in-flight request and deliver it with the next pending retrieve exactly once', async () => {
    const body = progressBody(node, req);

    const res = await post(t, PROGRESS, body);
    const first = await retrieve(t, req.clientKey, req.requestId);
    const second = await retrieve(t, req.clientKey, req.requestId);

    expect(res.status).toBe(202);
    expect(res.body).toEqual({ message: 'Encrypted progress accepted' });
    expect(first.status).toBe(202);
    expect(first.body).toEqual({
      status: 'pending',
      request_deadline_remaining_seconds: 480,
      request_ttl_seconds: 480,
      queue_position: 0,
      encrypted_progress: {
        client_public_key: req.clientKey,
        request_id: req.requestId,
        protocol: PROTOCOL,
        version: 1,
        ciphertext: body.ciphertext,
        cipherkey: body.cipherkey,
        iv: body.iv,
      },
    });
    expect(second.status).toBe(202);
    expect(second.body.encrypted_progress).toBeUndefined();
  });

  it('should keep only the latest progress of a request', async () => {
    await post(t, PROGRESS, progressBody(node, req));
    const latest = progressBody(node, req);
    await post(t, PROGRESS, latest);

    const res = await retrieve(t, req.clientKey, req.requestId);

    expect((res.body.encrypted_progress as Record<string, unknown>).ciphertext).toBe(
      latest.ciphertext,
    );
  });

  it('should discard progress when the response arrives', async () => {
    await post(t, PROGRESS, progressBody(node, req));
    await respond(t, req);

    const done = await retrieve(t, req.clientKey, req.requestId);

    expect(done.status).toBe(200);
    expect(done.body.encrypted_progress).toBeUndefined();
  });

  it('should refuse progress after a cancel with 410 not active', async () => {
    await cancel(t, req);

    const res = await post(t, PROGRESS, progressBody(node, req));

    expect(res.status).toBe(410);
    expect(res.body).toEqual(apiError('Progress request is not active for this owner', 410));
  });

  it('should answer 410 Progress request has expired once the deadline passed', async () => {
    clock.advance(480_000);

    const res = await post(t, PROGRESS, progressBody(node, req));
    const client = await retrieve(t, req.clientKey, req.requestId);

    expect(res.status).toBe(410);
    expect(res.body).toEqual(apiError('Progress request has expired', 410));
    expect(client.status).toBe(410);
  });

  it('should answer 410 not active for a queued request, a wrong client and an unknown request', async () => {
    const queued = await submit(t, node.key);

    const forQueued = await post(t, PROGRESS, progressBody(node, queued));
    const wrongClient = await post(
      t,
      PROGRESS,
      progressBody(node, { clientKey: fakeKey('other'), requestId: req.requestId }),
    );
    const unknown = await post(
      t,
      PROGRESS,
      progressBody(node, { clientKey: req.clientKey, requestId: 'unknown' }),
    );

    for (const res of [forQueued, wrongClient, unknown]) {
      expect(res.status).toBe(410);
      expect(res.body).toEqual(apiError('Progress request is not active for this owner', 410));
    }
  });

  it('should not let a node post progress for a request another node holds', async () => {
    const other = await registerNode(t);

    const res = await post(t, PROGRESS, progressBody(other, req));
    const client = await retrieve(t, req.clientKey, req.requestId);

    expect(res.status).toBe(410);
    expect(res.body).toEqual(apiError('Progress request is not active for this owner', 410));
    expect(client.body.encrypted_progress).toBeUndefined();
  });

  it.each([
    ['a wrong credential', { control_credential: 'w'.repeat(43) }],
    ['an unknown node', { server_public_key: fakeKey('nobody') }],
  ])('should answer 403 for %s', async (_name, extra) => {
    const res = await post(t, PROGRESS, progressBody(node, req, extra));

    expect(res.status).toBe(403);
    expect(res.body).toEqual(apiError('Missing or invalid relay server control credential', 403));
  });

  it.each([
    ['a missing key', (b: Record<string, unknown>) => delete b.iv],
    ['an extra key', (b: Record<string, unknown>) => (b.extra = 'x')],
    [
      'a plaintext key instead of ciphertext',
      (b: Record<string, unknown>) => {
        delete b.ciphertext;
        b.text = 'hello';
      },
    ],
    [
      'the chat_history alias',
      (b: Record<string, unknown>) => {
        b.chat_history = b.ciphertext;
        delete b.ciphertext;
      },
    ],
  ])('should answer Invalid encrypted progress schema for %s', async (_name, mutate) => {
    const body = progressBody(node, req);
    mutate(body);

    const res = await post(t, PROGRESS, body);

    expect(res.status).toBe(400);
    expect(res.body).toEqual(SCHEMA);
  });

  it.each([
    ['a list', '[]'],
    ['null', 'null'],
    ['a string', '"progress"'],
  ])('should answer Invalid encrypted progress schema when the body is %s', async (_name, raw) => {
    const res = await post(t, PROGRESS, raw);

    expect(res.status).toBe(400);
    expect(res.body).toEqual(SCHEMA);
  });

  it.each([
    ['another protocol', { protocol: 'other' }],
    ['a null protocol', { protocol: null }],
    ['version 2', { version: 2 }],
    ['version "1"', { version: '1' }],
    ['version true', { version: true }],
  ])('should answer Invalid encrypted progress protocol for %s', async (_name, extra) => {
    const res = await post(t, PROGRESS, progressBody(node, req, extra));

    expect(res.status).toBe(400);
    expect(res.body).toEqual(PROTOCOL_ERROR);
  });

  it.each([
    ['an empty ciphertext', { ciphertext: '' }],
    ['a numeric iv', { iv: 5 }],
    ['an object cipherkey', { cipherkey: {} }],
    ['a null request id', { request_id: null }],
    ['an empty client key', { client_public_key: '' }],
    ['a numeric credential', { control_credential: 7 }],
  ])('should answer Invalid encrypted progress envelope for %s', async (_name, extra) => {
    const res = await post(t, PROGRESS, progressBody(node, req, extra));

    expect(res.status).toBe(400);
    expect(res.body).toEqual(ENVELOPE);
  });

  it('should check the protocol before the envelope fields', async () => {
    const res = await post(t, PROGRESS, progressBody(node, req, { protocol: 'x', iv: 5 }));

    expect(res.body).toEqual(PROTOCOL_ERROR);
  });

  it('should answer 413 above 16 KiB, with or without Content-Length, and accept a body just under it', async () => {
    const big = JSON.stringify(progressBody(node, req, { ciphertext: 'A'.repeat(16_400) }));
    const base = JSON.stringify(progressBody(node, req, { ciphertext: '' }));
    const fits = JSON.stringify(
      progressBody(node, req, { ciphertext: 'A'.repeat(16_384 - base.length) }),
    );

    const declared = await post(t, PROGRESS, big);
    const chunked = await raw(t, 'POST', PROGRESS, {
      headers: { 'content-type': 'application/json' },
      body: big,
      chunked: true,
    });
    const ok = await post(t, PROGRESS, fits);

    expect(Buffer.byteLength(fits)).toBe(16_384);
    expect(declared.status).toBe(413);
    expect(declared.body).toEqual(TOO_LARGE);
    expect(chunked.status).toBe(413);
    expect(chunked.body).toEqual(TOO_LARGE);
    expect(ok.status).toBe(202);
  });
});

describe('API v1 /progress check order with a node token', () => {
  it('should answer 413 before 401, and 401 before the schema check', async () => {
    const t = await createTestApp({ TOKEN_PLACE_RELAY_SERVER_TOKEN: 'secret' });
    try {
      const big = JSON.stringify({ ciphertext: 'A'.repeat(20_000) });

      const tooLarge = await post(t, PROGRESS, big);
      const noToken = await post(t, PROGRESS, '[]');

      expect(tooLarge.status).toBe(413);
      expect(tooLarge.body).toEqual(TOO_LARGE);
      expect(noToken.status).toBe(401);
    } finally {
      await t.close();
    }
  });
});
