-- Registry transitions; the twin of nodes.memory.ts. Each script below runs after the header and
-- lifecycle.redis.lua; see there for ARGV[1..3]. Hot replies are arrays (status first, encoded
-- transitions second); cold replies (node list, selection) are one JSON document.

--[[ script tpUpsertNode
KEYS: none
ARGV: 4 node id, 5 dialect, 6 capabilities mode (keep|null|set), 7 capabilities JSON, 8 tier,
  9 max total context, 10 max concurrency, 11 model set ('\n' .. ids joined by '\n' .. '\n'),
  12 model ids JSON, 13 new credential digest (opt), 14 require existing ('1'), 15 polling until (opt),
  16 fallback (opt: '1'|'0', v1 only; absent keeps), 17 origin owner (opt), 18 origin group (opt),
  19 presented credential digest (opt), 20 most nodes per origin group (opt)
Reply: { 'created'|'renewed', transitions, credential issued (0|1) }
     | { 'not_found'|'nodes_full'|'group_full'|'dialect_conflict'|'forbidden', transitions }
]]
local id, dialect, capsMode = ARGV[4], ARGV[5], ARGV[6]
local newDigest = opt(ARGV[13])
local requireExisting = ARGV[14] == '1'
local poll = opt(ARGV[15])
local fallback = opt(ARGV[16])
local owner, group, shown = opt(ARGV[17]), opt(ARGV[18]), opt(ARGV[19])
local perGroup = opt(ARGV[20])
local nkey = P .. 'n:' .. id

local function setCaps()
  if capsMode == 'set' then
    redis.call('HSET', nkey, 'caps', ARGV[7], 'tier', ARGV[8], 'mctx', ARGV[9], 'conc', ARGV[10],
      'mset', ARGV[11], 'models', ARGV[12])
  elseif capsMode == 'null' then
    redis.call('HDEL', nkey, 'caps', 'tier', 'mctx', 'conc', 'mset', 'models')
  end
end

-- A new node, counted in the caller's group; `own` binds it elsewhere (a dialect change).
local function createNode(own)
  local seq = redis.call('INCR', P .. 'ctr:node')
  redis.call('HSET', nkey, 'd', dialect, 'seq', seq, 'ping', num(NOW), 'poll', poll or '0')
  if dialect == 'v1' then
    setCaps()
    if newDigest then redis.call('HSET', nkey, 'dig', newDigest) end
    redis.call('HSET', nkey, 'fb', fallback == '1' and '1' or '0')
  end
  if own then redis.call('HSET', nkey, 'own', own) end
  if group then
    redis.call('HSET', nkey, 'grp', group)
    redis.call('ZADD', P .. 'g:' .. group, seq, id)
    redis.call('PEXPIRE', P .. 'g:' .. group, ttl(0))
    redis.call('ZINCRBY', P .. 'gz', 1, group)
  end
  redis.call('PEXPIRE', nkey, ttl(0))
  redis.call('ZADD', P .. 'nodes', seq, id)
  redis.call('ZADD', P .. 'lease', num(NOW + leaseMs(dialect) + L.lapseGraceMs), id)
  if dialect == 'legacy' then redis.call('SADD', P .. 'legacy', id) else syncView(id) end
end

-- Whether the caller may act for a live node: with its credential from anywhere, without one
-- only from the address the node is bound to (an unbound node, or a caller of unknown origin, passes).
local function ownedBy(n)
  if shown then return n.d == 'v1' and credentialMatches(n.dig, shown) end
  return not owner or not n.own or n.own == owner
end

-- Open registration with a full registry: the group holding the most nodes (ties: the greatest
-- name) gives up its newest one (capacity_loss) when it holds at least two more than the caller's
-- group, so an address can always register while others hold more than it.
local function makeRoom()
  if not perGroup or not group then return false end
  local own = tonumber(redis.call('ZSCORE', P .. 'gz', group) or '0')
  local largest = redis.call('ZREVRANGE', P .. 'gz', 0, 0, 'WITHSCORES')
  if not largest[1] or tonumber(largest[2]) <= own + 1 then return false end
  local newest = redis.call('ZREVRANGE', P .. 'g:' .. largest[1], 0, 0)[1]
  local victim = newest and getNode(newest)
  if not victim then return false end
  removeNode(victim, 'capacity_loss', true)
  return true
end

local n = getNode(id)
if n and isGone(n, NOW) then
  removeNode(n, 'stale_lease', true)
  n = nil
