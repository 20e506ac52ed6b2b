-- Housekeeping: sweep, stats and rate-limit windows; the twin of upkeep.memory.ts. Each script
-- runs after the header and lifecycle.redis.lua (ARGV[1..3] there).

--[[ script tpSweep
KEYS: none
ARGV: 4 batch (most entries per index per call)
Reply: { transitions, more (0|1: some index had more due entries than the batch) }
Expires everything due at NOW and evicts gone nodes. Idempotent and atomic, so every replica may
run it. Due entries are handled in sorted-set order (expiry, then member), as the memory twin does.
]]
local B = tonumber(ARGV[4])
local more = 0
local function due(zkey, strict)
  local max = num(NOW)
  if strict then max = '(' .. max end
  local r = redis.call('ZRANGEBYSCORE', P .. zkey, '-inf', max, 'LIMIT', 0, B)
  if #r >= B then more = 1 end
  return r
end
for _, pk in ipairs(due('termt')) do clearTerminal(pk) end
for _, pk in ipairs(due('done')) do redis.call('ZREM', P .. 'done', pk) end
for _, tk in ipairs(due('tombt')) do
  redis.call('HDEL', P .. 'tomb', tk)
  redis.call('ZREM', P .. 'tombt', tk)
end
for _, jid in ipairs(due('dl')) do
  local j = getJob(jid)
  if j and j.s ~= 'a' then
    -- Spec §4.6: a deadline the sweep finds, queued or in flight, is
    -- expired/pending_request_ttl_exceeded; the node learns it from its tombstone.
    endJob(j, 'expired', 'pending_request_ttl_exceeded', true)
  else
    redis.call('ZREM', P .. 'dl', jid)
  end
end
for _, jid in ipairs(due('cl')) do
  redis.call('ZREM', P .. 'cl', jid)
  local j = getJob(jid)
  if j then
    redis.call('SREM', P .. 'a:' .. j.node, jid)
    -- A claim its node never confirmed (no control, no progress) for a whole in-flight lease: the
    -- poll answer never reached the node, so it goes back to the head of its queue. A claim whose
    -- answer was refused answers_full (API v1 or legacy) comes here answerRetryMs later.
    if not requeueClaim(j) and j.d == 'v1' then syncLoad(j.node) end
  end
end
for _, id in ipairs(due('holdt')) do dropHold(id) end
for _, jid in ipairs(due('answered')) do
  local j = getJob(jid)
  if j and j.s == 'a' then
    forget(j)
    if j.ck and j.rid then writeTerminal(j.ck .. '\n' .. j.rid, 'expired', 'response_ttl_exceeded') end
  else
    redis.call('ZREM', P .. 'answered', jid)
  end
end
for _, jid in ipairs(due('handed')) do
  local j = getJob(jid)
  if j and j.s == 'a' then forget(j) else redis.call('ZREM', P .. 'handed', jid) end
end
for _, ck in ipairs(due('lht')) do dropLegacyHanded(ck) end
for _, id in ipairs(due('ut')) do dropUntracked(id) end
for _, ck in ipairs(due('lrt')) do dropLegacyResponse(ck) end
for _, sid in ipairs(due('stt')) do dropStream(sid) end
for _, id in ipairs(due('lease', true)) do
  local n = getNode(id)
  if not n then
    local seq = redis.call('ZSCORE', P .. 'nodes', id)
    if seq then dropView(seq) end
    redis.call('ZREM', P .. 'lease', id)
    redis.call('ZREM', P .. 'nodes', id)
    redis.call('SREM', P .. 'legacy', id)
  elseif isGone(n, NOW) then
    removeNode(n, 'stale_lease', true)
  else
    -- Long-polling or working nodes are not lapsed; check them again one lease later.
    redis.call('ZADD', P .. 'lease', num(math.max(NOW + leaseMs(n.d), evictAt(n))), id)
  end
end
for _, bk in ipairs(due('rlt')) do
  redis.call('HDEL', P .. 'rl', bk)
  redis.call('ZREM', P .. 'rlt', bk)
  redis.call('ZREM', P .. 'rlu', bk)
end
return { enc(), more }

