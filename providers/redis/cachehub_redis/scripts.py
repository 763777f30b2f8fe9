"""Lua scripts: every operation is one atomic ``EVALSHA``, batches included.

Each entry is one Redis hash (see :data:`FIELDS`). Expiry is decided against the
``now`` the client passes in (ARGV[1]), never the server clock, so every provider agrees
on what is alive and tests can inject a clock. The server-side ``PEXPIREAT`` only lets
Redis reclaim dead entries by itself.

Replies are kept compact because parsing them is client time on every call: ``get``
answers the encoded value as one bulk string (or ``{digits}`` for a native integer, nil
for a miss) rather than a field list.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "FIELDS",
    "LuaScript",
    "GET",
    "GET_MANY",
    "ENTRY",
    "EXISTS",
    "SET",
    "SET_MANY",
    "ADD",
    "DELETE",
    "DELETE_MANY",
    "DELETE_IF_EQUAL",
    "INCR",
    "TOUCH",
    "SCAN_CHECK",
]

FIELDS: Final = {
    "v": "value encoded by the cache's codec (absent for native integers)",
    "i": "value as a native 64-bit integer, so incr is HINCRBY (absent otherwise)",
    "c": "created, epoch seconds",
    "m": "last modified, epoch seconds",
    "a": "last accessed, epoch seconds",
    "h": "hit count",
    "x": "absolute expiry, epoch seconds (absent: none)",
    "d": "idle seconds: the entry dies when not read for that long (absent: none)",
}
"""The hash fields of a stored entry, documented in docs/redis.md."""


@dataclass(frozen=True, slots=True)
class LuaScript:
    """A script's source and its SHA1, the name ``EVALSHA`` runs it by."""

    name: str
    source: str = field(repr=False)
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        # Computed locally (as Redis does), so no round trip is needed to learn it.
        digest = hashlib.sha1(self.source.encode(), usedforsecurity=False).hexdigest()
        object.__setattr__(self, "sha", digest)


# Shared helpers, prepended to every script. Timestamps are stored as the exact strings
# the client sent (Lua's number formatting would round them); only comparisons use numbers.
_PRELUDE = """
local function deadline(x, d, a)
  x = tonumber(x)
  d = tonumber(d)
  if d then
    local slide = tonumber(a) + d
    if x and x < slide then return x end
    return slide
  end
  return x
end

-- The fields {v, i, x, d, a, h, c} of a cachehub entry, else nil. One HMGET, no TYPE:
-- a key of another type makes HMGET fail, which pcall turns into "not an entry".
local function fetch(key)
  local f = redis.pcall('HMGET', key, 'v', 'i', 'x', 'd', 'a', 'h', 'c')
  if f.err or not f[7] or not (f[1] or f[2]) then return nil end
  return f
end

local function alive(f, now)
  local dl = deadline(f[3], f[4], f[5])
  return not dl or now < dl
end

-- The entry's fields when it is a live cachehub entry, else nil. Dead entries are
-- dropped on sight; keys of other types are never touched.
local function live(key, now)
  local f = fetch(key)
  if f and not alive(f, now) then
    redis.call('DEL', key)
    return nil
  end
  return f
end

local function expire_at(key, dl)
  if dl then
    redis.call('PEXPIREAT', key, string.format('%.0f', math.ceil(dl * 1000)))
  else
    redis.call('PERSIST', key)
  end
end

-- A read of a live entry: count the hit, stamp the access, slide an idle expiry, and
-- answer the value (bulk string) or {digits} for a native integer.
local function hit(key, f, stamp, now)
  redis.call('HSET', key, 'h', (tonumber(f[6]) or 0) + 1, 'a', stamp)
  if f[4] then expire_at(key, deadline(f[3], f[4], now)) end
  if f[2] then return {f[2]} end
  return f[1]
end

-- Replace the key with a fresh entry written at now (kind is 'v' or 'i'); x and d are
-- the expiry strings, '' or nil for none. The key is new after DEL: no PERSIST needed.
local function write(key, kind, payload, now, x, d)
  redis.call('DEL', key)
  if x == '' then x = nil end
  if d == '' then d = nil end
  if x and d then
    redis.call('HSET', key, kind, payload, 'c', now, 'm', now, 'a', now, 'h', 0, 'x', x, 'd', d)
  elseif x then
    redis.call('HSET', key, kind, payload, 'c', now, 'm', now, 'a', now, 'h', 0, 'x', x)
  elseif d then
    redis.call('HSET', key, kind, payload, 'c', now, 'm', now, 'a', now, 'h', 0, 'd', d)
  else
    redis.call('HSET', key, kind, payload, 'c', now, 'm', now, 'a', now, 'h', 0)
    return
  end
  expire_at(key, deadline(x, d, now))
end

-- UNLINK (frees large values in the background) in chunks: Lua's unpack has a stack limit.
local function unlink_all(keys)
  for i = 1, #keys, 500 do
    redis.call('UNLINK', unpack(keys, i, math.min(i + 499, #keys)))
  end
end
"""


def _script(name: str, body: str) -> LuaScript:
    return LuaScript(name, _PRELUDE + body)


# ARGV: now -> value | {digits} | nil. Counts a hit and slides an idle expiry.
GET: Final = _script(
    "get",
    """
local now = tonumber(ARGV[1])
local f = live(KEYS[1], now)
if not f then return false end
return hit(KEYS[1], f, ARGV[1], now)
""",
)