end
if not n then
  if requireExisting then return { 'not_found', enc() } end
  if perGroup and group and tonumber(redis.call('ZSCORE', P .. 'gz', group) or '0') >= tonumber(perGroup) then
    return { 'group_full', enc() }
  end
  if redis.call('ZCARD', P .. 'nodes') >= L.maxNodes and not makeRoom() then
    return { 'nodes_full', enc() }
  end
  createNode(owner)
  return { 'created', enc(), (dialect == 'v1' and newDigest) and 1 or 0 }
end
if not ownedBy(n) then return { 'forbidden', enc() } end
if owner and (shown or not n.own) then
  -- Shown the credential (or bound to no one yet): the key now belongs to the caller's address.
  n.own = owner
  redis.call('HSET', nkey, 'own', owner)
end
if n.d ~= dialect then
  if dialect == 'legacy' or requireExisting then return { 'dialect_conflict', enc() } end
  -- A `/sink` node re-registering through API v1 becomes a v1 node: its legacy work cannot be
  -- served by a v1 node, so it ends as cancelled; it moves to the end of the registry.
  removeNode(n, 'unregistered', false)
  createNode(n.own)
  return { 'created', enc(), newDigest and 1 or 0 }
end
touch(n)
if poll then redis.call('HSET', nkey, 'poll', poll) end
if fallback and n.d == 'v1' then redis.call('HSET', nkey, 'fb', fallback) end
setCaps()
local issued = 0
if n.d == 'v1' and not n.dig and newDigest then
  redis.call('HSET', nkey, 'dig', newDigest)
  issued = 1
end
if n.d == 'v1' and (capsMode ~= 'keep' or fallback) then
  syncView(id)
elseif n.d == 'v1' and poll then
  syncPoll(n.seq, poll)
end
return { 'renewed', enc(), issued }

--[[ script tpUnregisterNode
KEYS: none
ARGV: 4 node id, 5 credential digest (opt), 6 force ('1')
Reply: { 'removed'|'absent'|'forbidden', transitions }
]]
local n = getNode(ARGV[4])
if not n then return { 'absent', enc() } end
if n.d == 'v1' and ARGV[6] ~= '1' and not credentialMatches(n.dig, opt(ARGV[5])) then
  return { 'forbidden', enc() }
end
removeNode(n, 'unregistered', true)
return { 'removed', enc() }

