-- Shared by the scripts: KEYS[2] holds reservations by expiry, KEYS[3] their records
-- ("amount|reserved-key|reserved-key..."). Releasing one takes its amount back off
-- every scope it was reserved against.
local function release(id)
  local record = redis.call('HGET', KEYS[3], id)
  if record then
    local amount
    for part in string.gmatch(record, '[^|]+') do
      if amount == nil then
        amount = tonumber(part)
      elseif amount > 0 then
        redis.call('DECRBY', part, amount)
      end
    end
    redis.call('HDEL', KEYS[3], id)
  end
  redis.call('ZREM', KEYS[2], id)
  return record ~= false
end

