-- Settles committed usage into the hot counters: adds spend and tokens, and releases
-- the reservations of the calls that reported.
--
-- KEYS[1]  the organization's `ready` marker, KEYS[2] reservations by expiry,
-- KEYS[3]  reservations; further keys are referenced by index from ARGV.
-- ARGV[1] = m increments, then m triples: key index, amount, lifetime (s, 0: none);
-- then r = request count, then per request: id, n, and n indices of the
-- requests-per-minute keys to count it in when it was never authorized;
-- then the minute-window lifetime (ms).
--
-- Returns 0 when the counters were lost: PostgreSQL already holds this usage and the
-- rebuild reads it from there, so adding it here would count it twice.

if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end

local p = 1
local increments = tonumber(ARGV[p]); p = p + 1
for _ = 1, increments do
  local key = KEYS[tonumber(ARGV[p])]
  local amount = tonumber(ARGV[p + 1])
  local lifetime = tonumber(ARGV[p + 2])
  p = p + 3
  redis.call('INCRBY', key, amount)
  if lifetime > 0 then
    redis.call('EXPIRE', key, lifetime)
  end
end

local requests = tonumber(ARGV[p]); p = p + 1
local pending = {}
for _ = 1, requests do
  local id = ARGV[p]
  local n = tonumber(ARGV[p + 1])
  pending[#pending + 1] = {id, p + 2, n}
  p = p + 2 + n
end
local window = ARGV[p]

for _, entry in ipairs(pending) do
  local id, first, n = entry[1], entry[2], entry[3]
  if not release(id) then
    for j = 0, n - 1 do
      local key = KEYS[tonumber(ARGV[first + j])]
      redis.call('INCR', key)
      redis.call('PEXPIRE', key, window)
    end
  end
end
return 1
