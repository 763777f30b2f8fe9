"""The stored form of an entry: one Redis string, a fixed 50-byte header then the value.

One string (rather than a hash of fields) lets the hot operations be single native
commands, exactly what hand-written redis-py code sends: ``get`` is ``GET``, ``put`` is
``SET ... PX``, ``get_many`` is ``MGET``, ``exists`` is ``GETRANGE`` of the header.
The header is fixed-width so scripts can read it with Lua's ``struct`` and update single
fields in place with ``SETRANGE`` / ``BITFIELD`` (which keep the key's TTL).

Layout (big-endian; documented in docs/redis.md)::

    offset  size  field
         0     1  magic 0xCA: a cachehub entry (other strings are never read as entries)
         1     1  kind: 'v' = codec bytes follow, 'i' = a signed 64-bit integer follows
         2     8  created        (double, epoch seconds)
        10     8  last modified  (double)
        18     8  last accessed  (double; written back lazily, see cachehub.hits)
        26     8  hit count      (double; exact to 2**53)
        34     8  absolute expiry (double; NaN = none)
        42     8  idle seconds    (double; NaN = none)
        50     -  the value
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Final, NamedTuple, TypeAlias

from cachehub.api import HIT_COUNT_MAX, MAX_TIME_SPAN, Expiry
from cachehub.errors import CorruptEntryError

__all__ = [
    "HEADER",
    "HEADER_SIZE",
    "MAGIC",
    "KIND_CODEC",
    "KIND_INT",
    "INT",
    "DOUBLE",
    "Header",
    "corrupt",
    "oversized",
    "sound_stamps",
    "common_head",
    "pack",
    "unpack",
    "pxat",
    "Offsets",
    "FOREVER",
    "STAMP_MAX",
    "HITS_MAX",
    "IDLE_MAX",
]

MAGIC: Final = 0xCA
KIND_CODEC: Final = 0x76  # 'v'
KIND_INT: Final = 0x69  # 'i'
HEADER: Final = struct.Struct(">BBdddddd")
HEADER_SIZE: Final = HEADER.size  # 50
INT: Final = struct.Struct(">q")
DOUBLE: Final = struct.Struct(">d")
_NONE: Final = math.nan
_KINDS: Final = frozenset((KIND_CODEC, KIND_INT))
STAMP_MAX: Final = 253_402_300_799.0
"""9999-12-31T23:59:59Z, the last second a ``datetime`` holds: no stamp cachehub writes
comes near it (expiries are at most 1,000 years ahead, see cachehub.api.MAX_TIME_SPAN)."""
HITS_MAX: Final = float(HIT_COUNT_MAX)
IDLE_MAX: Final = MAX_TIME_SPAN.total_seconds()


class Offsets:
    """Byte offsets of the header fields (also used by the Lua scripts)."""

    CREATED: Final = 2
    MODIFIED: Final = 10
    ACCESSED: Final = 18
    HITS: Final = 26
    EXPIRES: Final = 34
    IDLE: Final = 42
    VALUE: Final = 50


FOREVER: Final = DOUBLE.pack(_NONE) * 2
"""The expiry and idle fields when both are unset: an entry that never expires."""


class Header(NamedTuple):
    """A parsed header; ``expires_at`` and ``idle`` are None when unset."""

    kind: int
    created: float
    modified: float
    accessed: float
    hits: float
    expires_at: float | None
    idle: float | None

    @property
    def expiry(self) -> Expiry:
        """The entry's expiry policy."""
        return Expiry(self.expires_at, self.idle)

    def alive(self, now: float) -> bool:
        """Whether the entry may still be returned at ``now`` (the rule of cachehub.api)."""
        deadline = self.expiry.deadline(self.accessed)
        return deadline is None or now < deadline


def pack(
    kind: int,
    payload: bytes,
    created: float,
    modified: float,
    expires_at: float | None,
    idle: float | None,
) -> bytes:
    """A complete stored entry, never read yet (accessed = modified, 0 hits)."""
    head = HEADER.pack(
        MAGIC,
        kind,
        created,
        modified,
        modified,
        0.0,
        _NONE if expires_at is None else expires_at,
        _NONE if idle is None else idle,
    )
    return head + payload


