import { StoreUnavailableError } from '../store-unavailable.error';
import {
  envelopeSchema,
  flagReply,
  MalformedReplyError,
  parseJson,
  ScriptReply,
  selectionSchema,
  statsSchema,
} from './script-reply';

const STATUSES = ['ok', 'forbidden'] as const;

function read(reply: unknown): ScriptReply {
  return ScriptReply.of('tpTest', reply);
}

describe(ScriptReply.name, () => {
  it('should read a well-formed reply field by field', () => {
    const r = read(['ok', 'completed=2,cancelled=1|stale_lease=1', '1767225600000', null, 1]);

    expect(r.oneOf(STATUSES, 'status')).toBe('ok');
    expect(r.transitions()).toEqual({
      outcomes: { completed: 2, cancelled: 1 },
      evictions: { stale_lease: 1 },
    });
    expect(r.number('deadline')).toBe(1767225600000);
    expect(r.nullableText('progress')).toBeNull();
    expect(r.flag('stream')).toBe(true);
    expect(() => r.end()).not.toThrow();
  });

  const status = (r: ScriptReply) => r.oneOf(STATUSES, 's');
  const transitions = (r: ScriptReply) => (r.text('s'), r.transitions());

  it.each([
    ['a status outside its vocabulary', ['granted', '|'], status],
    ['an outcome name outside its vocabulary', ['ok', 'stale_lease=1|'], transitions],
    ['an eviction reason outside its vocabulary', ['ok', '|completed=1'], transitions],
    ['transitions without the separator', ['ok', 'completed=1'], transitions],
    ['a count that is not a positive integer', ['ok', 'completed=x|'], transitions],
    ['a missing field', ['ok'], transitions],
    ['a trailing field', ['ok', 'extra'], (r: ScriptReply) => (r.text('s'), r.end())],
    ['a number that is not one', ['1.2.3'], (r: ScriptReply) => r.number('n')],
    ['a flag that is not 0 or 1', [2], (r: ScriptReply) => r.flag('f')],
    ['an integer with a fraction', ['1.5'], (r: ScriptReply) => r.integer('i')],
    ['a string where an array belongs', 'ok', (r: ScriptReply) => r.text('s')],
  ])('should refuse %s as a store outage (503), not a value', (_what, reply, use) => {
    const attempt = (): unknown => use(read(reply));

    expect(attempt).toThrow(MalformedReplyError);
    expect(attempt).toThrow(StoreUnavailableError);
  });

  it('should not put reply values into the error (a misaligned reply could hold an envelope)', () => {
    const attempt = (): unknown => read(['ct/secret-ciphertext']).oneOf(STATUSES, 'status');

    expect(attempt).toThrow(/malformed reply from tpTest: status is not one of ok\|forbidden/);
    expect(attempt).not.toThrow(/secret/);
  });
});

describe('JSON replies', () => {
  it('should check envelopes, selections and stats against their schemas', () => {
    const envelope = { ciphertext: 'c', cipherkey: 'k', iv: 'i', extra: { version: 1 } };

    expect(parseJson('t', envelopeSchema, JSON.stringify(envelope), 'envelope')).toEqual(envelope);
    expect(() =>
      parseJson('t', envelopeSchema, JSON.stringify({ ...envelope, iv: 1 }), 'envelope'),
    ).toThrow(/envelope at iv/);
    expect(() =>
      parseJson('t', selectionSchema, '{"status":"selected","eligibleCount":1}', 'selection'),
    ).toThrow(MalformedReplyError);
    expect(() =>
      parseJson(
        't',
        selectionSchema,
        '{"status":"no_match","eligibleTierCounts":{"128k":1},"eligibleCount":1,"capacityLimitedCount":0,"capacityLimitedTierCounts":{}}',
        'selection',
      ),
    ).toThrow(MalformedReplyError);
    expect(() => parseJson('t', statsSchema, '{"queueDepth":1}', 'stats')).toThrow(
      MalformedReplyError,
    );
    expect(() => parseJson('t', statsSchema, 'not json', 'stats')).toThrow(/stats is not JSON/);
  });

  it('should read 0/1 flags and refuse anything else', () => {
    expect(flagReply('t', 1)).toBe(true);
    expect(flagReply('t', 0)).toBe(false);
    expect(() => flagReply('t', 2)).toThrow(MalformedReplyError);
    expect(() => flagReply('t', '1')).toThrow(MalformedReplyError);
  });
});
