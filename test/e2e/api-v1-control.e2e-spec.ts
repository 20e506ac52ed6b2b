import { ManualClock } from '../../src/common/clock';
import { createTestApp, type TestApp } from '../helpers/test-app';
import {
  apiError,
  cancel,
  control,
  fakeKey,
  MANUAL_SWEEP,
  get,
  poll,
  post,
  registerNode,
  requestBody,
  respond,
  retrieve,
  submit,
  V1,
  type FakeNode,
} from './api-v1-fixtures';

const CREDENTIAL_ERROR = apiError('Missing or invalid relay server control credential', 403);
const PROOF_ERROR = apiError('Missing or invalid cancel proof', 403);
const INVALID = apiError('Invalid request data', 400);
const UNAVAILABLE = { status: 'completed/unavailable', next_poll_seconds: 10 };
/** With a poll wait of 0 the control hint is max(1, min(0, ...)) = 1. */
const UNAVAILABLE_NO_WAIT = { status: 'completed/unavailable', next_poll_seconds: 1 };

describe('API v1 /servers/control', () => {
  let t: TestApp;
  let clock: ManualClock;
  let node: FakeNode;

  beforeEach(async () => {
    clock = new ManualClock();
    t = await createTestApp(MANUAL_SWEEP, clock);
    node = await registerNode(t);
  });

  afterEach(async () => {
    await t.close();
  });

  it('should report an in-flight request as active with next_poll_seconds 10 and the deadline fields', async () => {
    const req = await submit(t, node.key);
    await poll(t, node);
    clock.advance(12_000);

    const res = await control(t, node, req.requestId, { acknowledge: false });

    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      status: 'active',
      next_poll_seconds: 10,
      request_deadline_remaining_seconds: 468,
      request_ttl_seconds: 468,
    });
  });

  it('should answer completed/unavailable for an unknown request, a queued one and an answered one', async () => {
    const queued = await submit(t, node.key);
    const answered = await submit(t, node.key);
    await poll(t, node);
    await poll(t, node);
    await respond(t, answered);
    const other = await submit(t, node.key);

    const unknown = await control(t, node, 'never-seen');
    const done = await control(t, node, answered.requestId);
    const waiting = await control(t, node, other.requestId);

    expect(queued.res.status).toBe(200);
    expect(unknown.body).toEqual(UNAVAILABLE);
    expect(done.body).toEqual(UNAVAILABLE);
    expect(waiting.body).toEqual(UNAVAILABLE);
  });

  it.each([
    ['missing', undefined],
    ['wrong', 'x'.repeat(43)],
    ['empty', ''],
    ['a number', 42],
    ['null', null],
  ])('should answer 403 when the credential is %s', async (_name, credential) => {
    const req = await submit(t, node.key);
    await poll(t, node);
    const body: Record<string, unknown> = {
      server_public_key: node.key,
      request_id: req.requestId,
    };
    if (credential !== undefined) {
      body.control_credential = credential;
    }

    const res = await post(t, `${V1}/servers/control`, body);
    const still = await control(t, node, req.requestId);

    expect(res.status).toBe(403);
    expect(res.body).toEqual(CREDENTIAL_ERROR);
    expect(still.body.status).toBe('active');
  });

  it("should refuse another node's credential (a replayed credential does not transfer)", async () => {
    const other = await registerNode(t);
    const req = await submit(t, node.key);
    await poll(t, node);

    const res = await control(t, { ...node, credential: other.credential }, req.requestId);

    expect(res.status).toBe(403);
    expect(res.body).toEqual(CREDENTIAL_ERROR);
  });

  it("should not reveal or renew another node's in-flight request", async () => {
    const other = await registerNode(t);
    const req = await submit(t, node.key);
    await poll(t, node);

    const res = await control(t, other, req.requestId);

    expect(res.body).toEqual(UNAVAILABLE);
  });

  it('should refuse the old credential after the node unregistered and registered again', async () => {
    const oldCredential = node.credential;
    await post(t, `${V1}/servers/unregister`, {
      server_public_key: node.key,
      control_credential: oldCredential,
    });
    const again = await registerNode(t, { key: node.key });
    const req = await submit(t, again.key);
    await poll(t, again);

    const replay = await control(t, { ...again, credential: oldCredential }, req.requestId);
    const fresh = await control(t, again, req.requestId);

    expect(again.credential).not.toBe(oldCredential);
    expect(replay.status).toBe(403);
    expect(fresh.body.status).toBe('active');
  });

  it('should answer 403 for an unknown node and for a /sink node (nothing to authenticate)', async () => {
    const legacyKey = fakeKey('legacy');
    await post(t, '/sink', { server_public_key: legacyKey });

    const unknown = await post(t, `${V1}/servers/control`, {
      server_public_key: fakeKey('nobody'),
      request_id: 'r',
      control_credential: 'c',
    });
    const legacy = await post(t, `${V1}/servers/control`, {
      server_public_key: legacyKey,
      request_id: 'r',
      control_credential: 'c',
    });

    expect(unknown.status).toBe(403);
    expect(unknown.body).toEqual(CREDENTIAL_ERROR);
    expect(legacy.status).toBe(403);
    expect(legacy.body).toEqual(CREDENTIAL_ERROR);
  });

  it.each([
    ['no server key', { request_id: 'r', control_credential: 'c' }],
    ['no request id', { server_public_key: 'k', control_credential: 'c' }],
    ['a numeric request id', { server_public_key: 'k', request_id: 5, control_credential: 'c' }],
    ['an empty request id', { server_public_key: 'k', request_id: '', control_credential: 'c' }],
    [
      'acknowledge not a boolean',
      { server_public_key: 'k', request_id: 'r', control_credential: 'c', acknowledge: 'yes' },
    ],
  ])('should answer Invalid request data for %s', async (_name, body) => {
    const res = await post(t, `${V1}/servers/control`, body);

    expect(res.status).toBe(400);
    expect(res.body).toEqual(INVALID);
  });

  it.each([
    ['a list', '[]'],
    ['null', 'null'],
  ])('should answer Invalid request data when the body is %s', async (_name, raw) => {
    const res = await post(t, `${V1}/servers/control`, raw);

    expect(res.status).toBe(400);
    expect(res.body).toEqual(INVALID);
  });

  it('should expire an in-flight request whose deadline passed and say so (no lease renewal)', async () => {
    const req = await submit(t, node.key);
    await poll(t, node);
    clock.advance(480_000);

    const res = await control(t, node, req.requestId);
    const client = await retrieve(t, req.clientKey, req.requestId);

    expect(res.body).toEqual({
      status: 'expired',
      next_poll_seconds: 10,
      request_deadline_remaining_seconds: 0,
      request_ttl_seconds: 0,
    });
    expect(client.status).toBe(410);
    expect(client.body).toEqual(
      apiError('Request expired', 'expired', { status: 'expired', reason: 'provider_timeout' }),
    );
  });
});

