-- Request transitions on the client side: answers, retrieval, delivery, legacy streams; the twin
-- of answers.memory.ts. Each script runs after the header and lifecycle.redis.lua (ARGV[1..3] there).

--[[ script tpComplete
KEYS: none
ARGV: 4 dialect, 5 client, 6 request id (opt), 7 envelope JSON, 8 answerer (owner address, opt),
  9 answer bytes (counted by answerBytes() in state.types.ts)
Reply: { 'stored'|'duplicate'|'not_holder'|'responses_full'|'answers_full', transitions }
     | { 'gone', transitions, 'cancelled'|'expired'|'completed'|'gone' }
]]
local dialect, ck, rid, env = ARGV[4], ARGV[5], opt(ARGV[6]), ARGV[7]
local bytes = tonumber(ARGV[9])
if dialect == 'legacy' then
  if redis.call('EXISTS', P .. 'lr:' .. ck) == 0 and storedCount() >= L.maxStoredResponses then
    return { 'responses_full', enc() }
  end
  -- The answer to a claimed request may use the reserve; one nobody is waiting for may not.
  local claim = redis.call('ZRANGE', P .. 'lc:' .. ck, 0, 0)[1]
  local replacing = tonumber(redis.call('HGET', P .. 'lrb', ck) or '0')
  if not answerFits(bytes, claim ~= nil, replacing) then
    local j = claim and getJob(claim)
    if j then retryClaimLater(j) end
    return { 'answers_full', enc() }
  end
  addAnswerBytes(bytes - replacing)
  redis.call('HSET', P .. 'lrb', ck, bytes)
  redis.call('SET', P .. 'lr:' .. ck, env, 'PX', ttl(L.responseTtlMs))
  redis.call('ZADD', P .. 'lrt', num(NOW + L.responseTtlMs), ck)
  completeLegacyClaim(ck, nil)
  wake('r\n' .. ck .. '\n')
  return { 'stored', enc() }
end
if not rid then
  if redis.call('ZCARD', P .. 'uc:' .. ck) >= L.maxResponsesPerClient or storedCount() >= L.maxStoredResponses then
    return { 'responses_full', enc() }
  end
  if not answerFits(bytes, false) then return { 'answers_full', enc() } end
  addAnswerBytes(bytes)
  local id = redis.call('INCR', P .. 'ctr:u')
  redis.call('HSET', P .. 'u:' .. id, 'c', ck, 'e', env, 'b', bytes)
  redis.call('PEXPIRE', P .. 'u:' .. id, ttl(L.responseTtlMs))
  redis.call('ZADD', P .. 'ut', num(NOW + L.responseTtlMs), id)
  redis.call('ZADD', P .. 'uc:' .. ck, id, id)
  redis.call('PEXPIRE', P .. 'uc:' .. ck, ttl(L.responseTtlMs))
  wake('r\n' .. ck .. '\n')
  return { 'stored', enc() }
end
local pk = ck .. '\n' .. rid
local term = getRecord(P .. 'term', pk)
if term then return { 'gone', enc(), term[1] } end
local jid = redis.call('HGET', P .. 'pairs', pk)
local j = jid and getJob(jid)
if not j then
  if redis.call('ZSCORE', P .. 'done', pk) then return { 'gone', enc(), 'completed' } end
  return { 'gone', enc(), 'gone' }
end
if j.s == 'a' then return { 'duplicate', enc() } end
-- Only the node holding the request answers it: it must be claimed, and the answerer must be at
-- the address that node is bound to (an unknown answerer or an unbound node passes that part).
local answerer = opt(ARGV[8])
if j.s ~= 'i' then return { 'not_holder', enc() } end
local holder = redis.call('HGET', P .. 'n:' .. j.node, 'own')
if answerer and holder and holder ~= answerer then return { 'not_holder', enc() } end
if j.dl <= NOW then
  endJob(j, 'expired', 'pending_request_ttl_exceeded', true)
  return { 'gone', enc(), 'expired' }
end
if not answerFits(bytes, true) then
  -- Its work stays in the node's hands; unless the node confirms it again, it is queued again.
  retryClaimLater(j)
  return { 'answers_full', enc() }
end
if j.s == 'i' then
  touchId(j.node)
  -- The node's service time (claim → answer): a moving average weighting the newest 1/4, in ms.
  local nkey = P .. 'n:' .. j.node
  local ca = tonumber(redis.call('HGET', P .. 'j:' .. jid, 'ca') or '0')
  if j.d == 'v1' and ca > 0 and redis.call('EXISTS', nkey) == 1 then
    local took = math.max(0, NOW - ca)
    local prev = tonumber(redis.call('HGET', nkey, 'svc') or '')
    redis.call('HSET', nkey, 'svc', num(prev and math.floor((3 * prev + took) / 4) or took))
  end
