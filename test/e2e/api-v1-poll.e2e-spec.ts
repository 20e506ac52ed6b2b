import { ManualClock } from '../../src/common/clock';
import { createTestApp, type TestApp } from '../helpers/test-app';
import {
  apiError,
  fakeKey,
  get,
  MANUAL_SWEEP,
  parked,
  poll,
  post,
  registerNode,
  requestBody,
  submit,
  V1,
  type FakeNode,
  PROTOCOL,
} from './api-v1-fixtures';

const NO_WORK = {
  message: 'No requests available',
  next_ping_in_x_seconds: 0,
  poll_wait_seconds: 10,
};
const NOT_FOUND = apiError('Server with the specified public key not found', 404);

describe('API v1 /servers/poll long-poll', () => {
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

  it('should hold an idle poll for poll_wait_seconds and then answer no work', async () => {
    const pending = poll(t, node);
    await parked(t.lifecycle);

    clock.advance(10_000);
    const res = await pending;

    expect(res.status).toBe(200);
    expect(res.body).toEqual(NO_WORK);
  });

  it('should not answer before poll_wait_seconds have passed', async () => {
    let settled = false;
    const pending = poll(t, node).then((r) => {
      settled = true;
      return r;
    });
    await parked(t.lifecycle);

    clock.advance(9_999);
    await new Promise((resolve) => setImmediate(resolve));
    const early = settled;
    clock.advance(1);
    await pending;

    expect(early).toBe(false);
  });

  it('should wake a held poll the moment a request is queued and hand out the exact envelope', async () => {
    const pending = poll(t, node);
    await parked(t.lifecycle);
    const client = fakeKey('client');
    const body = requestBody(node.key, client);

    const accepted = await post(t, `${V1}/requests`, body);
    const res = await pending;

    expect(accepted.status).toBe(200);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      client_public_key: client,
      ciphertext: body.ciphertext,
      chat_history: body.ciphertext,
      cipherkey: body.cipherkey,
      iv: body.iv,
      request_id: body.request_id,
      protocol: PROTOCOL,
      version: 1,
      cancel_token: body.cancel_token,
      e2ee_v1: true,
      request_deadline_remaining_seconds: 480,
      request_ttl_seconds: 480,
      next_ping_in_x_seconds: 0,
    });
  });

  it('should report the remaining deadline, not the full one, for work that waited', async () => {
    await submit(t, node.key);
    clock.advance(30_000);
    await post(t, `${V1}/servers/register`, { server_public_key: node.key });

    const res = await poll(t, node);

    expect(res.body.request_deadline_remaining_seconds).toBe(450);
    expect(res.body.request_ttl_seconds).toBe(450);
  });

  it('should hand out exactly one item per poll and never include server_public_key', async () => {
    await submit(t, node.key);
    await submit(t, node.key);

    const first = await poll(t, node);

    expect(first.body.server_public_key).toBeUndefined();
    expect(first.body.batch).toBeUndefined();
    expect((await poll(t, node)).body.request_id).toEqual(expect.any(String));
  });

  it('should tell a node to poll again at once after work (next_ping_in_x_seconds 0), or omit the hint like the existing relay when switched off', async () => {
    const quiet = await createTestApp(
      { ...MANUAL_SWEEP, TOKENPLACE_RELAY_V1_WORK_PING_HINT: 'false' },
      new ManualClock(),
    );
    try {
      const other = await registerNode(quiet);
      await submit(quiet, other.key);
      await submit(t, node.key);

      const hinted = await poll(t, node);
      const plain = await poll(quiet, other);

      expect(hinted.body.next_ping_in_x_seconds).toBe(0);
      expect(plain.body.request_id).toEqual(expect.any(String));
      expect(plain.body.next_ping_in_x_seconds).toBeUndefined();
    } finally {
      await quiet.close();
    }
  });

  it('should give one request to exactly one of two concurrent polls', async () => {
    const a = poll(t, node);
    const b = poll(t, node);
    await parked(t.lifecycle, 2);

    await submit(t, node.key);
    await Promise.race([a, b]);
    clock.advance(10_000);
    const results = await Promise.all([a, b]);

    const withWork = results.filter((r) => typeof r.body.request_id === 'string');
    const idle = results.filter((r) => r.body.message === 'No requests available');
    expect(withWork).toHaveLength(1);
    expect(idle).toHaveLength(1);
  });

  it('should keep work queued when the polling node disconnects before it arrives', async () => {
    const controller = new AbortController();
    const gone = fetch(`${t.baseUrl}${V1}/servers/poll`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ server_public_key: node.key }),
      signal: controller.signal,
    }).catch(() => null);
    await parked(t.lifecycle);
    controller.abort();
    await gone;
    for (let i = 0; i < 200 && t.lifecycle.waiting > 0; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 1));
    }

    const req = await submit(t, node.key);
    const res = await poll(t, node);

    expect(res.body.request_id).toBe(req.requestId);
  });

  it('should answer 404 to a poll from an unknown node and serve it again after re-registration', async () => {
    const stranger: FakeNode = { key: fakeKey('stranger'), credential: '', headers: {} };

    const unknown = await poll(t, stranger);
    const again = await registerNode(t, { key: stranger.key });
    await submit(t, again.key);
    const work = await poll(t, again);

    expect(unknown.status).toBe(404);
    expect(unknown.body).toEqual(NOT_FOUND);
    expect(work.body.request_id).toEqual(expect.any(String));
  });

  it('should answer 404 at once to a held poll whose node unregisters', async () => {
    const pending = poll(t, node);
    await parked(t.lifecycle);

    const gone = await post(t, `${V1}/servers/unregister`, {
      server_public_key: node.key,
      control_credential: node.credential,
    });
    const res = await pending;

    expect(gone.body).toEqual({ message: 'Server unregistered', removed: true });
    expect(res.status).toBe(404);
    expect(res.body).toEqual(NOT_FOUND);
  });

  it.each([
    ['missing key', {}, apiError('Missing server public key', 400)],
    ['empty key', { server_public_key: '' }, apiError('Missing server public key', 400)],
    ['numeric key', { server_public_key: 5 }, apiError('Missing server public key', 400)],
    [
      'capabilities a string',
      { server_public_key: 'k', capabilities: 'x' },
      apiError('capabilities must be an object', 'invalid_capabilities'),
    ],
  ])('should answer 400 for a poll with %s', async (_name, body, error) => {
    const res = await post(t, `${V1}/servers/poll`, body);

    expect(res.status).toBe(400);
    expect(res.body).toEqual(error);
  });

  it.each([
    ['a list', '[]'],
    ['null', 'null'],
    ['a string', '"x"'],
  ])('should answer Invalid request data for a poll whose body is %s', async (_name, raw) => {
    const res = await post(t, `${V1}/servers/poll`, raw);

    expect(res.status).toBe(400);
    expect(res.body).toEqual(apiError('Invalid request data', 400));
  });

  it('should validate capabilities before looking the node up', async () => {
    const res = await post(t, `${V1}/servers/poll`, {
      server_public_key: fakeKey('nobody'),
      capabilities: { api_version: 3 },
    });

    expect(res.status).toBe(400);
    expect(res.body).toEqual(
      apiError('capabilities.api_version must be v1', 'invalid_capabilities'),
    );
  });

  it('should treat capabilities: null on a poll as "keep what is stored"', async () => {
    const pending = post(t, `${V1}/servers/poll`, {
      server_public_key: node.key,
      capabilities: null,
    });
    await parked(t.lifecycle);
    clock.advance(10_000);

    expect((await pending).status).toBe(200);
    expect((await get(t, `${V1}/servers/next`)).body.server_public_key).toBe(node.key);
  });
});

