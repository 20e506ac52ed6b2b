import { createDecipheriv } from 'node:crypto';
import pino from 'pino';
import Redis from 'ioredis';
import { ManualClock } from '../../src/common/clock';
import { PROTOCOL_ID } from '../../src/state/state.types';
import { unwrapAny } from '../helpers/crypto';
import { eventually } from '../helpers/eventually';
import { EncryptedClient, HeadNodeLoop, sseData, type NodeBehaviour } from '../helpers/gateway';
import { randomPrefix } from '../helpers/redis-server';
import { describeIf, requirement } from '../helpers/requirements';
import type { V1Work } from '../helpers/simulators';
import { call, createTestApp, type TestApp, type WireResult } from '../helpers/test-app';
import { UnwrapPoolService } from '../../src/gateway/unwrap-pool.service';

/**
 * The gateway answered by a simulated compute node on the real node's timing (long-poll, control
 * ~60 ms after the poll returns, the answer ~0.3 s later, PKCS#1 v1.5): bodies, encrypted mode,
 * SSE, the §5.4 failure mapping, cancellation, fail-over, and what the relay keeps and logs.
 */
type Envelope = { stream_session_id: string; data: Record<string, string | boolean> } & Record<
  string,
  unknown
>;
type Chunk = { object: string; choices: Array<{ delta: unknown; finish_reason: string | null }> };

const chat = (t: TestApp, body: unknown, path = '/api/v1/chat/completions'): Promise<WireResult> =>
  call(t.baseUrl, 'POST', path, body);

const user = (content: string) => [{ role: 'user', content }];

/** Every string reachable from `root` (objects, arrays, Maps, Sets), for "only ciphertext" checks. */
function strings(root: unknown): string[] {
  const out: string[] = [];
  const seen = new Set<unknown>();
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const v = stack.pop();
    if (typeof v === 'string') {
      out.push(v);
    } else if (typeof v === 'object' && v !== null && !seen.has(v)) {
      seen.add(v);
      if (v instanceof Map) {
        for (const [k, x] of v) {
          stack.push(k, x);
        }
      } else if (v instanceof Set || Array.isArray(v)) {
        stack.push(...v);
      } else if (!Buffer.isBuffer(v)) {
        stack.push(...Object.values(v));
      }
    }
  }
  return out;
}

