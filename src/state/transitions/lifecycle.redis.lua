-- Helpers every Redis script shares; the twin of lifecycle.memory.ts (same names, same order).
--
-- Each script is: a generated header (Redis 7 flags, `local P = ARGV[1]` the key prefix, the
-- data-layout check, and `local K = { ... }` the constants written from TypeScript: see
-- src/state/redis/script.registry.ts), then this file, then the script's own section.
-- Every script is called with ARGV[1] = key prefix, ARGV[2] = the store limits as JSON,
-- ARGV[3] = now (epoch ms from the relay's injected clock; scripts never read Redis TIME), and its
-- own arguments from ARGV[4]. No script declares KEYS: key names are built from the prefix at run
-- time (one primary, no Cluster; docs/redis.md lists every key).

local L = cjson.decode(ARGV[2])
local NOW = tonumber(ARGV[3])

local function num(x) return string.format('%.17g', x) end
-- A Redis TTL for a key whose lifetime is `ms`: a safety net one day past it, never a decision.
local function ttl(ms) return math.ceil(ms + K.SAFETY_MS) end
-- Nullable string arguments travel as '' (nil) or '=' .. value, so an empty string stays distinct.
local function opt(s) if s == nil or s == '' then return nil end return string.sub(s, 2) end

local WOKEN = {}
local function wake(k)
  if not WOKEN[k] then
    WOKEN[k] = true
    redis.call('PUBLISH', P .. 'wake', k)
  end
end

-- What this transition did, for the caller's metrics: outcomes and evictions, each name checked
-- against the vocabulary TypeScript declares (a typo fails the script instead of a metric).
local OUTCOMES_DONE, EVICTIONS_DONE = {}, {}
local function outcome(name)
  if not K.OUTCOMES[name] then error('TPBUG unknown outcome ' .. tostring(name)) end
  OUTCOMES_DONE[name] = (OUTCOMES_DONE[name] or 0) + 1
end
local function evicted(reason)
  if not K.EVICTIONS[reason] then error('TPBUG unknown eviction reason ' .. tostring(reason)) end
  EVICTIONS_DONE[reason] = (EVICTIONS_DONE[reason] or 0) + 1
end
-- Reply field: 'outcome=n,...|reason=n,...' (either side may be empty).
local function enc()
  local o, e = {}, {}
  for k, v in pairs(OUTCOMES_DONE) do o[#o + 1] = k .. '=' .. v end
  for k, v in pairs(EVICTIONS_DONE) do e[#e + 1] = k .. '=' .. v end
  return table.concat(o, ',') .. '|' .. table.concat(e, ',')
end

local function outcomeOf(status, reason)
  local o = K.OUTCOME_OF[status .. '\n' .. reason]
  if not o then error('TPBUG unknown terminal ' .. tostring(status) .. '/' .. tostring(reason)) end
  return o
end

local function split(s)
  local out = {}
  local from = 1
  while true do
    local at = string.find(s, '\n', from, true)
    if not at then
      out[#out + 1] = string.sub(s, from)
      return out
    end
    out[#out + 1] = string.sub(s, from, at - 1)
    from = at + 1
  end
end

-- A record written as '\n'-joined fields into one hash field (terminal, tombstone), split; false
-- when there is none.
local function getRecord(hash, field)
  local v = redis.call('HGET', hash, field)
  return v and split(v)
end

local function leaseMs(d) if d == 'v1' then return L.v1LeaseMs end return L.legacyLeaseMs end

local function getNode(id)
  local r = redis.call('HMGET', P .. 'n:' .. id, 'd', 'seq', 'ping', 'poll', 'dig', 'fb', 'own', 'grp', 'bad')
  if not r[1] then return nil end
  return { id = id, d = r[1], seq = tonumber(r[2]), ping = tonumber(r[3]), poll = tonumber(r[4]), dig = r[5],
    fb = r[6] == '1', own = r[7] or nil, grp = r[8] or nil, bad = r[9] == '1' }
end

-- The placement view tpSelectNode reads in a few calls whatever the registry holds, keyed by
-- registration seq (short, where node ids are public keys of hundreds of bytes): `pv` packs each
-- API v1 node's placement facts as 'ping|poll|fb|bad|digest|tier|mctx|conc|mset' (digest: the
-- first 16 hex digits of the id's SHA-1, naming it in tie sets; then its capabilities, the model
-- set last: only it may hold '|'), `pq` and `pa` hold each node's queue depth and active claims
-- while not zero. Every script that changes one of them writes it again from the node's own keys.
local function syncView(id)
  local r = redis.call('HMGET', P .. 'n:' .. id, 'd', 'seq', 'ping', 'poll', 'fb', 'bad', 'tier', 'mctx',
    'conc', 'mset')
  if r[1] ~= 'v1' then return end
  redis.call('HSET', P .. 'pv', r[2], table.concat({ r[3], r[4], r[5] == '1' and '1' or '0',
    r[6] == '1' and '1' or '0', string.sub(redis.sha1hex(id), 1, 16), r[7] or '', r[8] or '', r[9] or '',
    r[10] or '' }, '|'))
end

-- A node's last ping (the first field) after a sign of life; the rest of its facts unchanged.
local function syncPing(seq, ping)
  local v = redis.call('HGET', P .. 'pv', seq)
  if v then redis.call('HSET', P .. 'pv', seq, ping .. string.sub(v, (string.find(v, '|', 1, true)))) end
end

-- A node's polling-until (the second field), as stored in its hash.
local function syncPoll(seq, poll)
  local v = redis.call('HGET', P .. 'pv', seq)
  if v then
    local ping, rest = string.match(v, '^([^|]*)|[^|]*(|.*)$')
    redis.call('HSET', P .. 'pv', seq, ping .. '|' .. poll .. rest)
  end
end

-- Only API v1 nodes are placed: callers that know a job's dialect skip legacy ones themselves.
local function syncCount(hash, id, family, count)
  local r = redis.call('HMGET', P .. 'n:' .. id, 'seq', 'd')
  local seq = r[1]
  if not seq or r[2] ~= 'v1' then return end
  local n = redis.call(count, P .. family .. id)
  if n > 0 then redis.call('HSET', P .. hash, seq, n) else redis.call('HDEL', P .. hash, seq) end
end
local function syncQueue(id) syncCount('pq', id, 'q:', 'ZCARD') end
local function syncActive(id) syncCount('pa', id, 'a:', 'SCARD') end
local function syncLoad(id)
  syncQueue(id)
  syncActive(id)
end

-- Drops a node's placement facts (its registration ends).
local function dropView(seq)
  redis.call('HDEL', P .. 'pv', seq)
  redis.call('HDEL', P .. 'pq', seq)
  redis.call('HDEL', P .. 'pa', seq)
end

-- A node as the read scripts list it (NodeView as JSON; the capabilities as stored).
local function nodeView(n)
  local view = cjson.encode({ nodeId = n.id, dialect = n.d, lastPingAt = n.ping,
    leaseMs = leaseMs(n.d), queueDepth = redis.call('ZCARD', P .. 'q:' .. n.id),
    inFlightCount = redis.call('SCARD', P .. 'a:' .. n.id), fallback = n.fb, keyUnusable = n.bad })
  local caps = redis.call('HGET', P .. 'n:' .. n.id, 'caps')
  return string.sub(view, 1, -2) .. ',"capabilities":' .. (caps or 'null') .. '}'
end

-- Past its lease and not protected by a held poll or an active claim: late, maybe gone.
local function isLapsed(n, now)
  if now - n.ping <= leaseMs(n.d) then return false end
  return n.poll <= now and redis.call('SCARD', P .. 'a:' .. n.id) == 0
end

-- The same rule on a node's plain facts (the placement view's, where `active` is already counted).
local function lapsedFacts(ping, poll, active, lease, now)
  return now - ping > lease and poll <= now and active == 0
end

-- Past the lapse grace too (isGone, once lapsed).
local function pastGrace(ping, lease, now)
  return now - ping > lease + L.lapseGraceMs
end

-- Lapsed for longer than the grace: evicted, its work ends cancelled/server_unregistered.
local function isGone(n, now)
  return isLapsed(n, now) and pastGrace(n.ping, leaseMs(n.d), now)
end

-- The earliest instant a node that stays silent from now on could be gone.
local function evictAt(n)
  return n.ping + leaseMs(n.d) + L.lapseGraceMs
end

-- A sign of life: the lease runs from now; the eviction check moves to lease + grace later.
local function touch(n)
  if NOW > n.ping then n.ping = NOW end
  redis.call('HSET', P .. 'n:' .. n.id, 'ping', num(n.ping))
  redis.call('PEXPIRE', P .. 'n:' .. n.id, ttl(0))
  if n.grp then redis.call('PEXPIRE', P .. 'g:' .. n.grp, ttl(0)) end
  redis.call('ZADD', P .. 'lease', num(evictAt(n)), n.id)
  if n.d == 'v1' then syncPing(n.seq, num(n.ping)) end
end

-- Touches a node that is not gone yet (a gone one is left to the sweep).
local function touchId(id)
  local n = getNode(id)
  if n and not isGone(n, NOW) then touch(n) end
end

-- A stored digest (false when the field is missing) equals the presented one (nil when none).
local function credentialMatches(stored, presented)
  return (stored and presented and stored == presented) or false
end

local function getJob(id)
  local r = redis.call('HMGET', P .. 'j:' .. id, 'd', 'node', 'ck', 'rid', 'tok', 'st', 'b', 's', 'dl')
  if not r[1] then return nil end
  return { id = id, d = r[1], node = r[2], ck = r[3], rid = r[4], tok = r[5], st = r[6],
    b = tonumber(r[7]), s = r[8], dl = tonumber(r[9]) }
end

local function unqueue(j)
  if redis.call('ZREM', P .. 'queued', j.id) == 1 then
    redis.call('DECRBY', P .. 'qbytes', j.b)
  end
  redis.call('ZREM', P .. 'q:' .. j.node, j.id)
  if j.d == 'v1' then syncQueue(j.node) end
end

-- Drops a claimed job from its node's accounting and from the in-flight indexes.
local function detach(j)
  if j.s == 'q' then
    unqueue(j)
    return
  end
  redis.call('ZREM', P .. 'claimed', j.id)
  redis.call('ZREM', P .. 'cl', j.id)
  if j.rid and redis.call('HGET', P .. 'c:' .. j.node, j.rid) == j.id then
    redis.call('HDEL', P .. 'c:' .. j.node, j.rid)
  end
  redis.call('SREM', P .. 'a:' .. j.node, j.id)
  if j.d == 'v1' then syncActive(j.node) end
  if j.d == 'legacy' and j.ck then
    redis.call('ZREM', P .. 'lc:' .. j.ck, j.id)
  end
end

-- abytes: bytes of every answer held for a client and of buffered stream chunks (answerBytes()
-- in state.types.ts counts an answer; the caller passes it).
local function answerBytes() return tonumber(redis.call('GET', P .. 'abytes') or '0') end
local function addAnswerBytes(b) if b ~= 0 then redis.call('INCRBY', P .. 'abytes', b) end end

-- Removes every trace of a job except terminal records and tombstones.
local function forget(j)
  detach(j)
  addAnswerBytes(-tonumber(redis.call('HGET', P .. 'j:' .. j.id, 'rb') or '0'))
  redis.call('ZREM', P .. 'dl', j.id)
  redis.call('ZREM', P .. 'answered', j.id)
  redis.call('ZREM', P .. 'handed', j.id)
  redis.call('DEL', P .. 'j:' .. j.id)
  if j.ck then
    if j.rid then
      local pk = j.ck .. '\n' .. j.rid
      if redis.call('HGET', P .. 'pairs', pk) == j.id then redis.call('HDEL', P .. 'pairs', pk) end
    end
    if redis.call('HINCRBY', P .. 'live', j.ck, -1) <= 0 then redis.call('HDEL', P .. 'live', j.ck) end
  end
end

local function clearTerminal(pk)
  redis.call('HDEL', P .. 'term', pk)
  redis.call('ZREM', P .. 'termt', pk)
end

local function writeTerminal(pk, status, reason)
  if redis.call('HEXISTS', P .. 'term', pk) == 0 and redis.call('HLEN', P .. 'term') >= L.maxTerminalRecords then
    local oldest = redis.call('ZRANGE', P .. 'termt', 0, 0)[1]
    if oldest then clearTerminal(oldest) end
  end
  redis.call('HSET', P .. 'term', pk, status .. '\n' .. reason)
  redis.call('ZADD', P .. 'termt', num(NOW + L.terminalTtlMs), pk)
end

-- Ends a live job as cancelled or expired: takes it out of every queue and index, leaves a
-- control tombstone when a node holds it, and a terminal record for the client when tracked.
local function endJob(j, status, reason, terminal)
  local o = outcomeOf(status, reason)
  if j.s == 'i' and j.d == 'v1' and j.rid then
    local dig = redis.call('HGET', P .. 'n:' .. j.node, 'dig')
    local tk = j.node .. '\n' .. j.rid
    redis.call('HSET', P .. 'tomb', tk, status .. '\n' .. (dig or '') .. '\n' .. num(j.dl))
    redis.call('ZADD', P .. 'tombt', num(NOW + L.tombstoneTtlMs), tk)
  end
  forget(j)
  outcome(o)
  if j.ck and j.rid then
    if terminal then writeTerminal(j.ck .. '\n' .. j.rid, status, reason) end
    wake('r\n' .. j.ck .. '\n' .. j.rid)
  end
end

local function dropStream(sid)
  local s = redis.call('HMGET', P .. 's:' .. sid, 'c', 'n', 'b')
  addAnswerBytes(-tonumber(s[3] or '0'))
  redis.call('DEL', P .. 's:' .. sid, P .. 'sc:' .. sid)
  redis.call('ZREM', P .. 'stt', sid)
  if s[1] and redis.call('HGET', P .. 'sbc', s[1]) == sid then redis.call('HDEL', P .. 'sbc', s[1]) end
  if s[2] then redis.call('SREM', P .. 'sn:' .. s[2], sid) end
end

local function openStream(sid, ck, node)
  local prev = redis.call('HGET', P .. 'sbc', ck)
  if prev then dropStream(prev) end
  if redis.call('ZCARD', P .. 'stt') >= L.maxStreamSessions then
    local oldest = redis.call('ZRANGE', P .. 'stt', 0, 0)[1]
    if oldest then dropStream(oldest) end
  end
  redis.call('HSET', P .. 's:' .. sid, 'c', ck, 'n', node, 'b', 0, 'k', 0, 'f', '0')
  redis.call('PEXPIRE', P .. 's:' .. sid, ttl(L.streamTtlMs))
  redis.call('HSET', P .. 'sbc', ck, sid)
  redis.call('ZADD', P .. 'stt', num(NOW + L.streamTtlMs), sid)
  redis.call('SADD', P .. 'sn:' .. node, sid)
  redis.call('PEXPIRE', P .. 'sn:' .. node, ttl(L.streamTtlMs))
end

-- Forgets a node's held poll (tpClaimNext with a holder): taken by an enqueue, past its
-- deadline, or its node gone.
local function dropHold(id)
  redis.call('HDEL', P .. 'hold', id)
  redis.call('ZREM', P .. 'holdt', id)
end

-- Removes a node: queued and claimed work ends cancelled/server_unregistered (counted with
-- `count`), its open stream sessions are dropped, and its waiters are woken.
local function removeNode(n, reason, count)
  local id = n.id
  for _, jid in ipairs(redis.call('ZRANGE', P .. 'q:' .. id, 0, -1)) do
    local j = getJob(jid)
    if j then endJob(j, 'cancelled', 'server_unregistered', true) end
  end
  for _, jid in ipairs(redis.call('HVALS', P .. 'c:' .. id)) do
    local j = getJob(jid)
    if j then endJob(j, 'cancelled', 'server_unregistered', true) end
  end
  for _, sid in ipairs(redis.call('SMEMBERS', P .. 'sn:' .. id)) do
    local s = redis.call('HMGET', P .. 's:' .. sid, 'n', 'f')
    if s[1] == id and s[2] ~= '1' then dropStream(sid) end
  end
  redis.call('DEL', P .. 'n:' .. id, P .. 'q:' .. id, P .. 'c:' .. id, P .. 'a:' .. id, P .. 'sn:' .. id)
  dropView(n.seq)
  if n.grp then
    redis.call('ZREM', P .. 'g:' .. n.grp, id)
    if tonumber(redis.call('ZINCRBY', P .. 'gz', -1, n.grp)) <= 0 then redis.call('ZREM', P .. 'gz', n.grp) end
  end
  redis.call('ZREM', P .. 'nodes', id)
  redis.call('ZREM', P .. 'lease', id)
  redis.call('SREM', P .. 'legacy', id)
  dropHold(id)
  if count then evicted(reason) end
  wake('w\n' .. id)
end

-- The node, unless it is gone: then it is evicted here (as the sweep would) and nil.
local function liveNode(id)
  local n = getNode(id)
  if n and isGone(n, NOW) then
    removeNode(n, 'stale_lease', true)
    return nil
  end
  return n
end

local function storedCount()
  return redis.call('ZCARD', P .. 'answered') + redis.call('ZCARD', P .. 'ut') + redis.call('ZCARD', P .. 'lrt')
end

-- Marks the client's oldest (or the given) legacy claim answered.
local function completeLegacyClaim(ck, jid)
  local id = jid
  if id then
    if not redis.call('ZSCORE', P .. 'lc:' .. ck, id) then return end
  else
    id = redis.call('ZRANGE', P .. 'lc:' .. ck, 0, 0)[1]
    if not id then return end
  end
  local j = getJob(id)
  if j then
    touchId(j.node)
    forget(j)
    outcome('completed')
  else
    redis.call('ZREM', P .. 'lc:' .. ck, id)
  end
end

local function dropUntracked(id)
  local u = redis.call('HMGET', P .. 'u:' .. id, 'c', 'b')
  local c = u[1]
  addAnswerBytes(-tonumber(u[2] or '0'))
  redis.call('DEL', P .. 'u:' .. id)
  redis.call('ZREM', P .. 'ut', id)
  if c then redis.call('ZREM', P .. 'uc:' .. c, id) end
end

-- Forgets a client's legacy answer held in one of two alike places: its answer key, bytes hash and
-- TTL index.
local function dropLegacyAnswer(ck, answer, bytes, ttl)
  addAnswerBytes(-tonumber(redis.call('HGET', bytes, ck) or '0'))
  redis.call('DEL', answer .. ck)
  redis.call('HDEL', bytes, ck)
  redis.call('ZREM', ttl, ck)
end

-- Empties a client's legacy mailbox (a new answer not handed out yet).
local function dropLegacyResponse(ck) dropLegacyAnswer(ck, P .. 'lr:', P .. 'lrb', P .. 'lrt') end

-- Forgets a client's legacy answer handed out and not confirmed delivered.
local function dropLegacyHanded(ck) dropLegacyAnswer(ck, P .. 'lh:', P .. 'lhb', P .. 'lht') end

-- Whether an answer of b bytes fits the answer budget: up to maxAnswerBytes for accepted work,
-- below the reserve for anything else; `replacing`: bytes it takes the place of.
local function answerFits(b, forAcceptedWork, replacing)
  local limit = L.maxAnswerBytes
  if not forAcceptedWork then limit = limit - L.answerReserveBytes end
  return answerBytes() - (replacing or 0) + b <= limit
end

-- An answer of this claim was refused for capacity: unless its node confirms the claim again
-- (/servers/control), the sweep puts it back at the head of its node's queue answerRetryMs later.
local function retryClaimLater(j)
  redis.call('HDEL', P .. 'j:' .. j.id, 'ack')
  redis.call('ZADD', P .. 'cl', num(math.min(NOW + L.answerRetryMs, j.dl)), j.id)
end

-- Hands a queued job to its node: out of the queue, in flight under a lease when tracked. Appends
-- the claim's 7 reply fields to `out`; true when the node's active set changed (syncActive after).
local function claimJob(j, out)
  local jkey = P .. 'j:' .. j.id
  local env = redis.call('HGET', jkey, 'env')
  local active = false
  unqueue(j)
  j.s = 'i'
  if j.d == 'v1' and not j.rid then
    -- Untracked API v1 work: handed over once, nothing to account for afterwards.
    forget(j)
  else
    redis.call('HSET', jkey, 's', 'i', 'ca', num(NOW))
    redis.call('HDEL', jkey, 'prog')
    redis.call('ZADD', P .. 'claimed', num(NOW), j.id)
    if j.d == 'v1' then
      redis.call('HSET', P .. 'c:' .. j.node, j.rid, j.id)
      redis.call('SADD', P .. 'a:' .. j.node, j.id)
      active = true
      redis.call('ZADD', P .. 'cl', num(math.min(NOW + L.inFlightTtlMs, j.dl)), j.id)
      redis.call('PEXPIRE', P .. 'c:' .. j.node, ttl(j.dl - NOW))
      redis.call('PEXPIRE', P .. 'a:' .. j.node, ttl(j.dl - NOW))
    elseif j.ck then
      redis.call('ZADD', P .. 'lc:' .. j.ck, redis.call('INCR', P .. 'ctr:q'), j.id)
      redis.call('PEXPIRE', P .. 'lc:' .. j.ck, ttl(j.dl - NOW))
      if j.st == '1' then openStream(j.id, j.ck, j.node) end
    end
  end
  out[#out + 1] = j.id
  out[#out + 1] = j.ck or false
  out[#out + 1] = j.rid or false
  out[#out + 1] = j.tok or false
  out[#out + 1] = j.st == '1' and 1 or 0
  out[#out + 1] = env
  out[#out + 1] = num(j.dl)
  return active
end

-- A tracked claim whose poll answer never reached its node (no control, no progress, still before
-- its deadline, the node still registered): back to the head of its node's queue, and its node's
-- waits woken. False when it is not such a claim (confirmed, answered, ended or untracked).
local function requeueClaim(j)
  local jkey = P .. 'j:' .. j.id
  local extra = redis.call('HMGET', jkey, 'ack', 'qa')
  if j.s ~= 'i' or not ((j.d == 'v1' and j.rid) or j.d == 'legacy') or extra[1] or j.dl <= NOW
    or redis.call('EXISTS', P .. 'n:' .. j.node) == 0 then
    return false
  end
  redis.call('ZREM', P .. 'cl', j.id)
  redis.call('SREM', P .. 'a:' .. j.node, j.id)
  redis.call('ZREM', P .. 'claimed', j.id)
  if j.rid and redis.call('HGET', P .. 'c:' .. j.node, j.rid) == j.id then redis.call('HDEL', P .. 'c:' .. j.node, j.rid) end
  if j.d == 'legacy' and j.ck then
    redis.call('ZREM', P .. 'lc:' .. j.ck, j.id)
    if j.st == '1' then dropStream(j.id) end
  end
  redis.call('HSET', jkey, 's', 'q')
  redis.call('ZADD', P .. 'queued', extra[2], j.id)
  redis.call('INCRBY', P .. 'qbytes', j.b)
  local qkey = P .. 'q:' .. j.node
  local head = redis.call('ZRANGE', qkey, 0, 0, 'WITHSCORES')
  redis.call('ZADD', qkey, (head[2] and tonumber(head[2]) or 0) - 1, j.id)
  redis.call('PEXPIRE', qkey, ttl(j.dl - NOW))
  if j.d == 'v1' then syncLoad(j.node) end
  wake('w\n' .. j.node)
  return true
end

-- Claims up to `max` of a node's queued jobs in order into `out` (7 fields each, see claimJob);
-- jobs past their deadline expire on the way. Returns how many it claimed.
local function claimQueued(node, dialect, max, out)
  local got, active = 0, false
  local qkey = P .. 'q:' .. node
  while got < max do
    local head = redis.call('ZRANGE', qkey, 0, 0)[1]
    if not head then break end
    local j = getJob(head)
    if not j then
      redis.call('ZREM', qkey, head)
      redis.call('ZREM', P .. 'queued', head)
      if dialect == 'v1' then syncQueue(node) end
    elseif j.dl <= NOW then
      endJob(j, 'expired', 'provider_timeout', true)
    else
      if claimJob(j, out) then active = true end
      got = got + 1
    end
  end
  if active then syncActive(node) end
  return got
end
