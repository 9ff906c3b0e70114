
-- Releases the reservations of calls whose usage is already in the ledger but could
-- not be settled here (Redis was unreachable): the rebuild that follows counts that
-- usage as spend, so its reservations must not count as well.
--
-- KEYS[1] the organization's `ready` marker (unused), KEYS[2] reservations by expiry,
-- KEYS[3] reservations. ARGV: request ids. Returns how many reservations it released.

local released = 0
for _, id in ipairs(ARGV) do
  if release(id) then
    released = released + 1
  end
end
return released
