/**
 * How the store calls the scripts of upkeep.redis.lua (the twin of upkeep.memory.ts): each one's
 * arguments in ARGV order and the reading of its reply, one declaration per script, same order.
 */
import { bit, jsonReply, script } from '../redis/script-call';
import { statsSchema } from '../redis/script-reply';
import type { RateLimitCommand, RateLimitResult } from '../state-store';
import type { TransitionCounts } from '../state.types';

export const LUA_FILE = 'upkeep.redis.lua';

/** At most this many entries per index per sweep script; the sweep loops while more are due. */
export const SWEEP_BATCH = 500;
export const SWEEP_MAX_ROUNDS = 20;

/** One round of the sweep; `more` when some index held more due entries than the batch. */
export const sweep = script('tpSweep', {
  args: ['batch'],
  encode: (batch: number) => ({ batch }),
  idempotent: true,
  acknowledged: false,
  reply: (r): { transitions: TransitionCounts; more: boolean } => {
    const transitions = r.transitions();
    const more = r.flag('more');
    r.end();
    return { transitions, more };
  },
});

export const stats = script('tpStats', {
  readOnly: true,
  parse: jsonReply(statsSchema, 'stats'),
});

export const hitRateLimit = script('tpHitRateLimit', {
  args: ['bucketKey', 'limit', 'windowMs', 'refund'],
  encode: (cmd: RateLimitCommand) => ({ bucketKey: cmd.key, refund: bit(cmd.refund) }),
  idempotent: false,
  acknowledged: false,
  reply: (r): RateLimitResult => {
    const allowed = r.flag('allowed');
    const resetSeconds = r.integer('reset seconds');
    r.end();
    return { allowed, resetSeconds };
  },
});

export const SCRIPTS = [sweep, stats, hitRateLimit];

/** Adds one round's counts to the sweep's total. */
export function addCounts(total: TransitionCounts, t: TransitionCounts): void {
  for (const [k, v] of Object.entries(t.outcomes) as Array<
    [keyof TransitionCounts['outcomes'], number]
  >) {
    total.outcomes[k] = (total.outcomes[k] ?? 0) + v;
  }
  for (const [k, v] of Object.entries(t.evictions) as Array<
    [keyof TransitionCounts['evictions'], number]
  >) {
    total.evictions[k] = (total.evictions[k] ?? 0) + v;
  }
}
