import { ManualClock } from '../../src/common/clock';
import { fakeKey } from './api-v1-fixtures';
import { V1ClientSim, V1NodeSim, type V1Work } from '../helpers/simulators';
import { call, createTestApp, type TestApp } from '../helpers/test-app';

/**
 * Issue 18 item 4: rate limits cannot be turned against the people they protect. Strangers come
 * from other addresses through a trusted proxy (X-Forwarded-For from loopback), as on the internet.
 */
const V1 = '/api/v1/relay';
const from = (ip: string) => ({ 'X-Forwarded-For': ip });

describe('rate limits that strangers cannot turn against others (issue 18 item 4)', () => {
  let t: TestApp | undefined;

  afterEach(async () => {
    await t?.close();
    t = undefined;
  });

  it('should never refuse a newcomer because strangers filled the bucket table (least recently used goes)', async () => {
    t = await createTestApp({
      API_RATE_LIMIT: '60/hour',
      API_DAILY_QUOTA: '1000/day',
      TOKENPLACE_RELAY_MAX_RATE_LIMIT_BUCKETS: '100',
      TOKENPLACE_RELAY_TRUST_PROXY: 'loopback',
      TOKENPLACE_RELAY_SERVER_TOKEN: 'node-token',
    });
    for (let i = 0; i < 150; i += 1) {
      await call(t.baseUrl, 'POST', `${V1}/requests`, {}, from(`198.51.100.${i}`));
    }
    const buckets = (await t.store.stats(t.clock.now())).rateLimitBuckets;

    const newcomer = await call(t.baseUrl, 'POST', `${V1}/requests`, {}, from('203.0.113.1'));
    const models = await call(t.baseUrl, 'GET', '/v1/models', undefined, from('203.0.113.2'));
    const node = new V1NodeSim(t.baseUrl, { token: 'node-token' });
    const registered = await node.register();

    expect(buckets).toBeLessThanOrEqual(100);
    expect(newcomer.status).toBe(400);
    expect(models.status).toBe(200);
    expect(registered.status).toBe(200);
  });

  it("should not let /sink calls naming a node's key from elsewhere use up that node's poll budget (open mode)", async () => {
    t = await createTestApp({
      TOKENPLACE_RELAY_TRUST_PROXY: 'loopback',
      API_RELAY_CONTROL_PLANE_POLL_RATE_LIMIT: '5/hour',
      TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '0',
    });
    const victim = new V1NodeSim(t.baseUrl, {
      transport: (base, method, path, body, headers) =>
        call(base, method, path, body, { ...headers, ...from('203.0.113.10') }),
    });
    await victim.register();
    const attack: number[] = [];
    for (let i = 0; i < 8; i += 1) {
      const res = await call(
        t.baseUrl,
        'POST',
        '/sink',
        { server_public_key: victim.key },
        from('198.51.100.66'),
      );
      attack.push(res.status);
    }

    const poll = await call(
      t.baseUrl,
      'POST',
      `${V1}/servers/poll`,
      { server_public_key: victim.key },
      from('203.0.113.10'),
    );

    expect(attack.slice(-1)).toEqual([429]);
    expect(poll.status).toBe(200);
  });

  it("should give back the identity hit of a /servers/control call with a wrong credential, so the owner's call still passes", async () => {
    t = await createTestApp({ API_RELAY_CONTROL_PLANE_CONTROL_RATE_LIMIT: '5/hour' });
    const owner = new V1NodeSim(t.baseUrl);
    await owner.register();
    const wrong: number[] = [];
    for (let i = 0; i < 12; i += 1) {
      wrong.push((await owner.control('r1', false, 'not-the-credential')).status);
    }

    const own = await owner.control('r1');

    expect(wrong).toEqual(Array.from({ length: 12 }, () => 403));
    expect(own.status).toBe(200);
  });

  it('should hold registrations of a key from one address to that address (open mode)', async () => {
    t = await createTestApp({
      TOKENPLACE_RELAY_TRUST_PROXY: 'loopback',
      API_RELAY_CONTROL_PLANE_REGISTER_RATE_LIMIT: '3/hour',
    });
    const key = fakeKey();
    const body = { server_public_key: key, capabilities: { supported_model_ids: ['m'] } };
    const owner = await call(
      t.baseUrl,
      'POST',
      `${V1}/servers/register`,
      body,
      from('203.0.113.5'),
    );
    const attack: number[] = [];
    for (let i = 0; i < 5; i += 1) {
      attack.push(
        (await call(t.baseUrl, 'POST', `${V1}/servers/register`, body, from('198.51.100.7')))
          .status,
      );
    }

    const again = await call(
      t.baseUrl,
      'POST',
      `${V1}/servers/register`,
      body,
      from('203.0.113.5'),
    );

    expect(owner.status).toBe(200);
    expect(attack.slice(-2)).toEqual([429, 429]);
    expect(again.status).not.toBe(429);
  });

  it('should still share one identity budget between token holders (a matched token is trusted)', async () => {
    t = await createTestApp({
      TOKENPLACE_RELAY_TRUST_PROXY: 'loopback',
      TOKENPLACE_RELAY_SERVER_TOKEN: 'node-token',
      API_RELAY_CONTROL_PLANE_REGISTER_RATE_LIMIT: '2/hour',
    });
    const body: Record<string, unknown> = {
      server_public_key: fakeKey(),
      capabilities: { supported_model_ids: ['m'] },
    };
    const headers = (ip: string) => ({ ...from(ip), 'X-Relay-Server-Token': 'node-token' });
    const statuses: number[] = [];
    for (const ip of ['203.0.113.5', '198.51.100.7', '192.0.2.9']) {
      const res = await call(t.baseUrl, 'POST', `${V1}/servers/register`, body, headers(ip));
      statuses.push(res.status);
      // A live key answers another address only with its credential (item 7).
      body.control_credential ??= res.body.control_credential;
    }

    expect(statuses).toEqual([200, 200, 429]);
  });

  it('should never answer 429 to a node keeping 128 requests in flight with the default budgets', async () => {
    const clock = new ManualClock();
    t = await createTestApp({ TOKENPLACE_RELAY_MAX_PENDING_PER_CLIENT: '1000' }, clock);
    let capture: ((body: unknown) => void) | null = null;
    const node = new V1NodeSim(t.baseUrl, {
      transport: (base, method, path, body, headers) => {
        if (capture === null) {
          return call(base, method, path, body, headers);
        }
        capture(body);
        return Promise.resolve({ status: 202, body: {}, headers: new Headers(), text: '' });
      },
      capabilities: {
        api_version: 'v1',
        supported_model_ids: ['qwen3-8b-instruct'],
        active_context_tier: '8k-fast',
        maximum_total_context_tokens: 8192,
        default_output_token_reservation: 1024,
        maximum_output_tokens: 8192,
        max_concurrency: 128,
        backend_class: 'cuda',
      },
    });
    const client = new V1ClientSim(t.baseUrl);
    await node.register();
    const works: V1Work[] = [];
    for (let i = 0; i < 128; i += 1) {
      await client.submit(node.key, `question ${i}`);
    }
    const statuses = new Map<string, number[]>();
    const count = (route: string, status: number): void => {
      statuses.set(route, [...(statuses.get(route) ?? []), status]);
    };
    // Spec §7.4: a poll per claim, then control at once and every 10 s, progress once a second,
    // a re-registration every 24 s; 90 s of it (progress in the first 60), then every answer.
    for (let i = 0; i < 128; i += 1) {
      const work = await node.take();
      count('poll', 200);
      works.push(work!);
      count('control', (await node.control(work!.requestId)).status);
    }
    // The progress envelopes are sealed once and sent again each second (the relay keeps the latest).
    const progressBodies: unknown[] = [];
    capture = (body) => progressBodies.push(body);
    for (const work of works) {
      await node.progress(work, { tokens: 1 });
    }
    capture = null;
    for (let second = 1; second <= 90; second += 1) {
      clock.advance(1000);
      // Progress for the first minute only: 7,680 posts already pass the old 7200/hour budget.
      const batch: Array<Promise<void>> =
        second > 60
          ? []
          : progressBodies.map(async (body) => {
              const res = await call(t!.baseUrl, 'POST', `${V1}/progress`, body);
              count('progress', res.status);
            });
      if (second % 10 === 0) {
        batch.push(
          ...works.map(async (w) => count('control', (await node.control(w.requestId)).status)),
        );
      }
      if (second % 24 === 0) {
        batch.push(node.register().then((r) => count('register', r.status)));
      }
      await Promise.all(batch);
    }
    for (const work of works) {
      count('response', (await node.respond(work)).status);
    }

    const refused = [...statuses].map(([route, list]) => [
      route,
      list.filter((s) => s === 429).length,
    ]);
    expect(Object.fromEntries(refused)).toEqual({
      poll: 0,
      control: 0,
      progress: 0,
      register: 0,
      response: 0,
    });
    expect(statuses.get('progress')?.every((s) => s === 202)).toBe(true);
    expect(statuses.get('control')?.length).toBeGreaterThan(1200);
    expect(statuses.get('progress')?.length).toBe(128 * 60);
  }, 120_000);
});
