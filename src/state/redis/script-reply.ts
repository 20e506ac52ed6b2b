import { z } from 'zod';
import type { SelectNodeResult } from '../state-store';
import {
  CONTEXT_TIERS,
  DIALECTS,
  EVICTION_REASONS,
  REQUEST_OUTCOMES,
  type ContextTier,
  type Envelope,
  type NodeCapabilities,
  type NodeSummary,
  type NodeView,
  type TransitionCounts,
} from '../state.types';
import type { StatsSnapshot } from '../transitions/stats-snapshot';
import { StoreUnavailableError } from '../store-unavailable.error';
import { NO_TRANSITION_SINK, type TransitionSink } from '../transition.sink';

/**
 * A script reply that is not what its header promises: a bug or a foreign writer. It fails the
 * request with 503 through the store's outage path (logged with the reason) instead of turning
 * into a wrong value. Messages name the field and what was wrong, never the value (a misaligned
 * reply could hold an envelope).
 */
export class MalformedReplyError extends StoreUnavailableError {
  constructor(script: string, what: string) {
    super(`redis: malformed reply from ${script}: ${what}`);
  }
}

const TIERS = Object.keys(CONTEXT_TIERS) as [ContextTier, ...ContextTier[]];

function isOneOf<const V extends readonly string[]>(allowed: V, value: string): value is V[number] {
  return allowed.includes(value);
}

/**
 * Reads a positional (hot-path) reply in order and checks every field: arity, type, vocabulary.
 * Redis hands Lua strings over as strings, Lua integers as numbers and false/nil as null.
 */
export class ScriptReply {
  private at = 0;

  private constructor(
    readonly script: string,
    private readonly items: readonly unknown[],
    private readonly sink: TransitionSink,
  ) {}

  /** A script's reply; the transition counts it carries are reported to `sink` as they are read. */
  static of(
    script: string,
    reply: unknown,
    sink: TransitionSink = NO_TRANSITION_SINK,
  ): ScriptReply {
    if (!Array.isArray(reply)) {
      throw new MalformedReplyError(script, `expected an array, got ${typeof reply}`);
    }
    return new ScriptReply(script, reply, sink);
  }

  get remaining(): number {
    return this.items.length - this.at;
  }

  fail(what: string): never {
    throw new MalformedReplyError(this.script, `${what} (field ${this.at})`);
  }

  private next(what: string): unknown {
    if (this.at >= this.items.length) {
      this.fail(`missing ${what}`);
    }
    const value = this.items[this.at];
    this.at += 1;
    return value;
  }

  text(what: string): string {
    const value = this.next(what);
    if (typeof value !== 'string') {
      this.fail(`${what} is not a string`);
    }
    return value;
  }

  nullableText(what: string): string | null {
    const value = this.next(what);
    if (value === null) {
      return null;
    }
    if (typeof value !== 'string') {
      this.fail(`${what} is neither a string nor nil`);
    }
    return value;
  }

  oneOf<const V extends readonly string[]>(allowed: V, what: string): V[number] {
    const value = this.text(what);
    if (!isOneOf(allowed, value)) {
      this.fail(`${what} is not one of ${allowed.join('|')}`);
    }
    return value;
  }

  /** A finite number sent as a Lua integer or as a `%.17g` string. */
  number(what: string): number {
    const value = this.next(what);
    const n = typeof value === 'number' ? value : typeof value === 'string' ? Number(value) : NaN;
    if (!Number.isFinite(n) || (typeof value === 'string' && value.trim() === '')) {
      this.fail(`${what} is not a number`);
    }
    return n;
  }

  nullableNumber(what: string): number | null {
    if (this.items[this.at] === null) {
      this.at += 1;
      return null;
    }
    return this.number(what);
  }

  integer(what: string): number {
    const n = this.number(what);
    if (!Number.isInteger(n)) {
      this.fail(`${what} is not an integer`);
    }
    return n;
  }

  flag(what: string): boolean {
    const n = this.integer(what);
    if (n !== 0 && n !== 1) {
      this.fail(`${what} is not 0 or 1`);
    }
    return n === 1;
  }

  /** `outcome=n,...|reason=n,...` with every name from its vocabulary and every count positive. */
  transitions(): TransitionCounts {
    const encoded = this.text('transitions');
    const sides = encoded.split('|');
    if (sides.length !== 2) {
      this.fail('transitions are not outcomes|evictions');
    }
    const t: TransitionCounts = { outcomes: {}, evictions: {} };
    const read = (side: string, each: (name: string, count: number) => boolean): void => {
      if (side === '') {
        return;
      }
      for (const part of side.split(',')) {
        const at = part.indexOf('=');
        const name = part.slice(0, at);
        const count = Number(part.slice(at + 1));
        if (at < 1 || !Number.isInteger(count) || count < 1 || !each(name, count)) {
          this.fail('a transition is not name=count of its vocabulary');
        }
      }
    };
    read(sides[0] as string, (name, count) => {
      if (!isOneOf(REQUEST_OUTCOMES, name)) {
        return false;
      }
      t.outcomes[name] = count;
      return true;
    });
    read(sides[1] as string, (name, count) => {
      if (!isOneOf(EVICTION_REASONS, name)) {
        return false;
      }
      t.evictions[name] = count;
      return true;
    });
    this.sink.transitions(t);
    return t;
  }

