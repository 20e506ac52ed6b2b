import { newIdentity, seal as nodeSeal } from '../../src/peer/peer.crypto';
import {
  ChatFlow,
  type ActiveRequest,
  type ChatOutcome,
  type FlowOptions,
  type Timers,
} from '../../src/ui/web/chat.flow';
import type { QueueInfo } from '../../src/ui/web/chat.outcome';
import { TabIdentity } from '../../src/ui/web/e2ee.crypto';
import { PROTOCOL, type Progress, type TierChoice } from '../../src/ui/web/envelope.protocol';
import { RelayApi } from '../../src/ui/web/relay.api';
import {
  PROTOCOL as SIM_PROTOCOL,
  simulatedAnswer,
  V1ClientSim,
  V1NodeSim,
  type V1Work,
} from '../helpers/simulators';
import { call, createTestApp, type TestApp } from '../helpers/test-app';

function urlOf(input: string | URL | Request): string {
  return typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
}

/** Time that moves only when the flow sleeps: no real waiting, and every wait is recorded. */
class VirtualTimers implements Timers {
  current = 0;
  readonly sleeps: number[] = [];

  now(): number {
    return this.current;
  }

  sleep(ms: number): Promise<void> {
    this.sleeps.push(ms);
    this.current += ms;
    return Promise.resolve();
  }
}

interface Run {
  outcome: Promise<ChatOutcome>;
  controller: AbortController;
  progress: Progress[];
  active: Array<ActiveRequest | null>;
  /** Every place in line the relay reported, in order. */
  queue: QueueInfo[];
  /** Resolves at the next progress event the page shows. */
  nextProgress(): Promise<Progress>;
}

const caps64k = {
  api_version: 'v1',
  supported_model_ids: ['qwen3-8b-instruct'],
  active_context_tier: '64k-full',
  maximum_total_context_tokens: 65536,
  default_output_token_reservation: 1024,
  maximum_output_tokens: 8192,
  max_concurrency: 1,
  backend_class: 'cuda',
};

/** Posts a hand-made inner answer for a work item (for error and forgery cases). */
function respondWith(
  t: TestApp,
  work: V1Work,
  inner: Record<string, unknown>,
  to = work.clientKey,
) {
  const sealed = nodeSeal(inner, to, 'pkcs1');
  return call(t.baseUrl, 'POST', '/api/v1/relay/responses', {
    client_public_key: work.clientKey,
    request_id: work.requestId,
    protocol: SIM_PROTOCOL,
    version: 1,
    chat_history: sealed.ciphertext,
    cipherkey: sealed.cipherkey,
    iv: sealed.iv,
  });
}

function innerOf(work: V1Work, apiV1Response: Record<string, unknown>): Record<string, unknown> {
  return {
    protocol: PROTOCOL,
    version: 1,
    request_id: work.requestId,
    client_public_key: work.clientKey,
    api_v1_response: apiV1Response,
  };
}

