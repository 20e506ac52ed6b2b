import { ManualClock } from '../../src/common/clock';
import { createTestApp, type TestApp } from '../helpers/test-app';
import {
  fakeKey,
  get,
  MANUAL_SWEEP,
  metric,
  post,
  registerNode,
  requestBody,
  retrieve,
  V1,
  type FakeNode,
} from './api-v1-fixtures';

const limited = (text: string, seconds: number): unknown => ({
  error: {
    message: `Rate limit exceeded: ${text}. Try again in ${seconds} seconds.`,
    type: 'rate_limit_error',
    code: 'rate_limit_exceeded',
    param: null,
  },
});

function submitFrom(
  t: TestApp,
  node: FakeNode,
  headers: Record<string, string> = {},
): ReturnType<typeof post> {
  return post(t, `${V1}/requests`, requestBody(node.key, fakeKey('c')), headers);
}

async function statuses(n: number, fn: () => Promise<{ status: number }>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i += 1) {
    out.push((await fn()).status);
  }
  return out;
}

describe('public rate limit (API_RATE_LIMIT=60/hour)', () => {
  let t: TestApp;
  let clock: ManualClock;
  let node: FakeNode;

  beforeEach(async () => {
    clock = new ManualClock();
    t = await createTestApp(
      {
        ...MANUAL_SWEEP,
        API_RATE_LIMIT: '60/hour',
        TOKEN_PLACE_API_V1_MAX_QUEUE_DEPTH_PER_NODE: '1000',
      },
      clock,
    );
    node = await registerNode(t);
  });

  afterEach(async () => {
    await t.close();
  });

  it('should answer the 61st /requests from one address with 429, the spec body and Retry-After', async () => {
    const before = await metric(t, 'tokenplace_relay_request_outcomes_total', {
      outcome: 'rate_limited',
    });

    const first60 = await statuses(60, () => submitFrom(t, node));
    const sixtyFirst = await submitFrom(t, node);
    const after = await metric(t, 'tokenplace_relay_request_outcomes_total', {
      outcome: 'rate_limited',
    });

    expect(first60).toEqual(Array(60).fill(200));
    expect(sixtyFirst.status).toBe(429);
    expect(sixtyFirst.body).toEqual(limited('60 per 1 hour', 3600));
    expect(sixtyFirst.headers.get('retry-after')).toBe('3600');
    expect(after - before).toBe(1);
  });

  it('should never limit /servers/next, /responses/retrieve, health, metrics, diagnostics or meta', async () => {
    await statuses(61, () => submitFrom(t, node));

    const next = await statuses(120, () => get(t, `${V1}/servers/next`));
    const fetches = await statuses(120, () => retrieve(t, fakeKey(), 'r'));
    const others = await statuses(70, async () => {
      const all = await Promise.all(
        ['/healthz', '/livez', '/metrics', '/relay/diagnostics', '/api/v1/meta'].map((p) =>
          get(t, p),
        ),
      );
      return { status: Math.max(...all.map((r) => r.status)) };
    });

    expect(next.filter((s) => s === 429)).toEqual([]);
    expect(fetches.filter((s) => s === 429)).toEqual([]);
    expect(others.filter((s) => s === 429)).toEqual([]);
  });

  it('should keep separate buckets per route (cancel is limited on its own)', async () => {
    await statuses(61, () => submitFrom(t, node));

    const cancels = await statuses(61, () =>
      post(t, `${V1}/requests/cancel`, {
        client_public_key: 'c',
        request_id: 'r',
        cancel_token: 'x',
      }),
    );

    expect(cancels.slice(0, 60)).toEqual(Array(60).fill(403));
    expect(cancels[60]).toBe(429);
  });

  it('should count the remaining window in Retry-After and admit again when the window resets', async () => {
    await statuses(60, () => submitFrom(t, node));

    clock.advance(600_000);
    await post(t, `${V1}/servers/register`, { server_public_key: node.key });
    const later = await submitFrom(t, node);
    clock.advance(3_000_000);
    await post(t, `${V1}/servers/register`, { server_public_key: node.key });
    const fresh = await submitFrom(t, node);

    expect(later.status).toBe(429);
    expect(later.body).toEqual(limited('60 per 1 hour', 3000));
    expect(later.headers.get('retry-after')).toBe('3000');
    expect(fresh.status).toBe(200);
  });

  it('should rate-limit /api/v1/models like upstream', async () => {
    const results = await statuses(61, () => get(t, '/api/v1/models'));

    expect(results.slice(0, 60)).toEqual(Array(60).fill(200));
    expect(results[60]).toBe(429);
  });
});

