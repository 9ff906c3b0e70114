-- Shared by the scripts: KEYS[2] holds reservations by expiry, KEYS[3] their records,
-- "amount|scope|scope...": each scope is its kind's letter and its id ("c0190f…"),
-- from which the scope's reserved counter "<base>:reserved:<kind>:<id>" is rebuilt
-- (all of an organization's keys share <base>, its prefix and hash tag). With four
-- scopes and the default prefix the record is 140 bytes; it was 361 with the key
-- names in full, and a reservation took 598 bytes of Redis memory instead of 374
-- (measured in tests/api/counters.rs, see benches/README.md, "Memory"). Records
-- written before held the key names themselves (with the hash tag's `{`); they are
-- released as such. Releasing one takes its amount back off every scope it was
-- reserved against.

-- KEYS[3] is "<base>:rsv".
local reserved_prefix = string.sub(KEYS[3], 1, -5) .. ':reserved:'
local SCOPE_LETTER = {organization = 'o', project = 'p', apiKey = 'k', customer = 'c', agent = 'a'}
local SCOPE_KIND = {o = 'organization', p = 'project', k = 'apiKey', c = 'customer', a = 'agent'}

-- The record's form of a scope, from its reserved counter's key.
local function scope_of(reserved_key)
  local tail = string.sub(reserved_key, #reserved_prefix + 1)
  local colon = string.find(tail, ':', 1, true)
  return SCOPE_LETTER[string.sub(tail, 1, colon - 1)] .. string.sub(tail, colon + 1)
end

-- The reserved counter's key of a record's scope.
local function reserved_key(scope)
  if string.find(scope, '{', 1, true) then
    return scope
  end
  return reserved_prefix .. SCOPE_KIND[string.sub(scope, 1, 1)] .. ':' .. string.sub(scope, 2)
end

local function release(id)
  local record = redis.call('HGET', KEYS[3], id)
  if record then
    local amount
    for part in string.gmatch(record, '[^|]+') do
      if amount == nil then
        amount = tonumber(part)
      elseif amount > 0 then
        redis.call('DECRBY', reserved_key(part), amount)
      end
    end
    redis.call('HDEL', KEYS[3], id)
  end
  redis.call('ZREM', KEYS[2], id)
  return record ~= false
end
