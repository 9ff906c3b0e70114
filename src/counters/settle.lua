
-- Settles committed usage into the hot counters: adds spend and tokens, and releases
-- the reservations of the calls that reported.
--
-- KEYS[1]  the organization's `ready` marker, KEYS[2] reservations by expiry,
-- KEYS[3]  reservations; further keys are referenced by index from ARGV.
-- ARGV[1] = m spend increments, then m triples: key index, amount, lifetime (s, 0:
-- none); then w token-window increments, then w pairs: key index, tokens; then r =
-- the number of request groups (calls that count in the same scopes), then per group:
-- c, its c request ids, n, and the n indices of the requests-per-minute keys to count
-- its calls in that were never authorized; then the minute-window lifetime (ms).
--
-- Returns 0 when the spend counters were lost: PostgreSQL already holds this spend
-- and the rebuild reads it from there, so adding it here would count it twice. The
-- minute windows are counted either way: no rebuild restores them, and without this
-- the usage reported before an organization's first authorize (after a restart, or
-- ever) would be missing from its rate limits.

local ready = redis.call('EXISTS', KEYS[1]) == 1

local p = 1
local spends = tonumber(ARGV[p])
local spend_at = p + 1
p = spend_at + 3 * spends
local windows = tonumber(ARGV[p])
local window_at = p + 1
p = window_at + 2 * windows
local requests = tonumber(ARGV[p]); p = p + 1
local groups = {}
for _ = 1, requests do
  local ids = tonumber(ARGV[p])
  local keys_at = p + 1 + ids + 1
  local n = tonumber(ARGV[keys_at - 1])
  groups[#groups + 1] = {p + 1, ids, keys_at, n}
  p = keys_at + n
end
local window = ARGV[p]

if ready then
  for i = 0, spends - 1 do
    local a = spend_at + 3 * i
    local key = KEYS[tonumber(ARGV[a])]
    redis.call('INCRBY', key, ARGV[a + 1])
    if tonumber(ARGV[a + 2]) > 0 then
      redis.call('EXPIRE', key, ARGV[a + 2])
    end
  end
end

for i = 0, windows - 1 do
  local a = window_at + 2 * i
  local key = KEYS[tonumber(ARGV[a])]
  redis.call('INCRBY', key, ARGV[a + 1])
  redis.call('PEXPIRE', key, window)
end

for _, group in ipairs(groups) do
  local ids_at, ids, keys_at, n = group[1], group[2], group[3], group[4]
  local unauthorized = 0
  for i = 0, ids - 1 do
    if not release(ARGV[ids_at + i]) then
      unauthorized = unauthorized + 1
    end
  end
  if unauthorized > 0 then
    for j = 0, n - 1 do
      local key = KEYS[tonumber(ARGV[keys_at + j])]
      redis.call('INCRBY', key, unauthorized)
      redis.call('PEXPIRE', key, window)
    end
  end
end
if ready then
  return 1
end
return 0
