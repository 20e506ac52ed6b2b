import type { Redis } from 'ioredis';

/**
 * Moves a deployment's keys from an earlier prefix to the current one, once, in one atomic script
 * (the relay's own state is small: a few keys per queued request and registered node).
 *
 * It runs at every (re)connection and does nothing unless the new prefix has no layout key yet and
 * the old prefix holds one of the layouts this release reads (its own, or one it upgrades next:
 * see `upgradeLayout` in connection.supervisor.ts). Every key under the old prefix is renamed (RENAME keeps its TTL),
 * except keys of other deployments whose prefix happens to start with the old one (each such
 * deployment has its own `<prefix>schema` holding a layout name, which is how they are told apart).
 * Then the old layout key is set to `moved to <new prefix>`: a replica still running the previous
 * release fails every script with TPSCHEMA (503, unready) instead of writing beside the moved state.
 *
 * Standalone and Sentinel only: the old layout never ran on a Cluster (it had no hash tag).
 */
const MIGRATE = `#!lua
local old, new = ARGV[1], ARGV[2]
if redis.call('EXISTS', new .. 'schema') == 1 then return { 'current', 0 } end
local known = false
local layout = redis.call('GET', old .. 'schema')
for i = 3, #ARGV do known = known or layout == ARGV[i] end
if not known then return { 'nothing', 0 } end
local function glob(p) return (string.gsub(p, '[%*%?%[%]\\\\]', '\\\\%0')) end
local function scan(pattern, each)
  local cursor = '0'
  repeat
    local r = redis.call('SCAN', cursor, 'MATCH', pattern, 'COUNT', 1000)
    cursor = r[1]
    for _, key in ipairs(r[2]) do each(key) end
  until cursor == '0'
end
local nested = {}
scan(glob(old) .. '?*schema', function(key)
  if redis.call('TYPE', key).ok == 'string' then
    local v = redis.call('GET', key)
    if string.sub(v, 1, 17) == 'tokenplace-relay/' or string.sub(v, 1, 9) == 'moved to ' then
      nested[#nested + 1] = string.sub(key, 1, #key - 6)
    end
  end
end)
local moved = 0
scan(glob(old) .. '*', function(key)
  for _, p in ipairs(nested) do
    if string.sub(key, 1, #p) == p then return end
  end
  if redis.call('EXISTS', key) == 1 then
    redis.call('RENAME', key, new .. string.sub(key, #old + 1))
    moved = moved + 1
  end
end)
redis.call('SET', old .. 'schema', 'moved to ' .. new)
return { 'moved', moved }
`;

export interface MigrationResult {
  status: 'current' | 'nothing' | 'moved';
  keys: number;
}

export async function migratePrefix(
  connection: Redis,
  from: string,
  to: string,
  layouts: readonly string[],
): Promise<MigrationResult> {
  const reply = (await connection.eval(MIGRATE, 0, from, to, ...layouts)) as [string, number];
  const status = reply[0];
  if (status !== 'current' && status !== 'nothing' && status !== 'moved') {
    throw new Error(`prefix migration answered ${String(status)}`);
  }
  return { status, keys: Number(reply[1]) };
}
