import { DemoNode, MOCK_REPLIES, newDemoNodeKey } from '../../src/demo/demo.node';
import { RegistryService } from '../../src/registry/registry.service';
import type { NodeCapabilities } from '../../src/state/state.types';
import { HeadNodeLoop } from '../helpers/gateway';
import { call, createTestApp, type TestApp, type WireResult } from '../helpers/test-app';
import { storeVariants, V1 } from './api-v1-fixtures';

/**
 * Issue 18 item 5: a node whose key cannot be used (here `junk`, as registrations before this
 * relay checked keys could leave behind) never breaks a gateway chat: the gateway treats it like a
 * vanished node and fails over, and the scheduler stops offering it, also in front of the demo
 * node (the fallback tier).
 */
const CAPS: NodeCapabilities = {
  api_version: 'v1',
  supported_model_ids: ['qwen3-8b-instruct'],
  active_context_tier: '8k-fast',
  maximum_total_context_tokens: 8192,
  default_output_token_reservation: 1024,
  maximum_output_tokens: 8192,
  max_concurrency: 1,
  backend_class: 'cuda',
};

/** A junk registration straight into the store, as one made before keys were checked. */
async function plantJunk(t: TestApp, nodeId = 'junk'): Promise<void> {
  const res = await t.store.upsertNode({
    nodeId,
    dialect: 'v1',
    capabilities: CAPS,
    newCredentialDigest: 'digest-of-nothing',
    pollingUntil: t.clock.now() + 600_000,
    now: t.clock.now(),
  });
  expect(res.status).toBe('created');
}

const chat = (t: TestApp): Promise<WireResult> =>
  call(t.baseUrl, 'POST', '/v1/chat/completions', {
    model: 'qwen3-8b-instruct',
    messages: [{ role: 'user', content: 'What is the capital of France?' }],
  });

async function chats(t: TestApp, n: number): Promise<WireResult[]> {
  const out: WireResult[] = [];
  for (let i = 0; i < n; i += 1) {
    out.push(await chat(t));
  }
  return out;
}

async function picks(t: TestApp, n: number): Promise<unknown[]> {
  const out: unknown[] = [];
  for (let i = 0; i < n; i += 1) {
    out.push((await call(t.baseUrl, 'GET', `${V1}/servers/next`)).body.server_public_key);
  }
  return out;
}

describe.each(storeVariants('junk node vs gateway'))(
  'a junk node and the gateway ($label)',
  (variant) => {
    let t: TestApp;

    afterEach(async () => {
      await t.close();
      await variant.cleanup();
    });

    it('should answer every chat next to an honest node and stop offering the junk key', async () => {
      t = await createTestApp(variant.env());
      const node = await new HeadNodeLoop(t.baseUrl, () => ({ kind: 'answer' }), {
        controlDelayMs: 0,
        answerDelayMs: 0,
      }).start();
      await plantJunk(t);

      const results = await chats(t, 20);
      const offered = await picks(t, 10);
      await node.stop();

      expect(results.map((r) => r.status)).toEqual(Array(20).fill(200));
      expect(node.works.length).toBe(20);
      expect(offered).toEqual(Array(10).fill(node.key));
    });

    it('should answer every chat with the demo node when the only other node is junk', async () => {
      t = await createTestApp(variant.env());
      const key = await newDemoNodeKey();
      t.app.get(RegistryService).markFallback(key.publicKeyB64);
      const demo = new DemoNode({ baseUrl: t.baseUrl, token: null, key: Promise.resolve(key) });
      await demo.start();
      await plantJunk(t);

      const results = await chats(t, 20);
      const offered = await picks(t, 5);
      await demo.stop();

      expect(results.map((r) => r.status)).toEqual(Array(20).fill(200));
      for (const res of results) {
        const choices = res.body.choices as Array<{ message: { content: string } }>;
        expect(MOCK_REPLIES).toContain(choices[0]!.message.content);
      }
      expect(offered).toEqual(Array(5).fill(key.publicKeyB64));
    });

    it('should answer 503 no node, not 502, when junk is all there is', async () => {
      t = await createTestApp(variant.env());
      await plantJunk(t);

      const res = await chat(t);
      const next = await call(t.baseUrl, 'GET', `${V1}/servers/next`);

      expect(res.status).toBe(503);
      expect(res.body).toMatchObject({ error: { code: 'no_compute_node_available' } });
      expect(next.status).toBe(503);
    });
  },
);