describe('gateway dispatch to a simulated HEAD node', () => {
  let t: TestApp;
  let node: HeadNodeLoop;

  beforeAll(async () => {
    t = await createTestApp();
    node = await new HeadNodeLoop(t.baseUrl).start();
  });

  afterAll(async () => {
    await node.stop();
    await t.close();
  });

  it('should answer a plain v1 chat through the lifecycle with the OpenAI body and headers', async () => {
    const res = await chat(t, {
      model: 'gpt-5-chat-latest',
      messages: [
        { role: 'system', content: 'be brief' },
        { role: 'user', content: 'Hello there!' },
      ],
      temperature: 0.2,
      n: 3,
      metadata: { client: 'dspace', conversation_id: 'conv-42' },
    });
    const work = node.works.at(-1) as V1Work;

    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      id: expect.stringMatching(/^chatcmpl-[0-9a-f-]{36}$/),
      object: 'chat.completion',
      created: expect.any(Number),
      model: 'gpt-5-chat-latest',
      choices: [
        {
          index: 0,
          message: { role: 'assistant', content: 'echo: !ereht olleH' },
          finish_reason: 'stop',
        },
      ],
      usage: { prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 },
      metadata: { client: 'dspace', conversation_id: 'conv-42' },
    });
    expect(res.headers.get('x-tokenplace-api-v1-provider')).toBe('DistributedApiV1ComputeProvider');
    expect(res.headers.get('x-tokenplace-api-v1-resolved-provider-path')).toBe('distributed');
    expect(res.headers.get('x-tokenplace-api-v1-execution-backend-path')).toBe(
      'distributed_relay_e2ee',
    );
    expect(res.headers.get('x-tokenplace-api-v1-stream-mode')).toBe('non-streaming');
    expect(work.requestId).toMatch(/^api-v1-[0-9a-f]{32}$/);
    expect(work.raw).toMatchObject({ protocol: PROTOCOL_ID, version: 1, e2ee_v1: true });
    expect(work.raw.cancel_token).toMatch(/^[0-9a-f]{32}$/);
    expect(work.padding).toBe('oaep');
    expect(work.inner).toEqual({
      protocol: PROTOCOL_ID,
      version: 1,
      request_id: work.requestId,
      client_public_key: work.clientKey,
      api_v1_request: {
        model: 'qwen3-8b-instruct',
        messages: [
          { role: 'system', content: 'be brief' },
          { role: 'user', content: 'Hello there!' },
        ],
        options: { temperature: 0.2 },
      },
    });
    expect(node.controls.at(-1)).toMatchObject({ status: 'active' });
  });

  it('should answer text completions on both prefixes', async () => {
    const v1 = await chat(t, { model: 'qwen3-8b-instruct', prompt: 'Hello' }, '/v1/completions');
    const v2 = await chat(t, { model: 'gpt-3.5-turbo', prompt: 'Hello' }, '/api/v2/completions');

    expect(v1.status).toBe(200);
    expect(v1.body).toEqual({
      id: expect.stringMatching(/^cmpl-[0-9a-f]{12}$/),
      object: 'text_completion',
      created: expect.any(Number),
      model: 'qwen3-8b-instruct',
      choices: [{ index: 0, text: 'echo: olleH', finish_reason: 'stop' }],
      usage: { prompt_tokens: 3, completion_tokens: 5, total_tokens: 8 },
    });
    expect(v1.headers.get('x-tokenplace-api-v1-stream-mode')).toBe('non-streaming');
    expect(v2.status).toBe(200);
    expect(v2.body.model).toBe('gpt-3.5-turbo');
    expect(v2.headers.get('x-tokenplace-api-v1-provider')).toBeNull();
  });

  it.each([['oaep'], ['pkcs1']] as const)(
    'should run the encrypted mode with a %s-wrapped request and a PKCS#1 v1.5 reply',
    async (padding) => {
      const client = new EncryptedClient(t.baseUrl);
      const body = await client.body(user('Paris?'), {
        padding,
        extra: { metadata: { conversation_id: 'c1' } },
      });

      const res = await chat(t, body, '/v1/chat/completions');
      const { value, padding: replyPadding } = client.open(res.body);

      expect(res.status).toBe(200);
      expect(Object.keys(res.body).sort()).toEqual(['data', 'encrypted']);
      expect(res.body.encrypted).toBe(true);
      expect(Object.keys(res.body.data as object).sort()).toEqual([
        'cipherkey',
        'ciphertext',
        'encrypted',
        'iv',
      ]);
      expect((res.body.data as { cipherkey: string }).cipherkey).toHaveLength(344);
      expect(replyPadding).toBe('pkcs1');
      expect(value).toMatchObject({
        object: 'chat.completion',
        model: 'llama-3-8b-instruct',
        choices: [{ message: { role: 'assistant', content: 'echo: ?siraP' } }],
        metadata: { conversation_id: 'c1' },
      });
      expect(res.headers.get('x-tokenplace-api-v1-resolved-provider-path')).toBe('distributed');
    },
  );

  it("should unwrap the node's PKCS#1 v1.5 answers in a worker thread, off the event loop", async () => {
    const res = await chat(t, { model: 'gpt-5-chat-latest', messages: user('in a thread') });

    expect(res.status).toBe(200);
    expect(res.body.choices).toMatchObject([
      { message: { role: 'assistant', content: 'echo: daerht a ni' } },
    ]);
    expect(t.app.get(UnwrapPoolService).threads).toBeGreaterThanOrEqual(1);
  });

  it('should reply in plaintext to an encrypted request with an empty client key (as upstream)', async () => {
    const client = new EncryptedClient(t.baseUrl);
    const body = await client.body(user('plain back'), { extra: { client_public_key: '' } });

    const res = await chat(t, body);

    expect(res.status).toBe(200);
    expect(res.body.object).toBe('chat.completion');
  });

  it('should answer v2 chat as JSON, plain and encrypted', async () => {
    const client = new EncryptedClient(t.baseUrl);

    const plain = await chat(
      t,
      { model: 'llama-3-8b-instruct', messages: user('v2') },
      '/v2/chat/completions',
    );
    const sealed = await chat(
      t,
      await client.body(user('v2 sealed'), { prefix: '/api/v2' }),
      '/api/v2/chat/completions',
    );

    expect(plain.status).toBe(200);
    expect(plain.body).toMatchObject({
      object: 'chat.completion',
      model: 'llama-3-8b-instruct',
      choices: [{ message: { content: 'echo: 2v' }, finish_reason: 'stop' }],
    });
    expect(plain.body.metadata).toBeUndefined();
    expect(client.open(sealed.body).value).toMatchObject({
      choices: [{ message: { content: 'echo: delaes 2v' } }],
    });
  });

  it('should stream v2 SSE: the role chunk, the content, the final chunk and [DONE]', async () => {
    const res = await chat(
      t,
      { model: 'llama-3-8b-instruct', messages: user('stream me'), stream: true },
      '/api/v2/chat/completions',
    );
    const events = sseData(res.text);
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as Record<string, unknown>);

    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    expect(res.headers.get('cache-control')).toBe('no-cache');
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    expect(events.at(-1)).toBe('[DONE]');
    expect(events[0]).toContain('"delta": {"role": "assistant"}');
    expect(chunks.map((c) => (c.choices as Array<Record<string, unknown>>)[0])).toEqual([
      { index: 0, delta: { role: 'assistant' }, finish_reason: null },
      { index: 0, delta: { content: 'echo: em maerts' }, finish_reason: null },
      { index: 0, delta: {}, finish_reason: 'stop' },
    ]);
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    expect(chunks[0]).toMatchObject({
      object: 'chat.completion.chunk',
      model: 'llama-3-8b-instruct',
    });
  });

  it('should slice long content into chunks of at most 512 code points', async () => {
    const long = `${'é😀'.repeat(300)}tail`;
    const res = await chat(
      t,
      { model: 'llama-3-8b-instruct', messages: user([...long].reverse().join('')), stream: true },
      '/v2/chat/completions',
    );
    const contents = sseData(res.text)
      .slice(0, -1)
      .map(
        (e) =>
          (JSON.parse(e) as { choices: Array<{ delta: { content?: string } }> }).choices[0]!.delta,
      )
      .filter((d) => d.content !== undefined)
      .map((d) => d.content as string);

    expect(contents.length).toBe(2);
    expect(contents.every((c) => [...c].length <= 512)).toBe(true);
    expect(contents.join('')).toBe(`echo: ${long}`);
    expect(res.text).not.toMatch(/[^\x00-\x7f]/);
  });

  it('should stream encrypted SSE: one OAEP-wrapped stream key in the first chunk, a fresh IV per chunk', async () => {
    const client = new EncryptedClient(t.baseUrl);
    const body = await client.body(user('secret stream'), {
      prefix: '/v2',
      extra: { stream: true },
    });

    const res = await chat(t, body, '/v2/chat/completions');
    const events = sseData(res.text);
    const envelopes = events.slice(0, -1).map((e) => JSON.parse(e) as Envelope);
    const { key, padding } = unwrapAny(client.identity, envelopes[0]!.data.cipherkey as string);
    const chunks = envelopes.map((e) => {
      const d = createDecipheriv('aes-256-cbc', key, Buffer.from(e.data.iv as string, 'base64'));
      const text = Buffer.concat([
        d.update(Buffer.from(e.data.ciphertext as string, 'base64')),
        d.final(),
      ]);
      return JSON.parse(text.toString('utf8')) as Chunk;
    });

    expect(res.status).toBe(200);
    expect(events.at(-1)).toBe('[DONE]');
    expect(padding).toBe('oaep');
    expect(new Set(envelopes.map((e) => e.stream_session_id)).size).toBe(1);
    expect(envelopes[0]!.stream_session_id).toMatch(/^stream-[0-9a-f-]{36}$/);
    for (const [i, e] of envelopes.entries()) {
      expect(e).toMatchObject({
        event: 'delta',
        encrypted: true,
        data: { encrypted: true, stream_session_id: e.stream_session_id },
      });
      expect('cipherkey' in e.data).toBe(i === 0);
    }
    expect(new Set(envelopes.map((e) => e.data.iv)).size).toBe(envelopes.length);
    expect(chunks.map((c) => c.object)).toEqual([
      'chat.completion.chunk',
      'chat.completion.chunk',
      'chat.completion.chunk',
    ]);
    expect(chunks[0]!.choices[0]!.delta).toEqual({ role: 'assistant' });
    expect(chunks[1]!.choices[0]!.delta).toEqual({ content: 'echo: maerts terces' });
    expect(chunks[2]!.choices[0]!.finish_reason).toBe('stop');
  });

  it('should serve three sequential turns and leave the queue empty after each', async () => {
    const depths: unknown[] = [];
    const statuses: number[] = [];
    for (const turn of ['one', 'two', 'three']) {
      const res = await chat(t, { model: 'qwen3-8b-instruct', messages: user(turn) });
      statuses.push(res.status);
      const diag = await call(t.baseUrl, 'GET', '/relay/diagnostics');
      depths.push(
        (diag.body.api_v1_registered_compute_nodes as Array<{ queue_depth: number }>)[0]
          ?.queue_depth,
      );
    }

    expect(statuses).toEqual([200, 200, 200]);
    expect(depths).toEqual([0, 0, 0]);
  });

  it('should queue behind a busy node instead of refusing, and answer both', async () => {
    const [a, b] = await Promise.all([
      chat(t, { model: 'qwen3-8b-instruct', messages: user('first') }),
      chat(t, { model: 'qwen3-8b-instruct', messages: user('second') }),
    ]);

    expect([a.status, b.status]).toEqual([200, 200]);
    expect(
      [a.body, b.body]
        .map((x) => (x.choices as Array<{ message: { content: string } }>)[0]!.message.content)
        .sort(),
    ).toEqual(['echo: dnoces', 'echo: tsrif']);
  });
});

