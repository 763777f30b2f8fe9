"""Lua scripts: every single-key operation is one atomic EVALSHA round trip.

Each entry is one Redis hash (see :data:`FIELDS`). Expiry is decided against the
``now`` the client passes in (ARGV[1]), never the server clock, so every provider agrees
on what is alive and tests can inject a clock. The server-side ``PEXPIREAT`` only lets
Redis reclaim dead entries by itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from redis import Redis
from redis.cluster import RedisCluster
from redis.commands.core import Script

__all__ = ["FIELDS", "ScriptSet", "register_scripts"]

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

-- The entry's fields {v, i, x, d, a} when it is a live cachehub entry, else nil.
-- Dead entries are dropped on sight; keys of other types are never touched.
local function live(key, now)
  if redis.call('TYPE', key).ok ~= 'hash' then return nil end
  local f = redis.call('HMGET', key, 'v', 'i', 'x', 'd', 'a')
  if not f[1] and not f[2] then return nil end
  local dl = deadline(f[3], f[4], f[5])
  if dl and now >= dl then
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

-- Replace the key with a fresh entry written at now (kind is 'v' or 'i').
local function write(key, kind, payload, now, x, d)
  redis.call('DEL', key)
  local fields = {kind, payload, 'c', now, 'm', now, 'a', now, 'h', 0}
  if x ~= '' then
    table.insert(fields, 'x')
    table.insert(fields, x)
  end
  if d ~= '' then
    table.insert(fields, 'd')
    table.insert(fields, d)
  end
  redis.call('HSET', key, unpack(fields))
  expire_at(key, deadline(x, d, now))
end
"""

# ARGV: now -> {kind, payload} or nil. Counts a hit and slides an idle expiry.
GET = """
local now = tonumber(ARGV[1])
local f = live(KEYS[1], now)
if not f then return false end
redis.call('HINCRBY', KEYS[1], 'h', 1)
redis.call('HSET', KEYS[1], 'a', ARGV[1])
if f[4] then expire_at(KEYS[1], deadline(f[3], f[4], now)) end
if f[2] then return {'i', f[2]} end
return {'v', f[1]}
"""

# ARGV: now -> the whole hash (flat field/value list) or nil. Not a hit.
ENTRY = """
if not live(KEYS[1], tonumber(ARGV[1])) then return false end
return redis.call('HGETALL', KEYS[1])
"""

# ARGV: now -> 1 when a live entry exists.
EXISTS = """
if live(KEYS[1], tonumber(ARGV[1])) then return 1 end
return 0
"""

# ARGV: now, kind, payload, expires_at or '', idle or ''.
SET = """
write(KEYS[1], ARGV[2], ARGV[3], ARGV[1], ARGV[4], ARGV[5])
return 1
"""

# Same ARGV as SET; succeeds over a missing or expired entry only.
ADD = """
if live(KEYS[1], tonumber(ARGV[1])) then return 0 end
write(KEYS[1], ARGV[2], ARGV[3], ARGV[1], ARGV[4], ARGV[5])
return 1
"""

# ARGV: now -> 1 when a live entry was removed (a dead one is removed too, returning 0).
# UNLINK frees large values in the background.
DELETE = """
if not live(KEYS[1], tonumber(ARGV[1])) then return 0 end
redis.call('UNLINK', KEYS[1])
return 1
"""

# ARGV: now, kind, payload -> 1 when the live entry held exactly that payload (lock release).
DELETE_IF_EQUAL = """
local f = live(KEYS[1], tonumber(ARGV[1]))
if not f then return 0 end
local held = f[1]
if ARGV[2] == 'i' then held = f[2] end
if held ~= ARGV[3] then return 0 end
redis.call('UNLINK', KEYS[1])
return 1
"""

# ARGV: now, delta -> {'n', new value} | {'v', encoded non-integer} | {'e', error}.
# A missing or expired counter starts from 0 with no expiry; a live one keeps its expiry.
INCR = """
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
"""

# ARGV: now, expires_at or '', idle or '' -> 1 when the live entry got the new expiry.
TOUCH = """
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
"""


@dataclass(frozen=True, slots=True)
class ScriptSet:
    """The provider's scripts, registered on one client."""

    get: Script
    entry: Script
    exists: Script
    set: Script
    add: Script
    delete: Script
    delete_if_equal: Script
    incr: Script
    touch: Script


def register_scripts(client: Redis | RedisCluster) -> ScriptSet:
    """Register every script on ``client`` (a ``Redis`` or ``RedisCluster``).

    Registration only hashes the source; redis-py loads a script on its first NOSCRIPT.
    """

    def make(body: str) -> Script:
        return client.register_script(_PRELUDE + body)

    return ScriptSet(
        get=make(GET),
        entry=make(ENTRY),
        exists=make(EXISTS),
        set=make(SET),
        add=make(ADD),
        delete=make(DELETE),
        delete_if_equal=make(DELETE_IF_EQUAL),
        incr=make(INCR),
        touch=make(TOUCH),
    )
