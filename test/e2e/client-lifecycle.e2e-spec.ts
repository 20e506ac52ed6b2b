import { ManualClock } from '../../src/common/clock';
import type { NodeCapabilities } from '../../src/state/state.types';
import { eventually } from '../helpers/eventually';
import { call, createTestApp, type TestApp, type WireResult } from '../helpers/test-app';
import {
  cancel,
  capabilities,
  control,
  fakeKey,
  parked,
  poll,
  post,
  registerNode,
  storeVariants,
  submit,
  V1,
  type FakeNode,
  type FakeRequest,
} from './api-v1-fixtures';

/**
 * Issue 20 item 1: one client lifecycle behind the legacy routes, the API v1 routes and the
 * gateway. The same situations, driven through each entry point, end the same way, each in its own
 * dialect: new work while draining, a wait when the drain starts, a wait that times out, a
 * cancelled request, a node that vanished and a node whose key nothing can be encrypted to.
 * Nodes are fakes (the relay never decrypts), so only what the relay does is asserted.
 */
type Entry = 'legacy' | 'api v1' | 'gateway';

const MODEL = 'qwen3-8b-instruct';
const NO_POLL_WAIT = { TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '0' };
/** Outlives any test: a pending promise still pending after this is a wait that did not end. */
const STILL_WAITING_MS = 3000;

const legacyNodeKey = (): string => `legacy-node-${Math.random().toString(16).slice(2)}`;

function faucet(t: TestApp, nodeKey: string, clientKey = fakeKey('client')): Promise<WireResult> {
  return call(t.baseUrl, 'POST', '/faucet', {
    server_public_key: nodeKey,
    client_public_key: clientKey,
    chat_history: 'c',
    cipherkey: 'k',
    iv: 'i',
  });
}

