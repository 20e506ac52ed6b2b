import { createTestApp, type TestApp } from '../helpers/test-app';
import {
  apiError,
  capabilities,
  caps64k,
  fakeKey,
  get,
  poll,
  post,
  registerNode,
  submit,
  V1,
} from './api-v1-fixtures';

const POLICY = 'best_fit_smallest_capable_least_loaded_v1';
const NO_NODES = apiError(
  'No registered compute nodes are available on this relay.',
  'no_registered_compute_nodes',
);
const NO_MATCH =
  'Registered compute nodes are available, but none match the requested model/context tier.';
const NO_CAPACITY =
  'Registered compute nodes match the requested model/context tier, but all matching nodes are at capacity. Retry with backoff.';

describe('API v1 /servers/next scheduler', () => {
  let t: TestApp;

  beforeEach(async () => {
    t = await createTestApp({ TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '0' });
  });

  afterEach(async () => {
    await t.close();
  });

  it('should answer 503 no_registered_compute_nodes with no nodes, even for an invalid tier', async () => {
    const plain = await get(t, `${V1}/servers/next`);
    const badTier = await get(t, `${V1}/servers/next?context_tier=huge`);

    expect(plain.status).toBe(503);
    expect(plain.body).toEqual(NO_NODES);
    expect(badTier.status).toBe(503);
    expect(badTier.body).toEqual(NO_NODES);
    expect(plain.headers.get('cache-control')).toBe('no-store');
  });

  it('should answer 400 invalid_context_tier when nodes exist', async () => {
    await registerNode(t);

    const res = await get(t, `${V1}/servers/next?context_tier=16k`);

    expect(res.status).toBe(400);
    expect(res.body).toEqual(apiError('Unsupported context_tier', 'invalid_context_tier'));
  });

  it('should select the only matching node with the full success body', async () => {
    const node = await registerNode(t);

    const res = await get(t, `${V1}/servers/next?model=qwen3-8b-instruct&context_tier=8k-fast`);

    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      server_public_key: node.key,
      requested_context_tier: '8k-fast',
      requested_model: 'qwen3-8b-instruct',
      resolved_model: 'qwen3-8b-instruct',
      selected_context_tier: '8k-fast',
      selected_context_window_tokens: 8192,
      selected_model_support: ['qwen3-8b-instruct'],
      selection_policy: POLICY,
      eligible_node_count: 1,
      eligible_tier_counts: { '8k-fast': 1 },
      selected_queue_depth: 0,
      selected_in_flight_count: 0,
      selected_load_score: 0,
      spillover: false,
    });
  });

  it('should default the model and tier when absent or blank', async () => {
    const node = await registerNode(t);

    const res = await get(t, `${V1}/servers/next?model=%20%20&context_tier=`);

    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      server_public_key: node.key,
      requested_model: 'qwen3-8b-instruct',
      requested_context_tier: '8k-fast',
    });
  });

  it.each([
    'llama-3.1-8b-instruct',
    'llama-3-8b-instruct',
    'gpt-3.5-turbo',
    'gpt-5-chat-latest',
    '  GPT-3.5-Turbo  ',
  ])('should resolve the model alias %p to qwen3-8b-instruct', async (alias) => {
    const node = await registerNode(t);

    const res = await get(t, `${V1}/servers/next?model=${encodeURIComponent(alias)}`);

    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      server_public_key: node.key,
      resolved_model: 'qwen3-8b-instruct',
    });
  });

  it('should answer 503 no_matching_compute_node for an unknown model, with the diagnostic fields', async () => {
    await registerNode(t);

    const res = await get(t, `${V1}/servers/next?model=mystery-70b`);

    expect(res.status).toBe(503);
    expect(res.body).toEqual(
      apiError(NO_MATCH, 'no_matching_compute_node', {
        selection_policy: POLICY,
        requested_context_tier: '8k-fast',
        requested_model: 'mystery-70b',
        eligible_node_count: 0,
        eligible_tier_counts: {},
      }),
    );
  });

  it('should answer 503 no_matching_compute_node when only a smaller tier serves the model', async () => {
    await registerNode(t);

    const res = await get(t, `${V1}/servers/next?context_tier=64k-full`);

    expect(res.status).toBe(503);
    expect((res.body as { error: { code: string } }).error.code).toBe('no_matching_compute_node');
  });

  it('should pick the smallest capable tier: 8k for 8k, 64k for 64k', async () => {
    const big = await registerNode(t, { caps: caps64k() });
    const small = await registerNode(t);

    const for8k = await get(t, `${V1}/servers/next?context_tier=8k-fast`);
    const for64k = await get(t, `${V1}/servers/next?context_tier=64k-full`);

    expect(for8k.body).toMatchObject({
      server_public_key: small.key,
      selected_context_tier: '8k-fast',
      eligible_node_count: 2,
      eligible_tier_counts: { '8k-fast': 1, '64k-full': 1 },
      spillover: false,
    });
    expect(for8k.body.spillover_reason).toBeUndefined();
    expect(for64k.body).toMatchObject({
      server_public_key: big.key,
      selected_context_tier: '64k-full',
      selected_context_window_tokens: 65536,
      eligible_node_count: 1,
      spillover: false,
    });
  });

  it('should spill over to a 64k node when no 8k node is available', async () => {
    const big = await registerNode(t, { caps: caps64k() });

    const res = await get(t, `${V1}/servers/next?context_tier=8k-fast`);

    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      server_public_key: big.key,
      requested_context_tier: '8k-fast',
      selected_context_tier: '64k-full',
      spillover: true,
      spillover_reason: 'no_smaller_eligible_node_available',
    });
  });

  it('should alternate round-robin between equal nodes', async () => {
    const a = await registerNode(t);
    const b = await registerNode(t);

    const picks: string[] = [];
    for (let i = 0; i < 4; i += 1) {
      picks.push((await get(t, `${V1}/servers/next`)).body.server_public_key as string);
    }

    expect(new Set(picks)).toEqual(new Set([a.key, b.key]));
    expect(picks[0]).not.toBe(picks[1]);
    expect(picks[1]).not.toBe(picks[2]);
    expect(picks[2]).not.toBe(picks[3]);
  });

  it('should prefer the least loaded node and report its load', async () => {
    const busy = await registerNode(t, { caps: capabilities({ max_concurrency: 4 }) });
    const idle = await registerNode(t, { caps: capabilities({ max_concurrency: 4 }) });
    await submit(t, busy.key);
    await submit(t, idle.key);
    await submit(t, busy.key);

    const res = await get(t, `${V1}/servers/next`);

    expect(res.body).toMatchObject({
      server_public_key: idle.key,
      selected_queue_depth: 1,
      selected_in_flight_count: 0,
      selected_load_score: 0.25,
    });
  });

  it('should answer 503 no_available_capacity when every match is at max_concurrency', async () => {
    const node = await registerNode(t);
    await submit(t, node.key);
    const claimed = await poll(t, node);
    expect(claimed.body.request_id).toEqual(expect.any(String));

    const res = await get(t, `${V1}/servers/next`);

    expect(res.status).toBe(503);
    expect(res.body).toEqual(
      apiError(NO_CAPACITY, 'no_available_capacity', {
        selection_policy: POLICY,
        requested_context_tier: '8k-fast',
        requested_model: 'qwen3-8b-instruct',
        eligible_node_count: 1,
        eligible_tier_counts: { '8k-fast': 1 },
        capacity_limited_node_count: 1,
        capacity_limited_tier_counts: { '8k-fast': 1 },
      }),
    );
  });

  it('should not hold anything on selection (next is not a reservation)', async () => {
    const node = await registerNode(t);

    await get(t, `${V1}/servers/next`);
    await get(t, `${V1}/servers/next`);
    const third = await get(t, `${V1}/servers/next`);

    expect(third.body).toMatchObject({
      server_public_key: node.key,
      selected_queue_depth: 0,
      selected_load_score: 0,
    });
  });

  it('should never select a node registered without capabilities', async () => {
    await registerNode(t, { caps: null });

    const res = await get(t, `${V1}/servers/next`);

    expect(res.status).toBe(503);
    expect(res.body).toMatchObject({
      error: { code: 'no_matching_compute_node', eligible_node_count: 0 },
    });
  });

  it('should replace capabilities sent with a poll', async () => {
    const node = await registerNode(t);
    await poll(t, node, { capabilities: capabilities({ supported_model_ids: ['other-model'] }) });

    const old = await get(t, `${V1}/servers/next`);
    const fresh = await get(t, `${V1}/servers/next?model=other-model`);

    expect(old.status).toBe(503);
    expect(fresh.body.server_public_key).toBe(node.key);
  });

  it('should reject a poll with invalid capabilities and keep the old ones', async () => {
    const node = await registerNode(t);

    const res = await poll(t, node, { capabilities: { supported_model_ids: [] } });
    const next = await get(t, `${V1}/servers/next`);

    expect(res.status).toBe(400);
    expect(res.body).toEqual(
      apiError(
        'capabilities.supported_model_ids must be a non-empty string list',
        'invalid_capabilities',
      ),
    );
    expect(next.body.server_public_key).toBe(node.key);
  });

  it('should treat hostile query strings as plain values', async () => {
    await registerNode(t);

    const arrays = await get(
      t,
      `${V1}/servers/next?model=a&model=b&context_tier=8k-fast&context_tier=64k-full`,
    );
    const nested = await get(t, `${V1}/servers/next?model[x]=1`);
    const long = await get(t, `${V1}/servers/next?model=${'m'.repeat(5000)}`);

    expect(arrays.status).toBe(200);
    expect(nested.status).toBe(200);
    expect(long.status).toBe(503);
    expect(long.body).toMatchObject({ error: { code: 'no_matching_compute_node' } });
  });
});