describe('API v1 control next_poll_seconds', () => {
  it('should use max(1, min(poll_wait, 10, in_flight_ttl / 2)) for active requests', async () => {
    const t = await createTestApp({
      TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '0',
      TOKEN_PLACE_API_V1_IN_FLIGHT_TTL_SECONDS: '6',
    });
    try {
      const node = await registerNode(t);
      const req = await submit(t, node.key);
      await poll(t, node);

      const active = await control(t, node, req.requestId);
      const other = await control(t, node, 'unknown');

      expect(active.body.next_poll_seconds).toBe(1);
      expect(other.body.next_poll_seconds).toBe(1);
    } finally {
      await t.close();
    }
  });

  it('should not exceed the poll wait', async () => {
    const clock = new ManualClock();
    const t = await createTestApp({ TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '4' }, clock);
    try {
      const node = await registerNode(t);
      const req = await submit(t, node.key);
      await poll(t, node);

      const active = await control(t, node, req.requestId);

      expect(active.body.next_poll_seconds).toBe(4);
    } finally {
      await t.close();
    }
  });
});

describe('API v1 /requests/cancel', () => {
  let t: TestApp;
  let node: FakeNode;

  beforeEach(async () => {
    t = await createTestApp({ TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '0' });
    node = await registerNode(t);
  });

  afterEach(async () => {
    await t.close();
  });

  it('should cancel a queued request: removed_from_queue 1, retrieve 410, never delivered', async () => {
    const req = await submit(t, node.key);

    const res = await cancel(t, req);
    const client = await retrieve(t, req.clientKey, req.requestId);
    const work = await poll(t, node);

    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      status: 'cancelled',
      request_id: req.requestId,
      removed_from_queue: 1,
    });
    expect(client.status).toBe(410);
    expect(client.body).toEqual(
      apiError('Request cancelled', 'cancelled', {
        status: 'cancelled',
        reason: 'requester_cancelled',
      }),
    );
    expect(work.body.message).toBe('No requests available');
  });

  it('should cancel an in-flight request: the node sees cancelled, acknowledges, then completed/unavailable', async () => {
    const req = await submit(t, node.key);
    await poll(t, node);

    const res = await cancel(t, req, { reason: 'client_timeout' });
    const seen = await control(t, node, req.requestId);
    const seenAgain = await control(t, node, req.requestId);
    const ack = await control(t, node, req.requestId, { acknowledge: true });
    const after = await control(t, node, req.requestId);
    const client = await retrieve(t, req.clientKey, req.requestId);
    const late = await respond(t, req);

    expect(res.body).toEqual({
      status: 'cancelled',
      request_id: req.requestId,
      removed_from_queue: 0,
    });
    expect(seen.body).toEqual({
      status: 'cancelled',
      next_poll_seconds: 1,
      request_deadline_remaining_seconds: expect.any(Number),
      request_ttl_seconds: expect.any(Number),
    });
    expect(seenAgain.body.status).toBe('cancelled');
    expect(ack.body.status).toBe('cancelled');
    expect(after.body).toEqual(UNAVAILABLE_NO_WAIT);
    expect(client.body).toEqual(
      apiError('Request cancelled', 'cancelled', { status: 'cancelled', reason: 'client_timeout' }),
    );
    expect(late.status).toBe(410);
    expect(late.body).toEqual(
      apiError('Request is no longer waiting for a response', 'cancelled', { status: 'cancelled' }),
    );
  });

  it('should accept the "ack" spelling of acknowledge', async () => {
    const req = await submit(t, node.key);
    await poll(t, node);
    await cancel(t, req);

    await control(t, node, req.requestId, { ack: true });
    const after = await control(t, node, req.requestId);

    expect(after.body).toEqual(UNAVAILABLE_NO_WAIT);
  });

  it('should require the tombstone owner credential', async () => {
    const req = await submit(t, node.key);
    await poll(t, node);
    await cancel(t, req);

    const wrong = await control(t, { ...node, credential: 'nope' }, req.requestId, {
      acknowledge: true,
    });
    const right = await control(t, node, req.requestId);

    expect(wrong.status).toBe(403);
    expect(right.body.status).toBe('cancelled');
  });

  it.each([
    ['missing', undefined],
    ['wrong', 'f'.repeat(32)],
    ['empty', ''],
    ['a number', 5],
    ['an object', { token: 'x' }],
  ])(
    'should answer 403 when the cancel token is %s, and keep the request',
    async (_name, token) => {
      const req = await submit(t, node.key);
      const body: Record<string, unknown> = {
        client_public_key: req.clientKey,
        request_id: req.requestId,
      };
      if (token !== undefined) {
        body.cancel_token = token;
      }

      const res = await post(t, `${V1}/requests/cancel`, body);
      const work = await poll(t, node);

      expect(res.status).toBe(403);
      expect(res.body).toEqual(PROOF_ERROR);
      expect(work.body.request_id).toBe(req.requestId);
    },
  );

  it('should not let another client cancel a request, even with the right token', async () => {
    const req = await submit(t, node.key);

    const res = await post(t, `${V1}/requests/cancel`, {
      client_public_key: fakeKey('mallory'),
      request_id: req.requestId,
      cancel_token: req.cancelToken,
    });
    const work = await poll(t, node);

    expect(res.status).toBe(403);
    expect(res.body).toEqual(PROOF_ERROR);
    expect(work.body.request_id).toBe(req.requestId);
  });

  it('should answer 403 for a replayed cancel, a request admitted without a token, and an unknown request', async () => {
    const req = await submit(t, node.key);
    await cancel(t, req);
    const tokenless = await submit(t, node.key, { extra: { cancel_token: undefined } });

    const replay = await cancel(t, req);
    const noToken = await cancel(t, { ...tokenless, cancelToken: 'anything' });
    const unknown = await cancel(t, { ...req, requestId: 'unknown-id' });

    for (const res of [replay, noToken, unknown]) {
      expect(res.status).toBe(403);
      expect(res.body).toEqual(PROOF_ERROR);
    }
  });

  it('should answer 403 once a response has won, and still deliver the response', async () => {
    const req = await submit(t, node.key);
    await poll(t, node);
    await respond(t, req);

    const res = await cancel(t, req);
    const client = await retrieve(t, req.clientKey, req.requestId);

    expect(res.status).toBe(403);
    expect(client.status).toBe(200);
  });

  it.each([
    [{ status: 'expired', reason: 'provider_timeout' }, 'expired', 'provider_timeout'],
    [{ status: 'expired', reason: 'nonsense' }, 'expired', 'expired'],
    [{ status: 'EXPIRED', reason: 'bogus' }, 'cancelled', 'cancelled'],
    [{ status: 'done', reason: 'requester_gave_up' }, 'cancelled', 'requester_gave_up'],
    [{ status: 5, reason: 7 }, 'cancelled', 'cancelled'],
    [{ status: undefined, reason: undefined }, 'cancelled', 'cancelled'],
    [{ reason: 'server_unregistered' }, 'cancelled', 'server_unregistered'],
    [{ reason: 'pending_request_ttl_exceeded' }, 'cancelled', 'pending_request_ttl_exceeded'],
    [{ reason: 'response_ttl_exceeded' }, 'cancelled', 'cancelled'],
  ])('should sanitise %p to status %s and reason %s', async (extra, status, reason) => {
    const req = await submit(t, node.key);

    const res = await cancel(t, req, extra);
    const client = await retrieve(t, req.clientKey, req.requestId);

    expect(res.body).toEqual({ status, request_id: req.requestId, removed_from_queue: 1 });
    expect(client.body).toEqual(apiError(`Request ${status}`, status, { status, reason }));
  });

  it.each([
    ['no client key', { request_id: 'r', cancel_token: 't' }],
    ['no request id', { client_public_key: 'c', cancel_token: 't' }],
    ['a numeric request id', { client_public_key: 'c', request_id: 1, cancel_token: 't' }],
    ['a list as client key', { client_public_key: ['c'], request_id: 'r', cancel_token: 't' }],
  ])('should answer Invalid request data for %s', async (_name, body) => {
    const res = await post(t, `${V1}/requests/cancel`, body);

    expect(res.status).toBe(400);
    expect(res.body).toEqual(INVALID);
  });

  it.each([
    ['a list', '[]'],
    ['null', 'null'],
    ['a string', '"cancel"'],
  ])('should answer Invalid request data when the body is %s', async (_name, raw) => {
    const res = await post(t, `${V1}/requests/cancel`, raw);

    expect(res.status).toBe(400);
    expect(res.body).toEqual(INVALID);
  });

  it('should let the client submit the same request id again after a cancel', async () => {
    const req = await submit(t, node.key);
    await cancel(t, req);

    const again = await post(
      t,
      `${V1}/requests`,
      requestBody(node.key, req.clientKey, { request_id: req.requestId }),
    );
    const client = await retrieve(t, req.clientKey, req.requestId);

    expect(again.status).toBe(200);
    expect(client.status).toBe(202);
  });
});

