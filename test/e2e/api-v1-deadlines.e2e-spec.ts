import { ManualClock } from '../../src/common/clock';
import { createTestApp, type TestApp } from '../helpers/test-app';
import {
  apiError,
  cancel,
  capabilities,
  control,
  get,
  MANUAL_SWEEP,
  metric,
  parked,
  poll,
  post,
  registerNode,
  respond,
  retrieve,
  submit,
  V1,
} from './api-v1-fixtures';

const expired = (reason: string): unknown =>
  apiError('Request expired', 'expired', { status: 'expired', reason });
const cancelled = (reason: string): unknown =>
  apiError('Request cancelled', 'cancelled', { status: 'cancelled', reason });
const gone = (code: string): unknown =>
  apiError('Request is no longer waiting for a response', code, { status: code });

async function boot(env: Record<string, string> = {}): Promise<{ t: TestApp; clock: ManualClock }> {
  const clock = new ManualClock();
  const t = await createTestApp(
    { ...MANUAL_SWEEP, TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '0', ...env },
    clock,
  );
  return { t, clock };
}

describe('API v1 authoritative deadline', () => {
  let t: TestApp;
  let clock: ManualClock;

  beforeEach(async () => {
    ({ t, clock } = await boot({ TOKEN_PLACE_API_V1_REQUEST_DEADLINE_SECONDS: '2' }));
  });

  afterEach(async () => {
    await t.close();
  });

  it('should admit with a 2 s deadline and expire an undelivered request: 410 expired, late answer 410, outcome +1', async () => {
    const node = await registerNode(t);
    const before = await metric(t, 'tokenplace_relay_request_outcomes_total', {
      outcome: 'expired',
    });
    const req = await submit(t, node.key);

    clock.advance(2_001);
    await t.sweep();
    const client = await retrieve(t, req.clientKey, req.requestId);
    const again = await retrieve(t, req.clientKey, req.requestId);
    const late = await respond(t, req);
    const after = await metric(t, 'tokenplace_relay_request_outcomes_total', {
      outcome: 'expired',
    });
    const work = await poll(t, node);

    expect(req.res.body).toEqual({
      message: 'Request received',
      request_deadline_remaining_seconds: 2,
      request_ttl_seconds: 2,
    });
    expect(client.status).toBe(410);
    expect(client.body).toEqual(expired('pending_request_ttl_exceeded'));
    expect(again.body).toEqual(expired('pending_request_ttl_exceeded'));
    expect(late.status).toBe(410);
    expect(late.body).toEqual(gone('expired'));
    expect(after - before).toBe(1);
    expect(work.body.message).toBe('No requests available');
  });

  it('should expire a pending request when a retrieve observes the deadline, without a sweep', async () => {
    const node = await registerNode(t);
    const req = await submit(t, node.key);

    clock.advance(2_000);
    const client = await retrieve(t, req.clientKey, req.requestId);

    expect(client.status).toBe(410);
    expect(client.body).toEqual(expired('pending_request_ttl_exceeded'));
  });

  it('should expire a queued request that a poll finds past its deadline as provider_timeout and keep waiting', async () => {
    const node = await registerNode(t);
    const stale = await submit(t, node.key);
    clock.advance(2_000);
    await post(t, `${V1}/servers/register`, { server_public_key: node.key });
    const fresh = await submit(t, node.key);

    const work = await poll(t, node);
    const client = await retrieve(t, stale.clientKey, stale.requestId);

    expect(work.body.request_id).toBe(fresh.requestId);
    expect(client.body).toEqual(expired('provider_timeout'));
  });

  it('should expire an in-flight request at its deadline; the node sees expired on control', async () => {
    const node = await registerNode(t);
    const req = await submit(t, node.key);
    await poll(t, node);
    await control(t, node, req.requestId);

    clock.advance(2_000);
    await t.sweep();
    const seen = await control(t, node, req.requestId);
    const client = await retrieve(t, req.clientKey, req.requestId);
    const late = await respond(t, req);

    expect(seen.body).toMatchObject({ status: 'expired', request_deadline_remaining_seconds: 0 });
    expect(client.status).toBe(410);
    expect(client.body).toMatchObject({ error: { code: 'expired', status: 'expired' } });
    expect(late.status).toBe(410);
    expect(late.body).toEqual(gone('expired'));
  });

  it('should never extend the deadline through control renewals', async () => {
    const node = await registerNode(t);
    const req = await submit(t, node.key);
    await poll(t, node);

    clock.advance(1_000);
    const first = await control(t, node, req.requestId);
    clock.advance(999);
    const second = await control(t, node, req.requestId);
    clock.advance(1);
    const third = await control(t, node, req.requestId);

    expect(first.body).toMatchObject({ status: 'active', request_deadline_remaining_seconds: 1 });
    expect(second.body).toMatchObject({
      status: 'active',
      request_deadline_remaining_seconds: 0.001,
    });
    expect(third.body.status).toBe('expired');
  });
});