describe('dialect isolation between the legacy and API v1 registries', () => {
  let t: TestApp;

  beforeEach(async () => {
    t = await createTestApp({ TOKEN_PLACE_API_V1_RELAY_POLL_WAIT_SECONDS: '0' });
  });

  afterEach(async () => {
    await t.close();
  });

  it('should hand out only /sink nodes on /next_server and only API v1 nodes on /servers/next', async () => {
    const legacyKey = fakeKey('legacy');
    await post(t, '/sink', { server_public_key: legacyKey });
    const v1 = await registerNode(t);

    const legacyPicks = new Set<string>();
    for (let i = 0; i < 10; i += 1) {
      legacyPicks.add((await get(t, '/next_server')).body.server_public_key as string);
    }
    const v1Pick = await get(t, `${V1}/servers/next`);

    expect(legacyPicks).toEqual(new Set([legacyKey]));
    expect(v1Pick.body.server_public_key).toBe(v1.key);
  });

  it('should report no API v1 nodes when only /sink nodes exist, and no legacy nodes when only API v1 nodes exist', async () => {
    await post(t, '/sink', { server_public_key: fakeKey('legacy') });

    const next = await get(t, `${V1}/servers/next`);

    expect(next.status).toBe(503);
    expect(next.body).toEqual(NO_NODES);

    const other = await createTestApp();
    try {
      await registerNode(other);
      const legacy = await get(other, '/next_server');
      expect(legacy.status).toBe(503);
      expect(legacy.body).toEqual(apiError('No servers available', 503));
    } finally {
      await other.close();
    }
  });

  it('should answer 404 to /requests aimed at a /sink node', async () => {
    const legacyKey = fakeKey('legacy');
    await post(t, '/sink', { server_public_key: legacyKey });

    const res = await submit(t, legacyKey);

    expect(res.res.status).toBe(404);
    expect(res.res.body).toEqual(apiError('Server with the specified public key not found', 404));
  });

  it('should answer 404 to /faucet aimed at an API v1 node', async () => {
    const node = await registerNode(t);

    const res = await post(t, '/faucet', {
      server_public_key: node.key,
      client_public_key: fakeKey('client'),
      chat_history: 'x',
      cipherkey: 'y',
      iv: 'z',
    });

    expect(res.status).toBe(404);
    expect(res.body).toEqual(apiError('Server with the specified public key not found', 404));
  });

  it('should never hand API v1 work to a /sink poll with the node key, and answer 404 to a v1 poll from a /sink node', async () => {
    const node = await registerNode(t);
    const req = await submit(t, node.key);
    const legacyKey = fakeKey('legacy');
    await post(t, '/sink', { server_public_key: legacyKey });

    const sink = await post(t, '/sink', { server_public_key: node.key });
    const v1Poll = await post(t, `${V1}/servers/poll`, { server_public_key: legacyKey });
    const work = await poll(t, node);

    expect(sink.status).toBe(200);
    expect(sink.body).toEqual({ next_ping_in_x_seconds: 10 });
    expect(v1Poll.status).toBe(404);
    expect(v1Poll.body).toEqual(apiError('Server with the specified public key not found', 404));
    expect(work.body.request_id).toBe(req.requestId);
  });

  it('should turn a /sink node that registers through API v1 into a v1 node', async () => {
    const key = fakeKey('switch');
    await post(t, '/sink', { server_public_key: key });

    const reg = await post(t, `${V1}/servers/register`, {
      server_public_key: key,
      capabilities: capabilities(),
    });
    const legacy = await get(t, '/next_server');
    const next = await get(t, `${V1}/servers/next`);

    expect(reg.status).toBe(200);
    expect(reg.body.control_credential).toEqual(expect.any(String));
    expect(legacy.status).toBe(503);
    expect(next.body.server_public_key).toBe(key);
  });
});
