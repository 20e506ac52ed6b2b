/**
 * The key families of the Redis store, as the key-leak test drives them: per-entity keys
 * (`<family>:<id>`, each with a TTL of its own) and fixed keys under the prefix. The static check
 * in test/contract/redis-scripts.spec.ts holds every family the `.lua` files use against this list
 * and against the key table of docs/redis.md.
 */
export const PER_ENTITY_FAMILIES = [
  'n',
  'q',
  'c',
  'a',
  'sn',
  'j',
  'u',
  'uc',
  'lr',
  'lh',
  'lc',
  's',
  'sc',
  'g',
] as const;

/**
 * Fixed keys that stay once everything expired: layout, counters, queued and answer bytes, and the scheduler
 * cursors with their use order (capped at `maxTieCursors`, never expired).
 */
export const LASTING_KEYS = [
  'schema',
  'ctr:node',
  'ctr:q',
  'ctr:u',
  'ctr:rr',
  'qbytes',
  'abytes',
  'rr',
  'rro',
];

/** Fixed keys (indexes) that empty, and so disappear, when everything expired. */
export const EMPTYING_KEYS = [
  'nodes',
  'lease',
  'legacy',
  'gz',
  'dl',
  'queued',
  'claimed',
  'cl',
  'answered',
  'handed',
  'pairs',
  'live',
  'ut',
  'lrt',
  'lrb',
  'lht',
  'lhb',
  'term',
  'termt',
  'done',
  'tomb',
  'tombt',
  'sbc',
  'stt',
  'rl',
  'rlt',
  'rlu',
  'pv',
  'pq',
  'pa',
  'hold',
  'holdt',
];
