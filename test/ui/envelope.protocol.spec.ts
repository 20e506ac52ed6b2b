import {
  IdentityError,
  PROTOCOL,
  checkIdentity,
  estimateContextTier,
  estimatePromptTokens,
  innerRequest,
  prefillFraction,
  readAnswer,
  readProgress,
  resolveTier,
  tierSatisfies,
  trimHistory,
  type ChatMessage,
} from '../../src/ui/web/envelope.protocol';

const expected = { requestId: 'a'.repeat(32), clientPublicKey: 'Q0xJRU5U' };
const wrap = (
  payload: Record<string, unknown>,
  over: Record<string, unknown> = {},
): Record<string, unknown> => ({
  protocol: PROTOCOL,
  version: 1,
  request_id: expected.requestId,
  client_public_key: expected.clientPublicKey,
  ...payload,
  ...over,
});
const progress = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  schema_version: 1,
  sequence: 1,
  phase: 'prefill',
  total_prompt_tokens: 100,
  cached_prompt_tokens: 10,
  processed_prompt_tokens: 40,
  generated_tokens: 0,
  elapsed_ms: 250,
  ...over,
});
const user = (content: string): ChatMessage => ({ role: 'user', content });

describe('context tier estimate (spec §7.5 step 4)', () => {
  it('should take the larger of chars/4 and words·1.35, plus 8 per message', () => {
    expect(estimatePromptTokens([user('abcd efgh')])).toBe(Math.max(3, Math.ceil(2 * 1.35)) + 8);
    expect(estimatePromptTokens([user('a b c d e f g h i j')])).toBe(Math.ceil(10 * 1.35) + 8);
    expect(estimatePromptTokens([user('x'.repeat(400)), user('y')])).toBe(100 + 1 + 16);
  });

  it('should choose 8k-fast up to 8192 tokens with 2048 reserved, and 64k-full above', () => {
    expect(estimateContextTier([user('x'.repeat(6136 * 4))])).toBe('8k-fast');
    expect(estimateContextTier([user('x'.repeat(6136 * 4 + 1))])).toBe('64k-full');
    expect(estimateContextTier([user('a '.repeat(4545))])).toBe('8k-fast');
    expect(estimateContextTier([user('a '.repeat(4546))])).toBe('64k-full');
  });

  it('should honour an explicit tier and check what the relay selected', () => {
    expect(resolveTier('64k-full', [user('hi')])).toBe('64k-full');
    expect(resolveTier('auto', [user('hi')])).toBe('8k-fast');
    expect(tierSatisfies('64k-full', '8k-fast')).toBe(true);
    expect(tierSatisfies('8k-fast', '64k-full')).toBe(false);
    expect(tierSatisfies('huge', '8k-fast')).toBe(false);
  });

  it('should keep at most 64 messages, starting with a user turn', () => {
    const long: ChatMessage[] = Array.from({ length: 70 }, (_, i) => ({
      role: i % 2 === 0 ? 'user' : 'assistant',
      content: String(i),
    }));

    const kept = trimHistory(long);

    expect(kept.length).toBeLessThanOrEqual(64);
    expect(kept[0]?.role).toBe('user');
    expect(kept.at(-1)?.content).toBe('69');
  });
});

