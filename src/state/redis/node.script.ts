/**
 * Registry transitions. Each constant is a script body run after the shared prelude; arguments
 * start at ARGV[4]. Replies are arrays: status first, encoded transition counts second.
 */

/** ARGV: id, dialect, capsMode (keep|null|set), caps JSON, tier, max ctx, concurrency, model set, models JSON, digest (opt), requireExisting, pollingUntil (opt). */
export const UPSERT_NODE = `
local id, dialect, capsMode = ARGV[4], ARGV[5], ARGV[6]
local newDigest = opt(ARGV[13])
local requireExisting = ARGV[14] == '1'
local poll = opt(ARGV[15])
local nkey = P .. 'n:' .. id

local function setCaps()
  if capsMode == 'set' then
    redis.call('HSET', nkey, 'caps', ARGV[7], 'tier', ARGV[8], 'mctx', ARGV[9], 'conc', ARGV[10],
      'mset', ARGV[11], 'models', ARGV[12])
  elseif capsMode == 'null' then
    redis.call('HDEL', nkey, 'caps', 'tier', 'mctx', 'conc', 'mset', 'models')
  end
end

local function create()
  local seq = redis.call('INCR', P .. 'ctr:node')
  redis.call('HSET', nkey, 'd', dialect, 'seq', seq, 'ping', num(NOW), 'poll', poll or '0')
  if dialect == 'v1' then
    setCaps()
    if newDigest then redis.call('HSET', nkey, 'dig', newDigest) end
  end
  redis.call('PEXPIRE', nkey, ttl(0))
  redis.call('ZADD', P .. 'nodes', seq, id)
  redis.call('ZADD', P .. 'lease', num(NOW + leaseMs(dialect) + L.lapseGraceMs), id)
  if dialect == 'legacy' then redis.call('SADD', P .. 'legacy', id) end
end

local n = getNode(id)
if n and isGone(n, NOW) then
  removeNode(n, 'stale_lease', true)
  n = nil
end
if not n then
  if requireExisting then return { 'not_found', enc() } end
  if redis.call('ZCARD', P .. 'nodes') >= L.maxNodes then return { 'nodes_full', enc() } end
  create()
  return { 'created', enc(), (dialect == 'v1' and newDigest) and 1 or 0 }
end
if n.d ~= dialect then
  if dialect == 'legacy' or requireExisting then return { 'dialect_conflict', enc() } end
  removeNode(n, 'unregistered', false)
  create()
  return { 'created', enc(), newDigest and 1 or 0 }
end
touch(n)
if poll then redis.call('HSET', nkey, 'poll', poll) end
setCaps()
local issued = 0
if n.d == 'v1' and not n.dig and newDigest then
  redis.call('HSET', nkey, 'dig', newDigest)
  issued = 1
end
return { 'renewed', enc(), issued }
`;

/** ARGV: id, digest (opt), force ('1'). */
export const UNREGISTER_NODE = `
local n = getNode(ARGV[4])
if not n then return { 'absent', enc() } end
local digest = opt(ARGV[5])
if n.d == 'v1' and ARGV[6] ~= '1' and not (n.dig and digest and n.dig == digest) then
  return { 'forbidden', enc() }
end
removeNode(n, 'unregistered', true)
return { 'removed', enc() }
`;

/** Nodes within lease and grace, in registration order: flat [id, dialect, ping, leaseMs, queue, inFlight, caps|nil]*. */
export const LIST_NODES = `
local out = {}
for _, id in ipairs(redis.call('ZRANGE', P .. 'nodes', 0, -1)) do
  local n = getNode(id)
  if n and not isGone(n, NOW) then
    out[#out + 1] = id
    out[#out + 1] = n.d
    out[#out + 1] = num(n.ping)
    out[#out + 1] = num(leaseMs(n.d))
    out[#out + 1] = redis.call('ZCARD', P .. 'q:' .. id)
    out[#out + 1] = redis.call('SCARD', P .. 'a:' .. id)
    out[#out + 1] = redis.call('HGET', P .. 'n:' .. id, 'caps')
  end
end
return out
`;

/** ARGV: a random number in [0, 1). Reply: a random fresh legacy node id, else a lapsed one, or nil. */
export const PICK_LEGACY_NODE = `
for _ = 1, 4 do
  local id = redis.call('SRANDMEMBER', P .. 'legacy')
  if not id then return false end
  local n = getNode(id)
  if n and not isLapsed(n, NOW) then return id end
end
local fresh, lapsed = {}, {}
for _, id in ipairs(redis.call('SMEMBERS', P .. 'legacy')) do
  local n = getNode(id)
  if n and not isLapsed(n, NOW) then
    fresh[#fresh + 1] = id
  elseif n and not isGone(n, NOW) then
    lapsed[#lapsed + 1] = id
  end
end
local pool = fresh
if #pool == 0 then pool = lapsed end
if #pool == 0 then return false end
return pool[math.min(#pool, math.floor(tonumber(ARGV[4]) * #pool) + 1)]
`;