  /** A JSON field checked against its schema. */
  json<T>(schema: z.ZodType<T>, what: string): T {
    return parseJson(this.script, schema, this.text(what), what);
  }

  /** A JSON field or nil. */
  nullableJson<T>(schema: z.ZodType<T>, what: string): T | null {
    const raw = this.nullableText(what);
    return raw === null ? null : parseJson(this.script, schema, raw, what);
  }

  /** The reply has no field left. */
  end(): void {
    if (this.at !== this.items.length) {
      this.fail(`${this.items.length - this.at} unexpected trailing field(s)`);
    }
  }
}

/** One JSON document from a script, checked against its schema. */
export function parseJson<T>(script: string, schema: z.ZodType<T>, raw: unknown, what: string): T {
  if (typeof raw !== 'string') {
    throw new MalformedReplyError(script, `${what} is not a JSON string`);
  }
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch {
    throw new MalformedReplyError(script, `${what} is not JSON`);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue && issue.path.length > 0 ? ` at ${issue.path.join('.')}` : '';
    throw new MalformedReplyError(script, `${what}${where}: ${issue?.message ?? 'invalid'}`);
  }
  return parsed.data;
}

/** A Lua nil/false reply or a string (single-value replies). */
export function nullableTextReply(script: string, reply: unknown): string | null {
  if (reply === null || typeof reply === 'string') {
    return reply;
  }
  throw new MalformedReplyError(script, `expected a string or nil, got ${typeof reply}`);
}

/** A count: a non-negative integer reply. */
export function countReply(script: string, reply: unknown): number {
  if (typeof reply === 'number' && Number.isSafeInteger(reply) && reply >= 0) {
    return reply;
  }
  throw new MalformedReplyError(script, `expected a count, got ${typeof reply}`);
}

/** A 0/1 integer reply. */
export function flagReply(script: string, reply: unknown): boolean {
  if (reply === 0 || reply === 1) {
    return reply === 1;
  }
  throw new MalformedReplyError(script, `expected 0 or 1, got ${typeof reply}`);
}

// ---------------------------------------------------------------- JSON schemas

const count = z.number().int().nonnegative();
const instant = z.number().finite();
const tierCounts = z.partialRecord(z.enum(TIERS), count);

export const envelopeSchema: z.ZodType<Envelope> = z.strictObject({
  ciphertext: z.string(),
  cipherkey: z.string(),
  iv: z.string(),
  extra: z.record(z.string(), z.union([z.string(), z.number()])),
});

export const capabilitiesSchema: z.ZodType<NodeCapabilities> = z.strictObject({
  api_version: z.literal('v1'),
  supported_model_ids: z.array(z.string()),
  active_context_tier: z.enum(TIERS),
  maximum_total_context_tokens: count,
  default_output_token_reservation: count,
  maximum_output_tokens: count,
  max_concurrency: count,
  backend_class: z.string(),
});

const nodeViewSchema: z.ZodType<NodeView> = z.strictObject({
  nodeId: z.string(),
  dialect: z.enum(DIALECTS),
  lastPingAt: instant,
  leaseMs: count,
  queueDepth: count,
  inFlightCount: count,
  fallback: z.boolean(),
  keyUnusable: z.boolean(),
  capabilities: capabilitiesSchema.nullable(),
});

export const nodeListSchema: z.ZodType<NodeView[]> = z.array(nodeViewSchema);

export const nodeSummarySchema: z.ZodType<NodeSummary> = z.strictObject({
  legacy: count,
  v1: count,
  fallback: count,
  unusable: count,
  listed: z.array(nodeViewSchema),
  fallbackListed: z.array(nodeViewSchema),
});

export const selectionSchema: z.ZodType<SelectNodeResult> = z.discriminatedUnion('status', [
  z.strictObject({ status: z.literal('no_nodes') }),
  z.strictObject({
    status: z.enum(['no_match', 'no_capacity']),
    eligibleTierCounts: tierCounts,
    eligibleCount: count,
    capacityLimitedCount: count,
    capacityLimitedTierCounts: tierCounts,
  }),
  z.strictObject({
    status: z.literal('selected'),
    selected: z.strictObject({
      nodeId: z.string(),
      tier: z.enum(TIERS),
      modelSupport: z.array(z.string()),
      queueDepth: count,
      inFlightCount: count,
      loadScore: z.number().finite().nonnegative(),
    }),
    eligibleTierCounts: tierCounts,
    eligibleCount: count,
  }),
]);

export const statsSchema: z.ZodType<StatsSnapshot> = z.strictObject({
  queueDepth: count,
  oldestQueuedAt: instant.nullable(),
  inFlight: count,
  oldestClaimedAt: instant.nullable(),
  nodesRegistered: count,
  v1NodesRegistered: count,
  v1NodesHealthy: count,
  oldestPingAt: instant.nullable(),
  queuedBytes: z.number().int(),
  storedResponses: count,
  answerBytes: count,
  terminalRecords: count,
  tombstones: count,
  streamSessions: count,
  rateLimitBuckets: count,
});
