import { script, statusReply } from './script-call';
import { MalformedReplyError, ScriptReply } from './script-reply';

const STATUSES = ['queued', 'full'] as const;
const NO_TRANSITIONS = { outcomes: {}, evictions: {} };

const readQueued = statusReply(STATUSES, {
  queued: (r) => ({ deadlineAt: r.number('deadline') }),
});

describe(statusReply.name, () => {
  it('should read the fields of a status that has a reader, after the transitions', () => {
    const result = readQueued(ScriptReply.of('tpTest', ['queued', '|', '1767225600000']));

    expect(result).toEqual({
      status: 'queued',
      deadlineAt: 1767225600000,
      transitions: NO_TRANSITIONS,
    });
  });

  it('should read no field for a status without a reader', () => {
    const result = readQueued(ScriptReply.of('tpTest', ['full', 'expired=1|']));

    expect(result).toEqual({
      status: 'full',
      transitions: { outcomes: { expired: 1 }, evictions: {} },
    });
  });

  it.each([
    ['a field a status without a reader does not carry', ['full', '|', '1']],
    ['a field after those its reader reads', ['queued', '|', '1', '2']],
    ['a missing field its reader reads', ['queued', '|']],
  ])('should refuse %s', (_what, reply) => {
    expect(() => readQueued(ScriptReply.of('tpTest', reply))).toThrow(MalformedReplyError);
  });
});

describe(script.name, () => {
  const probe = script('tpProbe', {
    readOnly: true,
    args: ['b', 'a'],
    encode: (cmd: { a: string; b: number }) => ({ a: cmd.a, b: cmd.b }),
    parse: (_name, raw) => raw,
  });

  it('should send the arguments in the order `args` names them', () => {
    expect(probe.encode({ a: 'x', b: 1 })).toEqual([1, 'x']);
  });

  it('should send the command field of the same name for an argument `encode` leaves out', () => {
    const partly = script('tpPartly', {
      readOnly: true,
      args: ['a', 'flag', 'b'],
      encode: (cmd: { a: string; b: number; on: boolean }) => ({ flag: cmd.on ? '1' : '0' }),
      parse: (_name, raw) => raw,
    });

    expect(partly.encode({ a: 'x', b: 2, on: true })).toEqual(['x', '1', 2]);
  });

  it('should send no arguments of its own for a script that declares none', () => {
    const bare = script('tpBare', { readOnly: true, parse: (_name, raw) => raw });

    expect([bare.args, bare.encode()]).toEqual([[], []]);
  });

  it('should treat a read-only script as idempotent and not acknowledged', () => {
    expect([probe.readOnly, probe.idempotent({ a: '', b: 0 })]).toEqual([true, true]);
    expect(probe.acknowledged({ a: '', b: 0 })).toBe(false);
  });
});
