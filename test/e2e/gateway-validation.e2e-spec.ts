import { constants, createCipheriv, publicEncrypt, randomBytes } from 'node:crypto';
import { seal } from '../../src/peer/peer.crypto';
import { EncryptedClient, sseData } from '../helpers/gateway';
import { V1NodeSim } from '../helpers/simulators';
import { call, createTestApp, type TestApp } from '../helpers/test-app';

/**
 * gateway.md §3.4 (rows 1–15 as they apply to a relay-only deployment), §3.5 and §6: every check
 * in order with its exact body. Nothing here reaches a node: each request fails before dispatch.
 */
const VE = (message: string, param: string) => ({
  error: { message, type: 'invalid_request_error', param, code: 'invalid_request_error' },
});

const post = (t: TestApp, path: string, body: unknown, headers: Record<string, string> = {}) =>
  call(t.baseUrl, 'POST', path, typeof body === 'string' ? JSON.stringify(body) : body, headers);

const user = (content: unknown = 'hi') => [{ role: 'user', content }];

/** The hybrid scheme over raw text (not JSON), OAEP-wrapped for `recipient`. */
function sealRaw(text: string, recipient: string): Record<string, string> {
  const key = randomBytes(32);
  const iv = randomBytes(16);
  const cipher = createCipheriv('aes-256-cbc', key, iv);
  const data = Buffer.concat([cipher.update(text, 'utf8'), cipher.final()]);
  const wrapped = publicEncrypt(
    {
      key: Buffer.from(recipient, 'base64').toString('utf8'),
      padding: constants.RSA_PKCS1_OAEP_PADDING,
      oaepHash: 'sha256',
    },
    Buffer.from(key.toString('base64'), 'ascii'),
  );
  return {
    ciphertext: data.toString('base64'),
    cipherkey: wrapped.toString('base64'),
    iv: iv.toString('base64'),
  };
}

