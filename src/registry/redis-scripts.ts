/**
 * What the Redis registry (redis-registry.ts) keeps in Redis, and the Lua scripts that change it:
 * every operation that checks a limit and changes the state is one script, so two processes racing
 * for the last seat of a room cannot both win.
 *
 * Keys, under `prefix`:
 *   conns            hash  sid -> node id         connections counted against maxConcurrentUsers
 *   node:<id>        set   sids of that process   what to clean when the process dies
 *   alive:<id>       string, expires              the process's heartbeat
 *   nodes            set   node ids               whose heartbeats to watch
 *   room:<rid>       hash  kind, seq, m:<sid> -> "<seq>\t<since>\t<member json>"
 *   meta:<rid>       hash  created, msgs         for the admin view
 *   sess:<sid>       hash  token, member, conn, held   a session that may be resumed
 *   tok:<token>      string sid
 *   buf:<sid>        list  envelopes for a held session
 *   of:<sid>         hash  rid -> kind            rooms of a connection
 *   rooms            set   rids                   for counts
 *   held             set   sids                   held sessions (the `held` of sess:<sid>), for bufferIfHeld
 *
 * Every script that changes a room's members or a session's held state also publishes on the
 * channel `changes`: 'r<rid>' (a room's members changed), 'h<sid>' / 'u<sid>' (a session was held /
 * is no longer held). The processes keep what they read in step with it (see room-cache.ts).
 */

// Takes `sid` out of room `rid`; returns nil when it was not there, else {kind, deleted, pairs, member}.
const LEAVE_FUNCTION = `
local function leave(prefix, rid, sid)
  local key = prefix .. 'room:' .. rid
  local field = 'm:' .. sid
  local member = redis.call('HGET', key, field)
  if not member then return nil end
  redis.call('HDEL', key, field)
  redis.call('HDEL', prefix .. 'of:' .. sid, rid)
  redis.call('PUBLISH', prefix .. 'changes', 'r' .. rid)
  local kind = redis.call('HGET', key, 'kind')
  if redis.call('HLEN', key) <= 2 then
    redis.call('DEL', key, prefix .. 'meta:' .. rid)
    redis.call('SREM', prefix .. 'rooms', rid)
    return {kind, '1', {}, member}
  end
  return {kind, '0', redis.call('HGETALL', key), member}
end
`;

