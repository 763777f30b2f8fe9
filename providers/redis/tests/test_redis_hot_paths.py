"""The sync batch hot paths (issue #17 item 4), counted, never timed.

On a single server ``get_many`` and ``put_many`` send their one ``MGET`` / ``MSET``
directly and read a batch of common entries with C-level passes: the Python frames
cachehub runs per call must not grow with the batch (beyond the codec's one call per
value), and the shortcut must answer exactly what ``get`` answers key by key, whatever
another program left under the namespace.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import cachehub_redis
import pytest
from cachehub_redis import RedisCache
from cachehub_redis.dispatch import is_cluster
from cachehub_redis.entry import FOREVER, HEADER_SIZE, KIND_CODEC, MAGIC
from redis import Redis
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster
from redis.connection import AbstractConnection, Connection

import cachehub
from cachehub.errors import CacheError, CorruptEntryError

_OURS = tuple(os.path.dirname(m.__file__ or "") + os.sep for m in (cachehub, cachehub_redis))
_CODEC = os.path.join(os.path.dirname(cachehub.__file__ or ""), "codec.py")
_KIT = os.path.join(os.path.dirname(cachehub.__file__ or ""), "testing") + os.sep
"""The test kit is not the cache: its loop detector, once another test in this worker
installed it, wraps socket calls (as in test_redis_async's frame counts)."""
_FLOW_ONLY = {"_mget_flow", "_mset_flow", "_batch_flow", "_groups", "_send", "split", "send"}
"""Frames of the general batch flow that a single server's plain batch does without."""


def _frames(fn: Callable[[], object]) -> tuple[list[str], int]:
    """The cachehub frames ``fn`` runs outside the codec, and how many codec frames."""
    names: list[str] = []
    codec = 0

    def profile(frame: Any, event: str, _arg: Any) -> None:
        nonlocal codec
        name = frame.f_code.co_filename
        if event == "call" and name.startswith(_OURS) and not name.startswith(_KIT):
            if name == _CODEC:
                codec += 1
            else:
                names.append(frame.f_code.co_name)

    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(None)
    return names, codec


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every request redis-py sends (one per round trip, a pipeline included)."""
    sent: list[bytes] = []
    original = AbstractConnection.send_packed_command

    def send(self: Any, command: Any, check_health: bool = True) -> None:
        sent.append(b"".join(command) if isinstance(command, list) else bytes(command))
        original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", send)
    return sent


def test_a_plain_sync_get_runs_one_frame_per_step_and_sends_what_redis_py_would(
    make_cache: Callable[..., RedisCache], trips: list[bytes]
) -> None:
    """get hit and miss on the sync shell (issue #17): the GETRANGE is sent from get's own
    frame, the header tested in one call (common_head, not sound_stamps' passes), and the
    request is byte for byte what redis-py packs for the int bounds, ASCII key or not."""
    cache = make_cache()
    cache.put_many({"plain": {"a": [1, 2]}, "clé ✓": "v"})
    cache.get("plain")  # warm: the connection
    trips.clear()
    hit, codec = _frames(lambda: cache.get("plain"))
    # _use/__enter__/__exit__: the call holds the client (a close() in another thread
    # releases it after the call ends).
    held = ["_use", "__enter__", "__exit__"]
    assert sorted(hit) == sorted(["get", "_get", *held, "_read_common", "common_head", "due"])
    assert codec == 1
    miss, codec = _frames(lambda: cache.get("absent"))
    assert sorted(miss) == sorted(["get", "_get", *held, "_read_common", "due", "_got_miss"])
    assert codec == 0
    assert cache.get("clé ✓") == "v"
    end = cache._read_end  # the first byte past the largest entry accepted
    packer = Connection()  # never connected: only its packer is used
    assert trips == [
        b"".join(packer.pack_command("GETRANGE", cache.namespace + key, 0, end))
        for key in ("plain", "absent", "clé ✓")
    ]


def test_an_observed_counting_sync_get_keeps_its_events_counts_and_typed_errors(
    make_cache: Callable[..., RedisCache], plain: Redis, trips: list[bytes]
) -> None:
    """The counter-case of the plain get: with an observer and hit counts the same _get
    (its inlined GETRANGE) runs under the shared operation: one event per get with its
    hit flag, the read counted, a key of another Redis type a miss, a corrupt header a
    typed error, reported. (onError on an outage: the conformance suite's onerror cases.)"""
    events: list[Any] = []
    cache = make_cache(observer=events.append, hitCounts=True, hitFlushInterval=3600)
    cache.put_many({"plain": {"a": 1}})
    plain.hset(f"{cache.namespace}hash", "f", "v")
    events.clear()
    trips.clear()
    assert cache.get("plain") == {"a": 1}
    assert cache.get("absent", "d") == "d"
    assert cache.get("hash", "d") == "d"  # WRONGTYPE: not an entry, a miss
    assert [(e.operation, e.hit, e.error) for e in events] == [
        ("get", True, None),
        ("get", False, None),
        ("get", False, None),
    ]
    assert [t.split(b"\r\n")[2] for t in trips] == [b"GETRANGE"] * 3
    cache.flush_hits()
    assert cache.metadata("plain").hit_count == 1
    head = bytes((MAGIC, KIND_CODEC)) + b"\xff" * (HEADER_SIZE - 2 - len(FOREVER)) + FOREVER
    plain.set(f"{cache.namespace}odd", head + b"v")  # NaN stamps: not a common entry
    events.clear()
    with pytest.raises(CorruptEntryError):
        cache.get("odd")
    assert [(e.operation, type(e.error)) for e in events] == [("get", CorruptEntryError)]


@pytest.mark.parametrize("hit_counts", [False, True])
def test_get_many_of_common_entries_runs_no_python_step_per_key(
    make_cache: Callable[..., RedisCache], trips: list[bytes], hit_counts: bool
) -> None:
    cache = make_cache(hitCounts=hit_counts, hitFlushInterval=3600)
    small = [f"s{i}" for i in range(10)]
    large = [f"l{i}" for i in range(200)]
    cache.put_many({k: {"k": k, "n": [1, 2]} for k in [*small, *large]})
    cache.get_many(small)  # warm: connection, script
    trips.clear()
    few, few_codec = _frames(lambda: cache.get_many([*small, "absent"]))
    many, many_codec = _frames(lambda: cache.get_many([*large, "absent"]))
    assert sorted(few) == sorted(many)  # the same frames for 10 keys as for 200
    assert (few_codec, many_codec) == (10, 200)  # one decode per hit, no more
    assert not _FLOW_ONLY & set(many)
    # One round trip each: the READ_MANY script (MGET cannot stop at maxValueSize).
    assert [t.split(b"\r\n")[2] for t in trips] == [b"EVALSHA", b"EVALSHA"]


def test_put_many_without_expiry_runs_no_flow_and_one_round_trip(
    make_cache: Callable[..., RedisCache], trips: list[bytes]
) -> None:
    cache = make_cache()
    cache.put("warm", 1)
    trips.clear()
    few, few_codec = _frames(lambda: cache.put_many({f"s{i}": ["v"] for i in range(10)}))
    many, many_codec = _frames(lambda: cache.put_many({f"l{i}": ["v"] for i in range(200)}))
    assert sorted(few) == sorted(many)
    assert (few_codec, many_codec) == (10, 200)
    assert not _FLOW_ONLY & set(many)
    assert [t.split(b"\r\n")[2] for t in trips] == [b"MSET", b"MSET"]
    assert cache.get_many([f"l{i}" for i in (0, 199)]) == {"l0": ["v"], "l199": ["v"]}


def test_batches_the_shortcut_does_not_take_keep_their_one_round_trip(
    make_cache: Callable[..., RedisCache], trips: list[bytes]
) -> None:
    """Counter-cases: a TTL batch (a script), and batches above one command's keys."""
    cache = make_cache()
    cache.put_many({"warm": 1}, time_span=600)  # loads the script (a new server lacks it)
    trips.clear()
    cache.put_many({f"t{i}": i for i in range(20)}, time_span=600)
    assert len(trips) == 1
    trips.clear()
    cache.put_many({f"b{i}": i for i in range(1200)})  # 3 MSETs, pipelined
    assert len(trips) == 1
    trips.clear()
    got = cache.get_many([f"b{i}" for i in range(1200)])  # 3 MGETs, pipelined
    assert len(trips) == 1
    assert got == {f"b{i}": i for i in range(1200)}


# Strings another program may leave under the namespace, around the bounds the batch
# check compares against (the magic 0xCA and the codec kind 'v' = 0x76, then the
# never-expires bytes at 34): each must read in a batch exactly as get reads it.
_PAD = b"\x00" * (HEADER_SIZE - 2 - len(FOREVER))


def _shapes(body: bytes) -> dict[str, bytes]:
    return {
        "magic only": bytes((MAGIC,)),
        "magic and kind only": bytes((MAGIC, KIND_CODEC)),
        "kind below codec": bytes((MAGIC, KIND_CODEC - 1)) + _PAD + FOREVER + body,
        "kind above codec": bytes((MAGIC, KIND_CODEC + 1)) + _PAD + FOREVER + body,
        "magic above": bytes((MAGIC + 1, KIND_CODEC)) + _PAD + FOREVER + body,
        "magic below": bytes((MAGIC - 1, KIND_CODEC)) + _PAD + FOREVER + body,
        "header, no body": bytes((MAGIC, KIND_CODEC)) + _PAD + FOREVER,
        "cut in the policy": bytes((MAGIC, KIND_CODEC)) + _PAD + FOREVER[:8],
        "policy shifted": bytes((MAGIC, KIND_CODEC)) + _PAD[1:] + FOREVER + body,
        "header, junk body": bytes((MAGIC, KIND_CODEC)) + _PAD + FOREVER + b"\xc1junk",
        "nan stamps": bytes((MAGIC, KIND_CODEC)) + b"\xff" * len(_PAD) + FOREVER + body,
        "expiry not forever": bytes((MAGIC, KIND_CODEC)) + _PAD + b"\x00" * 16 + body,
        "all 0xff": b"\xff" * 80,
        "one zero byte": b"\x00",
    }


def _outcome(fn: Callable[[], Any]) -> Any:
    try:
        return ("value", fn())
    except CacheError as exc:
        return ("error", type(exc))


@pytest.mark.parametrize("shape", sorted(_shapes(b"")))
@pytest.mark.parametrize("where", [0, 10, 20])
def test_a_foreign_string_anywhere_in_a_batch_reads_as_get_reads_it(
    make_cache: Callable[..., RedisCache], plain: Redis, shape: str, where: int
) -> None:
    cache = make_cache()
    common = [f"c{i}" for i in range(20)]
    cache.put_many({k: {"k": k} for k in common})
    stored = _shapes(cache.codec.dumps("planted"))[shape]
    plain.set(f"{cache.namespace}odd", stored)
    keys = [*common]
    keys.insert(where, "odd")
    per_key = {k: _outcome(lambda k=k: cache.get(k, default=cache)) for k in keys}
    errors = {o[1] for o in per_key.values() if o[0] == "error"}
    batch = _outcome(lambda: cache.get_many(keys))
    if errors:
        assert batch == ("error", CorruptEntryError)
        assert errors == {CorruptEntryError}
    else:
        expected = {k: o[1] for k, o in per_key.items() if o[1] is not cache}
        assert batch == ("value", expected)
    # Spot checks: an agreeing pair of wrong answers cannot pass.
    assert per_key["c3"] == ("value", {"k": "c3"})
    if shape in ("magic above", "magic below", "all 0xff", "one zero byte", "magic only"):
        assert per_key["odd"] == ("value", cache)  # not an entry: absent
    if shape in ("kind below codec", "kind above codec", "header, junk body"):
        assert per_key["odd"] == ("error", CorruptEntryError)


def test_is_cluster_tells_every_client_class() -> None:
    class Sub(Redis):
        pass

    assert not is_cluster(Redis())
    assert not is_cluster(AsyncRedis())
    assert not is_cluster(Sub())  # through isinstance: a subclass of a plain client
    # Never connected: the class alone decides.
    assert is_cluster(object.__new__(RedisCluster))
    assert is_cluster(object.__new__(AsyncRedisCluster))