describe('API v1 poll without a hold and while draining', () => {
  it('should answer at once with next_ping_in_x_seconds = lease when the wait is 0', async () => {
    const t = await createTestApp({ TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '0' });
    try {
      const node = await registerNode(t);

      const res = await poll(t, node);

      expect(res.body).toEqual({
        message: 'No requests available',
        next_ping_in_x_seconds: 30,
        poll_wait_seconds: 0,
      });
    } finally {
      await t.close();
    }
  });

  it('should report a fractional poll wait as configured', async () => {
    const clock = new ManualClock();
    const t = await createTestApp({ TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '2.5' }, clock);
    try {
      const node = await registerNode(t);
      const reg = await post(t, `${V1}/servers/register`, { server_public_key: node.key });

      const pending = poll(t, node);
      await parked(t.lifecycle);
      clock.advance(2_500);

      expect(reg.body.poll_wait_seconds).toBe(2.5);
      expect((await pending).body).toEqual({
        message: 'No requests available',
        next_ping_in_x_seconds: 0,
        poll_wait_seconds: 2.5,
      });
    } finally {
      await t.close();
    }
  });

  it('should answer every held poll with no work the moment the relay starts draining', async () => {
    const clock = new ManualClock();
    const t = await createTestApp({}, clock);
    try {
      const a = await registerNode(t);
      const b = await registerNode(t);
      const held = [poll(t, a), poll(t, b)];
      await parked(t.lifecycle, 2);

      t.lifecycle.startDraining('test');
      const results = await Promise.all(held);
      const after = await poll(t, a);

      for (const res of results) {
        expect(res.status).toBe(200);
        expect(res.body.message).toBe('No requests available');
      }
      expect(after.status).toBe(200);
      expect(after.body.message).toBe('No requests available');
    } finally {
      await t.close();
    }
  });
});
