import { ManualClock } from '../../src/common/clock';
import { eventually } from '../helpers/eventually';
import { HeadNodeLoop } from '../helpers/gateway';
import { V1NodeSim, type V1Work } from '../helpers/simulators';
import { call, createTestApp, type TestApp, type WireResult } from '../helpers/test-app';
import { apiError, storeVariants, submit } from './api-v1-fixtures';

/**
 * The gateway's client key (docs/decisions.md, "One client key per gateway process"): every chat
 * of a process is sealed for the node under one key, made off the request path and replaced in the
 * background; the store's per-client cap does not make all gateway users one client, and still
 * holds a stranger who names that key to it. What the node sees on the wire is the evidence.
 */
const chat = (t: TestApp, content: string): Promise<WireResult> =>
  call(t.baseUrl, 'POST', '/v1/chat/completions', {
    model: 'qwen3-8b-instruct',
    messages: [{ role: 'user', content }],
  });

async function queueDepth(t: TestApp): Promise<number> {
  const diag = await call(t.baseUrl, 'GET', '/relay/diagnostics');
  const nodes = diag.body.api_v1_registered_compute_nodes as Array<{ queue_depth: number }>;
  return nodes[0]?.queue_depth ?? 0;
}

/** Polls until `n` work items were handed over (the node answers none of them yet). */
async function takeAll(node: V1NodeSim, n: number): Promise<V1Work[]> {
  const works: V1Work[] = [];
  while (works.length < n) {
    const work = await node.take();
    if (work !== null) {
      works.push(work);
    }
  }
  return works;
}

const LONG_LEASE = { TOKEN_PLACE_API_V1_RELAY_SERVER_LEASE_SECONDS: '3600' };

describe.each(storeVariants('gateway client key'))('gateway client key ($label)', (variant) => {
  afterAll(() => variant.cleanup());

  it('should seal every chat under one client key, and admit more chats than the per-client cap', async () => {
    const t = await createTestApp({
      ...variant.env(),
      ...LONG_LEASE,
      TOKENPLACE_RELAY_MAX_PENDING_PER_CLIENT: '4',
    });
    const node = new V1NodeSim(t.baseUrl);
    try {
      await node.register();
      const chats = Array.from({ length: 10 }, (_, i) => chat(t, `chat ${i}`));
      await eventually(async () => ((await queueDepth(t)) === 10 ? true : undefined));
      const works = await takeAll(node, 10);
      const answers = await Promise.all(works.map((w) => node.respond(w)));
      const results = await Promise.all(chats);

      expect(answers.map((a) => a.status)).toEqual(Array(10).fill(200));
      expect(results.map((r) => r.status)).toEqual(Array(10).fill(200));
      expect(new Set(works.map((w) => w.clientKey)).size).toBe(1);
      expect(new Set(works.map((w) => w.requestId)).size).toBe(10);
      expect(works.every((w) => w.inner.client_public_key === w.clientKey)).toBe(true);
      const contents = results.map(
        (r) => (r.body.choices as Array<{ message: { content: string } }>)[0]!.message.content,
      );
      expect(contents.sort()).toEqual(
        Array.from({ length: 10 }, (_, i) => `echo: ${[...`chat ${i}`].reverse().join('')}`).sort(),
      );
    } finally {
      await t.close();
    }
  });

  it("should hold a stranger who names the gateway's client key to the per-client cap", async () => {
    const t = await createTestApp({
      ...variant.env(),
      ...LONG_LEASE,
      TOKENPLACE_RELAY_MAX_PENDING_PER_CLIENT: '4',
    });
    const node = new V1NodeSim(t.baseUrl);
    try {
      await node.register();
      // Left waiting: they end when the app closes.
      const chats = Array.from({ length: 6 }, (_, i) => chat(t, `held ${i}`).catch(() => null));
      await eventually(async () => ((await queueDepth(t)) === 6 ? true : undefined));
      const [seen] = await takeAll(node, 1);
      const gatewayKey = seen!.clientKey;

      const stranger = await submit(t, node.key, { clientKey: gatewayKey });
      const other = await submit(t, node.key);

      expect(stranger.res.status).toBe(429);
      expect(stranger.res.body).toEqual(
        apiError(
          'Too many pending requests for this client; retry when one finishes',
          'relay_capacity_exceeded',
        ),
      );
      expect(stranger.res.headers.get('retry-after')).toBe('5');
      expect(other.res.status).toBe(200);
      expect(await queueDepth(t)).toBe(6); // 5 gateway chats still queued, and the other client's
      expect(chats).toHaveLength(6);
    } finally {
      await t.close();
    }
  });
});

describe('gateway client key rotation', () => {
  it('should replace the key in the background once it is older than the rotation period, and still answer chats sealed under the old one', async () => {
    const clock = new ManualClock();
    const t = await createTestApp(
      { ...LONG_LEASE, TOKENPLACE_GATEWAY_CLIENT_KEY_ROTATE_SECONDS: '60' },
      clock,
    );
    const node = new V1NodeSim(t.baseUrl);
    try {
      await node.register();
      const first = chat(t, 'before');
      const second = chat(t, 'before too');
      const [a, b] = await takeAll(node, 2);
      clock.advance(61_000);

      // The first chat past the period still gets the old key (no keygen on the request path);
      // a later one gets the new key once the background keygen is done.
      const rotated = await eventually(
        async () => {
          const pending = chat(t, 'after');
          const [w] = await takeAll(node, 1);
          await node.respond(w!);
          expect((await pending).status).toBe(200);
          return w!.clientKey !== a!.clientKey ? w! : undefined;
        },
        100,
        50,
      );
      const again = chat(t, 'after again');
      const [c] = await takeAll(node, 1);
      await node.respond(c!);
      await node.respond(a!);
      await node.respond(b!);

      expect(a!.clientKey).toBe(b!.clientKey);
      expect(rotated.clientKey).not.toBe(a!.clientKey);
      expect(c!.clientKey).toBe(rotated.clientKey);
      expect([(await first).status, (await second).status, (await again).status]).toEqual([
        200, 200, 200,
      ]);
    } finally {
      await t.close();
    }
  });
});

describe('gateway chats are bounded per address by the gateway, not by a shared key', () => {
  it("should refuse one address's chats beyond its rate limit, whatever key they are sealed under", async () => {
    const t = await createTestApp({ API_RATE_LIMIT: '3/minute', ...LONG_LEASE });
    const node = await new HeadNodeLoop(t.baseUrl, undefined, {
      controlDelayMs: 0,
      answerDelayMs: 0,
    }).start();
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 5; i += 1) {
        statuses.push((await chat(t, `limited ${i}`)).status);
      }

      expect(statuses).toEqual([200, 200, 200, 429, 429]);
      expect(node.works).toHaveLength(3);
    } finally {
      await node.stop();
      await t.close();
    }
  });
});