describe(ChatFlow.name, () => {
  let t: TestApp;
  let identity: TabIdentity;

  beforeAll(async () => {
    identity = await TabIdentity.generate();
  });

  beforeEach(async () => {
    t = await createTestApp();
  });

  afterEach(async () => {
    await t.close();
  });

  function start(
    text: string,
    opts: {
      liveNodes?: number;
      model?: string;
      tier?: TierChoice;
      flow?: FlowOptions;
      api?: RelayApi;
    } = {},
  ): Run {
    const flow = new ChatFlow(opts.api ?? new RelayApi(t.baseUrl), opts.flow);
    const controller = new AbortController();
    const progress: Progress[] = [];
    const active: Array<ActiveRequest | null> = [];
    const queue: QueueInfo[] = [];
    let waiting: ((p: Progress) => void) | null = null;
    const outcome = flow.send(
      {
        identity,
        model: opts.model ?? 'qwen3-8b-instruct',
        tierChoice: opts.tier ?? 'auto',
        messages: [{ role: 'user', content: text }],
        liveNodes: opts.liveNodes ?? 1,
      },
      controller.signal,
      {
        onProgress: (p) => {
          progress.push(p);
          waiting?.(p);
        },
        onActive: (a) => active.push(a),
        onQueue: (q) => queue.push(q),
      },
    );
    return {
      outcome,
      controller,
      progress,
      active,
      queue,
      nextProgress: () => new Promise<Progress>((resolve) => (waiting = resolve)),
    };
  }

  it.each(['pkcs1', 'oaep'] as const)(
    'should carry a turn end to end and decrypt an answer the node wrapped with %s',
    async (replyPadding) => {
      const node = new V1NodeSim(t.baseUrl, { replyPadding });
      await node.register();

      const run = start('hello from the page', { tier: 'auto' });
      const work = await node.take();
      await node.respond(work!);
      const outcome = await run.outcome;

      expect(outcome).toMatchObject({
        status: 'answered',
        content: simulatedAnswer([{ role: 'user', content: 'hello from the page' }]),
        padding: replyPadding,
        nodeKey: node.key,
        attempts: 1,
      });
      expect(work!.padding).toBe('oaep');
      expect(work!.raw).toMatchObject({
        client_public_key: identity.publicKeyB64,
        request_id: run.active[0]?.requestId,
        cancel_token: run.active[0]?.cancelToken,
        protocol: PROTOCOL,
        version: 1,
      });
      expect(work!.raw.request_id).toMatch(/^[0-9a-f]{32}$/);
      expect(work!.raw.cancel_token).toMatch(/^[0-9a-f]{32}$/);
      expect(work!.inner.api_v1_request).toEqual({
        model: 'qwen3-8b-instruct',
        messages: [{ role: 'user', content: 'hello from the page' }],
        options: { max_tokens: 8192 },
        routing: { context_tier: '8k-fast' },
      });
      expect(run.active.at(-1)).toBeNull();
    },
  );

  it('should hold retrieves with Prefer: wait and show each progress update the node posts', async () => {
    const node = new V1NodeSim(t.baseUrl);
    await node.register();
    const retrieves: Array<string | null> = [];
    const counting: typeof fetch = (input, init) => {
      if (urlOf(input).endsWith('/responses/retrieve')) {
        retrieves.push(new Headers(init?.headers).get('prefer'));
      }
      return fetch(input, init);
    };

    const run = start('progress please', { api: new RelayApi(t.baseUrl, counting) });
    const work = await node.take();
    const first = run.nextProgress();
    await node.progress(work!, {
      schema_version: 1,
      sequence: 1,
      phase: 'prefill',
      total_prompt_tokens: 200,
      cached_prompt_tokens: 0,
      processed_prompt_tokens: 50,
      generated_tokens: 0,
      elapsed_ms: 120,
    });
    await first;
    const second = run.nextProgress();
    await node.progress(work!, {
      schema_version: 1,
      sequence: 2,
      phase: 'generating',
      total_prompt_tokens: 200,
      cached_prompt_tokens: 0,
      processed_prompt_tokens: 200,
      generated_tokens: 7,
      elapsed_ms: 480,
    });
    await second;
    await node.respond(work!);
    const outcome = await run.outcome;

    expect(outcome.status).toBe('answered');
    expect(
      run.progress.map((p) => [p.sequence, p.phase, p.processedPromptTokens, p.generatedTokens]),
    ).toEqual([
      [1, 'prefill', 50, 0],
      [2, 'generating', 200, 7],
    ]);
    // The first hold is short (the page does not know yet whether others are ahead).
    expect(retrieves[0]).toBe('wait=3');
    expect(retrieves.slice(1).every((p) => p === 'wait=8')).toBe(true);
    expect(retrieves.length).toBeLessThanOrEqual(4);
  });

  it('should report its place in line with the estimate, holding retrieves short while others are ahead', async () => {
    const node = new V1NodeSim(t.baseUrl);
    await node.register();
    const retrieves: Array<string | null> = [];
    const counting: typeof fetch = (input, init) => {
      if (urlOf(input).endsWith('/responses/retrieve')) {
        retrieves.push(new Headers(init?.headers).get('prefer'));
      }
      return fetch(input, init);
    };
    const earlier = node.take();
    await new V1ClientSim(t.baseUrl).submit(node.key, 'earlier');
    await node.respond((await earlier)!);
    await new V1ClientSim(t.baseUrl).submit(node.key, 'ahead of the page');

    const run = start('where am I?', { api: new RelayApi(t.baseUrl, counting) });
    while (run.queue.length === 0) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    const whileAhead = retrieves.length;
    await node.take();
    const mine = await node.take();
    await node.respond(mine!);
    const outcome = await run.outcome;

    expect(outcome.status).toBe('answered');
    expect(run.queue[0]).toEqual({ position: 1, estimateSeconds: 1 });
    // Places only go down (the answer may come before a 202 ever says 0).
    expect(run.queue.map((q) => q.position)).toEqual(
      [...run.queue.map((q) => q.position)].sort((a, b) => b - a),
    );
    expect(retrieves.slice(0, whileAhead)).toEqual(Array(whileAhead).fill('wait=3'));
  });

  it('should cancel with proof on Stop, and the node should see the cancellation', async () => {
    const node = new V1NodeSim(t.baseUrl);
    await node.register();

    const run = start('never mind');
    const work = await node.take();
    run.controller.abort();
    const outcome = await run.outcome;
    const control = await node.control(work!.requestId);
    const retrieve = await call(t.baseUrl, 'POST', '/api/v1/relay/responses/retrieve', {
      client_public_key: identity.publicKeyB64,
      request_id: work!.requestId,
    });

    expect(outcome).toEqual({ status: 'stopped', confirmed: true });
    expect(control.body.status).toBe('cancelled');
    expect(retrieve.status).toBe(410);
    expect(retrieve.body).toMatchObject({
      error: { status: 'cancelled', reason: 'requester_cancelled' },
    });
  });

  it('should cancel with reason client_timeout when no answer comes in time', async () => {
    const node = new V1NodeSim(t.baseUrl);
    await node.register();
    const timers = new VirtualTimers();

    const run = start('slow node', { flow: { timers, preferWaitSeconds: 0, maxWaitMs: 2000 } });
    const work = await node.take();
    const outcome = await run.outcome;
    const control = await node.control(work!.requestId);
    const retrieve = await call(t.baseUrl, 'POST', '/api/v1/relay/responses/retrieve', {
      client_public_key: identity.publicKeyB64,
      request_id: work!.requestId,
    });

    expect(outcome).toMatchObject({ status: 'failed', code: 'timeout' });
    expect(control.body.status).toBe('cancelled');
    expect(retrieve.body).toMatchObject({
      error: { status: 'cancelled', reason: 'client_timeout' },
    });
  });

  it('should fail over to another node when the first one leaves mid-request', async () => {
    const a = new V1NodeSim(t.baseUrl);
    const b = new V1NodeSim(t.baseUrl);
    await a.register();
    await b.register();
    const takes = new Map([
      [a, a.take()],
      [b, b.take()],
    ]);

    const run = start('survive a node', { liveNodes: 2 });
    const [first, work] = await Promise.race(
      [...takes].map(([n, p]) => p.then((w) => [n, w] as const)),
    );
    const other = first === a ? b : a;
    await first.unregister();
    const retried = await takes.get(other)!;
    await other.respond(retried!);
    const outcome = await run.outcome;

    expect(work).not.toBeNull();
    expect(retried!.requestId).not.toBe(work!.requestId);
    expect(outcome).toMatchObject({ status: 'answered', nodeKey: other.key, attempts: 2 });
  });

  it('should not fail over when only one node was live', async () => {
    const node = new V1NodeSim(t.baseUrl);
    await node.register();

    const run = start('alone', { liveNodes: 1 });
    await node.take();
    await node.unregister();
    const outcome = await run.outcome;

    expect(outcome).toMatchObject({ status: 'failed', code: 'nodes_failed' });
  });

  it('should retry once at 64k-full when the 8k node reports its context window exceeded', async () => {
    const small = new V1NodeSim(t.baseUrl);
    const big = new V1NodeSim(t.baseUrl, { capabilities: caps64k });
    await small.register();
    await big.register();

    const run = start('a long one', { liveNodes: 2 });
    const first = await small.take();
    await respondWith(
      t,
      first!,
      innerOf(first!, {
        error: { code: 'compute_node_context_window_exceeded', message: 'too long' },
      }),
    );
    const second = await big.take();
    await big.respond(second!);
    const outcome = await run.outcome;

    expect((first!.inner.api_v1_request as { routing: unknown }).routing).toEqual({
      context_tier: '8k-fast',
    });
    expect((second!.inner.api_v1_request as { routing: unknown }).routing).toEqual({
      context_tier: '64k-full',
    });
    expect(outcome).toMatchObject({ status: 'answered', nodeKey: big.key, attempts: 2 });
  });

  it.each([
    [
      'identity_mismatch',
      (w: V1Work) => ({
        ...innerOf(w, { message: { role: 'assistant', content: 'x' } }),
        request_id: 'f'.repeat(32),
      }),
      undefined,
    ],
    [
      'decrypt_failed',
      (w: V1Work) => innerOf(w, { message: { role: 'assistant', content: 'x' } }),
      newIdentity().publicKeyB64,
    ],
    [
      'node_error',
      (w: V1Work) =>
        innerOf(w, { error: { code: 'compute_node_model_unsupported', message: 'nope' } }),
      undefined,
    ],
  ])('should report %s and show no answer', async (code, inner, to) => {
    const node = new V1NodeSim(t.baseUrl);
    await node.register();

    const run = start('check me');
    const work = await node.take();
    await respondWith(t, work!, inner(work!), to);
    const outcome = await run.outcome;

    expect(outcome).toMatchObject({ status: 'failed', code });
    if (code === 'node_error') {
      expect(outcome).toMatchObject({
        message: expect.stringContaining('compute_node_model_unsupported'),
      });
    }
  });

  it('should say so when no compute node is registered', async () => {
    const outcome = await start('anyone?', { liveNodes: 0 }).outcome;

    expect(outcome).toEqual({
      status: 'failed',
      code: 'no_nodes',
      message: expect.stringContaining('No compute nodes are connected'),
    });
  });

  it('should never be offered a key nothing can encrypt to (an "N1" registered before keys were checked): no node, nothing sent', async () => {
    // Registration now refuses such a key (400); a record made before that is marked by
    // /servers/next the first time it comes up and never offered (issue 20), so the page's own
    // bad-key fail-over is only the last line.
    await t.store.upsertNode({
      nodeId: 'N1',
      dialect: 'v1',
      capabilities: {
        api_version: 'v1',
        supported_model_ids: ['qwen3-8b-instruct'],
        active_context_tier: '8k-fast',
        maximum_total_context_tokens: 8192,
        default_output_token_reservation: 1024,
        maximum_output_tokens: 8192,
        max_concurrency: 1,
        backend_class: 'unknown',
      },
      now: t.clock.now(),
    });

    const outcome = await start('hello?', { liveNodes: 0 }).outcome;
    const stats = await t.store.stats(t.clock.now());

    const n1 = (await t.store.listNodes(t.clock.now())).find((n) => n.nodeId === 'N1');

    expect(outcome).toEqual({
      status: 'failed',
      code: 'no_nodes',
      message: expect.stringContaining('No compute nodes are connected'),
    });
    expect(stats.queueDepth).toBe(0);
    expect(n1?.keyUnusable).toBe(true);
  });

  it('should say so when no node serves the model', async () => {
    const node = new V1NodeSim(t.baseUrl, {
      capabilities: { ...caps64k, supported_model_ids: ['other-model'] },
    });
    await node.register();

    const outcome = await start('hi', { model: 'qwen3-8b-instruct' }).outcome;

    expect(outcome).toMatchObject({ status: 'failed', code: 'no_matching_node' });
  });

  it('should say so when every matching node is busy', async () => {
    const node = new V1NodeSim(t.baseUrl);
    await node.register();
    const other = new V1ClientSim(t.baseUrl);
    await other.submit(node.key, 'first in line');
    await node.take();

    const outcome = await start('me too').outcome;

    expect(outcome).toMatchObject({ status: 'failed', code: 'no_capacity' });
  });
});