end
detach(j)
redis.call('ZREM', P .. 'dl', jid)
redis.call('HSET', P .. 'j:' .. jid, 's', 'a', 'resp', env, 'rb', bytes)
addAnswerBytes(bytes)
redis.call('HDEL', P .. 'j:' .. jid, 'prog')
redis.call('ZADD', P .. 'answered', num(NOW + L.responseTtlMs), jid)
if not redis.call('ZSCORE', P .. 'done', pk) and redis.call('ZCARD', P .. 'done') >= L.maxTerminalRecords then
  -- Capped like terminal records: the oldest completion marker goes first (a very late
  -- duplicate answer then reads 410 `gone` instead of `completed`).
  redis.call('ZPOPMIN', P .. 'done')
end
redis.call('ZADD', P .. 'done', num(NOW + L.terminalTtlMs), pk)
outcome('completed')
wake('r\n' .. pk)
return { 'stored', enc() }

--[[ script tpTakeResponse
KEYS: none
ARGV: 4 dialect, 5 client, 6 request id (opt)
Reply: { 'ok', transitions, envelope JSON }
     | { 'pending', transitions, deadline, progress JSON|nil, queue position, estimated s|nil }
     | { 'terminal', transitions, status, reason } | { 'unknown', transitions }
]]
local dialect, ck, rid = ARGV[4], ARGV[5], opt(ARGV[6])
if dialect == 'legacy' then
  local e = redis.call('GET', P .. 'lr:' .. ck)
  if not e then
    -- Handed out before and not yet confirmed delivered: hand it out again.
    local again = redis.call('GET', P .. 'lh:' .. ck)
    if again then return { 'ok', enc(), again } end
    return { 'unknown', enc() }
  end
  local b = tonumber(redis.call('HGET', P .. 'lrb', ck) or '0')
  dropLegacyResponse(ck)
  dropLegacyHanded(ck)
  addAnswerBytes(b)
  redis.call('HSET', P .. 'lhb', ck, b)
  redis.call('SET', P .. 'lh:' .. ck, e, 'PX', ttl(L.deliveryGraceMs))
  redis.call('ZADD', P .. 'lht', num(NOW + L.deliveryGraceMs), ck)
  return { 'ok', enc(), e }
end
if not rid then
  while true do
    local id = redis.call('ZRANGE', P .. 'uc:' .. ck, 0, 0)[1]
    if not id then return { 'unknown', enc() } end
    local e = redis.call('HGET', P .. 'u:' .. id, 'e')
    dropUntracked(id)
    if e then return { 'ok', enc(), e } end
    redis.call('ZREM', P .. 'uc:' .. ck, id)
  end
end
local pk = ck .. '\n' .. rid
local term = getRecord(P .. 'term', pk)
if term then return { 'terminal', enc(), term[1], term[2] } end
local jid = redis.call('HGET', P .. 'pairs', pk)
local j = jid and getJob(jid)
if not j then return { 'unknown', enc() } end
local jkey = P .. 'j:' .. jid
if j.s == 'a' then
  local r = redis.call('HMGET', jkey, 'resp', 'h')
  if not r[2] then
    -- Handed out, kept until the delivery is confirmed or the grace ends.
    redis.call('HSET', jkey, 'h', '1')
    redis.call('ZREM', P .. 'answered', jid)
    redis.call('ZADD', P .. 'handed', num(NOW + L.deliveryGraceMs), jid)
  end
  return { 'ok', enc(), r[1] }
end
if j.dl <= NOW then
  endJob(j, 'expired', 'pending_request_ttl_exceeded', true)
  return { 'terminal', enc(), 'expired', 'pending_request_ttl_exceeded' }
end
local prog = redis.call('HGET', jkey, 'prog')
if prog then redis.call('HDEL', jkey, 'prog') end
-- Place in line (ZRANK, O(log n)) and the wait from the node's service time S: queued with p
-- ahead and a in flight on a node serving c at once, S * (floor((p + a) / c) + 1); in flight,
-- what is left of S since the claim. No estimate before the node's first answer.
local pos = 0
if j.s == 'q' then pos = redis.call('ZRANK', P .. 'q:' .. j.node, jid) or 0 end
local wait = false
local nf = redis.call('HMGET', P .. 'n:' .. j.node, 'd', 'svc', 'conc')
local svc = tonumber(nf[2] or '')
if nf[1] and svc then
  if j.s == 'q' then
    local slots = math.max(1, tonumber(nf[3] or '') or 1)
    wait = svc * (math.floor((pos + redis.call('HLEN', P .. 'c:' .. j.node)) / slots) + 1)
  else
    wait = math.max(0, svc - (NOW - tonumber(redis.call('HGET', jkey, 'ca') or '0')))
  end
  wait = math.ceil(wait / 1000)
