import { V1NodeSim } from '../helpers/simulators';
import { call, createTestApp, type TestApp } from '../helpers/test-app';

/** Issue 18 item 8: prototype keys, nosniff everywhere, reflected input cut short. */
describe('hostile edges (issue 18 item 8)', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await createTestApp({ TOKENPLACE_METRICS_DISABLED: '0' });
  });

  afterAll(async () => {
    await t.close();
  });

  it('should treat model ids such as __proto__ and constructor as plain names', async () => {
    const odd = ['__proto__', 'constructor', 'tostring', 'hasownproperty'];
    const node = new V1NodeSim(t.baseUrl, {
      capabilities: {
        api_version: 'v1',
        supported_model_ids: odd,
        active_context_tier: '8k-fast',
        maximum_total_context_tokens: 8192,
        default_output_token_reservation: 1024,
        maximum_output_tokens: 8192,
        max_concurrency: 1,
        backend_class: 'cuda',
      },
    });
    await node.register();

    const list = await call<{ data: Array<{ id: string; owned_by: unknown }> }>(
      t.baseUrl,
      'GET',
      '/v1/models',
    );
    const one = await call(t.baseUrl, 'GET', '/api/v1/models/__proto__');
    const next = await call(t.baseUrl, 'GET', '/api/v1/relay/servers/next?model=__proto__');

    expect(list.status).toBe(200);
    expect(list.body.data.map((m) => [m.id, m.owned_by]).sort()).toEqual(
      odd.map((id) => [id, 'token.place']).sort(),
    );
    expect(one.status).toBe(200);
    expect(one.body).toMatchObject({ id: '__proto__', owned_by: 'token.place' });
    expect(next.status).toBe(200);
    expect(next.body).toMatchObject({ server_public_key: node.key });
  });

  it.each([
    ['GET', '/healthz', undefined],
    ['GET', '/livez', undefined],
    ['GET', '/metrics', undefined],
    ['GET', '/v1/models', undefined],
    ['GET', '/no/such/route', undefined],
    ['GET', '/', undefined],
    ['GET', '/relay/diagnostics', undefined],
    ['POST', '/api/v1/relay/requests', {}],
    ['POST', '/api/v1/relay/requests', '{"broken'],
    ['POST', '/v1/chat/completions', { model: 'm', messages: [] }],
    ['OPTIONS', '/api/v1/relay/requests', undefined],
  ])('should send X-Content-Type-Options: nosniff on %s %s', async (method, path, body) => {
    const res = await call(t.baseUrl, method, path, body);

    expect(res.status).toBeGreaterThanOrEqual(200);
    expect(res.headers.get('x-content-type-options')).toBe('nosniff');
  });

  it('should cut a 10 KB model name, or role, short in the error that repeats it', async () => {
    const model = `m${'x'.repeat(10_240)}`;
    const chat = await call<{ error: { message: string } }>(
      t.baseUrl,
      'POST',
      '/v1/chat/completions',
      { model, messages: [{ role: 'user', content: 'hi' }] },
    );
    const v1 = await call<{ error: { message: string } }>(
      t.baseUrl,
      'GET',
      `/api/v1/models/${model}`,
    );
    const role = await call<{ error: { message: string } }>(
      t.baseUrl,
      'POST',
      '/v1/chat/completions',
      { model: 'qwen3-8b-instruct', messages: [{ role: 'r'.repeat(10_240), content: 'hi' }] },
    );

    for (const res of [chat, v1, role]) {
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.text.length).toBeLessThan(600);
      expect(res.body.error.message).toMatch(
        /\.\.\. \(10241 characters\)|\.\.\. \(10240 characters\)/,
      );
    }
  });
});