describe('API v1 /servers/unregister', () => {
  let t: TestApp;
  let node: FakeNode;

  beforeEach(async () => {
    t = await createTestApp({ TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '0' });
    node = await registerNode(t);
  });

  afterEach(async () => {
    await t.close();
  });

  it.each([
    ['missing', undefined],
    ['wrong', 'w'.repeat(43)],
    ['empty', ''],
  ])(
    'should answer 403 and change nothing when the credential is %s',
    async (_name, credential) => {
      const body: Record<string, unknown> = { server_public_key: node.key };
      if (credential !== undefined) {
        body.control_credential = credential;
      }

      const res = await post(t, `${V1}/servers/unregister`, body);
      const next = await get(t, `${V1}/servers/next`);

      expect(res.status).toBe(403);
      expect(res.body).toEqual(CREDENTIAL_ERROR);
      expect(next.body.server_public_key).toBe(node.key);
    },
  );

  it('should remove the node with its credential, then answer removed:false (idempotent)', async () => {
    const first = await post(t, `${V1}/servers/unregister`, {
      server_public_key: node.key,
      control_credential: node.credential,
    });
    const second = await post(t, `${V1}/servers/unregister`, {
      server_public_key: node.key,
      control_credential: node.credential,
    });
    const next = await get(t, `${V1}/servers/next`);
    const pollAfter = await poll(t, node);

    expect(first.body).toEqual({ message: 'Server unregistered', removed: true });
    expect(second.status).toBe(200);
    expect(second.body).toEqual({ message: 'Server unregistered', removed: false });
    expect(next.status).toBe(503);
    expect(pollAfter.status).toBe(404);
  });

  it('should cancel queued work as server_unregistered and leave tombstones for in-flight work', async () => {
    const inFlight = await submit(t, node.key);
    await poll(t, node);
    const queued = await submit(t, node.key);

    await post(t, `${V1}/servers/unregister`, {
      server_public_key: node.key,
      control_credential: node.credential,
    });
    const queuedClient = await retrieve(t, queued.clientKey, queued.requestId);
    const inFlightClient = await retrieve(t, inFlight.clientKey, inFlight.requestId);
    const tombstone = await control(t, node, inFlight.requestId);
    const late = await respond(t, inFlight);

    const unregistered = apiError('Request cancelled', 'cancelled', {
      status: 'cancelled',
      reason: 'server_unregistered',
    });
    expect(queuedClient.status).toBe(410);
    expect(queuedClient.body).toEqual(unregistered);
    expect(inFlightClient.body).toEqual(unregistered);
    expect(tombstone.status).toBe(200);
    expect(tombstone.body.status).toBe('cancelled');
    expect(late.status).toBe(410);
    expect(late.body).toEqual(
      apiError('Request is no longer waiting for a response', 'cancelled', { status: 'cancelled' }),
    );
  });

  it('should also unregister through the legacy /unregister alias', async () => {
    const res = await post(t, '/unregister', {
      server_public_key: node.key,
      control_credential: node.credential,
    });
    const next = await get(t, `${V1}/servers/next`);

    expect(res.body).toEqual({ message: 'Server unregistered', removed: true });
    expect(next.status).toBe(503);
  });

  it('should refuse the legacy alias without the owner credential of an API v1 node', async () => {
    const res = await post(t, '/unregister', { server_public_key: node.key });

    expect(res.status).toBe(403);
    expect(res.body).toEqual(CREDENTIAL_ERROR);
  });

  it.each([
    ['missing key', { control_credential: 'c' }, apiError('Invalid public key', 400)],
    [
      'blank key',
      { server_public_key: '   ', control_credential: 'c' },
      apiError('Invalid public key', 400),
    ],
    ['numeric key', { server_public_key: 9 }, apiError('Invalid public key', 400)],
  ])('should answer 400 for %s', async (_name, body, error) => {
    const res = await post(t, `${V1}/servers/unregister`, body);

    expect(res.status).toBe(400);
    expect(res.body).toEqual(error);
  });

  it('should answer Invalid request data when the body is not an object', async () => {
    const res = await post(t, `${V1}/servers/unregister`, '["k"]');

    expect(res.status).toBe(400);
    expect(res.body).toEqual(INVALID);
  });

  it('should answer removed:false for an unknown key', async () => {
    const res = await post(t, `${V1}/servers/unregister`, {
      server_public_key: fakeKey('nobody'),
      control_credential: 'c',
    });

    expect(res.body).toEqual({ message: 'Server unregistered', removed: false });
  });
});