--[[ script tpStats (read-only)
KEYS: none
ARGV: none of its own
Reply: JSON { queueDepth, oldestQueuedAt|null, inFlight, oldestClaimedAt|null, nodesRegistered,
  v1NodesRegistered, v1NodesHealthy, oldestPingAt|null, queuedBytes, storedResponses, answerBytes,
  terminalRecords, tombstones, streamSessions, rateLimitBuckets } (a StatsSnapshot)
]]
local nodes, v1, healthy, oldestPing = 0, 0, 0, nil
for _, id in ipairs(redis.call('ZRANGE', P .. 'nodes', 0, -1)) do
  local n = getNode(id)
  if n then
    nodes = nodes + 1
    if n.d == 'v1' then
      v1 = v1 + 1
      if not isLapsed(n, NOW) then healthy = healthy + 1 end
    end
    if not oldestPing or n.ping < oldestPing then oldestPing = n.ping end
  end
end
local oq = redis.call('ZRANGE', P .. 'queued', 0, 0, 'WITHSCORES')
local oc = redis.call('ZRANGE', P .. 'claimed', 0, 0, 'WITHSCORES')
return cjson.encode({
  queueDepth = redis.call('ZCARD', P .. 'queued'),
  oldestQueuedAt = oq[2] and tonumber(oq[2]) or cjson.null,
  inFlight = redis.call('ZCARD', P .. 'claimed'),
  oldestClaimedAt = oc[2] and tonumber(oc[2]) or cjson.null,
  nodesRegistered = nodes,
  v1NodesRegistered = v1,
  v1NodesHealthy = healthy,
  oldestPingAt = oldestPing or cjson.null,
  queuedBytes = tonumber(redis.call('GET', P .. 'qbytes') or '0'),
  storedResponses = storedCount() + redis.call('ZCARD', P .. 'handed') + redis.call('ZCARD', P .. 'lht'),
  answerBytes = answerBytes(),
  terminalRecords = redis.call('HLEN', P .. 'term') + redis.call('ZCARD', P .. 'done'),
  tombstones = redis.call('HLEN', P .. 'tomb'),
  streamSessions = redis.call('ZCARD', P .. 'stt'),
  rateLimitBuckets = redis.call('HLEN', P .. 'rl'),
})

--[[ script tpHitRateLimit
KEYS: none
ARGV: 4 bucket key, 5 limit, 6 window ms, 7 refund (1: take back one hit of the current window)
Reply: { allowed (0|1), seconds until the window resets (at least 1) }
A full table forgets its least recently used bucket (rlu: bucket -> last hit) rather than refuse.
]]
local bk = ARGV[6] .. '\n' .. ARGV[4]
local limit, window = tonumber(ARGV[5]), tonumber(ARGV[6])
local resetAt = tonumber(redis.call('ZSCORE', P .. 'rlt', bk))
local count = tonumber(redis.call('HGET', P .. 'rl', bk) or '0')
if ARGV[7] == '1' then
  local live = resetAt and resetAt > NOW
  if live and count > 0 then redis.call('HSET', P .. 'rl', bk, count - 1) end
  return { 1, live and math.max(1, math.ceil((resetAt - NOW) / 1000)) or 1 }
end
if not resetAt or resetAt <= NOW then
  if not resetAt and redis.call('HLEN', P .. 'rl') >= L.maxRateLimitBuckets then
    for _, old in ipairs(redis.call('ZRANGEBYSCORE', P .. 'rlt', '-inf', num(NOW), 'LIMIT', 0, 1000)) do
      redis.call('HDEL', P .. 'rl', old)
      redis.call('ZREM', P .. 'rlt', old)
      redis.call('ZREM', P .. 'rlu', old)
    end
    if redis.call('HLEN', P .. 'rl') >= L.maxRateLimitBuckets then
      -- Never refuse a newcomer because strangers filled the table: the bucket idle longest goes.
      local lru = redis.call('ZRANGE', P .. 'rlu', 0, 0)[1]
      if lru then
        redis.call('HDEL', P .. 'rl', lru)
        redis.call('ZREM', P .. 'rlt', lru)
        redis.call('ZREM', P .. 'rlu', lru)
      end
    end
  end
  resetAt = NOW + window
  count = 0
  redis.call('ZADD', P .. 'rlt', num(resetAt), bk)
  redis.call('HSET', P .. 'rl', bk, 0)
end
redis.call('ZADD', P .. 'rlu', num(NOW), bk)
local resetSeconds = math.max(1, math.ceil((resetAt - NOW) / 1000))
if count >= limit then return { 0, resetSeconds } end
redis.call('HSET', P .. 'rl', bk, count + 1)
return { 1, resetSeconds }
