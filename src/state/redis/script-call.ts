import type { TransitionCounts } from '../state.types';
import type { TransitionSink } from '../transition.sink';
import type { z } from 'zod';
import { parseJson, ScriptReply } from './script-reply';

export type ScriptArg = string | number;

/** Nullable strings travel as '' (null) or '=' + value, so an empty string stays distinct. */
export function opt(value: string | number | null | undefined): string {
  return value === null || value === undefined ? '' : `=${value}`;
}

/** A boolean argument: '1' or '0'. */
export function bit(value: boolean | undefined): string {
  return value === true ? '1' : '0';
}

/**
 * One Redis script as the store calls it, declared once beside its Lua
 * (`transitions/<group>.redis.ts` next to `<group>.redis.lua`): its name, its arguments in ARGV
 * order, how a command becomes those arguments and how the reply becomes a result. The store only
 * sends it; test/contract/redis-scripts.spec.ts checks `args` against the ARGV the Lua reads.
 */
export interface RedisScript<C = never, R = unknown> {
  readonly name: string;
  /** `#!lua flags=no-writes`: runs while Redis is out of memory, never creates the layout key. */
  readonly readOnly: boolean;
  /** The script's own arguments in order, from ARGV[4] (ARGV[1..3]: prefix, limits, now). */
  readonly args: readonly string[];
  /** A variadic tail after `args`, or null. */
  readonly rest: string | null;
  /** Sent on the delivery lane (see ConnectionSupervisor): the call a woken long-poll makes. */
  readonly lane: boolean;
  /**
   * Repeating it leaves the same state and reply, so a call refused with READONLY (a demoted
   * primary) is sent again once the connection has found the new primary. The rest (claims,
   * rate-limit hits, legacy streams) answer 503 and leave the retry to the caller.
   */
  idempotent(cmd: C): boolean;
  /**
   * A transition whose success the relay acknowledges to a caller (2xx) and whose loss in a
   * failover would lose or resurrect something: with TOKENPLACE_RELAY_REDIS_WAIT_REPLICAS it
   * waits for the replicas (Redis WAIT) before the reply. Left out on purpose: claims and stream
   * drains, rate-limit hits, sweeps and the read-only scripts.
   */
  acknowledged(cmd: C): boolean;
  encode(cmd: C): ScriptArg[];
  /** The reply, checked field by field (MalformedReplyError otherwise); counts go to `sink`. */
  decode(reply: unknown, cmd: C, sink: TransitionSink): R;
}

/** The fields of a command that travel as they are: a string or a number under the same name. */
type PlainFields<C> = C extends object
  ? { [K in keyof C & string]: C[K] extends ScriptArg ? K : never }[keyof C & string]
  : never;

/** Every argument the command does not hold as it is, and any other argument by name. */
type Encoded<C, A extends string> = Record<Exclude<A, PlainFields<C>>, ScriptArg> &
  Partial<Record<A, ScriptArg>>;

type Arguments<C, A extends string> =
  /** A script with no arguments of its own. */
  | { args?: never; encode?: never }
  | {
      args: readonly A[];
      /**
       * The arguments by name (`args` alone orders them), except those the command holds as they
       * are under the same name: an argument `encode` leaves out is the command's field.
       */
      encode: (cmd: C) => Encoded<C, NoInfer<A>>;
    };

interface ScriptSpec<C> {
  rest?: { name: string; values: (cmd: C) => ScriptArg[] };
  lane?: boolean;
}

type Flags<C> =
  /** A read-only script is idempotent and has nothing to acknowledge. */
  | { readOnly: true; idempotent?: never; acknowledged?: never }
  | {
      readOnly?: false;
      idempotent: boolean | ((cmd: C) => boolean);
      acknowledged: boolean | ((cmd: C) => boolean);
    };

type Decoder<C, R> =
  /** A positional reply: status first, encoded transitions second (the hot paths). */
  | { reply: (r: ScriptReply, cmd: C) => R; parse?: never }
  /** A single value or one JSON document (the cold paths). */
  | { parse: (script: string, reply: unknown) => R; reply?: never };

/** Declares a script (see {@link RedisScript}). */
export function script<C = void, R = unknown, const A extends string = never>(
  name: string,
  spec: Arguments<C, A> & ScriptSpec<C> & Flags<C> & Decoder<C, R>,
): RedisScript<C, R> {
  const flag = (value: boolean | ((cmd: C) => boolean)) =>
    typeof value === 'boolean' ? () => value : value;
  const readOnly = spec.readOnly === true;
  const args: readonly A[] = spec.args ?? [];
  return {
    name,
    readOnly,
    args,
    rest: spec.rest?.name ?? null,
    lane: spec.lane ?? false,
    idempotent: readOnly ? () => true : flag(spec.idempotent),
    acknowledged: readOnly ? () => false : flag(spec.acknowledged),
    encode(cmd) {
      const named: Partial<Record<A, ScriptArg>> = spec.encode?.(cmd) ?? {};
      const values = args.map((a) => named[a] ?? (cmd as Record<A, ScriptArg>)[a]);
      return spec.rest ? [...values, ...spec.rest.values(cmd)] : values;
    },
    decode(reply, cmd, sink) {
      return spec.reply
        ? spec.reply(ScriptReply.of(name, reply, sink), cmd)
        : spec.parse(name, reply);
    },
  };
}

/** Reads the fields one status carries after the transitions. */
type FieldReaders<S extends string> = { readonly [K in S]?: (r: ScriptReply) => object };

/** For each status: the status, the fields its reader read, the transitions. */
export type StatusResult<S extends string, F> = {
  [K in S]: { status: K } & (F extends { readonly [P in K]: (r: ScriptReply) => infer X }
    ? X
    : unknown) & { transitions: TransitionCounts };
}[S];

/**
 * The reader of a reply that holds a status of `statuses` and the transitions, then the fields
 * `fields` reads for that status (none for a status it leaves out), nothing more.
 */
export function statusReply<const V extends readonly string[], F extends FieldReaders<V[number]>>(
  statuses: V,
  fields?: F & Record<Exclude<keyof F, V[number]>, never>,
): (r: ScriptReply) => StatusResult<V[number], F> {
  return (r) => {
    const status = r.oneOf(statuses, 'status');
    const transitions = r.transitions();
    const read = (fields as FieldReaders<V[number]> | undefined)?.[status]?.(r);
    r.end();
    return { status, ...read, transitions } as StatusResult<V[number], F>;
  };
}

/** A reply that is one JSON document checked against `schema`. */
export function jsonReply<T>(
  schema: z.ZodType<T>,
  what: string,
): (script: string, reply: unknown) => T {
  return (script, reply) => parseJson(script, schema, reply, what);
}
