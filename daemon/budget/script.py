"""The budget's Lua scripts and how their arguments and replies are laid out (no I/O).

Every script reads the clock with ``TIME`` on the Redis server and adds the stored offset to
Binance's server time, so callers' clocks never matter. Every key a script touches is in
KEYS; the caller puts only keys of one market there, all with the market's hash tag.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Final

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
# ARGV: poison, then per limit: interval_ms, cap, cost, full, block, extra
# Reply: {0, now, reset, 0, used_1..used_n}   charged
#        {1, now, reset, ban_until_text}       banned (nothing charged)
#        {2, now, reset, reset_at_ms, index}   does not fit (nothing charged)
# `full` is what a window counts as when its counters may be missing spends (Redis came back
# empty during it, or `poison`: the caller spent without Redis in it); only limits with
# `block` = 1 (short windows) are treated so. `extra` is added as it is (local spends).
ACQUIRE_SOURCE: Final = (
    _NOW
    + """
local now = now_ms(KEYS[2])
local ban = redis.call('GET', KEYS[1])
if ban and (tonumber(ban) or 0) * 1000 > now then
  return {1, now, 0, ban}
end
local reset = 0
local lost = tonumber(redis.call('GET', KEYS[3]))
if not lost then
  lost = now
  reset = 1
  redis.call('SET', KEYS[3], fmt(now))
end
local poison = ARGV[1] == '1'
local n = #KEYS - 3
local starts, useds, costs, ivs, dirty = {}, {}, {}, {}, {}
local worst, worst_i = 0, 0
for i = 1, n do
  local a = 1 + (i - 1) * 6
  local iv = tonumber(ARGV[a + 1])
  local cap = tonumber(ARGV[a + 2])
  local cost = tonumber(ARGV[a + 3])
  local full = tonumber(ARGV[a + 4])
  local block = ARGV[a + 5] == '1'
  local extra = tonumber(ARGV[a + 6])
  local start = now - now % iv
  local h = redis.call('HMGET', KEYS[i + 3], 's', 'u')
  local used = 0
  dirty[i] = false
  if tonumber(h[1]) == start then
    used = tonumber(h[2]) or 0
  elseif block and lost >= start then
    used = full
    dirty[i] = true
  end
  if poison and block and used < full then
    used = full
    dirty[i] = true
  end
  if extra > 0 then
    used = used + extra
    dirty[i] = true
  end
  starts[i], useds[i], costs[i], ivs[i] = start, used, cost, iv
  if used + cost > cap and start + iv > worst then
    worst, worst_i = start + iv, i
  end
end
if worst > 0 then
  for i = 1, n do
    if dirty[i] then
      redis.call('HSET', KEYS[i + 3], 's', fmt(starts[i]), 'u', fmt(useds[i]))
      redis.call('PEXPIRE', KEYS[i + 3], ivs[i] + 60000)
    end
  end
  return {2, now, reset, worst, worst_i}
end
local out = {0, now, reset, 0}
for i = 1, n do
  local used = useds[i] + costs[i]
  redis.call('HSET', KEYS[i + 3], 's', fmt(starts[i]), 'u', fmt(used))
  redis.call('PEXPIRE', KEYS[i + 3], ivs[i] + 60000)
  out[#out + 1] = used
end
return out
"""
)

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

# KEYS: time_offset; ARGV: Binance server time (ms), ttl (ms)
# Stores Binance minus Redis time. Reply: the offset (ms).
OFFSET_SOURCE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local offset = tonumber(ARGV[1]) - now
redis.call('SET', KEYS[1], string.format('%.0f', offset), 'PX', ARGV[2])
return offset
"""


@dataclass(frozen=True, slots=True)
class Script:
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