def unpack(raw: bytes, key: str = "") -> Header | None:
    """The header of a stored string, or None when it is not a cachehub entry.

    A string that starts like an entry but whose fields cachehub never writes (an
    unknown kind, a NaN, infinite, negative or far-future stamp, a negative hit count)
    raises :class:`CorruptEntryError` naming ``key``: another process wrote it, and no
    arithmetic on it may fail later with an untyped error.
    """
    if len(raw) < HEADER_SIZE or raw[0] != MAGIC:
        return None
    _, kind, created, modified, accessed, hits, x, d = HEADER.unpack_from(raw)
    problem = None
    if kind not in _KINDS:
        problem = f"unknown kind byte 0x{kind:02x}"
    elif not (0.0 <= created <= STAMP_MAX and 0.0 <= modified <= STAMP_MAX):
        problem = "a created or modified stamp that is not a time"  # NaN fails too
    elif not 0.0 <= accessed <= STAMP_MAX:
        problem = "a last-accessed stamp that is not a time"
    elif not 0.0 <= hits <= HITS_MAX:
        problem = "a hit count that is not a count"
    elif x == x and not 0.0 <= x <= STAMP_MAX:  # NaN (x != x) means "no expiry"
        problem = "an expiry that is not a time"
    elif d == d and not 0.0 < d <= IDLE_MAX:
        problem = "an idle time that is not a positive duration"
    if problem is not None:
        raise corrupt(key, f"its header holds {problem}")
    return Header(
        kind, created, modified, accessed, hits, None if x != x else x, None if d != d else d
    )


_STAMP_TOP: Final = DOUBLE.pack(STAMP_MAX)
_HITS_TOP: Final = DOUBLE.pack(HITS_MAX)
_Cut: TypeAlias = Callable[[bytes], bytes]
_STAMPS: Final[tuple[_Cut, ...]] = tuple(
    itemgetter(slice(at, at + 8)) for at in (Offsets.CREATED, Offsets.MODIFIED, Offsets.ACCESSED)
)
_HITS: Final[_Cut] = itemgetter(slice(Offsets.HITS, Offsets.HITS + 8))


def sound_stamps(raws: Sequence[bytes]) -> bool:
    """Whether every entry of ``raws`` (whole headers) holds created, modified and
    last-accessed stamps and a hit count that :func:`unpack` accepts, told by C-level
    byte compares: the fast reads, which skip :func:`unpack`, take only such entries.

    A non-negative double's big-endian bytes order as its value does, and a NaN or a
    negative double's bytes are above every bound here, so ``bytes <= bound`` holds just
    for 0 to the bound. The test is sufficient, not necessary (``-0.0`` fails it): an
    entry it refuses goes through :func:`unpack`, which decides.
    """
    c, m, a = _STAMPS
    top = _STAMP_TOP
    return (
        max(map(c, raws)) <= top
        and max(map(m, raws)) <= top
        and max(map(a, raws)) <= top
        and max(map(_HITS, raws)) <= _HITS_TOP
    )


_COMMON_HEAD: Final = struct.Struct(">H4Q16s")
"""A header as :func:`common_head` reads it: the magic and kind bytes as one number, the
created, modified, last-accessed and hit-count fields as unsigned 64-bit ints (the
doubles' big-endian bytes, which order as those bytes do), then the policy bytes."""
_PLAIN_TAG: Final = MAGIC << 8 | KIND_CODEC
_STAMP_TOP_BITS: Final = int.from_bytes(_STAMP_TOP, "big")
_HITS_TOP_BITS: Final = int.from_bytes(_HITS_TOP, "big")


def common_head(raw: bytes) -> bool:
    """Whether ``raw`` starts with the header of a common entry: codec bytes that never
    expire (FOREVER policy) and stamps :func:`sound_stamps` takes, so :func:`unpack`
    would accept it. The one-entry form of the fast read's test: one C-level unpack and
    four int compares (the same compares as :func:`sound_stamps`' byte compares of equal
    length, a third of its instructions for one entry: no ``map``, no ``max``, no slices).
    """
    if len(raw) < HEADER_SIZE:
        return False
    # Annotations only (no run-time cost): unpack_from is typed tuple[Any, ...].
    tag: int
    created: int
    modified: int
    accessed: int
    hits: int
    policy: bytes
    tag, created, modified, accessed, hits, policy = _COMMON_HEAD.unpack_from(raw)
    top = _STAMP_TOP_BITS
    return (
        tag == _PLAIN_TAG
        and policy == FOREVER
        and created <= top
        and modified <= top
        and accessed <= top
        and hits <= _HITS_TOP_BITS
    )


def corrupt(key: str, problem: str) -> CorruptEntryError:
    """The error for a stored string that looks like an entry but cannot be one."""
    return CorruptEntryError(
        f"Redis key {key!r:.200} is not a valid cachehub entry: {problem}.",
        hint="another program wrote this key; delete it, or give the caches a namespace "
        "of their own.",
    )


def oversized(key: str, most: int) -> CorruptEntryError:
    """The error for an entry holding more than ``most`` value bytes, the most this
    cache's ``maxValueSize`` allows (its reads stop there: see docs/redis.md)."""
    return CorruptEntryError(
        f"Redis key {key!r:.200} holds a value of more than {most} bytes, larger than "
        "this cache's maxValueSize allows.",
        hint="if a cache with a larger maxValueSize wrote it, give this cache the same "
        "maxValueSize; otherwise another program wrote it: delete the key.",
    )


def pxat(deadline: float | None) -> int | None:
    """The ``PXAT`` argument for a deadline: milliseconds, rounded up (never early)."""
    return None if deadline is None else math.ceil(deadline * 1000)