# KEYS: the batch (one hash slot in a cluster); ARGV: now -> one GET reply per key.
GET_MANY: Final = _script(
    "get_many",
    """
local now = tonumber(ARGV[1])
local out = {}
for n, key in ipairs(KEYS) do
  local f = live(key, now)
  if f then out[n] = hit(key, f, ARGV[1], now) else out[n] = false end
end
return out
""",
)

# ARGV: now -> the whole hash (flat field/value list) or nil. Not a hit.
ENTRY: Final = _script(
    "entry",
    """
if not live(KEYS[1], tonumber(ARGV[1])) then return false end
return redis.call('HGETALL', KEYS[1])
""",
)

# ARGV: now -> 1 when a live entry exists.
EXISTS: Final = _script(
    "exists",
    """
if live(KEYS[1], tonumber(ARGV[1])) then return 1 end
return 0
""",
)

# ARGV: now, kind, payload[, expires_at or ''[, idle]].
SET: Final = _script(
    "set",
    """
write(KEYS[1], ARGV[2], ARGV[3], ARGV[1], ARGV[4], ARGV[5])
return 1
""",
)

# KEYS: the batch; ARGV: now, expires_at or '', idle or '', then kind, payload per key.
SET_MANY: Final = _script(
    "set_many",
    """
for n, key in ipairs(KEYS) do
  write(key, ARGV[2 * n + 2], ARGV[2 * n + 3], ARGV[1], ARGV[2], ARGV[3])
end
return #KEYS
""",
)

# Same ARGV as SET; succeeds over a missing or expired entry only.
ADD: Final = _script(
    "add",
    """
if live(KEYS[1], tonumber(ARGV[1])) then return 0 end
write(KEYS[1], ARGV[2], ARGV[3], ARGV[1], ARGV[4], ARGV[5])
return 1
""",
)

# ARGV: now -> 1 when a live entry was removed (a dead one is removed too, returning 0).
DELETE: Final = _script(
    "delete",
    """
if not live(KEYS[1], tonumber(ARGV[1])) then return 0 end
redis.call('UNLINK', KEYS[1])
return 1
""",
)

# KEYS: the batch; ARGV: now -> how many live entries were removed.
DELETE_MANY: Final = _script(
    "delete_many",
    """
local now = tonumber(ARGV[1])
local doomed = {}
for _, key in ipairs(KEYS) do
  if live(key, now) then doomed[#doomed + 1] = key end
end
unlink_all(doomed)
return #doomed
""",
)

# ARGV: now, kind, payload -> 1 when the live entry held exactly that payload (lock release).
DELETE_IF_EQUAL: Final = _script(
    "delete_if_equal",
    """
local f = live(KEYS[1], tonumber(ARGV[1]))
if not f then return 0 end
local held = f[1]
if ARGV[2] == 'i' then held = f[2] end
if held ~= ARGV[3] then return 0 end
redis.call('UNLINK', KEYS[1])
return 1
""",
)

# ARGV: now, delta -> {'n', new value} | {'v', encoded non-integer} | {'e', error}.
# A missing or expired counter starts from 0 with no expiry; a live one keeps its expiry.
INCR: Final = _script(
    "incr",
    """
local f = live(KEYS[1], tonumber(ARGV[1]))
if not f then
  write(KEYS[1], 'i', ARGV[2], ARGV[1], '', '')
  return {'n', ARGV[2]}
end
if not f[2] then return {'v', f[1]} end
local r = redis.pcall('HINCRBY', KEYS[1], 'i', ARGV[2])
if type(r) == 'table' and r.err then return {'e', r.err} end
redis.call('HSET', KEYS[1], 'm', ARGV[1])
-- Read the field back: Lua numbers are doubles and would round large counters.
return {'n', redis.call('HGET', KEYS[1], 'i')}
""",
)

# ARGV: now, expires_at or '', idle or '' -> 1 when the live entry got the new expiry.
TOUCH: Final = _script(
    "touch",
    """
if not live(KEYS[1], tonumber(ARGV[1])) then return 0 end
redis.call('HDEL', KEYS[1], 'x', 'd')
local fields = {'a', ARGV[1], 'm', ARGV[1]}
if ARGV[2] ~= '' then
  table.insert(fields, 'x')
  table.insert(fields, ARGV[2])
end
if ARGV[3] ~= '' then
  table.insert(fields, 'd')
  table.insert(fields, ARGV[3])
end
redis.call('HSET', KEYS[1], unpack(fields))
expire_at(KEYS[1], deadline(ARGV[2], ARGV[3], ARGV[1]))
return 1
""",
)

# KEYS: one SCAN batch; ARGV: now, mode. Checks every key against now without changing
# it, except in mode 'u'. Mode 'k' -> a string with '1' for each live entry, '0' else;
# 'c' -> how many are live; 'u' -> UNLINKs the cachehub entries (dead ones are garbage
# anyway) and answers how many were live. Other keys are never touched. Only the expiry
# fields and 'c' (which every entry has) are read: copying values into Lua would cost
# time for nothing.
SCAN_CHECK: Final = _script(
    "scan_check",
    """
local now = tonumber(ARGV[1])
local mode = ARGV[2]
local flags, doomed, n = {}, {}, 0
for i, key in ipairs(KEYS) do
  local f = redis.pcall('HMGET', key, 'x', 'd', 'a', 'c')
  flags[i] = '0'
  if not f.err and f[4] then
    local dl = deadline(f[1], f[2], f[3])
    if not dl or now < dl then
      n = n + 1
      flags[i] = '1'
    end
    doomed[#doomed + 1] = key
  end
end
if mode == 'k' then return table.concat(flags) end
if mode == 'u' then unlink_all(doomed) end
return n
""",
)