describe('gateway dispatch with TOKENPLACE_GATEWAY_UNWRAP_THREADS=0', () => {
  it('should unwrap PKCS#1 v1.5 answers and encrypted-mode requests on the event loop, with no thread', async () => {
    const t = await createTestApp({ TOKENPLACE_GATEWAY_UNWRAP_THREADS: '0' });
    const node = await new HeadNodeLoop(t.baseUrl).start();
    try {
      const client = new EncryptedClient(t.baseUrl);
      const plain = await chat(t, { model: 'gpt-5-chat-latest', messages: user('loop') });
      const sealed = await chat(t, await client.body(user('sealed'), { padding: 'pkcs1' }));

      expect(plain.status).toBe(200);
      expect(plain.body.choices).toMatchObject([{ message: { content: 'echo: pool' } }]);
      expect(sealed.status).toBe(200);
      expect(client.open(sealed.body).value).toMatchObject({
        choices: [{ message: { content: 'echo: delaes' } }],
      });
      expect(t.app.get(UnwrapPoolService).threads).toBe(0);
    } finally {
      await node.stop();
      await t.close();
    }
  });
});

describe('gateway dispatch: node answers that fail (gateway.md §5.4)', () => {
  it.each<[string, number, string, NodeBehaviour]>([
    [
      'a node-reported error',
      502,
      'compute_node_bridge_error',
      { kind: 'error', code: 'compute_node_internal_error' },
    ],
    [
      'a node-reported cancellation',
      504,
      'compute_node_request_cancelled',
      { kind: 'error', code: 'cancelled' },
    ],
    ['an answer that does not decrypt', 502, 'compute_node_invalid_payload', { kind: 'garbage' }],
    [
      'an answer for another request',
      502,
      'compute_node_invalid_payload',
      { kind: 'wrong_request_id' },
    ],
  ])('should map %s to %i %s', async (_, status, code, behaviour) => {
    const t = await createTestApp();
    const node = await new HeadNodeLoop(t.baseUrl, () => behaviour, { answerDelayMs: 10 }).start();

    const res = await chat(t, { model: 'qwen3-8b-instruct', messages: user('x') });
    await node.stop();
    await t.close();

    const messages: Record<number, string> = {
      502:
        code === 'compute_node_bridge_error'
          ? 'Unable to contact the LLM server right now. Please try again.'
          : 'The LLM server returned an invalid response. Please try again.',
      504: 'The LLM server request expired before it could be answered. Please try again.',
    };
    expect(res.status).toBe(status);
    expect(res.body).toEqual({
      error: {
        message: messages[status],
        type: status === 502 ? 'server_error' : 'timeout_error',
        code,
      },
    });
    expect(res.headers.get('x-tokenplace-api-v1-provider')).toBeNull();
  });

  it('should read a node that replies with OAEP as well', async () => {
    const t = await createTestApp();
    const node = await new HeadNodeLoop(t.baseUrl, undefined, { replyPadding: 'oaep' }).start();

    const res = await chat(t, { model: 'qwen3-8b-instruct', messages: user('oaep') });
    await node.stop();
    await t.close();

    expect(res.status).toBe(200);
    expect((res.body.choices as Array<{ message: { content: string } }>)[0]!.message.content).toBe(
      'echo: peao',
    );
  });
});

