import { ManualClock } from '../../src/common/clock';
import { createTestApp, type TestApp } from '../helpers/test-app';
import {
  apiError,
  capabilities,
  fakeKey,
  from,
  get,
  MANUAL_SWEEP,
  poll,
  post,
  registerNode,
  requestBody,
  respond,
  retrieve,
  storeVariants,
  submit,
  TRUST_LOOPBACK,
  V1,
  type FakeNode,
} from './api-v1-fixtures';

/**
 * Issue 18 item 7: a live node's key belongs to it. Today's node sends no credential on register
 * and poll, so those are accepted from the address that registered the key, and from anywhere with
 * the node's control credential; answers must come from the node holding the request; a live
 * (client, request_id) is never re-targeted without its cancel token.
 */
const OWNER = '198.51.100.20';
/** Idle polls answer at once (the suite runs on a manual clock). */
const NO_HOLD = { TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '0' };
const OUTSIDER = '203.0.113.66';

describe.each(storeVariants('node ownership'))('node ownership ($label)', (variant) => {
  let t: TestApp;
  let clock: ManualClock;
  let node: FakeNode;

  beforeEach(async () => {
    clock = new ManualClock();
    t = await createTestApp(
      { ...variant.env(), ...TRUST_LOOPBACK, ...MANUAL_SWEEP, ...NO_HOLD },
      clock,
    );
    node = await registerNode(t, {
      caps: capabilities({ supported_model_ids: ['model-a'] }),
      headers: from(OWNER),
    });
  });

  afterEach(async () => {
    await t.close();
    await variant.cleanup();
  });

  const next = (model: string) => get(t, `${V1}/servers/next?model=${model}`);

  it('should refuse a re-registration of a live node from another address without its credential, keeping its capabilities', async () => {
    const hijack = await post(
      t,
      `${V1}/servers/register`,
      {
        server_public_key: node.key,
        capabilities: capabilities({ supported_model_ids: ['model-evil'] }),
      },
      from(OUTSIDER),
    );
    const wrongCredential = await post(
      t,
      `${V1}/servers/register`,
      {
        server_public_key: node.key,
        control_credential: 'not-the-credential',
        capabilities: capabilities({ supported_model_ids: ['model-evil'] }),
      },
      from(OWNER),
    );

    expect(hijack.status).toBe(403);
    expect(hijack.body).toEqual(
      apiError('Missing or invalid relay server control credential', 403),
    );
    expect(wrongCredential.status).toBe(403);
    expect((await next('model-a')).body.server_public_key).toBe(node.key);
    expect((await next('model-evil')).status).toBe(503);
  });

  it('should refuse a poll of a live node from another address without its credential, leaving its queued request and cancel token', async () => {
    const req = await submit(t, node.key);

    const stolen = await post(
      t,
      `${V1}/servers/poll`,
      { server_public_key: node.key, capabilities: capabilities() },
      from(OUTSIDER),
    );
    const owner = await poll(t, node);

    expect(req.res.status).toBe(200);
    expect(stolen.status).toBe(403);
    expect(stolen.text).not.toContain(req.cancelToken);
    expect(owner.status).toBe(200);
    expect(owner.body).toMatchObject({ request_id: req.requestId, cancel_token: req.cancelToken });
  });

  it("should serve the owner's credential-less re-registrations and polls from its own address, as today's node sends them", async () => {
    const again = await post(
      t,
      `${V1}/servers/register`,
      { server_public_key: node.key, capabilities: capabilities() },
      from(OWNER),
    );
    const idle = await poll(t, node);

    expect(again.status).toBe(200);
    expect(again.body.control_credential).toBeUndefined();
    expect(idle.status).toBe(200);
    expect(idle.body.message).toBe('No requests available');
  });

  it('should accept a node that moved to another address when it shows its control credential, and bind the key there', async () => {
    const req = await submit(t, node.key);

    const moved = await post(
      t,
      `${V1}/servers/register`,
      {
        server_public_key: node.key,
        control_credential: node.credential,
        capabilities: capabilities({ supported_model_ids: ['model-a'] }),
      },
      from(OUTSIDER),
    );
    const pollThere = await post(
      t,
      `${V1}/servers/poll`,
      { server_public_key: node.key },
      from(OUTSIDER),
    );
    const oldAddress = await poll(t, node);

    expect(moved.status).toBe(200);
    expect(pollThere.status).toBe(200);
    expect(pollThere.body.request_id).toBe(req.requestId);
    expect(oldAddress.status).toBe(403);
  });

  it('should free a key whose node went silent for its lease and grace: the next registration from anywhere gets a new credential', async () => {
    const early = await post(
      t,
      `${V1}/servers/register`,
      { server_public_key: node.key, capabilities: capabilities() },
      from(OUTSIDER),
    );
    clock.advance(30_000 + 20_000 + 1);
    const later = await post(
      t,
      `${V1}/servers/register`,
      { server_public_key: node.key, capabilities: capabilities() },
      from(OUTSIDER),
    );

    expect(early.status).toBe(403);
    expect(later.status).toBe(200);
    expect(typeof later.body.control_credential).toBe('string');
    expect(later.body.control_credential).not.toBe(node.credential);
  });

  it('should refuse an answer to a request that no node has taken yet, and deliver the holder’s answer later', async () => {
    const req = await submit(t, node.key);

    const early = await respond(t, req, { chat_history: 'FORGED' }, from(OWNER));
    const pending = await retrieve(t, req.clientKey, req.requestId);
    await poll(t, node);
    const real = await respond(t, req, { chat_history: 'REAL' }, from(OWNER));
    const answer = await retrieve(t, req.clientKey, req.requestId);

    expect(early.status).toBe(403);
    expect(early.body).toEqual(apiError('This request is not held by the answering node', 403));
    expect(pending.status).toBe(202);
    expect(real.status).toBe(200);
    expect(answer.status).toBe(200);
    expect(answer.body.chat_history).toBe('REAL');
  });

  it('should refuse an answer from another address than the node holding the request', async () => {
    const req = await submit(t, node.key);
    await poll(t, node);

    const forged = await respond(t, req, { chat_history: 'FORGED' }, from(OUTSIDER));
    const pending = await retrieve(t, req.clientKey, req.requestId);
    const real = await respond(t, req, { chat_history: 'REAL' }, from(OWNER));
    const answer = await retrieve(t, req.clientKey, req.requestId);

    expect(forged.status).toBe(403);
    expect(pending.status).toBe(202);
    expect(real.status).toBe(200);
    expect(answer.body.chat_history).toBe('REAL');
  });

  it('should refuse to re-target a live (client, request_id) without its cancel token, and allow it with the token', async () => {
    const other = await registerNode(t, {
      caps: capabilities({ supported_model_ids: ['model-a'] }),
      headers: from(OUTSIDER),
    });
    const req = await submit(t, node.key);

    const retarget = await post(
      t,
      `${V1}/requests`,
      requestBody(other.key, req.clientKey, {
        request_id: req.requestId,
        cancel_token: 'attacker-token',
      }),
    );
    const noToken = await post(
      t,
      `${V1}/requests`,
      requestBody(other.key, req.clientKey, { request_id: req.requestId, cancel_token: undefined }),
    );
    const otherPoll = await poll(t, other);
    const ownerPoll = await poll(t, node);

    expect(retarget.status).toBe(409);
    expect(retarget.body).toEqual(
      apiError('request_id is already in use by a live request; its cancel_token is needed', 409),
    );
    expect(noToken.status).toBe(409);
    expect(otherPoll.body.message).toBe('No requests available');
    expect(ownerPoll.body).toMatchObject({
      request_id: req.requestId,
      cancel_token: req.cancelToken,
    });

    const second = await submit(t, node.key);
    const moved = await post(
      t,
      `${V1}/requests`,
      requestBody(other.key, second.clientKey, {
        request_id: second.requestId,
        cancel_token: second.cancelToken,
      }),
    );
    const movedPoll = await poll(t, other);

    expect(moved.status).toBe(200);
    expect(movedPoll.body).toMatchObject({
      request_id: second.requestId,
      cancel_token: second.cancelToken,
    });
  });

  it('should let a fresh key register from any address (ownership binds live keys only)', async () => {
    const fresh = await post(
      t,
      `${V1}/servers/register`,
      { server_public_key: fakeKey(), capabilities: capabilities() },
      from(OUTSIDER),
    );

    expect(fresh.status).toBe(200);
  });
});