function chat(t: TestApp, signal?: AbortSignal): Promise<WireResult> {
  return fetch(`${t.baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'hello' }] }),
    signal,
  }).then(async (res) => {
    const text = await res.text();
    return {
      status: res.status,
      body: JSON.parse(text) as Record<string, unknown>,
      headers: res.headers,
      text,
    };
  });
}

function heldRetrieve(t: TestApp, clientKey: string, requestId: string, waitSeconds: number) {
  return post(
    t,
    `${V1}/responses/retrieve`,
    { client_public_key: clientKey, request_id: requestId },
    { Prefer: `wait=${waitSeconds}` },
  );
}

/** The work a node's poll hands out, once the request reached its queue. */
async function claimed(t: TestApp, node: FakeNode): Promise<{ requestId: string }> {
  return eventually(async () => {
    const work = await poll(t, node);
    return typeof work.body.request_id === 'string'
      ? { requestId: work.body.request_id }
      : undefined;
  });
}

/** Resolves to the answer, or to 'still waiting' when it has not come after a while. */
function settled<T>(p: Promise<T>): Promise<T | 'still waiting'> {
  return Promise.race([
    p,
    new Promise<'still waiting'>((r) => setTimeout(() => r('still waiting'), STILL_WAITING_MS)),
  ]);
}

const errorCode = (res: WireResult | 'still waiting'): unknown =>
  res === 'still waiting' ? res : (res.body.error as Record<string, unknown> | undefined)?.code;

describe.each(storeVariants('client lifecycle'))('one client lifecycle ($label)', (variant) => {
  let t: TestApp | null = null;

  afterEach(async () => {
    await t?.close();
    t = null;
    await variant.cleanup();
  });

  describe('new work while the relay drains', () => {
    // One rule: refused when nothing but this process could see it through (every submission
    // with the memory store; the gateway, which awaits the answer itself, with either store).
    const memory = variant.label === 'memory store';
    it.each<[Entry, number, string]>([
      ['legacy', memory ? 503 : 200, memory ? 'relay_draining' : '(accepted)'],
      ['api v1', memory ? 503 : 200, memory ? 'relay_draining' : '(accepted)'],
      ['gateway', 503, 'relay_draining'],
    ])('%s answers %i %s', async (entry, status, code) => {
      t = await createTestApp(variant.env());
      const legacy = legacyNodeKey();
      await call(t.baseUrl, 'POST', '/sink', { server_public_key: legacy });
      const node = await registerNode(t);
      t.lifecycle.startDraining('SIGTERM');

      const res =
        entry === 'legacy'
          ? await faucet(t, legacy)
          : entry === 'api v1'
            ? (await submit(t, node.key)).res
            : await chat(t);

      expect(res.status).toBe(status);
      if (status === 503) {
        expect(errorCode(res)).toBe(code);
        expect(res.headers.get('retry-after')).toBe('1');
      }
    });
  });

  describe('a wait in progress when the relay starts draining', () => {
    it.each<[Entry, number, unknown]>([
      ['legacy', 200, { error: 'No response available for the given public key' }],
      ['api v1', 202, expect.objectContaining({ status: 'pending' })],
      [
        'gateway',
        503,
        {
          error: {
            message: 'Relay is shutting down; retry',
            type: 'service_unavailable_error',
            code: 'relay_draining',
          },
        },
      ],
    ])('%s ends the wait at once: %i', async (entry, status, body) => {
      const clock = new ManualClock();
      t = await createTestApp(
        { ...variant.env(), ...NO_POLL_WAIT, TOKENPLACE_RELAY_RETRIEVE_HOLD_SECONDS: '8' },
        clock,
      );
      const app = t;
      const node = await registerNode(app);
      const clientKey = fakeKey('client');
      let waiting: Promise<WireResult>;
      let requestId = '';
      if (entry === 'legacy') {
        waiting = call(app.baseUrl, 'POST', '/retrieve', { client_public_key: clientKey });
      } else if (entry === 'api v1') {
        const req = await submit(app, node.key, { clientKey });
        requestId = req.requestId;
        waiting = heldRetrieve(app, clientKey, requestId, 8);
      } else {
        waiting = chat(app);
        requestId = (await claimed(app, node)).requestId;
      }
      await parked(app.lifecycle);

      app.lifecycle.startDraining('SIGTERM');
      const res = await settled(waiting);

      expect(res === 'still waiting' ? res : res.status).toBe(status);
      expect(res === 'still waiting' ? res : res.body).toEqual(body);
      if (entry === 'gateway') {
        // Only this process could have delivered its answer: the node is told to stop.
        expect((await control(app, node, requestId)).body.status).toBe('cancelled');
      }
      if (entry === 'api v1' && variant.label === 'Redis store') {
        // Another replica may still hand the request out and return its answer.
        expect((await poll(app, node)).body.request_id).toBe(requestId);
      }
    });
  });

  describe('a wait that reaches its time', () => {
    it.each<[Entry, number, unknown]>([
      ['legacy', 200, { error: 'No response available for the given public key' }],
      ['api v1', 202, expect.objectContaining({ status: 'pending' })],
      [
        'gateway',
        504,
        {
          error: {
            message: 'The LLM server took too long to respond. Please try again.',
            type: 'timeout_error',
            code: 'compute_node_timeout',
          },
        },
      ],
    ])('%s answers %i once its hold ends', async (entry, status, body) => {
      const clock = new ManualClock();
      t = await createTestApp(
        {
          ...variant.env(),
          ...NO_POLL_WAIT,
          TOKENPLACE_RELAY_RETRIEVE_HOLD_SECONDS: '2',
          TOKENPLACE_API_V1_DISTRIBUTED_TIMEOUT_SECONDS: '2',
          TOKENPLACE_RELAY_SWEEP_INTERVAL_SECONDS: '60',
        },
        clock,
      );
      const app = t;
      const node = await registerNode(app);
      const clientKey = fakeKey('client');
      let waiting: Promise<WireResult>;
      let requestId = '';
      if (entry === 'legacy') {
        waiting = call(app.baseUrl, 'POST', '/retrieve', { client_public_key: clientKey });
      } else if (entry === 'api v1') {
        const req = await submit(app, node.key, { clientKey });
        requestId = req.requestId;
        waiting = heldRetrieve(app, clientKey, requestId, 2);
      } else {
        waiting = chat(app);
        requestId = (await claimed(app, node)).requestId;
      }
      await parked(app.lifecycle);

      clock.advance(2001);
      const res = await settled(waiting);

      expect(res === 'still waiting' ? res : res.status).toBe(status);
      expect(res === 'still waiting' ? res : res.body).toEqual(body);
      if (entry === 'gateway') {
        expect((await control(app, node, requestId)).body.status).toBe('expired');
      }
    });
  });

  describe('a cancelled request (the legacy protocol has no cancel)', () => {
    it.each<[Entry]>([['api v1'], ['gateway']])(
      '%s ends it with its proof, and the node sees cancelled',
      async (entry) => {
        t = await createTestApp({ ...variant.env(), ...NO_POLL_WAIT });
        const app = t;
        const node = await registerNode(app);
        let requestId: string;
        let answered: Promise<unknown>;
        if (entry === 'api v1') {
          const req: FakeRequest = await submit(app, node.key);
          requestId = (await claimed(app, node)).requestId;
          const waiting = heldRetrieve(app, req.clientKey, req.requestId, 8);
          await new Promise((r) => setTimeout(r, 50));
          expect((await cancel(app, req)).status).toBe(200);
          const res = await waiting;
          expect([res.status, res.body.error]).toEqual([
            410,
            expect.objectContaining({ code: 'cancelled' }),
          ]);
          answered = Promise.resolve();
        } else {
          const caller = new AbortController();
          answered = chat(app, caller.signal).catch(() => undefined);
          requestId = (await claimed(app, node)).requestId;
          caller.abort();
        }
        await answered;

        const state = await eventually(async () => {
          const res = await control(app, node, requestId);
          return res.body.status === 'cancelled' ? res.body.status : undefined;
        });
        expect(state).toBe('cancelled');
      },
    );
  });

  describe('a node that vanished', () => {
    it('legacy and api v1 refuse new work for it with the same 404', async () => {
      t = await createTestApp(variant.env());

      const legacy = await faucet(t, legacyNodeKey());
      const v1 = (await submit(t, fakeKey('gone'))).res;

      for (const res of [legacy, v1]) {
        expect(res.status).toBe(404);
        expect(res.text).toContain('Server with the specified public key not found');
      }
    });

    it.each<[Entry]>([['api v1'], ['gateway']])(
      '%s: work queued at a node that leaves goes on at another node',
      async (entry) => {
        t = await createTestApp({ ...variant.env(), ...NO_POLL_WAIT });
        const app = t;
        const a = await registerNode(app);
        const b = await registerNode(app);
        const caller = new AbortController();
        let first: { node: FakeNode; requestId: string };
        let retried: Promise<string>;
        if (entry === 'api v1') {
          // The page: its retrieve says the node left (410), it picks another node and resubmits.
          const req = await submit(app, a.key);
          first = { node: a, requestId: req.requestId };
          await post(app, `${V1}/servers/unregister`, {
            server_public_key: a.key,
            control_credential: a.credential,
          });
          const ended = await post(app, `${V1}/responses/retrieve`, {
            client_public_key: req.clientKey,
            request_id: req.requestId,
          });
          expect([ended.status, ended.body.error]).toEqual([
            410,
            expect.objectContaining({ status: 'cancelled', reason: 'server_unregistered' }),
          ]);
          const next = await call(app.baseUrl, 'GET', `${V1}/servers/next`);
          expect(next.body.server_public_key).toBe(b.key);
          const again = await submit(app, b.key, { clientKey: req.clientKey });
          retried = Promise.resolve(again.requestId);
        } else {
          // The gateway does the same by itself.
          void chat(app, caller.signal).catch(() => undefined);
          const taken = await eventually(async () => {
            for (const node of [a, b]) {
              const work = await poll(app, node);
              if (typeof work.body.request_id === 'string') {
                return { node, requestId: work.body.request_id };
              }
            }
            return undefined;
          });
          first = taken;
          await post(app, `${V1}/servers/unregister`, {
            server_public_key: taken.node.key,
            control_credential: taken.node.credential,
          });
          retried = Promise.resolve('');
        }
        const other = first.node === a ? b : a;
        const moved = await claimed(app, other);
        caller.abort();

        expect(moved.requestId).not.toBe(first.requestId);
        if (entry === 'api v1') {
          expect(moved.requestId).toBe(await retried);
        }
      },
    );
  });

  describe('a node whose key nothing can be encrypted to', () => {
    const CAPS = capabilities() as unknown as NodeCapabilities;

    /** A registration made before keys were checked, straight into the store. */
    async function plantJunk(app: TestApp): Promise<void> {
      const res = await app.store.upsertNode({
        nodeId: 'junk',
        dialect: 'v1',
        capabilities: CAPS,
        newCredentialDigest: 'digest-of-nothing',
        pollingUntil: app.clock.now() + 600_000,
        now: app.clock.now(),
      });
      expect(res.status).toBe('created');
    }

    it.each<[Entry]>([['api v1'], ['gateway']])(
      '%s never hands it out, even before any client tried it, and marks it',
      async (entry) => {
        t = await createTestApp({ ...variant.env(), ...NO_POLL_WAIT });
        const app = t;
        await plantJunk(app);
        const good = await registerNode(app);
        const caller = new AbortController();
        const chosen: unknown[] = [];
        for (let i = 0; i < 4; i += 1) {
          if (entry === 'api v1') {
            const next = await call(app.baseUrl, 'GET', `${V1}/servers/next?model=${MODEL}`);
            chosen.push(next.body.server_public_key);
          } else {
            void chat(app, caller.signal).catch(() => undefined);
            await claimed(app, good);
            chosen.push(good.key);
          }
        }
        caller.abort();
        const junk = (await app.store.listNodes(app.clock.now())).find((n) => n.nodeId === 'junk');

        expect(chosen).toEqual(Array(4).fill(good.key));
        expect(junk?.keyUnusable).toBe(true);
      },
    );

    it('legacy: nothing to check (legacy keys are opaque to the relay); api v1 and the gateway answer 503 no node when junk is all there is', async () => {
      t = await createTestApp(variant.env());
      await plantJunk(t);

      const next = await call(t.baseUrl, 'GET', `${V1}/servers/next`);
      const res = await chat(t);

      expect([next.status, errorCode(next)]).toEqual([503, 'no_registered_compute_nodes']);
      expect([res.status, errorCode(res)]).toEqual([503, 'no_compute_node_available']);
    });
  });
});
