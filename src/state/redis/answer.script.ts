/**
 * Request transitions on the client side: answers, retrieval, legacy streams.
 * Script bodies run after the shared prelude; arguments start at ARGV[4].
 */

/** ARGV: dialect, client, request id (opt), envelope JSON. Reply: { status, transitions, code? }. */
export const COMPLETE = `
local dialect, ck, rid, env = ARGV[4], ARGV[5], opt(ARGV[6]), ARGV[7]
if dialect == 'legacy' then
  if redis.call('EXISTS', P .. 'lr:' .. ck) == 0 and storedCount() >= L.maxStoredResponses then
    return { 'responses_full', enc() }
  end
  redis.call('SET', P .. 'lr:' .. ck, env, 'PX', ttl(L.responseTtlMs))
  redis.call('ZADD', P .. 'lrt', num(NOW + L.responseTtlMs), ck)
  completeLegacyClaim(ck, nil, true)
  wake('r\\n' .. ck .. '\\n')
  return { 'stored', enc() }
end
if not rid then
  if redis.call('ZCARD', P .. 'uc:' .. ck) >= L.maxResponsesPerClient or storedCount() >= L.maxStoredResponses then
    return { 'responses_full', enc() }
  end
  local id = redis.call('INCR', P .. 'ctr:u')
  redis.call('HSET', P .. 'u:' .. id, 'c', ck, 'e', env)
  redis.call('PEXPIRE', P .. 'u:' .. id, ttl(L.responseTtlMs))
  redis.call('ZADD', P .. 'ut', num(NOW + L.responseTtlMs), id)
  redis.call('ZADD', P .. 'uc:' .. ck, id, id)
  redis.call('PEXPIRE', P .. 'uc:' .. ck, ttl(L.responseTtlMs))
  wake('r\\n' .. ck .. '\\n')
  return { 'stored', enc() }
end
local pk = ck .. '\\n' .. rid
local term = redis.call('HGET', P .. 'term', pk)
if term then return { 'gone', enc(), split(term)[1] } end
local jid = redis.call('HGET', P .. 'pairs', pk)
local j = jid and getJob(jid)
if not j then
  if redis.call('ZSCORE', P .. 'done', pk) then return { 'gone', enc(), 'completed' } end
  return { 'gone', enc(), 'gone' }
end
if j.s == 'a' then return { 'duplicate', enc() } end
if j.dl <= NOW then
  endJob(j, 'expired', 'pending_request_ttl_exceeded', true)
  return { 'gone', enc(), 'expired' }
end
if j.s == 'i' then touchId(j.node) end
detach(j)
redis.call('ZREM', P .. 'dl', jid)
redis.call('HSET', P .. 'j:' .. jid, 's', 'a', 'resp', env)
redis.call('HDEL', P .. 'j:' .. jid, 'prog')
redis.call('ZADD', P .. 'answered', num(NOW + L.responseTtlMs), jid)
if not redis.call('ZSCORE', P .. 'done', pk) and redis.call('ZCARD', P .. 'done') >= L.maxTerminalRecords then
  redis.call('ZPOPMIN', P .. 'done')
end
redis.call('ZADD', P .. 'done', num(NOW + L.terminalTtlMs), pk)
bump('completed')
wake('r\\n' .. pk)
return { 'stored', enc() }
`;

/**
 * ARGV: dialect, client, request id (opt).
 * Reply: { 'ok', transitions, envelope } | { 'pending', transitions, deadline, progress|nil }
 *      | { 'terminal', transitions, status, reason } | { 'unknown', transitions }.
 */