describe('ChatFlow against a relay that ignores Prefer: wait', () => {
  function json(status: number, body: unknown): Response {
    return new Response(JSON.stringify(body), {
      status,
      headers: { 'content-type': 'application/json' },
    });
  }

  it('should fall back to polling every 500 ms, and fail over on 410 expired until none are left', async () => {
    const identity = await TabIdentity.generate();
    const timers = new VirtualTimers();
    const nodes = [newIdentity(), newIdentity()];
    let picked = 0;
    const retrieveTimes: number[] = [];
    const scripted: typeof fetch = (input) => {
      const path = new URL(urlOf(input)).pathname;
      if (path === '/api/v1/relay/servers/next') {
        return Promise.resolve(
          json(200, {
            server_public_key: nodes[picked++ % 2]!.publicKeyB64,
            selected_context_tier: '8k-fast',
          }),
        );
      }
      if (path === '/api/v1/relay/requests') {
        return Promise.resolve(
          json(200, { message: 'Request received', request_ttl_seconds: 480 }),
        );
      }
      if (path === '/api/v1/relay/responses/retrieve') {
        retrieveTimes.push(timers.now());
        return Promise.resolve(
          retrieveTimes.length % 3 === 0
            ? json(410, {
                error: {
                  message: 'Request expired',
                  code: 'expired',
                  status: 'expired',
                  reason: 'provider_timeout',
                },
              })
            : json(202, { status: 'pending', request_ttl_seconds: 400 }),
        );
      }
      return Promise.resolve(json(404, {}));
    };
    const flow = new ChatFlow(new RelayApi('http://relay.test', scripted), { timers });

    const outcome = await flow.send(
      {
        identity,
        model: 'm',
        tierChoice: 'auto',
        messages: [{ role: 'user', content: 'hi' }],
        liveNodes: 2,
      },
      new AbortController().signal,
    );

    expect(outcome).toMatchObject({ status: 'failed', code: 'expired' });
    expect(picked).toBe(2);
    expect(retrieveTimes).toEqual([0, 500, 1000, 1000, 1500, 2000]);
  });
});