describe('operator unregister', () => {
  it('should answer 503 when no operator token is configured', async () => {
    const t = await createTestApp();
    try {
      const res = await post(
        t,
        `${V1}/unregister`,
        { server_public_key: 'k' },
        { Authorization: 'Bearer x' },
      );

      expect(res.status).toBe(503);
      expect(res.body).toEqual(
        apiError('Operator authentication is not configured', 'operator_auth_not_configured', {
          type: 'authentication_error',
        }),
      );
    } finally {
      await t.close();
    }
  });

  it('should answer 401 for a wrong token and remove any node with the right one', async () => {
    const t = await createTestApp({ TOKEN_PLACE_OPERATOR_TOKEN: 'op-secret' });
    try {
      const node = await registerNode(t);

      const wrong = await post(
        t,
        `${V1}/unregister`,
        { server_public_key: node.key },
        { Authorization: 'Bearer nope' },
      );
      const missing = await post(t, `${V1}/unregister`, { server_public_key: node.key });
      const viaHeader = await post(
        t,
        `${V1}/unregister`,
        { server_public_key: node.key },
        { 'X-Token-Place-Operator': 'op-secret' },
      );
      const again = await post(
        t,
        '/v1/relay/unregister',
        { server_public_key: node.key },
        { Authorization: 'Bearer op-secret' },
      );

      const invalid = apiError('Operator token missing or invalid', 'operator_token_invalid', {
        type: 'authentication_error',
      });
      expect(wrong.status).toBe(401);
      expect(wrong.body).toEqual(invalid);
      expect(missing.status).toBe(401);
      expect(viaHeader.body).toEqual({ message: 'Server unregistered', removed: true });
      expect(again.body).toEqual({ message: 'Server unregistered', removed: false });
    } finally {
      await t.close();
    }
  });
});
