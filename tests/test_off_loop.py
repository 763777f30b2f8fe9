"""The rule that sends a large value's encoding or decoding to a worker thread (#20).

The round trips through every provider are conformance cases
(:class:`cachehub.testing.asyncshell.AsyncOnlyTests`); these pin the rule itself, and the
hostile values it must neither hang on nor let through untyped.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from cachehub_memory import MemoryCache

from cachehub.codec import SafeCodec
from cachehub.errors import SerializationError
from cachehub.provider import (
    INFLATION,
    OFF_LOOP_BYTES,
    OFF_LOOP_NODES,
    Call,
    decode_weight,
    decoded,
    decodes_inline,
    encoded,
    heavy,
)
from cachehub.testing.asyncshell import count_hops, large_value


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The functions sent to a worker thread, by name."""
    return count_hops(monkeypatch)


@pytest.fixture
def memory() -> Iterator[MemoryCache]:
    cache = MemoryCache(store=uuid.uuid4().hex)
    yield cache
    cache.close()


def test_heavy_weighs_strings_by_size_and_containers_by_items() -> None:
    assert not heavy("x" * (OFF_LOOP_BYTES - 1))
    assert heavy("x" * OFF_LOOP_BYTES)
    assert heavy(b"x" * OFF_LOOP_BYTES)
    assert not heavy(10**100)
    assert not heavy(list(range(OFF_LOOP_NODES)))
    assert heavy(list(range(OFF_LOOP_NODES + 1)))
    assert not heavy({i: i for i in range(OFF_LOOP_NODES // 2)})  # keys and values count
    assert heavy({i: i for i in range(OFF_LOOP_NODES // 2 + 1)})
    # Strings spread over a few items add up.
    assert heavy(["x" * (OFF_LOOP_BYTES // 4)] * 4)
    assert not heavy(["x" * (OFF_LOOP_BYTES // 8)] * 4)


def test_heavy_ends_on_hostile_values() -> None:
    # A cycle, a deep nest, a wide set: the walk stops at its budget, never at the end.
    cycle: list[Any] = []
    cycle.append(cycle)
    assert heavy(cycle)
    deep: list[Any] = []
    for _ in range(100_000):
        deep = [deep]
    assert heavy(deep)
    assert heavy(frozenset(range(10**6)))


def test_a_compressed_payload_weighs_its_size_times_the_inflation() -> None:
    plain = SafeCodec().dumps(list(range(2000)))
    packed = SafeCodec(compress_threshold=1024).dumps(list(range(20_000)))
    assert decode_weight(plain) == len(plain)
    assert decode_weight(packed) == INFLATION * len(packed)
    assert decode_weight(b"") == 0
    assert decode_weight(b"\x00" * 10 + packed, 10) == INFLATION * len(packed)
    assert decodes_inline(plain)
    assert not decodes_inline(packed)  # 9 KB stored, 180 KB of msgpack inside


def _steps(flow: Any) -> tuple[list[Call], Any]:
    """Run a flow with every step answered by running it, as the sync driver does."""
    steps: list[Call] = []
    reply: Any = None
    while True:
        try:
            step = flow.send(reply)
        except StopIteration as done:
            return steps, done.value
        steps.append(step)
        fn, *args = step.args
        reply = fn(*args)


def test_only_a_large_payload_is_a_step_of_its_own() -> None:
    codec = SafeCodec()
    small, large = codec.dumps([1, 2]), codec.dumps("x" * OFF_LOOP_BYTES)
    assert _steps(decoded(codec.loads, small, "k")) == ([], [1, 2])
    steps, value = _steps(decoded(codec.loads, large, "k"))
    assert [step.name for step in steps] == ["off_loop"]
    assert value == "x" * OFF_LOOP_BYTES
    assert _steps(encoded([1, 2], codec.dumps, [1, 2], "k")) == ([], small)
    steps, blob = _steps(encoded("x" * OFF_LOOP_BYTES, codec.dumps, "x" * OFF_LOOP_BYTES))
    assert [step.name for step in steps] == ["off_loop"]
    assert blob == large


def test_a_hostile_large_value_fails_typed_from_the_worker_thread(
    memory: MemoryCache, hops: list[str]
) -> None:
    # A cycle is heavy, so it is encoded in the thread; the codec's refusal comes back
    # to the awaiting task as the typed error, and nothing is stored.
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(SerializationError):
        asyncio.run(memory.aio().put("k", cycle))
    assert hops == ["_set"]
    assert memory.get("k") is None


def test_a_cancelled_large_read_still_counts_its_read_once(
    memory: MemoryCache, hops: list[str]
) -> None:
    value = large_value()
    memory.put("k", value)

    async def scenario() -> None:
        task = asyncio.ensure_future(memory.aio().get("k"))
        await asyncio.sleep(0)  # the read is taken, the decode sent to the thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await memory.aio().get("k") == value

    asyncio.run(scenario())
    assert hops == ["loads_local", "loads_local"]
    entry = memory.peek("k")
    assert entry is not None
    assert entry.hits == 2  # the cancelled read and the next: each once
