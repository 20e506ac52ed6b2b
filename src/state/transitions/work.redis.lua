-- Request transitions on the node side: admission, claiming, control, cancel, progress; the twin
-- of work.memory.ts. Each script runs after the header and lifecycle.redis.lua (ARGV[1..3] there).

--[[ script tpEnqueue
KEYS: none
ARGV: 4 job id, 5 dialect, 6 node id, 7 client (opt), 8 request id (opt), 9 cancel token (opt),
  10 stream ('1'), 11 envelope JSON, 12 bytes, 13 client cap (opt; maxPendingPerClient when empty),
  14 caller (this process's id in holds)
Reply: { 'queued', transitions, deadline }
     | { 'queued', transitions, deadline, hold token, [the 7 claim fields of tpClaimNext] }: a
       poll of the calling process held for this node (tpClaimNext with a holder) took it at once
     | { 'node_not_found'|'node_queue_full'|'queue_full'|'client_pending_full'|'request_in_use',
         transitions }
]]
local jid, dialect, node = ARGV[4], ARGV[5], ARGV[6]
local ck, rid, tok = opt(ARGV[7]), opt(ARGV[8]), opt(ARGV[9])
local bytes = tonumber(ARGV[12])
local n = getNode(node)
if not n or n.d ~= dialect or isGone(n, NOW) then return { 'node_not_found', enc() } end
local pk = nil
if ck and rid then pk = ck .. '\n' .. rid end
local sup = nil
if pk then sup = redis.call('HGET', P .. 'pairs', pk) or nil end
if sup then
  -- A live request is only replaced by its client, who alone knows its cancel token (compared
  -- through digests, so the comparison takes the same time for any token).
  local old = getJob(sup)
  if not old or not old.tok or not tok or redis.sha1hex(old.tok) ~= redis.sha1hex(tok) then
    return { 'request_in_use', enc() }
  end
end
if redis.call('ZCARD', P .. 'q:' .. node) >= L.maxQueuePerNode then return { 'node_queue_full', enc() } end
if redis.call('ZCARD', P .. 'queued') >= L.maxQueuedTotal
  or tonumber(redis.call('GET', P .. 'qbytes') or '0') + bytes > L.maxQueuedBytes
  -- The rest of the answer budget is kept for the answers of work already accepted.
  or answerBytes() > L.maxAnswerBytes - L.answerReserveBytes then
  return { 'queue_full', enc() }
end
local cap = tonumber(opt(ARGV[13]) or L.maxPendingPerClient)
if ck and not sup and tonumber(redis.call('HGET', P .. 'live', ck) or '0') >= cap then
  return { 'client_pending_full', enc() }
end
if sup then
  local old = getJob(sup)
  if old and old.s == 'a' then
    -- Already counted as completed: drop the unretrieved answer, count nothing more.
    forget(old)
  elseif old then
    endJob(old, 'cancelled', 'requester_cancelled', false)
  end
end
if pk then
  clearTerminal(pk)
  redis.call('ZREM', P .. 'done', pk)
end
local dl = NOW + (dialect == 'v1' and L.v1DeadlineMs or L.legacyRequestTtlMs)
local jkey = P .. 'j:' .. jid
redis.call('HSET', jkey, 'd', dialect, 'node', node, 'st', ARGV[10], 'env', ARGV[11], 'b', bytes,
  's', 'q', 'qa', num(NOW), 'dl', num(dl))
if ck then redis.call('HSET', jkey, 'ck', ck) end
if rid then redis.call('HSET', jkey, 'rid', rid) end
if tok then redis.call('HSET', jkey, 'tok', tok) end
redis.call('PEXPIRE', jkey, ttl(dl - NOW + L.responseTtlMs))
redis.call('ZADD', P .. 'dl', num(dl), jid)
redis.call('ZADD', P .. 'queued', num(NOW), jid)
redis.call('INCRBY', P .. 'qbytes', bytes)
redis.call('ZADD', P .. 'q:' .. node, redis.call('INCR', P .. 'ctr:q'), jid)
redis.call('PEXPIRE', P .. 'q:' .. node, ttl(dl - NOW))
if dialect == 'v1' then syncQueue(node) end
if pk then redis.call('HSET', P .. 'pairs', pk, jid) end
if ck then redis.call('HINCRBY', P .. 'live', ck, 1) end
-- One-turn delivery: a poll held for this node (tpClaimNext with a holder) takes tracked API v1
-- work here, when it is the only work queued (FIFO holds), instead of being woken to claim it. The
-- claim goes to the poll's process with the wake-up (its own reply when that is the caller), so
-- the poll is answered on its first turn. A process that no longer holds the poll gives it back
-- (tpGiveBack); one that died leaves it to the in-flight lease, as a lost poll answer does.
if rid and dialect == 'v1' then
  local held = redis.call('HGET', P .. 'hold', node)
  if held then
    local live = tonumber(redis.call('ZSCORE', P .. 'holdt', node) or '0') > NOW
    dropHold(node)
    if live and redis.call('ZCARD', P .. 'q:' .. node) == 1 then
      local claim = {}
      claimJob(getJob(jid), claim)
      syncActive(node)
      local at = string.find(held, '\n', 1, true)
      if at and string.sub(held, 1, at - 1) == ARGV[14] then
        local out = { 'queued', enc(), num(dl), string.sub(held, at + 1) }
        for _, v in ipairs(claim) do out[#out + 1] = v end
        return out
      end
      redis.call('PUBLISH', P .. 'wake', 'h\n' .. held .. '\n' .. cjson.encode(claim))
      return { 'queued', enc(), num(dl) }
    end
  end
end
wake('w\n' .. node)
return { 'queued', enc(), num(dl) }

--[[ script tpClaimNext
KEYS: none
ARGV: 4 node id, 5 dialect, 6 max jobs (most to hand out), 7 holder (opt; '<process>\n<token>'),
  8 until (opt; epoch ms: the holding poll's deadline)
Reply: { 'ok', transitions, [job id, client|nil, request id|nil, cancel token|nil, stream (0|1),
         envelope JSON, deadline] * claimed }
     | { 'not_found'|'dialect_conflict', transitions }
With a holder (a waiting API v1 poll's claim-or-hold) and nothing claimed, the poll is recorded as
held until then, and the next tracked API v1 enqueue for the node claims for it.
]]
local node, dialect = ARGV[4], ARGV[5]
local n = getNode(node)
if not n then return { 'not_found', enc() } end
if n.d ~= dialect then return { 'dialect_conflict', enc() } end
local out = { 'ok', '' }
local holder = opt(ARGV[7])
if claimQueued(node, dialect, tonumber(ARGV[6]), out) == 0 and holder then
  redis.call('HSET', P .. 'hold', node, holder)
  redis.call('ZADD', P .. 'holdt', opt(ARGV[8]), node)
end
out[2] = enc()
return out

--[[ script tpControl
KEYS: none
ARGV: 4 node id, 5 request id, 6 credential digest, 7 acknowledge ('1')
Reply: { 'ok', transitions, control state, deadline|nil } | { 'forbidden', transitions }
]]
local node, rid, digest = ARGV[4], ARGV[5], ARGV[6]
local n = liveNode(node)
local liveV1 = n and n.d == 'v1'
if liveV1 and not credentialMatches(n.dig, digest) then return { 'forbidden', enc() } end
if liveV1 then
  touch(n)
  local jid = redis.call('HGET', P .. 'c:' .. node, rid)
  local j = jid and getJob(jid)
  if j and j.s == 'i' then
    if j.dl <= NOW then
      endJob(j, 'expired', 'provider_timeout', true)
    else
      redis.call('HSET', P .. 'j:' .. jid, 'ack', '1')
      redis.call('SADD', P .. 'a:' .. node, jid)
      syncActive(node)
      redis.call('ZADD', P .. 'cl', num(math.min(NOW + L.inFlightTtlMs, j.dl)), jid)
      return { 'ok', enc(), 'active', num(j.dl) }
    end
  end
end
local tk = node .. '\n' .. rid
local tomb = getRecord(P .. 'tomb', tk)
if tomb then
  if tomb[2] == '' or tomb[2] ~= digest then return { 'forbidden', enc() } end
  if ARGV[7] == '1' then
    redis.call('HDEL', P .. 'tomb', tk)
    redis.call('ZREM', P .. 'tombt', tk)
  end
  return { 'ok', enc(), tomb[1], tomb[3] ~= '' and tomb[3] or false }
end
if liveV1 then return { 'ok', enc(), 'completed_unavailable', false } end
return { 'forbidden', enc() }

--[[ script tpCancel
KEYS: none
ARGV: 4 client, 5 request id, 6 cancel token, 7 terminal status, 8 terminal reason
Reply: { 'ok', transitions, removed from queue (0|1) } | { 'forbidden', transitions }
]]
local pk = ARGV[4] .. '\n' .. ARGV[5]
local jid = redis.call('HGET', P .. 'pairs', pk)
local j = jid and getJob(jid)
-- Tokens compared through their digests, so the comparison takes the same time for any token.
if not j or j.s == 'a' or not j.tok or redis.sha1hex(j.tok) ~= redis.sha1hex(ARGV[6]) then
  return { 'forbidden', enc() }
end
local removed = 0
if j.s == 'q' then removed = 1 end
endJob(j, ARGV[7], ARGV[8], true)
return { 'ok', enc(), removed }

--[[ script tpPutProgress
KEYS: none
ARGV: 4 node id, 5 credential digest, 6 client, 7 request id, 8 envelope JSON
Reply: { 'accepted'|'forbidden'|'not_active'|'expired', transitions }
]]
local node, digest, ck, rid = ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local n = liveNode(node)
if not n or n.d ~= 'v1' or not credentialMatches(n.dig, digest) then return { 'forbidden', enc() } end
touch(n)
local jid = redis.call('HGET', P .. 'c:' .. node, rid)
local j = jid and getJob(jid)
if not j or j.s ~= 'i' or j.ck ~= ck then return { 'not_active', enc() } end
if j.dl <= NOW then
  endJob(j, 'expired', 'provider_timeout', true)
  return { 'expired', enc() }
end
redis.call('HSET', P .. 'j:' .. jid, 'prog', ARGV[8], 'ack', '1')
wake('r\n' .. ck .. '\n' .. rid)
return { 'accepted', enc() }

--[[ script tpGiveBack
KEYS: none
ARGV: 4 job id
Reply: 1 when the claim went back to the head of its node's queue, else 0 (already confirmed,
  answered, ended, or its node gone)
A claim made for a held poll that had ended by the time it arrived (tpEnqueue).
]]
local j = getJob(ARGV[4])
if j and requeueClaim(j) then return 1 end
return 0

--[[ script tpHasWork (read-only)
KEYS: none
ARGV: 4 node id
Reply: 1 when the node has queued work or is gone, else 0 (what a work wait re-checks)
]]
if redis.call('EXISTS', P .. 'n:' .. ARGV[4]) == 0 then return 1 end
if redis.call('ZCARD', P .. 'q:' .. ARGV[4]) > 0 then return 1 end
return 0
