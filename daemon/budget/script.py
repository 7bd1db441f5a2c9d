"""The budget's Lua scripts and how their arguments and replies are laid out (no I/O).

Every script reads the clock with ``TIME`` on the Redis server and adds the stored offset to
Binance's server time, so callers' clocks never matter. Every key a script touches is in
KEYS; the caller puts only keys of one market there, all with the market's hash tag.
"""

from __future__ import annotations

import hashlib
from typing import Final

import msgspec

# Binance time now, in ms: Redis TIME plus the stored offset (KEYS[offset_index]).
_NOW: Final = """
local function now_ms(offset_key)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  return now + (tonumber(redis.call('GET', offset_key)) or 0)
end
local function fmt(x) return string.format('%.0f', x) end
"""

# KEYS: ban_until, time_offset, lost, limit hash x n
# ARGV: mode, then per limit: interval_ms, cap, cost, full [, extra when mode is '1']
# Reply: {0, now, reset}                       charged
#        {1, now, reset, ban_until_text}       banned (nothing charged)
#        {2, now, reset, reset_at_ms, index}   does not fit (nothing charged)
# `full` is what a window counts as when its counters may be missing spends: Redis came back
# empty during it, or mode '1' (the caller spent without Redis in the current window and
# hands those spends back as `extra`, added as they are). Only windows of at most a minute
# are treated so; longer ones are restored by OBSERVE.
#
# Cost: this runs on every acquire, so the common case is TIME, one MGET (ban, offset,
# lost), then one HMGET and one HINCRBY per limit. A window's hash is rewritten (HSET) and
# given its expiry (one minute after the window ends) only when the window is new or its
# count had to be corrected. ms epochs have 13 digits, which Lua's number-to-string
# conversion writes exactly, so no string.format is needed on this path.
ACQUIRE_SOURCE: Final = """
local t = redis.call('TIME')
local fixed = redis.call('MGET', KEYS[1], KEYS[2], KEYS[3])
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  + (tonumber(fixed[2]) or 0)
local ban = fixed[1]
if ban and (tonumber(ban) or 0) * 1000 > now then
  return {1, now, 0, ban}
end
local reset = 0
local lost = tonumber(fixed[3])
if not lost then
  lost = now
  reset = 1
  redis.call('SET', KEYS[3], string.format('%.0f', now))
end
local handback = ARGV[1] == '1'
local stride = handback and 5 or 4
local n = #KEYS - 3
local starts, useds, fresh, dirty = {}, {}, {}, {}
local worst, worst_i = 0, 0
for i = 1, n do
  local a = 2 + (i - 1) * stride
  local iv = tonumber(ARGV[a])
  local start = now - now % iv
  local h = redis.call('HMGET', KEYS[i + 3], 's', 'u')
  local used = 0
  local block = iv <= 60000
  fresh[i], dirty[i] = false, false
  if tonumber(h[1]) == start then
    used = tonumber(h[2]) or 0
  else
    fresh[i] = true
    if block and lost >= start then
      used = tonumber(ARGV[a + 3])
      dirty[i] = true
    end
  end
  if handback then
    if block and used < tonumber(ARGV[a + 3]) then
      used = tonumber(ARGV[a + 3])
      dirty[i] = true
    end
    local extra = tonumber(ARGV[a + 4])
    if extra > 0 then
      used = used + extra
      dirty[i] = true
    end
  end
  starts[i], useds[i] = start, used
  if used + tonumber(ARGV[a + 2]) > tonumber(ARGV[a + 1]) and start + iv > worst then
    worst, worst_i = start + iv, i
  end
end
for i = 1, n do
  local a = 2 + (i - 1) * stride
  local key = KEYS[i + 3]
  if worst > 0 then
    -- nothing charged; a count that had to be corrected is kept
    if dirty[i] then
      redis.call('HSET', key, 's', starts[i], 'u', useds[i])
      redis.call('PEXPIRE', key, starts[i] + tonumber(ARGV[a]) - now + 60000)
    end
  elseif fresh[i] or dirty[i] then
    redis.call('HSET', key, 's', starts[i], 'u', useds[i] + tonumber(ARGV[a + 2]))
    redis.call('PEXPIRE', key, starts[i] + tonumber(ARGV[a]) - now + 60000)
  else
    redis.call('HINCRBY', key, 'u', ARGV[a + 2])
  end
end
if worst > 0 then
  return {2, now, reset, worst, worst_i}
end
return {0, now, reset}
"""