describe('API v1 deadline configuration', () => {
  it.each([
    [{ TOKEN_PLACE_API_V1_REQUEST_DEADLINE_SECONDS: '0.5' }, 1],
    [{ TOKEN_PLACE_API_V1_REQUEST_DEADLINE_SECONDS: '5000' }, 3600],
    [
      {
        TOKEN_PLACE_API_V1_REQUEST_DEADLINE_SECONDS: '100',
        TOKEN_PLACE_API_V1_REQUEST_DEADLINE_MAX_SECONDS: '60',
      },
      60,
    ],
    [
      {
        TOKEN_PLACE_API_V1_REQUEST_DEADLINE_SECONDS: '10',
        TOKEN_PLACE_API_V1_REQUEST_DEADLINE_MIN_SECONDS: '30',
      },
      30,
    ],
  ])('should clamp %p to %d seconds', async (env, seconds) => {
    const { t } = await boot(env);
    try {
      const node = await registerNode(t);

      const req = await submit(t, node.key);

      expect(req.res.body).toMatchObject({
        request_ttl_seconds: seconds,
        request_deadline_remaining_seconds: seconds,
      });
    } finally {
      await t.close();
    }
  });
});

describe('API v1 leases and eviction', () => {
  let t: TestApp;
  let clock: ManualClock;
  /** Lease 2 s, lapse grace 3 s: a silent node is gone 5 s after its last sign of life. */
  const LEASE = { TOKEN_PLACE_API_V1_RELAY_SERVER_LEASE_SECONDS: '2' };
  const GRACE = { TOKENPLACE_RELAY_NODE_LAPSE_GRACE_SECONDS: '3' };
  const GONE_MS = 5_001;

  beforeEach(async () => {
    ({ t, clock } = await boot({ ...LEASE, ...GRACE }));
  });

  afterEach(async () => {
    await t.close();
  });

  it('should evict a silent node: next 503, queued work 410 cancelled/server_unregistered, stale_lease +1', async () => {
    const node = await registerNode(t);
    const req = await submit(t, node.key);
    const before = await metric(t, 'tokenplace_compute_node_evictions_total', {
      reason: 'stale_lease',
    });

    clock.advance(GONE_MS);
    await t.sweep();
    const next = await get(t, `${V1}/servers/next`);
    const client = await retrieve(t, req.clientKey, req.requestId);
    const after = await metric(t, 'tokenplace_compute_node_evictions_total', {
      reason: 'stale_lease',
    });
    const pollAfter = await poll(t, node);
    const requestAfter = await submit(t, node.key);

    expect(next.status).toBe(503);
    expect(next.body).toMatchObject({ error: { code: 'no_registered_compute_nodes' } });
    expect(client.status).toBe(410);
    expect(client.body).toEqual(cancelled('server_unregistered'));
    expect(after - before).toBe(1);
    expect(pollAfter.status).toBe(404);
    expect(requestAfter.res.status).toBe(404);
  });

  it('should keep a node alive while it polls within its lease', async () => {
    const node = await registerNode(t);

    for (let i = 0; i < 5; i += 1) {
      clock.advance(1_500);
      expect((await poll(t, node)).status).toBe(200);
      await t.sweep();
    }

    expect((await get(t, `${V1}/servers/next`)).body.server_public_key).toBe(node.key);
  });

  it('should serve an evicted node again after it re-registers (with a new credential)', async () => {
    const node = await registerNode(t);
    clock.advance(GONE_MS);
    await t.sweep();

    const again = await registerNode(t, { key: node.key });
    const req = await submit(t, again.key);
    const work = await poll(t, again);

    expect(again.credential).not.toBe(node.credential);
    expect(work.body.request_id).toBe(req.requestId);
  });

  it('should not evict a node that is holding a long-poll past its lease', async () => {
    const held = await boot({
      TOKEN_PLACE_API_V1_RELAY_SERVER_LEASE_SECONDS: '2',
      TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '10',
    });
    try {
      const node = await registerNode(held.t);
      const pending = poll(held.t, node);
      await parked(held.t.lifecycle);

      held.clock.advance(5_000);
      await held.t.sweep();
      const next = await get(held.t, `${V1}/servers/next`);
      const req = await submit(held.t, node.key);
      const work = await pending;

      expect(next.body.server_public_key).toBe(node.key);
      expect(req.res.status).toBe(200);
      expect(work.body.request_id).toBe(req.requestId);
    } finally {
      await held.t.close();
    }
  });

  it('should keep a working node while control renews its in-flight lease, then evict it mid-request', async () => {
    const node = await registerNode(t);
    const req = await submit(t, node.key);
    await poll(t, node);

    for (let i = 0; i < 4; i += 1) {
      clock.advance(1_500);
      await t.sweep();
      expect((await control(t, node, req.requestId)).body.status).toBe('active');
    }
    clock.advance(GONE_MS);
    await t.sweep();
    const client = await retrieve(t, req.clientKey, req.requestId);
    const seen = await control(t, node, req.requestId);
    const ack = await control(t, node, req.requestId, { acknowledge: true });
    const after = await control(t, node, req.requestId);
    const late = await respond(t, req);
    const pollAfter = await poll(t, node);

    expect(client.status).toBe(410);
    expect(client.body).toEqual(cancelled('server_unregistered'));
    expect(seen.status).toBe(200);
    expect(seen.body.status).toBe('cancelled');
    expect(ack.body.status).toBe('cancelled');
    expect(after.status).toBe(403);
    expect(late.status).toBe(410);
    expect(late.body).toEqual(gone('cancelled'));
    expect(pollAfter.status).toBe(404);
  });

  it("should keep a silent node's queued request through its lapse and deliver it when the node registers again", async () => {
    const node = await registerNode(t);
    const req = await submit(t, node.key);

    clock.advance(GONE_MS - 2);
    await t.sweep();
    const pending = await retrieve(t, req.clientKey, req.requestId);
    const back = await post(t, `${V1}/servers/register`, {
      server_public_key: node.key,
      capabilities: capabilities(),
    });
    const work = await poll(t, node);
    const evictions = await metric(t, 'tokenplace_compute_node_evictions_total', {
      reason: 'stale_lease',
    });

    expect(pending.status).toBe(202);
    expect(back.status).toBe(200);
    expect(back.body.control_credential).toBeUndefined();
    expect(work.body.request_id).toBe(req.requestId);
    expect(evictions).toBe(0);
  });

  it('should accept a request for a lapsed node, offer the node while it is the only one, and end the request 410 at the end of the grace', async () => {
    const node = await registerNode(t);
    clock.advance(2_001);
    await t.sweep();

    const next = await get(t, `${V1}/servers/next`);
    const req = await submit(t, node.key);
    clock.advance(GONE_MS - 2_001);
    await t.sweep();
    const client = await retrieve(t, req.clientKey, req.requestId);
    const nextAfter = await get(t, `${V1}/servers/next`);
    const outcomes = await metric(t, 'tokenplace_relay_request_outcomes_total', {
      outcome: 'cancelled',
    });

    expect(next.body.server_public_key).toBe(node.key);
    expect(req.res.status).toBe(200);
    expect(client.status).toBe(410);
    expect(client.body).toEqual(cancelled('server_unregistered'));
    expect(nextAfter.status).toBe(503);
    expect(outcomes).toBe(1);
  });

  it('should prefer a fresh node over a lapsed one in /servers/next', async () => {
    const silent = await registerNode(t);
    const alive = await registerNode(t);
    clock.advance(2_001);
    await poll(t, alive);

    const picks = new Set<unknown>();
    for (let i = 0; i < 4; i += 1) {
      picks.add((await get(t, `${V1}/servers/next`)).body.server_public_key);
    }

    expect([...picks]).toEqual([alive.key]);
    expect(silent.key).not.toBe(alive.key);
  });

  it('should count /servers/control and /responses as signs of life', async () => {
    const node = await registerNode(t);
    const req = await submit(t, node.key);
    await poll(t, node);
    clock.advance(1_900);
    await control(t, node, req.requestId);
    clock.advance(1_900);
    await respond(t, req);
    clock.advance(1_900);
    await t.sweep();
    const healthy = await metric(t, 'tokenplace_compute_nodes_healthy', {});
    clock.advance(GONE_MS - 1_900);
    await t.sweep();
    const registeredAfter = await metric(t, 'tokenplace_compute_nodes_registered', {});

    expect(healthy).toBe(1);
    expect(registeredAfter).toBe(0);
  });

  it('should sweep on a timer so a quiet relay still evicts', async () => {
    const quiet = new ManualClock();
    const q = await createTestApp(
      {
        TOKENPLACE_RELAY_SWEEP_INTERVAL_SECONDS: '0.05',
        ...LEASE,
        ...GRACE,
      },
      quiet,
    );
    try {
      await registerNode(q);
      quiet.advance(GONE_MS);

      let evicted = 0;
      for (let i = 0; i < 200 && evicted === 0; i += 1) {
        await new Promise((resolve) => setTimeout(resolve, 10));
        evicted = await metric(q, 'tokenplace_compute_node_evictions_total', {
          reason: 'stale_lease',
        });
      }

      expect(evicted).toBe(1);
    } finally {
      await q.close();
    }
  });
});

