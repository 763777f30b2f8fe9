"""Request records: how a re-sent script call is told from a new one (lost replies).

redis-py re-sends a command after a connection error or a timeout (the ``retries``
setting). When the server had applied it and only the reply was lost, a blind re-send
applies a non-idempotent write twice: ``incr(1)`` stores 2, ``add`` answers False for its
own entry. Each such call therefore carries a random 128-bit request id, as the name of a
*request record* key (:func:`record_key`); the script stores the call's outcome there
when it changes the entry, and a re-sent call - same bytes, same record key - answers
that outcome instead of applying again (see :mod:`.scripts`).

Why one short-lived key per call, rather than a list of recent ids per entry: a list kept
in or beside the entry forgets an id once enough other writes land on the same key, and
a hot counter gets hundreds during one retry backoff; a key per call is exact for as
long as it lives, costs no read-modify-write of a growing list, and is gone after
:func:`record_ms` (how long the client may still re-send; memory is bounded by the write
rate times that window). No record is written with ``retries`` 0: nothing re-sends.

The record key starts with the entry key (so key-pattern ACLs such as ``~ns:*`` that
allow the entry allow its records) and, in a Redis Cluster, hashes to the entry's slot,
as a script's keys must.
"""

from __future__ import annotations

import binascii
import math
from collections.abc import Mapping
from typing import Any, Final

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

from cachehub.provider import request_id as core_request_id

__all__ = ["MARK", "record_key", "record_ms", "request_id"]

MARK: Final = b"\x00rq:"
"""Between the entry key and the request id: no UTF-8 cache key contains a NUL byte
followed by 32 hex digits of a fresh random id, so no entry is ever a record."""
_SLACK_S: Final = 5.0
"""Added to the retry window: backoff sleeps, cluster redirects, scheduling."""
_TAG_LEN: Final = 4
_TAG_BASE: Final = 0x40
"""Slot tags are 4 characters of ``@ABCDEFGHIJKLMNO`` (0x40 | a 4-bit digit): no braces."""
_SLOT_MASK: Final = REDIS_CLUSTER_HASH_SLOTS - 1


def _crc(data: bytes) -> int:
    return binascii.crc_hqx(data, 0)  # Redis Cluster's CRC16 (XMODEM), as key_slot's


def _tag_basis() -> dict[int, tuple[int, int]]:
    """For solving CRC16(tag) = slot: leading slot bit -> (slot bits, tag digit bits).

    CRC16/XMODEM has no initial or final XOR, so over tags of one length it is linear
    in the tag's bits: each of the 16 digit bits flips a fixed set of slot bits, and a
    tag for any slot is the XOR of a few of them (Gaussian elimination over GF(2)).
    Their 16 flips span all 14 slot bits (checked in the tests for every slot).
    """
    base = _crc(bytes([_TAG_BASE] * _TAG_LEN))
    basis: dict[int, tuple[int, int]] = {}
    for bit in range(4 * _TAG_LEN):
        tag = bytearray([_TAG_BASE] * _TAG_LEN)
        tag[bit // 4] |= 1 << (bit % 4)
        flips, digits = (_crc(bytes(tag)) ^ base) & _SLOT_MASK, 1 << bit
        while flips:
            lead = flips.bit_length() - 1
            if lead not in basis:
                basis[lead] = (flips, digits)
                break
            flips ^= basis[lead][0]
            digits ^= basis[lead][1]
    return basis


_BASIS: Final = _tag_basis()
_BASE_SLOT: Final = _crc(bytes([_TAG_BASE] * _TAG_LEN)) & _SLOT_MASK


def request_id() -> bytes:
    """The core's :func:`cachehub.provider.request_id` (128 random bits, 32 hex digits)
    as bytes, the form a record key is built from."""
    return core_request_id().encode()


def record_ms(settings: Mapping[str, Any]) -> int:
    """How long (ms) a record must live: until the client's last possible re-send.

    A reply is lost at the latest after ``socketTimeout``; each of ``retries`` re-sends
    then waits for a reconnect (``socketConnectTimeout``), a backoff (at most 0.5 s) and
    its own reply. 0 when ``retries`` is 0: the client never re-sends, nothing is recorded.
    """
    retries = int(settings["retries"])
    if retries <= 0:
        return 0
    per_try = float(settings["socketTimeout"]) + float(settings["socketConnectTimeout"]) + 0.5
    return math.ceil(((retries + 1) * per_try + _SLACK_S) * 1000)


def _slot_tag(slot: int) -> bytes:
    """A hash tag (no braces) whose CRC16 puts a key in ``slot``: solved, not searched
    (a few microseconds; a search costs thousands of CRC16s, and a cluster batch needs a
    tag for each of hundreds of slots at once)."""
    if not 0 <= slot <= _SLOT_MASK:
        raise ValueError(f"no hash slot {slot}: Redis Cluster slots are 0..{_SLOT_MASK}.")
    rest, digits = slot ^ _BASE_SLOT, 0
    while rest:
        flips, bits = _BASIS[rest.bit_length() - 1]
        rest ^= flips
        digits ^= bits
    return bytes(_TAG_BASE | (digits >> (4 * i)) & 15 for i in range(_TAG_LEN))


def record_key(key: str, rid: bytes, cluster: bool = False) -> bytes:
    """The request record of call ``rid`` on entry ``key``.

    On a single server or Sentinel (``cluster`` False) any name works. In a cluster the
    plain name ``key + MARK + rid`` keeps the entry's slot when the key has a hash tag;
    otherwise a tag naming the entry's slot is appended (or, for a key whose braces
    would swallow it, prepended). The result is checked, not assumed.
    """
    raw = key.encode()
    name = raw + MARK + rid
    if not cluster:
        return name
    slot = key_slot(raw)
    if key_slot(name) == slot:
        return name
    tag = _slot_tag(slot)
    tagged = name + b"{" + tag + b"}"
    if key_slot(tagged) == slot:
        return tagged
    return b"{" + tag + b"}" + name  # a leading tag always decides the slot