# KEYS: time_offset, limit hash x n
# ARGV: grant_ms ('' for none), then per limit: interval_ms, value
# Raises each window's count to Binance's figure (never lowers it). With a grant time, a
# figure is applied only while the window that held the grant is still the current one: a
# header read after the window rolled may describe the previous window.
# Reply: {now, raised_1..raised_n}   (units added per limit)
OBSERVE_SOURCE: Final = (
    _NOW
    + """
local now = now_ms(KEYS[1])
local grant = tonumber(ARGV[1])
local out = {now}
for i = 1, #KEYS - 1 do
  local iv = tonumber(ARGV[2 * i])
  local value = tonumber(ARGV[2 * i + 1])
  local start = now - now % iv
  local raised = 0
  if grant == nil or grant - grant % iv == start then
    local h = redis.call('HMGET', KEYS[i + 1], 's', 'u')
    local used = 0
    if tonumber(h[1]) == start then used = tonumber(h[2]) or 0 end
    if value > used then
      redis.call('HSET', KEYS[i + 1], 's', fmt(start), 'u', fmt(value))
      redis.call('PEXPIRE', KEYS[i + 1], iv + 60000)
      raised = value - used
    end
  end
  out[#out + 1] = raised
end
return out
"""
)

# KEYS: ban_until, time_offset; ARGV: seconds (already clamped by the caller)
# A later deadline already stored is kept. Reply: {stored 0/1, deadline text, now}
BAN_SOURCE: Final = (
    _NOW
    + """
local now = now_ms(KEYS[2])
local deadline = now + math.floor(tonumber(ARGV[1]) * 1000)
local current = redis.call('GET', KEYS[1])
if current and (tonumber(current) or 0) * 1000 >= deadline then
  return {0, current, now}
end
local text = string.format('%.3f', deadline / 1000)
redis.call('SET', KEYS[1], text, 'PX', fmt(math.max(1, deadline - now)))
return {1, text, now}
"""
)

# KEYS: time_offset, ban_until, limit hash x n; ARGV: interval_ms per limit
# Reply: {now, ban text or false, start_1, used_1, ..., start_n, used_n}
USAGE_SOURCE: Final = (
    _NOW
    + """
local now = now_ms(KEYS[1])
local out = {now, redis.call('GET', KEYS[2])}
for i = 1, #KEYS - 2 do
  local iv = tonumber(ARGV[i])
  local start = now - now % iv
  local h = redis.call('HMGET', KEYS[i + 2], 's', 'u')
  local used = 0
  if tonumber(h[1]) == start then used = tonumber(h[2]) or 0 end
  out[#out + 1] = start
  out[#out + 1] = used
end
return out
"""
)

# KEYS: time_offset; ARGV: Binance server time (ms), ttl (ms), largest offset stored (ms)
# Stores Binance minus Redis time unless it is larger than the bound (then the time given is
# not a reading of Binance's clock: a saved or replayed payload). Reply: the offset (ms).
OFFSET_SOURCE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local offset = tonumber(ARGV[1]) - now
if math.abs(offset) <= tonumber(ARGV[3]) then
  redis.call('SET', KEYS[1], string.format('%.0f', offset), 'PX', ARGV[2])
end
return offset
"""


class Script(msgspec.Struct, frozen=True):
    source: str
    sha: str

    @classmethod
    def of(cls, source: str) -> Script:
        return cls(source, hashlib.sha1(source.encode()).hexdigest())  # noqa: S324 (Redis's id)


ACQUIRE: Final = Script.of(ACQUIRE_SOURCE)
OBSERVE: Final = Script.of(OBSERVE_SOURCE)
BAN: Final = Script.of(BAN_SOURCE)
USAGE: Final = Script.of(USAGE_SOURCE)
OFFSET: Final = Script.of(OFFSET_SOURCE)
SCRIPTS_BY_SHA: Final = {s.sha: s for s in (ACQUIRE, OBSERVE, BAN, USAGE, OFFSET)}

GRANTED: Final = 0
BANNED: Final = 1
EXHAUSTED: Final = 2