export const TAKE_RESPONSE = `
local dialect, ck, rid = ARGV[4], ARGV[5], opt(ARGV[6])
if dialect == 'legacy' then
  local e = redis.call('GET', P .. 'lr:' .. ck)
  if not e then
    -- Handed out before and not yet confirmed delivered: hand it out again.
    local again = redis.call('GET', P .. 'lh:' .. ck)
    if again then return { 'ok', enc(), again } end
    return { 'unknown', enc() }
  end
  redis.call('DEL', P .. 'lr:' .. ck)
  redis.call('ZREM', P .. 'lrt', ck)
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
local pk = ck .. '\\n' .. rid
local term = redis.call('HGET', P .. 'term', pk)
if term then
  local f = split(term)
  return { 'terminal', enc(), f[1], f[2] }
end
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
return { 'pending', enc(), num(j.dl), prog }
`;

/**
 * Re-check after a waiter subscribed: 1 when a take would not just report "pending without
 * progress" (answer, progress, terminal, gone or past deadline). Without a request id it looks
 * at the legacy mailbox. ARGV: client, request id (opt).
 */
export const HAS_RESPONSE = `
local ck, rid = ARGV[4], opt(ARGV[5])
if not rid then
  if redis.call('EXISTS', P .. 'lr:' .. ck, P .. 'lh:' .. ck) > 0 then return 1 end
  return 0
end
local pk = ck .. '\\n' .. rid
if redis.call('HEXISTS', P .. 'term', pk) == 1 then return 1 end
local jid = redis.call('HGET', P .. 'pairs', pk)
local j = jid and getJob(jid)
if not j or j.s == 'a' or j.dl <= NOW then return 1 end
return redis.call('HEXISTS', P .. 'j:' .. jid, 'prog')
`;

/** The answer was written out: forget it. ARGV: dialect, client, request id (opt). Reply: 1. */
export const CONFIRM_DELIVERY = `
local dialect, ck, rid = ARGV[4], ARGV[5], opt(ARGV[6])
if dialect == 'legacy' then
  redis.call('DEL', P .. 'lh:' .. ck)
  redis.call('ZREM', P .. 'lht', ck)
  return 1
end
if not rid then return 1 end
local jid = redis.call('HGET', P .. 'pairs', ck .. '\\n' .. rid)
local j = jid and getJob(jid)
if j and j.s == 'a' and redis.call('HEXISTS', P .. 'j:' .. jid, 'h') == 1 then forget(j) end
return 1
`;

/** ARGV: session id, chunk JSON, chunk bytes, final. Reply: { status }. */
export const APPEND_STREAM_CHUNK = `
local sid, bytes = ARGV[4], tonumber(ARGV[6])
local skey = P .. 's:' .. sid
local s = redis.call('HMGET', skey, 'c', 'k', 'b')
if not s[1] then return { 'unknown', enc() } end
if tonumber(s[2]) >= L.maxStreamChunks or tonumber(s[3]) + bytes > L.maxStreamBytes then return { 'full', enc() } end
redis.call('RPUSH', P .. 'sc:' .. sid, ARGV[5])
redis.call('HINCRBY', skey, 'k', 1)
redis.call('HINCRBY', skey, 'b', bytes)
if ARGV[7] == '1' then redis.call('HSET', skey, 'f', '1') end
redis.call('ZADD', P .. 'stt', num(NOW + L.streamTtlMs), sid)
redis.call('PEXPIRE', skey, ttl(L.streamTtlMs))
redis.call('PEXPIRE', P .. 'sc:' .. sid, ttl(L.streamTtlMs))
if ARGV[7] == '1' then completeLegacyClaim(s[1], sid, true) end
wake('r\\n' .. s[1] .. '\\n')
return { 'stored', enc() }
`;

/** ARGV: client. Reply: { 'none' } | { 'ok', session id, final, chunk JSON... }. */
export const TAKE_STREAM = `
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
redis.call('DEL', P .. 'sc:' .. sid)
redis.call('HSET', skey, 'b', 0, 'k', 0)
if final == '1' then
  dropStream(sid)
else
  redis.call('ZADD', P .. 'stt', num(NOW + L.streamTtlMs), sid)
  redis.call('PEXPIRE', skey, ttl(L.streamTtlMs))
end
return out
`;
