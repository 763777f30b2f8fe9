"""Lua scripts: the operations that must check an entry before changing it, atomically.

The hot single-key operations need no script: ``get`` is ``GETRANGE`` up to the largest
entry the cache reads (its ``maxValueSize``), ``put`` is ``SET ... PX`` and ``exists`` is
``GETRANGE`` of the header (see :mod:`.entry` for the stored form); ``get_many`` is
:data:`READ_MANY`, since ``MGET`` cannot be bounded. What remains here reads the 50-byte
header with ``GETRANGE`` and Lua's ``struct`` and changes the entry in place with
``SETRANGE`` / ``BITFIELD``, which keep its TTL.

Time: the *server* decides expiry. Entries get relative TTLs (``PX`` / ``PEXPIRE``), so
Redis applies them with its own clock and a key it still holds is alive; the scripts
take ``now`` as ``''`` and judge nothing. Only a cache built with an explicit ``clock=``
(tests, simulations) passes its ``now`` and absolute deadlines (``PXAT``): then that
clock decides, exactly as before, so expiry can be tested without sleeping. Every
``ttl`` argument is therefore a pair: the command (``'PX'``, ``'PXAT'`` or ``''`` for
none) and the milliseconds.

Locks are the exception: they live in the internal space (hashes under keys no user key
can spell, see :mod:`.cache`) and their deadlines are decided by the *server's* clock
(``TIME`` inside the ``LOCK_*`` scripts), so clients with skewed clocks agree on them.

Each script is one ``EVALSHA``: one round trip, batches included. Keys that are not
cachehub entries (other types, strings without the magic byte) are never touched.

Lost replies: redis-py re-sends a command after a connection error, so a write the server
applied but whose reply was lost runs twice. The scripts whose effect is not idempotent
(``ADD``, ``INCR``, ``DELETE``, ``DELETE_IF_EQUAL``) therefore take an optional second
key, the *request record* (see :func:`cachehub_redis.cache.record_key`): a name unique to
the call (it holds a random 128-bit request id) in the entry's hash slot. A call that
changed the entry stores its outcome there (``SET ... PX``, for as long as the client may
still retry); a re-sent call finds it and answers the recorded outcome without applying
again. One round trip still; no record is written when nothing changed (a refused
``add``, a failed ``incr``), since re-running those is harmless.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Final

from cachehub.api import LOCK_HORIZON, MAX_KEY_LENGTH

from .entry import (
    FOREVER,
    HEADER_SIZE,
    HITS_MAX,
    IDLE_MAX,
    KIND_CODEC,
    KIND_INT,
    MAGIC,
    STAMP_MAX,
    Offsets,
)

__all__ = [
    "BY_SHA",
    "CALLED",
    "RECORD",
    "LuaScript",
    "command_at",
    "ADD",
    "SET_MANY",
    "DELETE",
    "DELETE_MANY",
    "DELETE_IF_EQUAL",
    "INCR",
    "TOUCH",
    "ENTRY",
    "READ_MANY",
    "RECORD_READS",
    "SCAN_CHECK",
    "SCAN_NAMES",
    "SCAN_PAGE",
    "LOCK_ACQUIRE",
    "LOCK_RELEASE",
    "LOCK_EXTEND",
    "LOCK_HOLDER",
]


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


RECORD: Final = 0xCB
"""First byte of a request record (an entry's is 0xCA): 0xCB + the call's 8-byte outcome."""

# Batched entry reads (see ``verdicts`` below): keys per MGET, and the longest string
# (header included) MGET may read; a longer one is read by its header alone.
_MGET_KEYS: Final = 100
_MGET_STRING_MAX: Final = 1024
# FOREVER as a Lua string literal of decimal byte escapes.
_LUA_FOREVER: Final = "".join(f"\\{b}" for b in FOREVER)

# Shared helpers, prepended to every script. Lua's string positions are 1-based: the
# field at byte offset o starts at position o + 1.
_PRELUDE = f"""
local HEAD = {HEADER_SIZE}
local MAGIC = {MAGIC}
local FOREVER = "{_LUA_FOREVER}"
local POLICY = {Offsets.EXPIRES + 1}
local EXPIRES = {Offsets.EXPIRES}

-- The server's clock, in epoch seconds.
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end

-- An idle entry's absolute cap on the server's clock: the writer sends it as ms from now
-- (a span, whatever its clock says), and the entry's expiry field gets TIME + span, which
-- each read's slide then caps the new TTL by (RECORD_READS). '' = no cap to set.
local function server_cap(key, ms)
  if ms ~= '' then
    redis.call('SETRANGE', key, EXPIRES, struct.pack('>d', clock() + tonumber(ms) / 1000))
  end
end

-- A read of a key that may hold another Redis type: that error (WRONGTYPE) is nil, "not
-- an entry". Any other error is raised, naming the command: an ACL user denied the
-- command (a shared Redis) would otherwise read every entry as missing, and INCR or ADD
-- would overwrite what is there.
local function read(cmd, ...)
  local r = redis.pcall(cmd, ...)
  if type(r) == 'table' and r.err then
    if string.find(r.err, 'WRONGTYPE', 1, true) then return nil end
    error("the script's " .. cmd .. ' failed: ' .. r.err)
  end
  return r
end

-- The entry's header (a string), or nil when the key is missing or not a cachehub entry.
local function header(key)
  local h = read('GETRANGE', key, 0, HEAD - 1)
  if type(h) ~= 'string' or #h < HEAD or string.byte(h, 1) ~= MAGIC then return nil end
  return h
end

-- kind, created, modified, accessed, hits, expires (nil: none), idle (nil: none)
local function fields(h)
  local _, kind, c, m, a, n, x, d = struct.unpack('>BBdddddd', h)
  if x ~= x then x = nil end
  if d ~= d then d = nil end
  return kind, c, m, a, n, x, d
end

-- Whether header h holds only fields cachehub writes: the checks of entry.unpack (a known
-- kind, stamps from 0 to year 9999, a hit count 0..2^53, an expiry and an idle time in
-- range or none). A NaN fails every comparison. False: the client raises CorruptEntryError.
local function sound(h)
  local kind, c, m, a, n, x, d = fields(h)
  if kind ~= {KIND_CODEC} and kind ~= {KIND_INT} then return false end
  for _, t in ipairs({{c, m, a, x or 0}}) do
    if not (t >= 0 and t <= {STAMP_MAX!r}) then return false end
  end
  if not (n >= 0 and n <= {HITS_MAX!r}) then return false end
  return not d or (d > 0 and d <= {IDLE_MAX!r})
end

local function deadline(h)
  local _, _, _, a, _, x, d = fields(h)
  if d then
    local slide = a + d
    if x and x < slide then return x end
    return slide
  end
  return x
end

-- Whether the entry h (its header, or the whole string) is alive at now. Without a now
-- (nil: the server's clock decides) every entry Redis still holds is. Most entries never
-- expire: their policy bytes are compared first, cheaper than unpacking doubles.
local function alive(h, now)
  if not now or string.sub(h, POLICY, HEAD) == FOREVER then return true end
  local dl = deadline(h)
  return not dl or now < dl
end

-- Per key: true when it holds a live entry, false a dead one, nil not an entry. No string
-- longer than {_MGET_STRING_MAX} bytes is copied whole (MGET would copy a planted 512 MB one into
-- the reply and the Lua heap): per batch of {_MGET_KEYS} keys, STRLEN (O(1), copies nothing) sorts
-- them, short strings are read by one MGET, longer ones by their header alone. Once a batch
-- is mostly long strings, the rest are read by header without the STRLEN. Server time of
-- a 1,000-key page (Redis 7.0, best of 9 runs on a loaded machine) for strings of 70 / 550 /
-- 2050 bytes: MGET alone 1.07 / 2.11 / 4.16 ms (unbounded), a GETRANGE per key 3.38 /
-- 3.23 / 3.27 ms, this 2.52 / 3.60 / 4.52 ms (medians: 3.14 / 4.63 / 5.58 ms against
-- GETRANGE's 4.64 / 3.79 / 6.15): cheaper where entries are small, bounded everywhere.
local function verdicts(keys, now)
  local out, long, n = {{}}, false, #keys
  for i = 1, n, {_MGET_KEYS} do
    local j, short, at, longs = math.min(i + {_MGET_KEYS - 1}, n), {{}}, {{}}, 0
    for k = i, j do
      local len = long or read('STRLEN', keys[k])
      if len == true or (len and len > {_MGET_STRING_MAX}) then
        longs = longs + 1
        local h = header(keys[k])
        if h then out[k] = alive(h, now) end
      elseif len and len >= HEAD then
        short[#short + 1] = keys[k]
        at[#short] = k
      end
    end
    if #short > 0 then
      local vals = redis.call('MGET', unpack(short))
      for s = 1, #short do
        local v = vals[s]
        if v and string.byte(v, 1) == MAGIC then out[at[s]] = alive(v, now) end
      end
    end
    long = longs * 2 > j - i + 1
  end
  return out
end

-- The header of a live entry, else nil. Dead entries are dropped on sight. h: the key's
-- header when the caller read it already.
local function live(key, now, h)
  h = h or header(key)
  if not h then return nil end
  if not alive(h, now) then
    redis.call('UNLINK', key)
    return nil
  end
  return h
end

-- Request records (rk: KEYS[2] of a single-key script, the last key of a batch; nil when
-- the client never retries): the outcome a first attempt of this very call recorded (8
-- bytes), or nil. Anything else there is ignored. One byte past a record is read, enough
-- to tell a longer string, and no more: a planted one is never copied whole.
local function replayed(rk)
  if not rk then return nil end
  local r = read('GETRANGE', rk, 0, 9)
  if type(r) == 'string' and #r == 9 and string.byte(r, 1) == {RECORD} then
    return string.sub(r, 2)
  end
  return nil
end

-- Record this call's outcome (8 bytes) for ttl ms: a re-sent copy answers it (replayed).
local function remember(rk, outcome, ttl)
  if rk then redis.call('SET', rk, '\\{RECORD}' .. outcome, 'PX', ttl) end
end

-- A batch's record and entry count: with record ms > 0 its last key is the record.
local function batch_record(ms)
  local n = #KEYS
  if (tonumber(ms) or 0) > 0 then return KEYS[n], n - 1 end
  return nil, n
end
local APPLIED = '\\0\\0\\0\\0\\0\\0\\0\\1'

-- SET a complete entry; cmd is 'PX' (ms from now, the server's clock), 'PXAT' (a
-- client clock's deadline) or '' (no expiry).
local function store(key, blob, cmd, ms)
  if cmd == '' then
    redis.call('SET', key, blob)
  else
    redis.call('SET', key, blob, cmd, ms)
  end
end

-- Set a key's TTL the way store does: relative (PX), absolute (PXAT) or none ('').
local function expire(key, cmd, ms)
  if cmd == 'PX' then
    redis.call('PEXPIRE', key, ms)
  elseif cmd == 'PXAT' then
    redis.call('PEXPIREAT', key, ms)
  else
    redis.call('PERSIST', key)
  end
end

-- UNLINK (frees large values in the background) in chunks: Lua's unpack has a stack limit.
local function unlink_all(keys)
  for i = 1, #keys, 500 do
    redis.call('UNLINK', unpack(keys, i, math.min(i + 499, #keys)))
  end
end
"""


# What the scans that run SCAN themselves (SCAN_NAMES, SCAN_PAGE) add to the prelude: the
# tests of a name, which no other script needs.
_NAMES = f"""
-- Whether a scanned name could be a key cachehub writes: the namespace (nsb bytes, nsc
-- characters) and a key of 1 to {MAX_KEY_LENGTH} characters, 4 UTF-8 bytes each at most. A
-- longer name was planted by another program: never listed, counted or cleared. Names
-- that fit by bytes fit by characters; only those between are counted by characters
-- (the bytes that do not continue a UTF-8 character).
local function ours(name, nsb, nsc)
  local n = #name - nsb
  if n < 1 then return false end  -- the namespace itself: no key is empty
  if n <= {MAX_KEY_LENGTH} then return true end
  if n > {4 * MAX_KEY_LENGTH} then return false end
  local _, chars = string.gsub(name, '[^\\128-\\191]', '')
  return chars - nsc <= {MAX_KEY_LENGTH}
end

-- Whether a name is UTF-8 (cachehub writes no other keys; the client's scans decode each
-- name and skip the others). ASCII is told by one find; otherwise each well-formed
-- sequence (RFC 3629: no overlong form, no surrogate, nothing past U+10FFFF) becomes 'x',
-- which joins no neighbours, and a byte over 127 left over is not UTF-8.
local WELL_FORMED = {{
  '\\240[\\144-\\191][\\128-\\191][\\128-\\191]',
  '[\\241-\\243][\\128-\\191][\\128-\\191][\\128-\\191]',
  '\\244[\\128-\\143][\\128-\\191][\\128-\\191]',
  '\\224[\\160-\\191][\\128-\\191]',
  '[\\225-\\236\\238\\239][\\128-\\191][\\128-\\191]',
  '\\237[\\128-\\159][\\128-\\191]',
  '[\\194-\\223][\\128-\\191]',
}}
local function utf8(name)
  if not string.find(name, '[\\128-\\255]') then return true end
  for _, form in ipairs(WELL_FORMED) do name = string.gsub(name, form, 'x') end
  return not string.find(name, '[\\128-\\255]')
end

-- The names of a SCAN reply that could be cachehub's keys (ours; and UTF-8 with text).
-- The page's list is dropped, and after a name too long for ours the script's heap is
-- collected at once: Redis' Lua collector kept a planted 32 MiB name for 32 MiB of the
-- server's memory after the call, until its next cycle.
local function page_names(page, nsb, nsc, text)
  local names, long = {{}}, false
  for _, name in ipairs(page[2]) do
    if not ours(name, nsb, nsc) then
      long = true
    elseif not text or utf8(name) then
      names[#names + 1] = name
    end
  end
  page[2] = nil
  if long then collectgarbage() end
  return names
end
"""


def _script(name: str, body: str) -> LuaScript:
    return LuaScript(name, _PRELUDE + body)


# KEYS: entry[, request record]; ARGV: now or '', blob, ttl command, ttl ms, cap ms or ''
# (see server_cap), record ms -> 1 when written (no live entry was there).
ADD: Final = _script(
    "add",
    """
if replayed(KEYS[2]) then return 1 end
if live(KEYS[1], tonumber(ARGV[1])) then return 0 end
store(KEYS[1], ARGV[2], ARGV[3], ARGV[4])
server_cap(KEYS[1], ARGV[5])
remember(KEYS[2], APPLIED, ARGV[6])
return 1
""",
)

# KEYS: the batch (one hash slot in a cluster); ARGV: ttl command, ttl ms, cap ms or ''
# (see server_cap), then one blob per key (a batch shares one expiry).
SET_MANY: Final = _script(
    "set_many",
    """
local cap = nil
if ARGV[3] ~= '' then cap = struct.pack('>d', clock() + tonumber(ARGV[3]) / 1000) end
for n, key in ipairs(KEYS) do
  store(key, ARGV[n + 3], ARGV[1], ARGV[2])
  if cap then redis.call('SETRANGE', key, EXPIRES, cap) end
end
return #KEYS
""",
)

# KEYS: entry[, request record]; ARGV: now or '', record ms -> 1 when a live entry was
# removed (a dead one is removed too, answering 0).
DELETE: Final = _script(
    "delete",
    """
if replayed(KEYS[2]) then return 1 end
if not live(KEYS[1], tonumber(ARGV[1])) then return 0 end
redis.call('UNLINK', KEYS[1])
remember(KEYS[2], APPLIED, ARGV[2])
return 1
""",
)

# KEYS: the batch[, request record]; ARGV: now or '', record ms (0: no record) -> how many
# live entries were removed. A re-sent call answers the first one's count.
DELETE_MANY: Final = _script(
    "delete_many",
    """
local now = tonumber(ARGV[1])
local rk, n = batch_record(ARGV[2])
local done = replayed(rk)
if done then return (struct.unpack('>i8', done)) end
local doomed = {}
for i = 1, n do
  if live(KEYS[i], now) then doomed[#doomed + 1] = KEYS[i] end
end
if #doomed > 0 then
  unlink_all(doomed)
  remember(rk, struct.pack('>i8', #doomed), ARGV[2])
end
return #doomed
""",
)

# KEYS: entry[, request record]; ARGV: now or '', kind (a byte), payload, record ms -> 1 when
# the live entry held exactly that (lock release).
DELETE_IF_EQUAL: Final = _script(
    "delete_if_equal",
    """
if replayed(KEYS[2]) then return 1 end
local h = live(KEYS[1], tonumber(ARGV[1]))
if not h or string.sub(h, 2, 2) ~= ARGV[2] then return 0 end
-- The length first: only a value as long as the payload is read, never a planted huge one.
if redis.call('STRLEN', KEYS[1]) ~= HEAD + #ARGV[3] then return 0 end
if redis.call('GETRANGE', KEYS[1], HEAD, -1) ~= ARGV[3] then return 0 end
redis.call('UNLINK', KEYS[1])
remember(KEYS[2], APPLIED, ARGV[4])
return 1
""",
)

# KEYS: entry[, request record]; ARGV: now or '', delta, fresh entry (the counter at delta, no
# expiry), now as a signed 64-bit integer of the double's bytes (BITFIELD SET), the most
# value bytes the cache reads (see READ_MANY), record ms
# -> {'n', 8 bytes of the new value} | {'v', codec bytes of a non-integer} | {'e'} overflow
# | {'c', value bytes} an int entry whose value is not 8 bytes (corrupt) | {'x', header} an
# entry whose header is not sound (corrupt; nothing changed, whether alive or not).
# A missing or expired counter starts from 0 with no expiry; a live one keeps its expiry.
# The new value is answered as bytes: Lua numbers are doubles and would round it.
# The hot path is two commands (GETRANGE, BITFIELD) plus, when the client may re-send,
# the record's GET and SET: every command here is measured (docs/benchmarks.md).
INCR: Final = _script(
    "incr",
    f"""
local done = replayed(KEYS[2])
if done then return {{'n', done}} end
-- The header and one byte past an int entry's 8: an int entry is exactly HEAD + 8 bytes
-- (BITFIELD would pad a shorter one with zeros, a garbage count, and leave a longer one
-- corrupt), which one read of HEAD + 9 bytes tells without a STRLEN.
local h = read('GETRANGE', KEYS[1], 0, HEAD + 8)
local entry = type(h) == 'string' and #h >= HEAD and string.byte(h, 1) == MAGIC
if entry and not sound(h) then return {{'x', string.sub(h, 1, HEAD)}} end
if not entry or not alive(h, tonumber(ARGV[1])) then
  -- Missing, dead, or not an entry (another program's key): a fresh counter replaces it.
  redis.call('SET', KEYS[1], ARGV[3])
  remember(KEYS[2], string.sub(ARGV[3], HEAD + 1), ARGV[6])
  return {{'n', string.sub(ARGV[3], HEAD + 1)}}
end
if string.byte(h, 2) ~= string.byte('i') then
  -- Codec bytes, to name their type: at most one byte past the most the cache reads
  -- (ARGV[5]), so a planted huge value is refused without being sent.
  return {{'v', redis.call('GETRANGE', KEYS[1], HEAD, HEAD + tonumber(ARGV[5]))}}
end
if #h ~= HEAD + 8 then return {{'c', redis.call('STRLEN', KEYS[1]) - HEAD}} end
-- One BITFIELD adds delta and stamps modified (ARGV[4]: its 8 bytes as an i64).
local r = redis.call('BITFIELD', KEYS[1], 'OVERFLOW', 'FAIL', 'INCRBY', 'i64', HEAD * 8,
  ARGV[2], 'SET', 'i64', {Offsets.MODIFIED * 8}, ARGV[4])
if not r[1] then
  -- Overflow: nothing was added; put the old modified stamp back.
  local old = string.sub(h, {Offsets.MODIFIED + 1}, {Offsets.MODIFIED + 8})
  redis.call('SETRANGE', KEYS[1], {Offsets.MODIFIED}, old)
  return {{'e'}}
end
-- Lua numbers are doubles: exact below 2^53; beyond, the stored bytes are read back.
local n
if math.abs(r[1]) < 2^53 then
  n = struct.pack('>i8', r[1])
else
  n = redis.call('GETRANGE', KEYS[1], HEAD, HEAD + 7)
end
remember(KEYS[2], n, ARGV[6])
return {{'n', n}}
""",
)

# ARGV: the last byte to read (see READ_MANY) -> {stored string, PTTL in ms (-1: none), the
# server's clock as TIME answers it}, or nil when the key is missing or of another type:
# an entry and the server's view of its deadline, read atomically.
ENTRY: Final = _script(
    "entry",
    """
local v = read('GETRANGE', KEYS[1], 0, ARGV[1])
if type(v) ~= 'string' or v == '' then return false end
local t = redis.call('TIME')
return {v, redis.call('PTTL', KEYS[1]), t[1], t[2]}
""",
)

# KEYS: the batch; ARGV: the last byte to read -> per key its stored string, cut one byte
# past the largest entry the cache reads (header, codec framing and maxValueSize: the
# client refuses a longer one, see entry.oversized), or nil when missing or of another
# type. MGET's reply, except that no value larger than the reader accepts is ever sent:
# GETRANGE (like MGET) copies no more than it answers.
READ_MANY: Final = _script(
    "read_many",
    """
local out = {}
for i, key in ipairs(KEYS) do
  local v = read('GETRANGE', key, 0, ARGV[1])
  if v == nil or v == '' then v = false end
  out[i] = v
end
return out
""",
)

# ARGV: now or '', now as 8 double bytes, expiry + idle as 16 double bytes, ttl command,
# ttl ms, cap ms or '' (see server_cap) -> 1 when the live entry got the new expiry (its
# modified and accessed become now), 0 when there is none, or the header (a string) when
# it is not sound: nothing is changed, and the client raises CorruptEntryError.
TOUCH: Final = _script(
    "touch",
    f"""
local h = header(KEYS[1])
if h and not sound(h) then return h end
if not h or not live(KEYS[1], tonumber(ARGV[1]), h) then return 0 end
redis.call('SETRANGE', KEYS[1], {Offsets.MODIFIED}, ARGV[2] .. ARGV[2])
redis.call('SETRANGE', KEYS[1], {Offsets.EXPIRES}, ARGV[3])
server_cap(KEYS[1], ARGV[6])
expire(KEYS[1], ARGV[4], ARGV[5])
return 1
""",
)

# KEYS: the batch[, request record]; ARGV[1]: record ms (0: no record), ARGV[2]: the ttl
# command of the new TTLs ('PX' or 'PXAT'); then per key: created (8 double bytes: which
# version was read), hits to add, last access (8 double bytes), ttl ms or '' (a new TTL,
# for idle entries) -> how many entries were updated. Reads of an entry replaced meanwhile
# are dropped; a re-sent call adds nothing again. With 'PX' (the server's clock decides)
# the new TTL is the idle time, cut to what is left of the entry's absolute cap by the
# server's clock (capped): never by the reader's.
RECORD_READS: Final = _script(
    "record_reads",
    f"""
local rk, count = batch_record(ARGV[1])
local again = replayed(rk)
if again then return (struct.unpack('>i8', again)) end
local now = nil
local function capped(h, ms)
  local x = select(6, fields(h))
  if ARGV[2] ~= 'PX' or not x then return ms end
  now = now or clock()
  return string.format('%.0f', math.max(1, math.min(tonumber(ms), math.ceil((x - now) * 1000))))
end
local done = 0
for n = 1, count do
  local key = KEYS[n]
  local i = 4 * n - 1
  local h = header(key)
  -- sound: a header another program corrupted is left as it is, as every read leaves it
  if h and sound(h) and string.sub(h, {Offsets.CREATED + 1}, {Offsets.CREATED + 8}) == ARGV[i] then
    local _, _, _, a, hits = fields(h)
    redis.call('SETRANGE', key, {Offsets.HITS}, struct.pack('>d', hits + tonumber(ARGV[i + 1])))
    if struct.unpack('>d', ARGV[i + 2]) > a then
      redis.call('SETRANGE', key, {Offsets.ACCESSED}, ARGV[i + 2])
    end
    if ARGV[i + 3] ~= '' then expire(key, ARGV[2], capped(h, ARGV[i + 3])) end
    done = done + 1
  end
end
if done > 0 then remember(rk, struct.pack('>i8', done), ARGV[1]) end
return done
""",
)

# KEYS: one SCAN batch; ARGV: now or '', mode. Checks every key against now without changing
# it, except in mode 'u'. Mode 'k' -> a string with '1' for each live entry, '0' else;
# 'c' -> how many are live; 'u' -> UNLINKs the cachehub entries (dead ones are garbage
# anyway) and answers how many were live. Other keys are never touched. Entries are
# read in MGET batches (see ``verdicts``), long strings by their header alone.
SCAN_CHECK: Final = _script(
    "scan_check",
    """
local now = tonumber(ARGV[1])
local mode = ARGV[2]
local flags, doomed, n = {}, {}, 0
local found = verdicts(KEYS, now)
for i, key in ipairs(KEYS) do
  flags[i] = '0'
  if found[i] ~= nil then
    if found[i] then
      n = n + 1
      flags[i] = '1'
    end
    doomed[#doomed + 1] = key
  end
end
if mode == 'k' then return table.concat(flags) end
if mode == 'u' and #doomed > 0 then unlink_all(doomed) end
return n
""",
)

# No KEYS: scans one page itself. ARGV: cursor, MATCH pattern, COUNT, TYPE, the namespace's
# bytes and characters (see ours) -> {next cursor, the page's names cachehub could have
# written}. SCAN from the client would send every name it finds, also one of 512 MB
# planted under the namespace: here a name longer than any key cachehub writes stays in
# the server (copied once into the script's reply to it, as SCAN copies it into its own).
SCAN_NAMES: Final = _script(
    "scan_names",
    _NAMES
    + """
local page = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3], 'TYPE', ARGV[4])
return {page[1], page_names(page, tonumber(ARGV[5]), tonumber(ARGV[6]), false)}
""",
)

# No KEYS: scans one page itself. ARGV: cursor, MATCH pattern, COUNT, now or '', mode ('c' or
# 'u' as in SCAN_CHECK), the namespace's bytes and characters (see ours) -> {next cursor,
# live entries counted (and, in 'u', removed)}. For a single server and a pattern Redis
# matches exactly: the keys never travel to the client and back, and each call is bounded
# by one SCAN page, like SCAN itself. Names longer than cachehub writes, or not UTF-8,
# are skipped, as the client-side scan skips them.
SCAN_PAGE: Final = _script(
    "scan_page",
    _NAMES
    + """
local page = redis.call('SCAN', ARGV[1], 'MATCH', ARGV[2], 'COUNT', ARGV[3], 'TYPE', 'string')
local now = tonumber(ARGV[4])
local keys = page_names(page, tonumber(ARGV[6]), tonumber(ARGV[7]), true)
local doomed, n = {}, 0
local found = verdicts(keys, now)
for i, key in ipairs(keys) do
  if found[i] ~= nil then
    if found[i] then n = n + 1 end
    doomed[#doomed + 1] = key
  end
end
if ARGV[5] == 'u' and #doomed > 0 then unlink_all(doomed) end
return {page[1], n}
""",
)


# Locks: one hash per lock, fields t (holder token), d (deadline, server ms), f (fence of
# the last holding), r (token of the last release). The hash outlives its lock by a grace
# period (PEXPIRE ttl + grace), so the fence keeps counting up through quick re-acquires;
# once it is gone, the next fence starts from the server's clock in microseconds, above
# every fence handed out before. So no fence of cachehub's runs more than the grace ahead
# of the clock; one more than a day ahead (room for a failover to a server whose clock
# lags) was planted by another program and is restarted from the clock, never handed on.
# Numbers are written with %.0f: Lua's tostring would print 16-digit integers in exponent
# form.
_LOCK_PRELUDE = (
    f"local HORIZON = {int(LOCK_HORIZON * 1000)}"
    + """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'hash' and kind ~= 'none' then return 'x' end
-- Fields longer than MOST bytes are never read: HGET (like HMGET) would copy a planted
-- 512 MB field into the script's memory, and cachehub writes none (tokens of 32 bytes,
-- numbers of at most 17 digits). Such a holder is OVER, another program's (it equals no
-- token: a token as long would have raised MOST); such a number or release is none.
local OVER, MOST = {}, math.max(1024, #(ARGV[1] or ''))
local function field(name, over)
  if redis.call('HSTRLEN', KEYS[1], name) > MOST then return over end
  return redis.call('HGET', KEYS[1], name)
end
local h = {field('t', OVER), field('d', false), field('f', false), field('r', false)}
local holder, dl, fence = h[1], tonumber(h[2]), tonumber(h[3])
-- A record without a usable deadline (another program's) holds nothing; nor does one
-- whose deadline lies past the longest ttl (HORIZON ms) or whose key never expires:
-- cachehub sets both within bounds in the same script, so only another program's does.
if not dl or dl ~= dl or dl <= now then holder = nil end
if holder and (dl > now + HORIZON or redis.call('PTTL', KEYS[1]) < 0) then holder = nil end
local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
if fence and (fence ~= fence or fence > us + 86400000000 or fence < 0) then fence = nil end
local function n(x) return string.format('%.0f', x) end
"""
)


def _lock_script(name: str, body: str) -> LuaScript:
    return LuaScript(name, _LOCK_PRELUDE + body)


# ARGV: token, ttl ms, grace ms -> {'1', fence} taken (or already this token's: the same
# fence again, so a retried request succeeds), {'0', ms left} held by another (or
# {'0', '0'} released by this token: its request arrived after the give-back), 'x' the
# key is not a lock.
LOCK_ACQUIRE: Final = _lock_script(
    "lock_acquire",
    """
local ttl, grace = tonumber(ARGV[2]), tonumber(ARGV[3])
if holder then
  if holder ~= ARGV[1] then return {'0', n(dl - now)} end
  redis.call('HSET', KEYS[1], 'd', n(now + ttl))
  redis.call('PEXPIRE', KEYS[1], n(ttl + grace))
  if fence then return {'1', n(fence)} end
  -- A retry of this token's acquire over a fence planted since: restarted below.
elseif h[4] == ARGV[1] then
  return {'0', '0'}
end
local f = math.max((fence or 0) + 1, us)
redis.call('HSET', KEYS[1], 't', ARGV[1], 'd', n(now + ttl), 'f', n(f))
redis.call('HDEL', KEYS[1], 'r')
redis.call('PEXPIRE', KEYS[1], n(ttl + grace))
return {'1', n(f)}
""",
)

# ARGV: token, grace ms -> '1' released (or released by this token before: a retried
# request), '0' not held by this token (its ttl ran out), 'x' not a lock.
LOCK_RELEASE: Final = _lock_script(
    "lock_release",
    """
if holder == ARGV[1] then
  redis.call('HSET', KEYS[1], 'r', ARGV[1], 'd', '0')
  redis.call('HDEL', KEYS[1], 't')
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return '1'
end
if h[4] == ARGV[1] then return '1' end
return '0'
""",
)

# ARGV: token, ttl ms, grace ms -> '1' extended to now + ttl, '0' not held, 'x' not a lock.
LOCK_EXTEND: Final = _lock_script(
    "lock_extend",
    """
if holder ~= ARGV[1] then return '0' end
redis.call('HSET', KEYS[1], 'd', n(now + tonumber(ARGV[2])))
redis.call('PEXPIRE', KEYS[1], n(tonumber(ARGV[2]) + tonumber(ARGV[3])))
return '1'
""",
)

# No ARGV -> {'1', token (at most 64 bytes: cachehub's are 32; '' for one over 1 KiB, which
# is not read)} held, {'0'} free, 'x' not a lock. Read-only.
LOCK_HOLDER: Final = _lock_script(
    "lock_holder",
    """
if holder == OVER then return {'1', ''} end
if holder then return {'1', string.sub(holder, 1, 64)} end
return {'0'}
""",
)

BY_SHA: Final = {s.sha: s for s in list(globals().values()) if isinstance(s, LuaScript)}
"""Every script above by its SHA1, the name a server's error reply gives it by."""

_CALL: Final = re.compile(r"""redis\.p?call\(\s*'([A-Z]+)'|read\(\s*'([A-Z]+)'""")

CALLED: Final = frozenset(
    name for s in BY_SHA.values() for pair in _CALL.findall(s.source) for name in pair if name
)
"""The commands the scripts run: what an ACL user needs beyond ``EVALSHA`` to run them."""


def command_at(sha: str, line: int) -> str | None:
    """The command script ``sha`` runs on its line ``line`` (as a server's error reply
    gives the place of a failed call), or None when that line runs none."""
    script = BY_SHA.get(sha)
    lines = script.source.splitlines() if script is not None else []
    found = _CALL.search(lines[line - 1]) if 0 < line <= len(lines) else None
    return None if found is None else found[1] or found[2]