describe('gateway validation: POST /chat/completions (gateway.md §3.4)', () => {
  let t: TestApp;
  let client: EncryptedClient;

  beforeAll(async () => {
    t = await createTestApp();
    client = new EncryptedClient(t.baseUrl);
  });

  afterAll(async () => {
    await t.close();
  });

  it.each(['/api/v1', '/v1'])(
    "should answer Sugarkube's check (POST %s/chat/completions with {}) with 400 and CORS",
    async (prefix) => {
      const res = await post(t, `${prefix}/chat/completions`, {}, { Origin: 'https://x.example' });

      expect(res.status).toBe(400);
      expect(res.body).toEqual({
        error: {
          message: 'Invalid request body: empty or not JSON',
          type: 'invalid_request_error',
        },
      });
      expect(res.headers.get('access-control-allow-origin')).toBe('*');
      expect(res.headers.get('access-control-allow-credentials')).toBeNull();
      expect(res.headers.get('x-tokenplace-api-v1-provider')).toBeNull();
    },
  );

  it.each([['null'], ['[]'], ['0'], ['""'], ['false']])(
    'row 1: should refuse the falsy body %s',
    async (raw) => {
      const res = await call(t.baseUrl, 'POST', '/api/v1/chat/completions', raw);

      expect(res.status).toBe(400);
      expect(res.body).toEqual({
        error: {
          message: 'Invalid request body: empty or not JSON',
          type: 'invalid_request_error',
        },
      });
    },
  );

  it.each([
    ['no model', { messages: user() }],
    ['an array body', [{ role: 'user' }]],
    ['a string body', 'model'],
  ])('row 2: should ask for the model with %s', async (_, body) => {
    const res = await call(t.baseUrl, 'POST', '/v1/chat/completions', JSON.stringify(body));

    expect(res.status).toBe(400);
    expect(res.body).toEqual(VE('Missing required parameter: model', 'model'));
  });

  it.each([[true], ['false'], [1], [{ a: 1 }]])(
    'row 3: should refuse a truthy stream (%j) before anything else about the body',
    async (stream) => {
      const res = await post(t, '/api/v1/chat/completions', { model: 7, stream });

      expect(res.status).toBe(400);
      expect(res.body).toEqual({
        error: {
          message:
            'Streaming is not supported for API v1 chat completions. Use /api/v2/chat/completions for Server-Sent Events.',
          type: 'invalid_request_error',
          param: 'stream',
        },
      });
    },
  );

  it('row 4: should want the model as a string', async () => {
    const res = await post(t, '/api/v1/chat/completions', { model: 7, messages: user() });

    expect(res.status).toBe(400);
    expect(res.body).toEqual(VE('Invalid type for model: expected str', 'model'));
  });

  it.each([
    [
      'client_public_key absent',
      { messages: {} },
      VE('Missing required parameter: client_public_key', 'client_public_key'),
    ],
    [
      'messages absent',
      { client_public_key: '' },
      VE('Missing required parameter: messages', 'messages'),
    ],
    [
      'a key that is not a string',
      { client_public_key: 5, messages: {} },
      VE('Invalid type for client_public_key: expected str', 'client_public_key'),
    ],
    [
      'messages not an object',
      { client_public_key: '', messages: [] },
      VE('messages must be an object for encrypted requests', 'messages'),
    ],
    [
      'no ciphertext',
      { client_public_key: '', messages: { cipherkey: 'QQ==', iv: 'QQ==' } },
      VE('Missing required parameter: ciphertext', 'ciphertext'),
    ],
    [
      'no cipherkey',
      { client_public_key: '', messages: { ciphertext: 'QQ==', iv: 'QQ==' } },
      VE('Missing required parameter: cipherkey', 'cipherkey'),
    ],
    [
      'no iv',
      { client_public_key: '', messages: { ciphertext: 'QQ==', cipherkey: 'QQ==' } },
      VE('Missing required parameter: iv', 'iv'),
    ],
    [
      'ciphertext not base64',
      { client_public_key: '', messages: { ciphertext: 'a-b_', cipherkey: 'QQ==', iv: 'QQ==' } },
      VE('Invalid base64 encoding for ciphertext', 'ciphertext'),
    ],
    [
      'iv with bad padding',
      { client_public_key: '', messages: { ciphertext: 'QQ==', cipherkey: 'QQ==', iv: 'QQ=' } },
      VE('Invalid base64 encoding for iv', 'iv'),
    ],
  ])('row 5e: should refuse an encrypted body with %s', async (_, extra, expected) => {
    const res = await post(t, '/api/v1/chat/completions', {
      model: 'm',
      encrypted: true,
      ...extra,
    });

    expect(res.status).toBe(400);
    expect(res.body).toEqual(expected);
  });

  it('row 6e: should say it cannot decrypt ciphertext made for another key', async () => {
    const other = new V1NodeSim(t.baseUrl);
    const body = await client.body(user(), { key: other.key });

    const res = await post(t, '/api/v1/chat/completions', body);

    expect(res.status).toBe(400);
    expect(res.body).toEqual({
      error: { message: 'Failed to decrypt messages', type: 'encryption_error' },
    });
  });

  it('row 7e: should say the decrypted text is not JSON', async () => {
    const relayKey = await client.relayKey();
    const res = await post(t, '/api/v1/chat/completions', {
      model: 'm',
      encrypted: true,
      client_public_key: client.identity.publicKeyB64,
      messages: sealRaw('not json {', relayKey),
    });

    expect(res.status).toBe(400);
    expect(res.body).toEqual({
      error: { message: 'Failed to parse JSON from decrypted messages', type: 'encryption_error' },
    });
  });

  it.each([
    ['messages absent', { model: 'm' }, VE('Missing required parameter: messages', 'messages')],
    [
      'messages not a list',
      { model: 'm', messages: 'not-a-list' },
      VE('Invalid type for messages: expected list', 'messages'),
    ],
  ])('row 5p: should refuse a plain body with %s', async (_, body, expected) => {
    const res = await post(t, '/api/v1/chat/completions', body);

    expect(res.status).toBe(400);
    expect(res.body).toEqual(expected);
  });

  it.each([
    [[], 'messages must contain at least one item', 'messages'],
    [['x'], 'messages[0] must be an object', 'messages'],
    [[{ content: 'x' }], 'Missing required parameter: role', 'role'],
    [[{ role: 'user' }], 'Missing required parameter: content', 'content'],
    [[{ role: 1, content: 'x' }], 'Invalid type for role: expected str', 'role'],
    [[{ role: 'bad', content: 'x' }], 'Invalid role in messages[0]: bad', 'messages'],
    [
      [
        { role: 'user', content: 'x' },
        { role: 'tool', content: 'x' },
      ],
      'Invalid role in messages[1]: tool',
      'messages',
    ],
    [user([]), 'messages[0].content must contain at least one item', 'messages'],
    [user(['x']), 'messages[0].content[0] must be an object', 'messages'],
    [
      user([{ type: 'text', text: '' }]),
      'messages[0].content[0].text must be a non-empty string',
      'messages',
    ],
    [
      user([
        { type: 'text', text: 'a' },
        { type: 'image_url', image_url: { url: 'data:x' } },
      ]),
      'API v1 chat completions are text-only and do not support image content',
      'messages',
    ],
    [user([{ type: 'audio' }]), 'Unsupported content type in messages[0]: audio', 'messages'],
    [user([{ text: 'a' }]), 'Unsupported content type in messages[0]: None', 'messages'],
    [
      user(null),
      'messages[0].content must be a string or array of text content blocks',
      'messages',
    ],
    [user(5), 'messages[0].content must be a string or array of text content blocks', 'messages'],
  ])('row 8: should refuse messages %j', async (messages, message, param) => {
    const res = await post(t, '/api/v1/chat/completions', { model: 'm', messages });

    expect(res.status).toBe(400);
    expect(res.body).toEqual(VE(message, param));
  });

  it('row 8: should check decrypted messages with the same rules', async () => {
    const body = await client.body([{ role: 'user', content: [{ type: 'image_url' }] }], {
      padding: 'pkcs1',
    });

    const res = await post(t, '/v1/chat/completions', body);

    expect(res.status).toBe(400);
    expect(res.body).toEqual(
      VE('API v1 chat completions are text-only and do not support image content', 'messages'),
    );
  });

  it('row 10/11: should say a model no live node serves is not supported (canonical id)', async () => {
    const node = new V1NodeSim(t.baseUrl);
    await node.register();

    const res = await post(t, '/api/v1/chat/completions', {
      model: 'non-existent-model',
      messages: user(),
    });
    await node.unregister();

    expect(res.status).toBe(400);
    expect(res.body).toEqual({
      error: {
        message: "Model 'non-existent-model' is not supported by API v1.",
        type: 'invalid_request_error',
        param: 'model',
        code: 'model_not_supported',
      },
    });
  });

  it('row 14: should refuse an encrypted chat whose reply key cannot be loaded, with 400 before any node works', async () => {
    const body = await client.body(user(), { extra: { client_public_key: 'bm90IGEga2V5' } });

    const res = await post(t, '/api/v1/chat/completions', body);

    expect(res.status).toBe(400);
    expect(res.body).toEqual({
      error: { message: 'Failed to encrypt response', type: 'encryption_error' },
    });
  });

  it('§5.4: should answer 503 no_compute_node_available when no node is registered', async () => {
    const res = await post(t, '/v1/chat/completions', {
      model: 'gpt-5-chat-latest',
      messages: user(),
    });

    expect(res.status).toBe(503);
    expect(res.body).toEqual({
      error: {
        message: 'No LLM servers are available right now.',
        type: 'service_unavailable_error',
        code: 'no_compute_node_available',
      },
    });
  });

  it('§5.1: should keep no_registered_compute_nodes for the desktop-bridge override', async () => {
    const body = await client.body(user(), {
      extra: {
        metadata: { inference_target: 'desktop_bridge_api_v1_e2ee', relay_path: 'api_v1_e2ee' },
      },
    });

    const res = await post(t, '/api/v1/chat/completions', body);

    expect(res.status).toBe(503);
    expect((res.body.error as Record<string, unknown>).code).toBe('no_registered_compute_nodes');
  });

  it('should refuse hostile nesting with a 400, not a crash', async () => {
    const deep = `${'['.repeat(20000)}"x"${']'.repeat(20000)}`;

    const res = await call(
      t.baseUrl,
      'POST',
      '/api/v1/chat/completions',
      `{"model":"m","messages":[{"role":"user","content":"hi"}],"metadata":${deep}}`,
    );

    expect(res.status).toBe(400);
    expect((res.body.error as Record<string, unknown>).type).toBe('invalid_request_error');
  });

  it('should answer framework failures in the OpenAI envelope: malformed JSON, 415, 413', async () => {
    const malformed = await call(t.baseUrl, 'POST', '/v1/chat/completions', '{"model":');
    const wrongType = await fetch(`${t.baseUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'text/plain' },
      body: 'hello',
    });
    const tooLarge = await post(t, '/v1/chat/completions', {
      model: 'm',
      messages: user('x'.repeat(t.config.maxBodyBytes)),
    });

    expect(malformed.status).toBe(400);
    expect(malformed.body).toEqual({
      error: { message: 'Malformed JSON body', type: 'invalid_request_error' },
    });
    expect(wrongType.status).toBe(415);
    expect(await wrongType.json()).toEqual({
      error: { message: 'Content-Type must be application/json', type: 'invalid_request_error' },
    });
    expect(tooLarge.status).toBe(413);
    expect((tooLarge.body.error as Record<string, unknown>).type).toBe('invalid_request_error');
  });
});

describe('gateway validation: POST /completions (gateway.md §3.5, §6.4)', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await createTestApp();
  });

  afterAll(async () => {
    await t.close();
  });

  it.each([
    [{}, { error: { message: 'Invalid request body', type: 'invalid_request_error' } }],
    [{ prompt: 'x' }, VE('Missing required parameter: model', 'model')],
    [{ model: {} }, VE('Invalid type for model: expected str', 'model')],
    [
      { model: 'm', stream: true },
      {
        error: {
          message:
            'Streaming is not supported for API v1 completions. Use /api/v2/chat/completions for Server-Sent Events.',
          type: 'invalid_request_error',
          param: 'stream',
        },
      },
    ],
    [
      { model: '' },
      {
        error: {
          message: 'Missing required parameter: model',
          type: 'invalid_request_error',
          param: 'model',
        },
      },
    ],
    [
      { model: 'm', prompt: 5 },
      {
        error: {
          message: 'Invalid content type at messages[0]. API v1 chat content must be text-only.',
          type: 'invalid_request_error',
        },
      },
    ],
    [
      { model: 'm', prompt: ['a', 'b'] },
      {
        error: {
          message:
            'Invalid text-only content block at messages[0].content[0]. API v1 chat completions do not support image content.',
          type: 'invalid_request_error',
        },
      },
    ],
  ])("v1: %j → the existing relay's 400", async (body, expected) => {
    const res = await post(t, '/api/v1/completions', body, { Origin: 'https://x.example' });

    expect(res.status).toBe(400);
    expect(res.body).toEqual(expected);
    expect(res.headers.get('access-control-allow-origin')).toBe('*');
  });

  it('v1: should answer 503 no_registered_compute_nodes with no node (completions keep that code)', async () => {
    const res = await post(t, '/v1/completions', { model: 'qwen3-8b-instruct', prompt: 'Hello' });

    expect(res.status).toBe(503);
    expect(res.body).toEqual({
      error: {
        message: 'No LLM servers are available right now.',
        type: 'service_unavailable_error',
        code: 'no_registered_compute_nodes',
      },
    });
  });

  it.each([
    [{}, { error: { message: 'Invalid request body', type: 'invalid_request_error' } }],
    [
      { model: '' },
      {
        error: {
          message: 'Missing required parameter: model',
          type: 'invalid_request_error',
          param: 'model',
        },
      },
    ],
    [
      { model: 'gpt-oss-20b', prompt: 'x' },
      {
        error: {
          message: "Model 'gpt-oss-20b' not found",
          type: 'invalid_request_error',
          param: 'model',
          code: 'model_not_found',
        },
      },
    ],
  ])('v2: %j → 400', async (body, expected) => {
    const res = await post(t, '/api/v2/completions', body, { Origin: 'https://x.example' });

    expect(res.status).toBe(400);
    expect(res.body).toEqual(expected);
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
  });
});

describe('gateway validation: API v2 chat (gateway.md §6.1–6.3)', () => {
  let t: TestApp;
  let client: EncryptedClient;

  beforeAll(async () => {
    t = await createTestApp();
    client = new EncryptedClient(t.baseUrl);
  });

  afterAll(async () => {
    await t.close();
  });

  it('should say a model it does not know is not found, before the messages', async () => {
    const res = await post(t, '/api/v2/chat/completions', { model: 'gpt-oss-20b', messages: 5 });

    expect(res.status).toBe(400);
    expect(res.body).toEqual({
      error: {
        message: "Model 'gpt-oss-20b' not found",
        type: 'invalid_request_error',
        param: 'model',
        code: 'model_not_found',
      },
    });
  });

  it('should use the v2 message texts and let an empty list reach the model check', async () => {
    const notArray = await post(t, '/v2/chat/completions', {
      model: 'llama-3-8b-instruct',
      encrypted: true,
      client_public_key: '',
      messages: seal({ not: 'a list' }, await client.relayKey('/v2')),
    });
    const empty = await post(t, '/v2/chat/completions', {
      model: 'llama-3-8b-instruct',
      messages: [],
    });

    expect(notArray.body).toEqual(VE('Messages must be an array', 'messages'));
    expect(empty.status).toBe(400);
    expect(empty.body).toEqual({
      error: { message: 'Messages cannot be empty', type: 'model_error' },
    });
  });

  it('should need a client key for an encrypted stream, in valid base64', async () => {
    const base = await client.body(user(), { prefix: '/api/v2', extra: { stream: true } });

    const missing = await post(t, '/api/v2/chat/completions', { ...base, client_public_key: '' });
    const badPadding = await post(t, '/api/v2/chat/completions', {
      ...base,
      client_public_key: 'QQ=',
    });

    expect(missing.status).toBe(400);
    expect(missing.body).toEqual({
      error: {
        message: 'Client public key required for encrypted streaming',
        type: 'encryption_error',
      },
    });
    expect(badPadding.status).toBe(400);
    expect(badPadding.body).toEqual({
      error: { message: 'Client public key is not valid base64', type: 'encryption_error' },
    });
  });

  it('should answer a stream whose key cannot be loaded with only the encryption_failed event', async () => {
    const base = await client.body(user(), { prefix: '/api/v2', extra: { stream: true } });

    const res = await post(t, '/api/v2/chat/completions', {
      ...base,
      client_public_key: 'bm90IGEga2V5',
    });

    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    expect(sseData(res.text)).toEqual(['{"event": "error", "reason": "encryption_failed"}']);
  });
});

describe('gateway: models, health, public key (gateway.md §3.1–3.3)', () => {
  let t: TestApp;

  beforeAll(async () => {
    t = await createTestApp({ SERVICE_NAME: 'token.place-ci', TOKEN_PLACE_OPERATOR_TOKEN: 'op' });
  });

  afterAll(async () => {
    await t.close();
  });

  it("should list the live nodes' models in the contract shape, identical on both prefixes", async () => {
    const node = new V1NodeSim(t.baseUrl);
    await node.register();

    const api = await call(t.baseUrl, 'GET', '/api/v1/models');
    const alias = await call(t.baseUrl, 'GET', '/v1/models');
    const one = await call(t.baseUrl, 'GET', '/api/v1/models/qwen3-8b-instruct');
    const viaAlias = await call(t.baseUrl, 'GET', '/v1/models/gpt-3.5-turbo');
    const unknown = await call(t.baseUrl, 'GET', '/api/v1/models/does-not-exist');
    const caseSensitive = await call(t.baseUrl, 'GET', '/api/v1/models/GPT-3.5-TURBO');
    const v2 = await call(t.baseUrl, 'GET', '/api/v2/models');
    const v2Alias = await call(t.baseUrl, 'GET', '/v2/models/gpt-3.5-turbo');
    await node.unregister();

    const model = {
      id: 'qwen3-8b-instruct',
      object: 'model',
      created: 1707190418,
      owned_by: 'Qwen',
      permission: [
        {
          id: 'modelperm-qwen3-8b-instruct',
          object: 'model_permission',
          created: 1707190418,
          allow_create_engine: false,
          allow_sampling: true,
          allow_logprobs: true,
          allow_search_indices: false,
          allow_view: true,
          allow_fine_tuning: false,
          organization: '*',
          group: null,
          is_blocking: false,
        },
      ],
      root: 'qwen3-8b-instruct',
      parent: null,
    };
    expect(api.body).toEqual({ object: 'list', data: [model] });
    expect(alias.text).toBe(api.text);
    expect(one.body).toEqual(model);
    expect(viaAlias.text).toBe(one.text);
    expect(unknown.status).toBe(404);
    expect(unknown.body).toEqual({
      error: {
        message: "Model 'does-not-exist' not found",
        type: 'invalid_request_error',
        code: 'model_not_found',
      },
    });
    expect(caseSensitive.status).toBe(404);
    expect(v2.body).toEqual({
      object: 'list',
      data: [
        {
          id: 'qwen3-8b-instruct',
          object: 'model',
          created: 1707190418,
          owned_by: 'token.place',
          root: 'qwen3-8b-instruct',
          parent: null,
        },
      ],
    });
    expect(v2Alias.status).toBe(404);
  });

  it.each([
    ['/api/v1/health', 'v1'],
    ['/v1/health', 'v1'],
    ['/api/v2/health', 'v2'],
    ['/v2/health', 'v2'],
  ])('should answer %s with the service name', async (path, version) => {
    const res = await call(t.baseUrl, 'GET', path);

    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      status: 'ok',
      version,
      service: 'token.place-ci',
      timestamp: Math.floor(t.clock.now() / 1000),
    });
  });

  it('should serve one relay key on all four prefixes and rotate it only for the operator', async () => {
    const keys = await Promise.all(
      ['/api/v1', '/v1', '/api/v2', '/v2'].map((p) => call(t.baseUrl, 'GET', `${p}/public-key`)),
    );
    const client = new EncryptedClient(t.baseUrl);
    const oldBody = await client.body(user(), { key: keys[0]!.body.public_key as string });

    const wrong = await post(t, '/api/v1/public-key/rotate', undefined, {
      'X-Token-Place-Operator': 'nope',
    });
    const rotated = await post(t, '/api/v2/public-key/rotate', undefined, {
      'X-Token-Place-Operator': 'op',
    });
    const byBearer = await post(t, '/v1/public-key/rotate', undefined, {
      Authorization: 'Bearer op',
    });
    const after = await call(t.baseUrl, 'GET', '/api/v2/public-key');
    const stale = await post(t, '/api/v1/chat/completions', oldBody);

    const pem = Buffer.from(keys[0]!.body.public_key as string, 'base64').toString('utf8');
    expect(pem).toMatch(/^-----BEGIN PUBLIC KEY-----\n[\s\S]+\n-----END PUBLIC KEY-----\n$/);
    expect((keys[0]!.body.public_key as string).length).toBe(604);
    expect(new Set(keys.map((k) => k.body.public_key)).size).toBe(1);
    expect(wrong.status).toBe(401);
    expect(wrong.body).toEqual({
      error: {
        message: 'Operator token missing or invalid',
        type: 'authentication_error',
        code: 'operator_token_invalid',
      },
    });
    expect(rotated.status).toBe(200);
    expect(rotated.body.public_key).not.toBe(keys[0]!.body.public_key);
    expect(byBearer.status).toBe(200);
    expect(after.body.public_key).toBe(byBearer.body.public_key);
    expect(stale.status).toBe(400);
    expect(stale.body).toEqual({
      error: { message: 'Failed to decrypt messages', type: 'encryption_error' },
    });
  });

  it('should refuse rotation when no operator token is configured', async () => {
    const bare = await createTestApp();
    const res = await post(bare, '/v2/public-key/rotate', undefined, {
      'X-Token-Place-Operator': 'x',
    });
    await bare.close();

    expect(res.status).toBe(503);
    expect(res.body).toEqual({
      error: {
        message: 'Operator authentication is not configured',
        type: 'authentication_error',
        code: 'operator_auth_not_configured',
      },
    });
  });

  it('should answer the peripheral routes without a 500', async () => {
    const providers = await call(t.baseUrl, 'GET', '/api/v1/server-providers');
    const community = await call(t.baseUrl, 'GET', '/api/v2/community/providers');
    const leaderboard = await call(t.baseUrl, 'GET', '/api/v1/community/leaderboard');
    const contribution = await post(t, '/api/v1/community/contributions', { a: 1 });
    const noPrompt = await post(t, '/v1/images/generations', { size: '64x64' });
    const image = await post(t, '/api/v1/images/generations', { prompt: 'a cat' });
    const noV2Images = await post(t, '/api/v2/images/generations', { prompt: 'a cat' });

    expect(providers.body).toEqual({ object: 'list', data: [] });
    expect(providers.headers.get('access-control-allow-origin')).toBe('*');
    expect(community.body).toEqual({ object: 'list', data: [] });
    expect(leaderboard.status).toBe(404);
    expect(contribution.status).toBe(404);
    expect(noPrompt.body).toEqual(VE('prompt must be a non-empty string', 'prompt'));
    expect(image.status).toBe(501);
    expect((image.body.error as Record<string, unknown>).type).toBe('image_generation_error');
    expect(noV2Images.status).toBe(404);
  });
});

describe('gateway: CORS, rate limits, moderation, the off switch', () => {
  it('should send CORS on API v1 gateway paths only, never on v2 or rotate', async () => {
    const t = await createTestApp();
    const preflight = (path: string) =>
      fetch(`${t.baseUrl}${path}`, {
        method: 'OPTIONS',
        headers: { Origin: 'https://x.example', 'Access-Control-Request-Method': 'POST' },
      });

    const v1 = await Promise.all(
      ['/api/v1/chat/completions', '/v1/chat/completions', '/v1/completions', '/v1/public-key'].map(
        preflight,
      ),
    );
    const none = await Promise.all(
      [
        '/api/v2/chat/completions',
        '/v2/models',
        '/api/v1/public-key/rotate',
        '/v1/public-key/rotate',
      ].map((p) => call(t.baseUrl, 'GET', p, undefined, { Origin: 'https://x.example' })),
    );
    await t.close();

    for (const res of v1) {
      expect(res.status).toBe(204);
      expect(res.headers.get('access-control-allow-headers')).toBe('Content-Type, Accept');
    }
    for (const res of none) {
      expect(res.headers.get('access-control-allow-origin')).toBeNull();
    }
  });

  it('should limit each endpoint per client address, /v1 apart from /api/v1, with the 429 body and CORS', async () => {
    const t = await createTestApp({ API_RATE_LIMIT: '2/hour' });
    const hit = (path: string) => post(t, path, {}, { Origin: 'https://x.example' });

    const first = [await hit('/api/v1/chat/completions'), await hit('/api/v1/chat/completions')];
    const third = await hit('/api/v1/chat/completions');
    const alias = await hit('/v1/chat/completions');
    const models = [
      await call(t.baseUrl, 'GET', '/api/v1/models/a'),
      await call(t.baseUrl, 'GET', '/api/v1/models/b'),
      await call(t.baseUrl, 'GET', '/api/v1/models/c'),
    ];
    const list = await call(t.baseUrl, 'GET', '/api/v1/models');
    await t.close();

    expect(first.map((r) => r.status)).toEqual([400, 400]);
    expect(third.status).toBe(429);
    expect(third.body).toEqual({
      error: {
        message: 'Rate limit exceeded: 2 per 1 hour. Try again in 3600 seconds.',
        type: 'rate_limit_error',
        code: 'rate_limit_exceeded',
        param: null,
      },
    });
    expect(third.headers.get('retry-after')).toBe('3600');
    expect(third.headers.get('access-control-allow-origin')).toBe('*');
    expect(alias.status).toBe(400);
    expect(models.map((r) => r.status)).toEqual([404, 404, 429]);
    expect(list.status).toBe(200);
  });

  it('should charge streaming v2 chats to one bucket shared by /api/v2 and /v2', async () => {
    const t = await createTestApp({ API_STREAM_RATE_LIMIT: '1/minute' });
    const body = { model: 'gpt-oss-20b', stream: true, messages: user() };

    const first = await post(t, '/api/v2/chat/completions', body);
    const second = await post(t, '/v2/chat/completions', body);
    const notStreaming = await post(t, '/v2/chat/completions', { ...body, stream: false });
    await t.close();

    expect(first.status).toBe(400);
    expect(second.status).toBe(429);
    expect((second.body.error as Record<string, unknown>).message).toBe(
      'Rate limit exceeded: 1 per 1 minute. Try again in 60 seconds.',
    );
    expect(notStreaming.status).toBe(400);
  });

  it('row 9: should block a moderated term when moderation is on', async () => {
    const t = await createTestApp({
      CONTENT_MODERATION_MODE: 'block',
      CONTENT_MODERATION_BLOCKLIST: 'Forbidden Fruit',
    });

    const blocked = await post(t, '/api/v1/chat/completions', {
      model: 'm',
      messages: user([{ type: 'text', text: 'tell me about the FORBIDDEN fruit' }]),
    });
    const byDefault = await post(t, '/v1/completions', { model: 'm', prompt: 'how to weaponize' });
    await t.close();

    expect(blocked.status).toBe(400);
    expect(blocked.body).toEqual({
      error: {
        message:
          "Request blocked by content moderation policy: matched banned term 'forbidden fruit'.",
        type: 'content_policy_violation',
        code: 'content_blocked',
      },
    });
    expect((byDefault.body.error as Record<string, unknown>).code).toBe('content_blocked');
  });

  it('should still validate when switched off, and refuse work naming the E2EE routes', async () => {
    const t = await createTestApp({ TOKENPLACE_GATEWAY_ENABLED: 'false' });
    const node = new V1NodeSim(t.baseUrl);
    await node.register();

    const empty = await post(t, '/api/v1/chat/completions', {}, { Origin: 'https://x.example' });
    const chat = await post(t, '/v1/chat/completions', {
      model: 'qwen3-8b-instruct',
      messages: user(),
    });
    const completion = await post(t, '/v1/completions', {
      model: 'qwen3-8b-instruct',
      prompt: 'x',
    });
    const key = await call(t.baseUrl, 'GET', '/api/v1/public-key');
    const relayRoute = await node.register();
    await t.close();

    expect(empty.status).toBe(400);
    expect(empty.headers.get('access-control-allow-origin')).toBe('*');
    for (const res of [chat, completion, key]) {
      expect(res.status).toBe(503);
      expect(res.body.error).toMatchObject({
        type: 'service_unavailable_error',
        code: 'gateway_disabled',
      });
      expect((res.body.error as { message: string }).message).toContain('/api/v1/relay/');
    }
    expect(relayRoute.status).toBe(200);
  });
});