/**
 * best_fit_smallest_capable_least_loaded_v1 with its round-robin cursors, in one step.
 * ARGV: model, wanted tier size, max queue depth.
 * Reply: { status, JSON details, models JSON of the selected node }.
 */
export const SELECT_NODE = `
local model, wanted, maxQ = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local TIERS = { ['8k-fast'] = 8192, ['64k-full'] = 65536 }
local modelOk = not string.find(model, '\\n', 1, true)
-- Fresh nodes first; lapsed ones (past their lease, within the grace) only when no fresh node can
-- take the request.
local fresh, all, anyLapsed = {}, {}, false
for _, id in ipairs(redis.call('ZRANGE', P .. 'nodes', 0, -1)) do
  local n = getNode(id)
  if n and n.d == 'v1' and not isGone(n, NOW) then
    all[#all + 1] = n
    if isLapsed(n, NOW) then anyLapsed = true else fresh[#fresh + 1] = n end
  end
end

local function pass(nodes)
  if #nodes == 0 then return { status = 'no_nodes' } end
  local eligible, limited = 0, 0
  local eligibleTiers, limitedTiers = {}, {}
  local avail = {}
  for _, n in ipairs(nodes) do
    local id = n.id
    local c = redis.call('HMGET', P .. 'n:' .. id, 'tier', 'mctx', 'conc', 'mset')
    local size = c[1] and TIERS[c[1]]
    if size and size >= wanted and tonumber(c[2]) >= wanted and modelOk
      and string.find(c[4], '\\n' .. model .. '\\n', 1, true) then
      eligible = eligible + 1
      eligibleTiers[c[1]] = (eligibleTiers[c[1]] or 0) + 1
      local q = redis.call('ZCARD', P .. 'q:' .. id)
      local a = redis.call('SCARD', P .. 'a:' .. id)
      local conc = tonumber(c[3])
      if a >= conc or q >= maxQ then
        limited = limited + 1
        limitedTiers[c[1]] = (limitedTiers[c[1]] or 0) + 1
      else
        avail[#avail + 1] = { id = id, seq = n.seq, tier = c[1], size = size, q = q, a = a,
          load = math.floor(((q + a) / conc) * 1e6 + 0.5) / 1e6 }
      end
    end
  end
  if eligible == 0 or #avail == 0 then
    return { status = eligible == 0 and 'no_match' or 'no_capacity', details = cjson.encode({
      eligibleTierCounts = eligibleTiers, eligibleCount = eligible, capacityLimitedCount = limited,
      capacityLimitedTierCounts = limitedTiers }) }
  end
  return { status = 'selected', avail = avail, eligibleTiers = eligibleTiers, eligible = eligible }
end

local r = pass(fresh)
if r.status ~= 'selected' and anyLapsed then r = pass(all) end
if r.status == 'no_nodes' then return { 'no_nodes' } end
if r.status ~= 'selected' then return { r.status, r.details } end

local avail = r.avail
local smallest, lowest = nil, nil
for _, x in ipairs(avail) do
  if not smallest or x.size < smallest then smallest = x.size end
end
for _, x in ipairs(avail) do
  if x.size == smallest and (not lowest or x.load < lowest) then lowest = x.load end
end
local ties = {}
for _, x in ipairs(avail) do
  if x.size == smallest and x.load == lowest then ties[#ties + 1] = x end
end
local picked = ties[1]
if #ties > 1 then
  local names = {}
  for i, x in ipairs(ties) do names[i] = x.id end
  local tk = 't:' .. redis.sha1hex(table.concat(names, '\\n'))
  local prev = redis.call('HGET', P .. 'rr', tk)
  picked = nil
  if prev then
    prev = tonumber(prev)
    for _, x in ipairs(ties) do if x.seq > prev then picked = x break end end
  else
    local g = tonumber(redis.call('HGET', P .. 'rr', 'g') or '0')
    for _, x in ipairs(ties) do if x.seq >= g then picked = x break end end
  end
  picked = picked or ties[1]
  redis.call('HSET', P .. 'rr', tk, picked.seq)
  redis.call('ZADD', P .. 'rro', redis.call('INCR', P .. 'ctr:rr'), tk)
  if redis.call('ZCARD', P .. 'rro') > 1024 then
    local oldest = redis.call('ZPOPMIN', P .. 'rro')[1]
    if oldest then redis.call('HDEL', P .. 'rr', oldest) end
  end
end
redis.call('HSET', P .. 'rr', 'g', picked.seq + 1)
return { 'selected', cjson.encode({ nodeId = picked.id, tier = picked.tier, queueDepth = picked.q,
  inFlightCount = picked.a, loadScore = picked.load, eligibleTierCounts = r.eligibleTiers, eligibleCount = r.eligible }),
  redis.call('HGET', P .. 'n:' .. picked.id, 'models') }
`;