describe('inner envelopes (spec §6.4, §4.7)', () => {
  it('should repeat the request id and client key inside the request', () => {
    const inner = innerRequest({
      ...expected,
      model: 'm',
      messages: [user('hi')],
      tier: '8k-fast',
    });

    expect(inner).toEqual({
      protocol: PROTOCOL,
      version: 1,
      request_id: expected.requestId,
      client_public_key: expected.clientPublicKey,
      api_v1_request: {
        model: 'm',
        messages: [{ role: 'user', content: 'hi' }],
        options: { max_tokens: 8192 },
        routing: { context_tier: '8k-fast' },
      },
    });
  });

  it.each([
    ['protocol', { protocol: 'other' }],
    ['version', { version: 2 }],
    ['request_id', { request_id: 'b'.repeat(32) }],
    ['client_public_key', { client_public_key: 'T1RIRVI=' }],
    ['missing client key', { client_public_key: undefined }],
  ])('should reject an answer whose %s is not ours', (_name, over) => {
    expect(() =>
      readAnswer(wrap({ api_v1_response: { message: { content: 'x' } } }, over), expected),
    ).toThrow(IdentityError);
  });

  it('should accept the client key with surrounding whitespace, like the nodes do', () => {
    expect(
      checkIdentity(wrap({}, { client_public_key: ` ${expected.clientPublicKey}\n` }), expected),
    ).toBeTruthy();
  });

  it('should read an assistant message, or a node error', () => {
    expect(
      readAnswer(
        wrap({
          api_v1_response: {
            message: { role: 'assistant', content: 'hi' },
            finish_reason: 'stop',
            usage: { total_tokens: 3 },
          },
        }),
        expected,
      ),
    ).toEqual({ kind: 'message', content: 'hi', finishReason: 'stop', usage: { total_tokens: 3 } });
    expect(
      readAnswer(
        wrap({
          api_v1_response: { error: { code: 'compute_node_model_unsupported', message: 'no' } },
        }),
        expected,
      ),
    ).toEqual({
      kind: 'error',
      code: 'compute_node_model_unsupported',
      message: 'no',
    });
    expect(() => readAnswer(wrap({ api_v1_response: { message: {} } }), expected)).toThrow(
      IdentityError,
    );
    expect(() => readAnswer('plain text', expected)).toThrow(IdentityError);
  });
});

describe('progress validation (spec §6.4)', () => {
  it('should accept exactly the eight keys with safe non-negative integers', () => {
    const p = readProgress(wrap({ api_v1_progress: progress() }), expected, 0);

    expect(p).toEqual({
      sequence: 1,
      phase: 'prefill',
      totalPromptTokens: 100,
      cachedPromptTokens: 10,
      processedPromptTokens: 40,
      generatedTokens: 0,
      elapsedMs: 250,
    });
    expect(prefillFraction(p!)).toBeCloseTo(0.4);
  });

  it.each([
    ['an extra key', { extra: 1 }],
    ['a missing key', { elapsed_ms: undefined }],
    ['schema_version 2', { schema_version: 2 }],
    ['an unknown phase', { phase: 'thinking' }],
    ['a fractional count', { generated_tokens: 1.5 }],
    ['a negative count', { elapsed_ms: -1 }],
    ['an unsafe integer', { total_prompt_tokens: 2 ** 60 }],
    ['a string count', { sequence: '2' }],
    ['cached above processed', { cached_prompt_tokens: 50 }],
    ['processed above total', { processed_prompt_tokens: 101 }],
  ])('should ignore progress with %s', (_name, over) => {
    const body = progress(over);
    for (const [k, v] of Object.entries(over)) {
      if (v === undefined) {
        delete body[k];
      }
    }

    expect(readProgress(wrap({ api_v1_progress: body }), expected, 0)).toBeNull();
  });

  it('should require a strictly increasing sequence', () => {
    expect(
      readProgress(wrap({ api_v1_progress: progress({ sequence: 3 }) }), expected, 3),
    ).toBeNull();
    expect(
      readProgress(wrap({ api_v1_progress: progress({ sequence: 4 }) }), expected, 3)?.sequence,
    ).toBe(4);
  });

  it('should skip the token ordering check while the total is unknown', () => {
    const p = readProgress(
      wrap({
        api_v1_progress: progress({
          phase: 'preparing',
          total_prompt_tokens: 0,
          processed_prompt_tokens: 5,
        }),
      }),
      expected,
      0,
    );

    expect(p?.phase).toBe('preparing');
    expect(prefillFraction(p!)).toBeNull();
  });

  it('should ignore progress addressed to another request', () => {
    expect(
      readProgress(wrap({ api_v1_progress: progress() }, { request_id: 'other' }), expected, 0),
    ).toBeNull();
  });
});