--[[ script tpListNodes (read-only)
KEYS: none
ARGV: none of its own
Reply: JSON array of the nodes within lease and grace, in registration order:
  [{ nodeId, dialect, lastPingAt, leaseMs, queueDepth, inFlightCount, fallback, keyUnusable,
     capabilities|null }]
]]
local out = {}
for _, id in ipairs(redis.call('ZRANGE', P .. 'nodes', 0, -1)) do
  local n = getNode(id)
  if n and not isGone(n, NOW) then
    out[#out + 1] = nodeView(n)
  end
end
return '[' .. table.concat(out, ',') .. ']'

--[[ script tpSummarizeNodes (read-only)
KEYS: none
ARGV: 4 most nodes per list
Reply: JSON { legacy, v1, fallback, unusable, listed: [NODE], fallbackListed: [NODE] }: counts of
  the nodes within lease and grace (fallback nodes apart from v1, unusable among v1), and the first
  nodes of each list in registration order, NODE as tpListNodes
]]
local limit = tonumber(ARGV[4])
local counts = { legacy = 0, v1 = 0, fallback = 0, unusable = 0 }
local listed, fallbackListed = {}, {}
for _, id in ipairs(redis.call('ZRANGE', P .. 'nodes', 0, -1)) do
  local n = getNode(id)
  if n and not isGone(n, NOW) then
    if n.d == 'legacy' then
      counts.legacy = counts.legacy + 1
    elseif n.fb then
      counts.fallback = counts.fallback + 1
    else
      counts.v1 = counts.v1 + 1
      if n.bad then counts.unusable = counts.unusable + 1 end
    end
    local list = n.fb and fallbackListed or listed
    if #list < limit then list[#list + 1] = nodeView(n) end
  end
end
local head = cjson.encode(counts)
return string.sub(head, 1, -2) .. ',"listed":[' .. table.concat(listed, ',') .. '],"fallbackListed":['
  .. table.concat(fallbackListed, ',') .. ']}'

--[[ script tpMarkKeyUnusable
KEYS: none
ARGV: 4 node id
Reply: 1 when the node is registered (now marked), else 0
]]
if not redis.call('HGET', P .. 'n:' .. ARGV[4], 'd') then return 0 end
redis.call('HSET', P .. 'n:' .. ARGV[4], 'bad', '1')
syncView(ARGV[4])
return 1

--[[ script tpPickLegacyNode (read-only)
KEYS: none
ARGV: 4 random (a number from 0 up to 1, 1 excluded)
Reply: a random fresh legacy node id, else a random lapsed one, or nil
]]
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

--[[ script tpSelectNode
KEYS: none
ARGV: 4 model, 5 requested tier, 6 max queue depth, 7 at capacity ('refuse'|'least_loaded'),
  8.. excluded node ids (never offered)
Reply: JSON { status: 'no_nodes' }
     | { status: 'no_match'|'no_capacity', eligibleTierCounts, eligibleCount, capacityLimitedCount,
         capacityLimitedTierCounts }
     | { status: 'selected', selected: { nodeId, tier, modelSupport, queueDepth, inFlightCount,
         loadScore }, eligibleTierCounts, eligibleCount }
best_fit_smallest_capable_least_loaded_v1 with its round-robin cursors, in one step (scheduler.ts);
nodes whose key is marked unusable, and the excluded ones, are never offered.
]]
local model, maxQ = ARGV[4], tonumber(ARGV[6])
local wanted = K.TIERS[ARGV[5]]
if not wanted then error('TPBUG unknown context tier ' .. ARGV[5]) end
local leastLoaded = ARGV[7] == 'least_loaded'
local skip = {}
for i = 8, #ARGV do
  local seq = redis.call('HGET', P .. 'n:' .. ARGV[i], 'seq')
  if seq then skip[tonumber(seq)] = true end
end
-- Everything below reads the placement view (syncView, syncLoad): a few calls and one pass over
-- short strings, whatever the registry holds.
local function bySeq(key)
  local flat, out = redis.call('HGETALL', P .. key), {}
  for i = 1, #flat, 2 do out[tonumber(flat[i])] = flat[i + 1] end
  return out
end
local view, queued, active = bySeq('pv'), bySeq('pq'), bySeq('pa')
local order = {}
for seq in pairs(view) do
  if not skip[seq] then order[#order + 1] = seq end
end
table.sort(order)

-- What a set of capabilities allows, worked out once per distinct set (most nodes share a few).
local needle = '\n' .. model .. '\n'
local modelOk = not string.find(model, '\n', 1, true)
local profiles = {}
local function profile(caps)
  local p = profiles[caps]
  if not p then
    local tier, mctx, conc, mset = string.match(caps, '^([^|]*)|([^|]*)|([^|]*)|(.*)$')
    local size = K.TIERS[tier]
    p = { tier = tier, size = size, conc = tonumber(conc),
      fits = (size and size >= wanted and tonumber(mctx) >= wanted and modelOk
        and string.find(mset, needle, 1, true)) and true or false }
    profiles[caps] = p
  end
  return p
end

-- Fresh nodes first; lapsed ones (past their lease, within the grace: isLapsed, isGone) and
-- fallback ones (the demo node) only when no other fresh node can take the request. Each node
-- offered is an index k into parallel arrays: seq, tie name, profile, queue depth, active claims.
local S, D, C, Q, A = {}, {}, {}, {}, {}
local fresh, all, anySecondTier = {}, {}, false
local lease = L.v1LeaseMs
for _, seq in ipairs(order) do
  local ping, poll, fb, bad, digest, caps = string.match(view[seq], '^([^|]*)|([^|]*)|(.)|(.)|([^|]*)|(.*)$')
  if bad ~= '1' then
    local a = tonumber(active[seq] or '0')
    ping = tonumber(ping)
    local late = lapsedFacts(ping, tonumber(poll), a, lease, NOW)
    if not (late and pastGrace(ping, lease, NOW)) then
      local k = #S + 1
      S[k], D[k], C[k], Q[k], A[k] = seq, digest, profile(caps), tonumber(queued[seq] or '0'), a
      all[#all + 1] = k
      if fb == '1' or late then anySecondTier = true else fresh[#fresh + 1] = k end
    end
  end
end

-- One scheduler pass; with busyOk a node at its concurrency still has room while its queue does.
-- Among the nodes with room it keeps the best: the smallest tier, then the lowest load, and every
-- node tied there (the tie set, in registration order).
local SCALE = K.LOAD_SCORE_SCALE
local function pass(nodes, busyOk)
  if #nodes == 0 then return { status = 'no_nodes' } end
  local eligible, limited = 0, 0
  local eligibleTiers, limitedTiers = {}, {}
  local ties, bestSize, bestLoad = {}, nil, nil
  for _, k in ipairs(nodes) do
    local p = C[k]
    if p.fits then
      local tier = p.tier
      eligible = eligible + 1
      eligibleTiers[tier] = (eligibleTiers[tier] or 0) + 1
      local q, a = Q[k], A[k]
      if (not busyOk and a >= p.conc) or q >= maxQ then
        limited = limited + 1
        limitedTiers[tier] = (limitedTiers[tier] or 0) + 1
      elseif not bestSize or p.size <= bestSize then
        local load = 0
        if q + a > 0 then load = math.floor(((q + a) / p.conc) * SCALE + 0.5) / SCALE end
        if not bestSize or p.size < bestSize or load < bestLoad then
          bestSize, bestLoad, ties = p.size, load, { k }
        elseif load == bestLoad then
          ties[#ties + 1] = k
        end
      end
    end
  end
  if eligible == 0 or not bestSize then
    return { status = eligible == 0 and 'no_match' or 'no_capacity', eligibleTierCounts = eligibleTiers,
      eligibleCount = eligible, capacityLimitedCount = limited, capacityLimitedTierCounts = limitedTiers }
  end
  return { status = 'selected', ties = ties, load = bestLoad, eligibleTierCounts = eligibleTiers,
    eligibleCount = eligible }
end

local function tiers(busyOk)
  local t = pass(fresh, busyOk)
  if t.status ~= 'selected' and anySecondTier then t = pass(all, busyOk) end
  return t
end

local r = tiers(false)
if r.status == 'no_capacity' and leastLoaded then
  -- Every matching node is at capacity: the same tiers again, busy nodes with queue room counted in.
  local busy = tiers(true)
  if busy.status == 'selected' then r = busy end
end
if r.status ~= 'selected' then return cjson.encode(r) end

local ties = r.ties
local picked = ties[1]
if #ties > 1 then
  -- The tie set is named by its node ids (their digests), in registration order.
  local names = {}
  for i, k in ipairs(ties) do names[i] = D[k] end
  local tk = 't:' .. redis.sha1hex(table.concat(names, '\n'))
  local prev = redis.call('HGET', P .. 'rr', tk)
  picked = nil
  if prev then
    prev = tonumber(prev)
    for _, k in ipairs(ties) do if S[k] > prev then picked = k break end end
  else
    local g = tonumber(redis.call('HGET', P .. 'rr', 'g') or '0')
    for _, k in ipairs(ties) do if S[k] >= g then picked = k break end end
  end
  picked = picked or ties[1]
  redis.call('HSET', P .. 'rr', tk, S[picked])
  redis.call('ZADD', P .. 'rro', redis.call('INCR', P .. 'ctr:rr'), tk)
  if redis.call('ZCARD', P .. 'rro') > L.maxTieCursors then
    local oldest = redis.call('ZPOPMIN', P .. 'rro')[1]
    if oldest then redis.call('HDEL', P .. 'rr', oldest) end
  end
end
local seq = S[picked]
redis.call('HSET', P .. 'rr', 'g', seq + 1)
local id = redis.call('ZRANGEBYSCORE', P .. 'nodes', seq, seq, 'LIMIT', 0, 1)[1]
local selected = cjson.encode({ nodeId = id, tier = C[picked].tier, queueDepth = Q[picked],
  inFlightCount = A[picked], loadScore = r.load })
local models = redis.call('HGET', P .. 'n:' .. id, 'models')
return '{"status":"selected","selected":' .. string.sub(selected, 1, -2) .. ',"modelSupport":' .. models
  .. '},"eligibleTierCounts":' .. cjson.encode(r.eligibleTierCounts) .. ',"eligibleCount":' .. r.eligibleCount .. '}'

--[[ script tpRebuildPlacementView
KEYS: none
ARGV: none of its own
Reply: the number of registered nodes the placement view was written from
Drops the placement view (pv, pq, pa: syncView, syncLoad) and writes it again from every node's own
keys, then marks the keys as this layout. Runs at boot on the layout of an earlier release, which
kept no view (the only script that accepts one); the tests run it to prove the view never drifts.
]]
redis.call('DEL', P .. 'pv', P .. 'pq', P .. 'pa')
local ids = redis.call('ZRANGE', P .. 'nodes', 0, -1)
for _, id in ipairs(ids) do
  syncView(id)
  syncLoad(id)
end
redis.call('SET', P .. 'schema', K.LAYOUT)
return #ids
