import OpenAI, { APIError } from 'openai';
import { DemoNode, MOCK_REPLIES } from '../../src/demo/demo.node';
import { HeadNodeLoop } from '../helpers/gateway';
import { createTestApp, type TestApp } from '../helpers/test-app';

/**
 * The official `openai` SDK (current major) against the running app, answered by the in-process
 * demo compute node: what dspace and upstream's integration tests do.
 */
describe('the openai SDK against the gateway and the demo node', () => {
  let t: TestApp;
  let demo: DemoNode;
  let v1: OpenAI;
  let v2: OpenAI;

  beforeAll(async () => {
    t = await createTestApp();
    demo = new DemoNode({ baseUrl: t.baseUrl, token: null });
    await demo.start();
    v1 = new OpenAI({ apiKey: 'test', baseURL: `${t.baseUrl}/v1`, maxRetries: 0 });
    v2 = new OpenAI({ apiKey: 'test', baseURL: `${t.baseUrl}/api/v2`, maxRetries: 0 });
  });

  afterAll(async () => {
    await demo.stop();
    await t.close();
  });

  it('should list and retrieve models', async () => {
    const list = await v1.models.list();
    const first = list.data[0]!;
    const one = await v1.models.retrieve(first.id);

    expect(list.data.map((m) => m.id)).toEqual(['qwen3-8b-instruct']);
    expect(one).toMatchObject({ id: 'qwen3-8b-instruct', object: 'model', owned_by: 'Qwen' });
  });

  it('should complete a chat with an alias, echoing the requested model', async () => {
    const res = await v1.chat.completions.create({
      model: 'gpt-5-chat-latest',
      messages: [
        { role: 'system', content: 'You are a helpful assistant.' },
        { role: 'user', content: 'What is the capital of France?' },
      ],
    });

    expect(res.model).toBe('gpt-5-chat-latest');
    expect(res.choices[0]!.message.role).toBe('assistant');
    expect(MOCK_REPLIES).toContain(res.choices[0]!.message.content);
    expect(res.usage!.total_tokens).toBe(res.usage!.prompt_tokens + res.usage!.completion_tokens);
    expect([22, 24, 26]).toContain(res.usage!.completion_tokens);
  });

  it('should echo metadata', async () => {
    const metadata = { client: 'dspace', conversation_id: 'conv-42' };

    const res = await v1.chat.completions.create({
      model: 'gpt-5-chat-latest',
      messages: [{ role: 'user', content: 'Hello there!' }],
      metadata,
    });

    expect((res as unknown as { metadata: unknown }).metadata).toEqual(metadata);
  });

  it('should complete text', async () => {
    const res = await v1.completions.create({ model: 'qwen3-8b-instruct', prompt: 'Hello' });

    expect(res.object).toBe('text_completion');
    expect(res.choices[0]!.text.toLowerCase()).toContain('paris');
  });

  it('should stream a v2 chat through the SDK stream API', async () => {
    const stream = await v2.chat.completions.create({
      model: 'llama-3-8b-instruct',
      messages: [{ role: 'user', content: 'What is the capital of France?' }],
      stream: true,
    });
    const deltas: Array<{ role?: string; content?: string | null }> = [];
    const finishes: Array<string | null> = [];
    for await (const chunk of stream) {
      deltas.push(chunk.choices[0]!.delta);
      finishes.push(chunk.choices[0]!.finish_reason);
    }

    expect(deltas[0]).toEqual({ role: 'assistant' });
    expect(deltas.map((d) => d.content ?? '').join('')).toMatch(/^Mock response: .*Paris/);
    expect(finishes.at(-1)).toBe('stop');
  });

  it('should surface gateway errors as SDK errors with their status', async () => {
    const badRequest = await v1.chat.completions
      .create({ model: 'gpt-5-chat-latest', messages: [] })
      .catch((e: unknown) => e);
    const notFound = await v1.models.retrieve('does-not-exist').catch((e: unknown) => e);
    const streamRefused = await v1.chat.completions
      .create({ model: 'x', messages: [{ role: 'user', content: 'x' }], stream: true })
      .catch((e: unknown) => e);

    expect(badRequest).toBeInstanceOf(OpenAI.BadRequestError);
    expect((badRequest as APIError).status).toBe(400);
    expect((badRequest as APIError).message).toContain('messages must contain at least one item');
    expect((badRequest as APIError).param).toBe('messages');
    expect(notFound).toBeInstanceOf(OpenAI.NotFoundError);
    expect((notFound as APIError).code).toBe('model_not_found');
    expect((streamRefused as APIError).status).toBe(400);
    expect((streamRefused as APIError).param).toBe('stream');
  });

  it('should surface 503 when no node is there', async () => {
    const bare = await createTestApp();
    const client = new OpenAI({ apiKey: 'x', baseURL: `${bare.baseUrl}/v1`, maxRetries: 0 });

    const err = await client.chat.completions
      .create({ model: 'gpt-5-chat-latest', messages: [{ role: 'user', content: 'x' }] })
      .catch((e: unknown) => e);
    await bare.close();

    expect(err).toBeInstanceOf(OpenAI.InternalServerError);
    expect((err as APIError).status).toBe(503);
    expect((err as APIError).code).toBe('no_compute_node_available');
  });

  it('should raise a node failure in the middle of a stream as an SDK error', async () => {
    const other = await createTestApp();
    const node = await new HeadNodeLoop(
      other.baseUrl,
      () => ({ kind: 'error', code: 'compute_node_internal_error' }),
      { answerDelayMs: 10 },
    ).start();
    const client = new OpenAI({ apiKey: 'x', baseURL: `${other.baseUrl}/v2`, maxRetries: 0 });

    const seen: string[] = [];
    const err = await (async () => {
      const stream = await client.chat.completions.create({
        model: 'qwen3-8b-instruct',
        messages: [{ role: 'user', content: 'x' }],
        stream: true,
      });
      for await (const chunk of stream) {
        seen.push(chunk.choices[0]!.delta.role ?? '');
      }
      return null;
    })().catch((e: unknown) => e);
    await node.stop();
    await other.close();

    expect(seen).toEqual(['assistant']);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    expect((err as APIError).message).toContain('Unable to contact the LLM server');
  });
});