export const SCRIPTS = {
  // ARGV: prefix, sid, node, limit
  jsongleOpen: `
local prefix = ARGV[1]
local owner = redis.call('HGET', prefix .. 'conns', ARGV[2])
if owner then
  -- A resumed session, maybe on another process now: that process cleans it if it dies.
  redis.call('SREM', prefix .. 'node:' .. owner, ARGV[2])
  redis.call('HSET', prefix .. 'conns', ARGV[2], ARGV[3])
  redis.call('SADD', prefix .. 'node:' .. ARGV[3], ARGV[2])
  return 1
end
if redis.call('HLEN', prefix .. 'conns') >= tonumber(ARGV[4]) then return 0 end
redis.call('HSET', prefix .. 'conns', ARGV[2], ARGV[3])
redis.call('SADD', prefix .. 'node:' .. ARGV[3], ARGV[2])
return 1`,
  // ARGV: prefix, rid, kind, sid, member json, max members, max rooms of kind, node, now
  jsongleJoin: `
local prefix, rid, kind, sid = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local key = prefix .. 'room:' .. rid
local current = redis.call('HGET', key, 'kind')
if current and current ~= kind then return {'wrong-kind'} end
if redis.call('HEXISTS', key, 'm:' .. sid) == 1 then return {'already-member', '0', redis.call('HGETALL', key)} end
local count = current and (redis.call('HLEN', key) - 2) or 0
if count >= tonumber(ARGV[6]) then return {'full'} end
local same = 0
for _, k in ipairs(redis.call('HVALS', prefix .. 'of:' .. sid)) do
  if k == kind then same = same + 1 end
end
if same >= tonumber(ARGV[7]) then return {'too-many-rooms'} end
local seq = redis.call('HINCRBY', key, 'seq', 1)
redis.call('HSET', key, 'kind', kind, 'm:' .. sid, seq .. '\\t' .. ARGV[9] .. '\\t' .. ARGV[5])
if not current then redis.call('HSET', prefix .. 'meta:' .. rid, 'created', ARGV[9], 'msgs', 0) end
redis.call('HSET', prefix .. 'of:' .. sid, rid, kind)
redis.call('SADD', prefix .. 'rooms', rid)
redis.call('SADD', prefix .. 'node:' .. ARGV[8], sid)
redis.call('PUBLISH', prefix .. 'changes', 'r' .. rid)
return {'joined', current and '0' or '1', redis.call('HGETALL', key)}`,
  // ARGV: prefix, rid, n. Only for a room that still exists: a late count must not recreate it.
  jsongleCount: `
if redis.call('EXISTS', ARGV[1] .. 'room:' .. ARGV[2]) == 1 then redis.call('HINCRBY', ARGV[1] .. 'meta:' .. ARGV[2], 'msgs', tonumber(ARGV[3])) end
return 1`,
  // ARGV: prefix, rid, sid
  jsongleLeave: `${LEAVE_FUNCTION}
local result = leave(ARGV[1], ARGV[2], ARGV[3])
if not result then return {'not-member'} end
return {'left', result[1], result[2], result[3], result[4]}`,
  // ARGV: prefix, sid, node. Returns {rid, kind, deleted, pairs, member} for each room left.
  jsongleClose: `${LEAVE_FUNCTION}
local prefix, sid = ARGV[1], ARGV[2]
local left = {}
for _, rid in ipairs(redis.call('HKEYS', prefix .. 'of:' .. sid)) do
  local result = leave(prefix, rid, sid)
  if result then table.insert(left, {rid, result[1], result[2], result[3], result[4]}) end
end
redis.call('DEL', prefix .. 'of:' .. sid)
local token = redis.call('HGET', prefix .. 'sess:' .. sid, 'token')
if token then redis.call('DEL', prefix .. 'tok:' .. token) end
redis.call('DEL', prefix .. 'sess:' .. sid, prefix .. 'buf:' .. sid)
if redis.call('SREM', prefix .. 'held', sid) == 1 then redis.call('PUBLISH', prefix .. 'changes', 'u' .. sid) end
redis.call('HDEL', prefix .. 'conns', sid)
redis.call('SREM', prefix .. 'node:' .. ARGV[3], sid)
return left`,
  // ARGV: prefix, sid, token, member json, connection
  jsongleRegister: `
redis.call('HSET', ARGV[1] .. 'sess:' .. ARGV[2], 'token', ARGV[3], 'member', ARGV[4], 'conn', ARGV[5], 'held', '0')
redis.call('SET', ARGV[1] .. 'tok:' .. ARGV[3], ARGV[2])
return 1`,
  // ARGV: prefix, token. Returns {sid, member, conn, held} or {}.
  jsongleFind: `
local sid = redis.call('GET', ARGV[1] .. 'tok:' .. ARGV[2])
if not sid then return {} end
local s = redis.call('HMGET', ARGV[1] .. 'sess:' .. sid, 'member', 'conn', 'held')
if not s[1] then return {} end
return {sid, s[1], s[2], s[3]}`,
  // ARGV: prefix, sid, connection, grace ms
  jsongleDetach: `
local key = ARGV[1] .. 'sess:' .. ARGV[2]
local conn = redis.call('HGET', key, 'conn')
if conn and conn ~= ARGV[3] then return 'taken-over' end
if not conn or tonumber(ARGV[4]) <= 0 then return 'gone' end
redis.call('HSET', key, 'held', '1')
redis.call('SADD', ARGV[1] .. 'held', ARGV[2])
redis.call('PUBLISH', ARGV[1] .. 'changes', 'h' .. ARGV[2])
return 'held'`,
  // ARGV: prefix, sid, connection
  jsongleExpire: `
local s = redis.call('HMGET', ARGV[1] .. 'sess:' .. ARGV[2], 'conn', 'held')
if s[1] == ARGV[3] and s[2] == '1' then return 1 end
return 0`,
  // ARGV: prefix, sid, connection. Returns the buffered envelopes, oldest first.
  jsongleResume: `
local key = ARGV[1] .. 'sess:' .. ARGV[2]
if redis.call('EXISTS', key) == 0 then return 0 end
redis.call('HSET', key, 'conn', ARGV[3], 'held', '0')
if redis.call('SREM', ARGV[1] .. 'held', ARGV[2]) == 1 then redis.call('PUBLISH', ARGV[1] .. 'changes', 'u' .. ARGV[2]) end
local buffered = redis.call('LRANGE', ARGV[1] .. 'buf:' .. ARGV[2], 0, -1)
redis.call('DEL', ARGV[1] .. 'buf:' .. ARGV[2])
return buffered`,
  // ARGV: prefix, sid, envelope json, limit
  jsongleBuffer: `
if redis.call('HGET', ARGV[1] .. 'sess:' .. ARGV[2], 'held') ~= '1' then return 0 end
redis.call('RPUSH', ARGV[1] .. 'buf:' .. ARGV[2], ARGV[3])
redis.call('LTRIM', ARGV[1] .. 'buf:' .. ARGV[2], -tonumber(ARGV[4]), -1)
return 1`,
} as const;

export type ScriptName = keyof typeof SCRIPTS;