describe('gateway dispatch: time, cancellation and fail-over', () => {
  const env = {
    TOKENPLACE_API_V1_DISTRIBUTED_TIMEOUT_SECONDS: '5',
    TOKENPLACE_RELAY_SWEEP_INTERVAL_SECONDS: '60',
  };

  it('should answer 504 compute_node_timeout after the configured timeout and cancel with its proof', async () => {
    const clock = new ManualClock();
    const t = await createTestApp(env, clock);
    const node = await new HeadNodeLoop(t.baseUrl, () => ({ kind: 'silent' }), {
      controlDelayMs: 0,
    }).start();

    const pending = chat(t, { model: 'qwen3-8b-instruct', messages: user('never answered') });
    await eventually(() => Promise.resolve(node.controls.length > 0 ? true : undefined));
    clock.advance(5001);
    const res = await pending;
    const control = await node.sim.control(node.works[0]!.requestId);
    await node.stop();
    await t.close();

    expect(res.status).toBe(504);
    expect(res.body).toEqual({
      error: {
        message: 'The LLM server took too long to respond. Please try again.',
        type: 'timeout_error',
        code: 'compute_node_timeout',
      },
    });
    expect(control.body.status).toBe('expired');
  });

  it("should answer 504 compute_node_request_cancelled when the relay's own deadline ends the request", async () => {
    const clock = new ManualClock();
    const t = await createTestApp(
      { ...env, TOKEN_PLACE_API_V1_REQUEST_DEADLINE_SECONDS: '2' },
      clock,
    );
    const node = await new HeadNodeLoop(t.baseUrl, () => ({ kind: 'silent' }), {
      controlDelayMs: 0,
    }).start();

    const pending = chat(t, { model: 'qwen3-8b-instruct', messages: user('too slow') });
    await eventually(() => Promise.resolve(node.controls.length > 0 ? true : undefined));
    clock.advance(2001);
    await t.sweep();
    const res = await pending;
    await node.stop();
    await t.close();

    expect(res.status).toBe(504);
    expect((res.body.error as Record<string, unknown>).code).toBe('compute_node_request_cancelled');
  });

  it('should cancel the request when the caller disconnects, so the node sees cancelled', async () => {
    const t = await createTestApp();
    const node = await new HeadNodeLoop(t.baseUrl, () => ({ kind: 'silent' }), {
      controlDelayMs: 0,
    }).start();
    const abort = new AbortController();

    const pending = fetch(`${t.baseUrl}/api/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'qwen3-8b-instruct', messages: user('I will leave') }),
      signal: abort.signal,
    }).catch((error: unknown) => error);
    await eventually(() => Promise.resolve(node.controls.length > 0 ? true : undefined));
    abort.abort();
    await pending;
    const state = await eventually(async () => {
      const res = await node.sim.control(node.works[0]!.requestId);
      return res.body.status === 'cancelled' ? res.body.status : undefined;
    });
    await node.stop();
    await t.close();

    expect(node.controls[0]).toMatchObject({ status: 'active' });
    expect(state).toBe('cancelled');
  });

  it('should keep an SSE stream alive with comments and cancel it when the caller leaves', async () => {
    const clock = new ManualClock();
    const t = await createTestApp({ TOKENPLACE_RELAY_SWEEP_INTERVAL_SECONDS: '60' }, clock);
    const node = await new HeadNodeLoop(t.baseUrl, () => ({ kind: 'silent' }), {
      controlDelayMs: 0,
    }).start();
    const abort = new AbortController();

    const res = await fetch(`${t.baseUrl}/v2/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'qwen3-8b-instruct', messages: user('slow'), stream: true }),
      signal: abort.signal,
    });
    const reader = res.body!.getReader();
    let text = '';
    const readUntil = async (needle: string): Promise<void> => {
      while (!text.includes(needle)) {
        const { value } = await reader.read();
        text += Buffer.from(value!).toString('utf8');
      }
    };
    await readUntil('"role": "assistant"');
    await eventually(() => Promise.resolve(node.controls.length > 0 ? true : undefined));
    clock.advance(15_000);
    await readUntil(': keep-alive');
    abort.abort();
    const state = await eventually(async () => {
      const r = await node.sim.control(node.works[0]!.requestId);
      return r.body.status === 'cancelled' ? r.body.status : undefined;
    });
    await node.stop();
    await t.close();

    expect(res.status).toBe(200);
    expect(text).toContain(': keep-alive\n\n');
    expect(state).toBe('cancelled');
  });

  it("should pass the node's progress counts to an SSE stream as comments", async () => {
    const t = await createTestApp();
    const node = await new HeadNodeLoop(t.baseUrl, () => ({ kind: 'silent' }), {
      controlDelayMs: 0,
    }).start();

    const res = await fetch(`${t.baseUrl}/v2/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'qwen3-8b-instruct',
        messages: user('progress please'),
        stream: true,
      }),
    });
    const reader = res.body!.getReader();
    let text = '';
    const readUntil = async (needle: string): Promise<void> => {
      while (!text.includes(needle)) {
        const { value, done } = await reader.read();
        if (done) {
          return;
        }
        text += Buffer.from(value).toString('utf8');
      }
    };
    await eventually(() => Promise.resolve(node.controls.length > 0 ? true : undefined));
    const work = node.works[0]!;
    const progress = await node.sim.progress(work, {
      schema_version: 1,
      sequence: 1,
      phase: 'prefill',
      total_prompt_tokens: 200,
      cached_prompt_tokens: 0,
      processed_prompt_tokens: 50,
      generated_tokens: 0,
      elapsed_ms: 10,
    });
    await readUntil(': progress');
    await node.sim.respond(work, 'done now');
    await readUntil('[DONE]');
    await node.stop();
    await t.close();

    expect(progress.status).toBe(202);
    expect(text).toContain(
      ': progress {"phase": "prefill", "total_prompt_tokens": 200, "processed_prompt_tokens": 50, "generated_tokens": 0}\n\n',
    );
    expect(text).not.toContain('progress please');
    expect(sseData(text).at(-1)).toBe('[DONE]');
  });

  it('should fail over once when the chosen node vanishes, and give up after the second', async () => {
    const t = await createTestApp();
    const vanish = async (work: V1Work, loop: () => HeadNodeLoop): Promise<void> => {
      void work;
      await loop().sim.unregister();
    };
    let a: HeadNodeLoop | null = null;
    let b: HeadNodeLoop | null = null;
    let firstVanished = '';
    const behave =
      (self: () => HeadNodeLoop) =>
      (work: V1Work): NodeBehaviour => {
        if (firstVanished === '') {
          firstVanished = self().key;
          void vanish(work, self);
          return { kind: 'silent' };
        }
        return { kind: 'answer' };
      };
    a = await new HeadNodeLoop(
      t.baseUrl,
      behave(() => a!),
      { controlDelayMs: 0 },
    ).start();
    b = await new HeadNodeLoop(
      t.baseUrl,
      behave(() => b!),
      { controlDelayMs: 0 },
    ).start();

    const res = await chat(t, { model: 'qwen3-8b-instruct', messages: user('fail over') });
    const answeredBy = [a, b].find((n) => n.key !== firstVanished)!;
    await a.stop();
    await b.stop();

    const twice = await createTestApp();
    let c: HeadNodeLoop | null = null;
    let d: HeadNodeLoop | null = null;
    const always = (self: () => HeadNodeLoop) => (): NodeBehaviour => {
      void self().sim.unregister();
      return { kind: 'silent' };
    };
    c = await new HeadNodeLoop(
      twice.baseUrl,
      always(() => c!),
      { controlDelayMs: 0 },
    ).start();
    d = await new HeadNodeLoop(
      twice.baseUrl,
      always(() => d!),
      { controlDelayMs: 0 },
    ).start();
    const gone = await chat(twice, { model: 'qwen3-8b-instruct', messages: user('nobody stays') });
    await c.stop();
    await d.stop();
    await twice.close();
    await t.close();

    expect(res.status).toBe(200);
    expect(answeredBy.works).toHaveLength(1);
    expect(gone.status).toBe(504);
    expect((gone.body.error as Record<string, unknown>).code).toBe(
      'compute_node_request_cancelled',
    );
  });

  it('should refuse more concurrent chats than TOKENPLACE_GATEWAY_MAX_CONCURRENT', async () => {
    const t = await createTestApp({ TOKENPLACE_GATEWAY_MAX_CONCURRENT: '1' });
    const node = await new HeadNodeLoop(t.baseUrl, undefined, { answerDelayMs: 500 }).start();

    const first = chat(t, { model: 'qwen3-8b-instruct', messages: user('one') });
    await eventually(() => Promise.resolve(node.works.length > 0 ? true : undefined));
    const second = await chat(t, { model: 'qwen3-8b-instruct', messages: user('two') });
    const done = await first;
    await node.stop();
    await t.close();

    expect(second.status).toBe(503);
    expect(second.headers.get('retry-after')).toBe('2');
    expect((second.body.error as Record<string, unknown>).code).toBe('gateway_busy');
    expect(done.status).toBe(200);
  });

  it('should refuse with Retry-After when the chosen node is gone at admission, even after the fail-over', async () => {
    const t = await createTestApp();
    const a = await new HeadNodeLoop(t.baseUrl).start();
    const b = await new HeadNodeLoop(t.baseUrl).start();
    // Both nodes leave between their choice and the admission of the work (a race the store
    // reports as node_not_found): the gateway replaces the node once, then refuses.
    const enqueue = t.store.enqueue.bind(t.store);
    let refused = 0;
    t.store.enqueue = async (cmd) => {
      refused += 1;
      return enqueue({ ...cmd, job: { ...cmd.job, nodeId: `gone-${cmd.job.nodeId}` } });
    };
    const res = await chat(t, { model: 'qwen3-8b-instruct', messages: user('nobody home') });
    t.store.enqueue = enqueue;
    await a.stop();
    await b.stop();
    await t.close();

    expect(refused).toBe(2);
    expect(res.status).toBe(503);
    expect(res.headers.get('retry-after')).toBe('2');
    expect((res.body.error as Record<string, unknown>).code).toBe('compute_node_unreachable');
    expect(a.works).toHaveLength(0);
    expect(b.works).toHaveLength(0);
  });
});

describe('gateway: the relay keeps and logs no plaintext', () => {
  it('should hold only ciphertext in the store and never log the prompt or the answer (trace level)', async () => {
    const lines: string[] = [];
    const logger = pino({ level: 'trace' }, { write: (line: string) => void lines.push(line) });
    const t = await createTestApp({ TOKENPLACE_LOG_LEVEL: 'trace' }, undefined, logger);
    let held: string[] = [];
    const node = await new HeadNodeLoop(t.baseUrl, () => {
      held = strings(t.store);
      return { kind: 'answer', content: 'the-answer-text-42' };
    }).start();
    const client = new EncryptedClient(t.baseUrl);

    const plain = await chat(t, {
      model: 'qwen3-8b-instruct',
      messages: user('my-private-prompt-17'),
    });
    const sealed = await chat(t, await client.body(user('my-private-prompt-17')));
    const streamed = await chat(
      t,
      { model: 'qwen3-8b-instruct', messages: user('my-private-prompt-17'), stream: true },
      '/v2/chat/completions',
    );
    await node.stop();
    await t.close();
    const log = lines.join('\n');

    expect([plain.status, sealed.status, streamed.status]).toEqual([200, 200, 200]);
    expect(plain.text).toContain('the-answer-text-42');
    expect(held.length).toBeGreaterThan(0);
    expect(held.some((s) => s.includes('my-private-prompt-17'))).toBe(false);
    for (const work of node.works) {
      expect(JSON.stringify(work.raw)).not.toContain('my-private-prompt-17');
    }
    expect(lines.filter((l) => l.includes('request completed')).length).toBeGreaterThan(5);
    for (const secret of ['my-private-prompt-17', 'the-answer-text-42', node.works[0]!.requestId]) {
      expect(log).not.toContain(secret);
    }
  });
});

const REDIS_URL = process.env.REDIS_URL ?? '';

/** A Redis key's whole value as text, whatever its type. */
async function readKey(redis: Redis, key: string): Promise<string> {
  switch (await redis.type(key)) {
    case 'string':
      return (await redis.get(key)) ?? '';
    case 'hash':
      return JSON.stringify(await redis.hgetall(key));
    case 'list':
      return JSON.stringify(await redis.lrange(key, 0, -1));
    case 'set':
      return JSON.stringify(await redis.smembers(key));
    case 'zset':
      return JSON.stringify(await redis.zrange(key, '0', '-1'));
    default:
      return '';
  }
}
const redisAvailable = requirement(
  'gateway on Redis',
  REDIS_URL !== '',
  'TOKENPLACE_REQUIRE_REDIS',
  'set REDIS_URL (e.g. redis://127.0.0.1:6390)',
);

describeIf(redisAvailable)('gateway on the Redis store', () => {
  it('should answer a chat and leave nothing but ciphertext in Redis', async () => {
    const prefix = randomPrefix('gw');
    const t = await createTestApp({
      TOKENPLACE_RELAY_STATE_STORE: 'redis',
      TOKENPLACE_RELAY_REDIS_URL: REDIS_URL,
      TOKENPLACE_RELAY_REDIS_KEY_PREFIX: prefix,
    });
    const redis = new Redis(REDIS_URL);
    const contents: string[] = [];
    const node = await new HeadNodeLoop(
      t.baseUrl,
      () => {
        void (async () => {
          for (const key of await redis.keys(`${prefix}*`)) {
            contents.push(await readKey(redis, key));
          }
        })();
        return { kind: 'answer' };
      },
      { answerDelayMs: 500 },
    ).start();

    const res = await chat(t, {
      model: 'qwen3-8b-instruct',
      messages: user('redis-private-prompt'),
    });
    await node.stop();
    await t.close();
    for (const key of await redis.keys(`${prefix}*`)) {
      await redis.del(key);
    }
    redis.disconnect();

    expect(res.status).toBe(200);
    expect(contents.length).toBeGreaterThan(0);
    expect(contents.join('\n')).not.toContain('redis-private-prompt');
    expect(contents.join('\n')).toContain(node.works[0]!.raw.ciphertext as string);
  });
});
