-- Checks and reserves, atomically, every budget and rate limit that applies to one
-- call. All keys carry the organization's hash tag, so they live in one slot and
-- this runs as one step on a single Redis or on a Redis Cluster.
--
-- KEYS[1]  the organization's `ready` marker (absent: counters were lost; rebuild)
-- KEYS[2]  reservations by expiry (sorted set: request id -> expiry ms)
-- KEYS[3]  reservations (hash: request id -> "amount|scope|scope...", see above)
-- then per scope i (0-based), at 4 + 4i: spend, reserved, requests this minute,
--          tokens this minute
-- ARGV[1] now (ms), ARGV[2] request id, ARGV[3] estimated cost (micro-USD),
-- ARGV[4] estimated tokens, ARGV[5] reservation expiry (ms), ARGV[6] minute-window
-- lifetime (ms); then per scope i, at 7 + 4i: budget amount (-1: none), hard (1/0),
-- requests per minute (-1: none), tokens per minute (-1: none)
--
-- Returns {verdict, reason, deciding scope index (-1), then per scope: spent,
-- reserved, requests this minute, tokens this minute}.

if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'rebuild', '', -1}
end

local now = tonumber(ARGV[1])
-- Abandoned calls: a reservation no usage event settled expires, bounded per call.
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 64)) do
  release(id)
end
-- Asking again for the same request replaces its reservation rather than adding one.
release(ARGV[2])

local estimate = tonumber(ARGV[3])
local tokens = tonumber(ARGV[4])
local scopes = (#KEYS - 3) / 4
local out = {'allow', '', -1}
local denied = false
-- Every scope's four counters in one read (absent keys read as false).
local counters = redis.call('MGET', unpack(KEYS, 4))
for i = 0, scopes - 1 do
  local k = 4 + 4 * i
  local a = 7 + 4 * i
  local spent = tonumber(counters[4 * i + 1] or '0')
  local reserved = tonumber(counters[4 * i + 2] or '0')
  local requests = tonumber(counters[4 * i + 3] or '0')
  local used_tokens = tonumber(counters[4 * i + 4] or '0')
  table.insert(out, spent)
  table.insert(out, reserved)
  table.insert(out, requests)
  table.insert(out, used_tokens)
  if not denied then
    local amount = tonumber(ARGV[a])
    local rpm = tonumber(ARGV[a + 2])
    local tpm = tonumber(ARGV[a + 3])
    local committed = spent + reserved
    if amount >= 0 and ARGV[a + 1] == '1' and (committed >= amount or committed + estimate > amount) then
      out[1], out[2], out[3], denied = 'deny', 'budget_exceeded', i, true
    elseif rpm >= 0 and requests + 1 > rpm then
      out[1], out[2], out[3], denied = 'deny', 'rate_limited_requests', i, true
    elseif tpm >= 0 and used_tokens + tokens > tpm then
      out[1], out[2], out[3], denied = 'deny', 'rate_limited_tokens', i, true
    end
  end
end
if denied then
  return out
end

local record = {tostring(estimate)}
for i = 0, scopes - 1 do
  local k = 4 + 4 * i
  if estimate > 0 then
    redis.call('INCRBY', KEYS[k + 1], estimate)
  end
  table.insert(record, scope_of(KEYS[k + 1]))
  redis.call('INCR', KEYS[k + 2])
  redis.call('PEXPIRE', KEYS[k + 2], ARGV[6])
end
-- Every allowed call leaves a record, even at zero cost: its usage event then knows
-- the request was already counted against the requests-per-minute limits.
redis.call('HSET', KEYS[3], ARGV[2], table.concat(record, '|'))
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[2])
return out
