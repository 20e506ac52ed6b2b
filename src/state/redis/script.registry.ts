import {
  APPEND_STREAM_CHUNK,
  COMPLETE,
  CONFIRM_DELIVERY,
  HAS_RESPONSE,
  TAKE_RESPONSE,
  TAKE_STREAM,
} from './answer.script';
import {
  LIST_NODES,
  PICK_LEGACY_NODE,
  SELECT_NODE,
  UNREGISTER_NODE,
  UPSERT_NODE,
} from './node.script';
import { header, PRELUDE } from './prelude.script';
import { HIT_RATE_LIMIT, STATS, SWEEP } from './upkeep.script';
import { CANCEL, CLAIM_NEXT, CONTROL, ENQUEUE, HAS_WORK, PUT_PROGRESS } from './work.script';

/**
 * Every Lua script of the Redis store, by ioredis command name. Each is the shared prelude plus
 * one transition, registered with `defineCommand` (EVALSHA, falling back to EVAL on NOSCRIPT, so a
 * restarted Redis or a SCRIPT FLUSH costs one extra round trip, never an error).
 */
export const RELAY_SCRIPTS = {
  tpUpsertNode: UPSERT_NODE,
  tpUnregisterNode: UNREGISTER_NODE,
  tpListNodes: LIST_NODES,
  tpPickLegacyNode: PICK_LEGACY_NODE,
  tpSelectNode: SELECT_NODE,
  tpEnqueue: ENQUEUE,
  tpClaimNext: CLAIM_NEXT,
  tpControl: CONTROL,
  tpCancel: CANCEL,
  tpPutProgress: PUT_PROGRESS,
  tpHasWork: HAS_WORK,
  tpComplete: COMPLETE,
  tpTakeResponse: TAKE_RESPONSE,
  tpConfirmDelivery: CONFIRM_DELIVERY,
  tpHasResponse: HAS_RESPONSE,
  tpAppendStreamChunk: APPEND_STREAM_CHUNK,
  tpTakeStream: TAKE_STREAM,
  tpSweep: SWEEP,
  tpStats: STATS,
  tpHitRateLimit: HIT_RATE_LIMIT,
} as const;

export type RelayScriptName = keyof typeof RELAY_SCRIPTS;

/** Scripts that never write: they run even when Redis is out of memory. */
const READ_ONLY: ReadonlySet<RelayScriptName> = new Set<RelayScriptName>([
  'tpListNodes',
  'tpPickLegacyNode',
  'tpHasWork',
  'tpHasResponse',
  'tpStats',
]);

/** Full source of a script (header with flags, prelude, body). */
export function scriptSource(name: RelayScriptName): string {
  return `${header(READ_ONLY.has(name))}${PRELUDE}\n${RELAY_SCRIPTS[name]}`;
}