describe('rate limits behind reverse proxies', () => {
  async function exhaust(
    t: TestApp,
    node: FakeNode,
    headers: Record<string, string>,
  ): Promise<void> {
    const results = await statuses(3, () => submitFrom(t, node, headers));
    expect(results).toEqual([200, 200, 429]);
  }

  it('should give users behind a trusted proxy (hop count 1) their own buckets', async () => {
    const t = await createTestApp({ API_RATE_LIMIT: '2/hour', TOKENPLACE_RELAY_TRUST_PROXY: '1' });
    try {
      const node = await registerNode(t);
      await exhaust(t, node, { 'X-Forwarded-For': '203.0.113.7' });

      const other = await submitFrom(t, node, { 'X-Forwarded-For': '198.51.100.9' });
      const sameUserNewHop = await submitFrom(t, node, {
        'X-Forwarded-For': '10.9.9.9, 203.0.113.7',
      });

      expect(other.status).toBe(200);
      expect(sameUserNewHop.status).toBe(429);
    } finally {
      await t.close();
    }
  });

  it('should trust X-Forwarded-For from loopback proxies when configured by name', async () => {
    const t = await createTestApp({
      API_RATE_LIMIT: '2/hour',
      TOKENPLACE_RELAY_TRUST_PROXY: 'loopback',
    });
    try {
      const node = await registerNode(t);
      await exhaust(t, node, { 'X-Forwarded-For': '203.0.113.7' });

      const other = await submitFrom(t, node, { 'X-Forwarded-For': '198.51.100.9' });

      expect(other.status).toBe(200);
    } finally {
      await t.close();
    }
  });

  it('should ignore a forged X-Forwarded-For when no proxy is trusted', async () => {
    const t = await createTestApp({ API_RATE_LIMIT: '2/hour' });
    try {
      const node = await registerNode(t);
      await exhaust(t, node, { 'X-Forwarded-For': '203.0.113.7' });

      const forged = await submitFrom(t, node, { 'X-Forwarded-For': '198.51.100.9' });
      const none = await submitFrom(t, node);

      expect(forged.status).toBe(429);
      expect(none.status).toBe(429);
    } finally {
      await t.close();
    }
  });
});

describe('control-plane rate limits', () => {
  it('should limit registrations per node identity without touching other nodes', async () => {
    const t = await createTestApp({ API_RELAY_CONTROL_PLANE_REGISTER_RATE_LIMIT: '2/hour' });
    try {
      const key = fakeKey();
      const body = { server_public_key: key };

      const own = await statuses(3, () => post(t, `${V1}/servers/register`, body));
      const third = await post(t, `${V1}/servers/register`, body);
      const other = await post(t, `${V1}/servers/register`, { server_public_key: fakeKey() });

      expect(own).toEqual([200, 200, 429]);
      expect(third.body).toEqual(limited('2 per 1 hour', 3600));
      expect(third.headers.get('retry-after')).toBe('3600');
      expect(other.status).toBe(200);
    } finally {
      await t.close();
    }
  });

  it('should apply the per-address limit to each compute-node route', async () => {
    const t = await createTestApp({
      API_RELAY_CONTROL_PLANE_IP_RATE_LIMIT: '3/hour',
      TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '0',
    });
    try {
      const node = await registerNode(t);

      const polls = await statuses(4, () =>
        post(t, `${V1}/servers/poll`, { server_public_key: node.key }),
      );
      const control = await post(t, `${V1}/servers/control`, {
        server_public_key: node.key,
        request_id: 'r',
        control_credential: node.credential,
      });

      expect(polls).toEqual([200, 200, 200, 429]);
      expect(control.status).toBe(200);
    } finally {
      await t.close();
    }
  });

  it('should not charge the public limit to compute-node routes', async () => {
    const t = await createTestApp({
      API_RATE_LIMIT: '1/hour',
      TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '0',
    });
    try {
      const node = await registerNode(t);

      const polls = await statuses(5, () =>
        post(t, `${V1}/servers/poll`, { server_public_key: node.key }),
      );

      expect(polls).toEqual([200, 200, 200, 200, 200]);
    } finally {
      await t.close();
    }
  });
});