end
return { 'pending', enc(), num(j.dl), prog or false, pos, wait }

--[[ script tpHasResponse (read-only)
KEYS: none
ARGV: 4 client, 5 request id (opt)
Reply: 1 when a take would not just report "pending without progress" (answer, progress,
  terminal, unknown or past deadline), else 0 (what a response wait re-checks); without a request
  id, 1 when the legacy mailbox holds a new or a handed-out answer
]]
local ck, rid = ARGV[4], opt(ARGV[5])
if not rid then
  if redis.call('EXISTS', P .. 'lr:' .. ck, P .. 'lh:' .. ck) > 0 then return 1 end
  return 0
end
local pk = ck .. '\n' .. rid
if redis.call('HEXISTS', P .. 'term', pk) == 1 then return 1 end
local jid = redis.call('HGET', P .. 'pairs', pk)
local j = jid and getJob(jid)
if not j or j.s == 'a' or j.dl <= NOW then return 1 end
return redis.call('HEXISTS', P .. 'j:' .. jid, 'prog')

--[[ script tpConfirmDelivery
KEYS: none
ARGV: 4 dialect, 5 client, 6 request id (opt)
Reply: 1 (the answer was written out: forget it)
]]
local dialect, ck, rid = ARGV[4], ARGV[5], opt(ARGV[6])
if dialect == 'legacy' then
  dropLegacyHanded(ck)
  return 1
end
if not rid then return 1 end
local jid = redis.call('HGET', P .. 'pairs', ck .. '\n' .. rid)
local j = jid and getJob(jid)
if j and j.s == 'a' and redis.call('HEXISTS', P .. 'j:' .. jid, 'h') == 1 then forget(j) end
return 1

--[[ script tpAppendStreamChunk
KEYS: none
ARGV: 4 session id, 5 chunk JSON, 6 chunk bytes, 7 final ('1')
Reply: { 'stored'|'unknown'|'full'|'answers_full', transitions }
]]
local sid, bytes = ARGV[4], tonumber(ARGV[6])
local skey = P .. 's:' .. sid
local s = redis.call('HMGET', skey, 'c', 'k', 'b')
if not s[1] then return { 'unknown', enc() } end
if tonumber(s[2]) >= L.maxStreamChunks or tonumber(s[3]) + bytes > L.maxStreamBytes then return { 'full', enc() } end
if not answerFits(bytes, true) then return { 'answers_full', enc() } end
addAnswerBytes(bytes)
redis.call('RPUSH', P .. 'sc:' .. sid, ARGV[5])
redis.call('HINCRBY', skey, 'k', 1)
redis.call('HINCRBY', skey, 'b', bytes)
if ARGV[7] == '1' then redis.call('HSET', skey, 'f', '1') end
redis.call('ZADD', P .. 'stt', num(NOW + L.streamTtlMs), sid)
redis.call('PEXPIRE', skey, ttl(L.streamTtlMs))
redis.call('PEXPIRE', P .. 'sc:' .. sid, ttl(L.streamTtlMs))
if ARGV[7] == '1' then completeLegacyClaim(s[1], sid) end
wake('r\n' .. s[1] .. '\n')
return { 'stored', enc() }

--[[ script tpTakeStream
KEYS: none
ARGV: 4 client
Reply: { 'none' } | { 'ok', session id, final (0|1), chunk JSON * buffered }
]]
local ck = ARGV[4]
local sid = redis.call('HGET', P .. 'sbc', ck)
if not sid then return { 'none' } end
local skey = P .. 's:' .. sid
local final = redis.call('HGET', skey, 'f')
if not final then
  redis.call('HDEL', P .. 'sbc', ck)
  return { 'none' }
end
local out = { 'ok', sid, final == '1' and 1 or 0 }
for _, c in ipairs(redis.call('LRANGE', P .. 'sc:' .. sid, 0, -1)) do out[#out + 1] = c end
addAnswerBytes(-tonumber(redis.call('HGET', skey, 'b') or '0'))
redis.call('DEL', P .. 'sc:' .. sid)
redis.call('HSET', skey, 'b', 0, 'k', 0)
if final == '1' then
  dropStream(sid)
else
  redis.call('ZADD', P .. 'stt', num(NOW + L.streamTtlMs), sid)
  redis.call('PEXPIRE', skey, ttl(L.streamTtlMs))
end
return out