describe('API v1 terminal records, tombstones and stored answers expire', () => {
  let t: TestApp;
  let clock: ManualClock;

  beforeEach(async () => {
    ({ t, clock } = await boot());
  });

  afterEach(async () => {
    await t.close();
  });

  it('should forget a cancelled request after the terminal TTL (410, then 404)', async () => {
    const node = await registerNode(t);
    const req = await submit(t, node.key);
    await cancel(t, req);

    clock.advance(299_000);
    await t.sweep();
    const during = await retrieve(t, req.clientKey, req.requestId);
    clock.advance(1_001);
    await t.sweep();
    const after = await retrieve(t, req.clientKey, req.requestId);

    expect(during.status).toBe(410);
    expect(after.status).toBe(404);
    expect(after.body).toEqual(apiError(`Unknown request_id: ${req.requestId}`, 404));
  });

  it('should drop a control tombstone after its TTL: completed/unavailable instead of cancelled', async () => {
    const node = await registerNode(t);
    const req = await submit(t, node.key);
    await poll(t, node);
    await cancel(t, req);

    for (const step of [20_000, 20_000, 19_000]) {
      clock.advance(step);
      await post(t, `${V1}/servers/register`, { server_public_key: node.key });
    }
    await t.sweep();
    const during = await control(t, node, req.requestId);
    clock.advance(1_001);
    await t.sweep();
    const after = await control(t, node, req.requestId);

    expect(during.body.status).toBe('cancelled');
    expect(after.body).toEqual({ status: 'completed/unavailable', next_poll_seconds: 1 });
  });

  it('should expire an answer nobody retrieves instead of keeping it forever', async () => {
    const node = await registerNode(t);
    const req = await submit(t, node.key);
    await poll(t, node);
    await respond(t, req);

    clock.advance(300_001);
    await t.sweep();
    const client = await retrieve(t, req.clientKey, req.requestId);

    expect(client.status).toBe(410);
    expect(client.body).toMatchObject({ error: { code: 'expired', status: 'expired' } });
  });

  it('should expire untracked answers (no request_id) too', async () => {
    const client = 'untracked-client';
    await respond(t, { clientKey: client, requestId: '' }, { request_id: undefined });

    clock.advance(300_001);
    await t.sweep();
    const res = await retrieve(t, client);

    expect(res.status).toBe(404);
  });

  it('should report 410 completed for a late duplicate answer only while the completed record lives', async () => {
    const node = await registerNode(t);
    const req = await submit(t, node.key);
    await poll(t, node);
    await respond(t, req);
    await retrieve(t, req.clientKey, req.requestId);

    const during = await respond(t, req);
    clock.advance(300_001);
    await t.sweep();
    const after = await respond(t, req);

    expect(during.body).toEqual(gone('completed'));
    expect(after.body).toEqual(gone('gone'));
  });
});
