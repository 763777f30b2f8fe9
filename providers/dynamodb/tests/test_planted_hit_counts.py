"""A ``hitCount`` another program wrote: negative, fractional, 38 digits, another type.

cachehub's own counts are whole numbers from 0 to ``HIT_COUNT_MAX`` (2^53). On main
``metadata()`` showed a 38-digit count rounded through a float
(99999999999999997748809823456034029568 for 38 nines) and 1.5 as 1, said "an impossible
time or count (ValueError)" for a negative one, naming neither the attribute nor the fix,
and took a String as 0; the hit write-back kept adding to such a count (-5 became -4, 38
nines became 39 digits, which DynamoDB refuses as a Number overflow: the operation
that flushed failed). Now ``metadata()`` raises ``CorruptEntryError`` naming the item, the
attribute, its stored text and the fix, and the write-back leaves such a count as it is.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from cachehub_dynamodb import DynamoDBCache
from cachehub_dynamodb.items import HITS

from cachehub.api import HIT_COUNT_MAX
from cachehub.errors import CorruptEntryError

PLANTED: dict[str, dict[str, str]] = {
    "negative": {"N": "-5"},
    "minus-one": {"N": "-1"},
    "fraction": {"N": "1.5"},
    "38-nines": {"N": "9" * 38},
    "38-digits-negative": {"N": "-" + "9" * 38},
    "exponent": {"N": "1E+30"},
    "tiny": {"N": "1E-130"},
    "one-past-2^53": {"N": str(HIT_COUNT_MAX + 1)},
    "string": {"S": "5"},
    "binary": {"B": "NQ=="},
}


@pytest.fixture
def counting(make: Callable[..., DynamoDBCache]) -> DynamoDBCache:
    """Counts every read; ``flush_hits()`` writes the counts back."""
    return make(settings={"hitCounts": True, "hitFlushInterval": 0})


def _plant(cache: DynamoDBCache, key: str, attr: dict[str, str]) -> None:
    """``put(key)``, then another program sets its hitCount to ``attr``."""
    cache.put(key, "v")
    raw: dict[str, Any] = {"B": b"5"} if "B" in attr else attr  # boto3 takes bytes
    cache.client.update_item(
        TableName=cache.table_name,
        Key={cache.key_name: {"S": cache._sk(key)}},
        UpdateExpression="SET #hc = :h",
        ExpressionAttributeNames={"#hc": HITS},
        ExpressionAttributeValues={":h": raw},
    )


def _stored(cache: DynamoDBCache, key: str) -> dict[str, Any]:
    item = cache.client.get_item(
        TableName=cache.table_name, Key={cache.key_name: {"S": cache._sk(key)}}
    )["Item"]
    return dict(item[HITS])


@pytest.mark.parametrize("attr", PLANTED.values(), ids=list(PLANTED))
def test_metadata_names_a_planted_hit_count_and_the_fix(
    counting: DynamoDBCache, attr: dict[str, str]
) -> None:
    _plant(counting, "k", attr)
    with pytest.raises(CorruptEntryError) as caught:
        counting.metadata("k")
    text = str(caught.value)
    assert f"DynamoDB item '{counting._sk('k')}' holds hitCount" in text
    assert "not a whole number from 0 to 9,007,199,254,740,992" in text
    assert "REMOVE hitCount" in text  # the fix
    if "N" in attr:
        assert repr(attr["N"]) in text  # the stored text, never rounded
    # The async shell reads the same item the same way.
    with pytest.raises(CorruptEntryError, match="holds hitCount"):
        asyncio.run(_ametadata(counting, "k"))


async def _ametadata(cache: DynamoDBCache, key: str) -> Any:
    shell = cache.aio()
    try:
        return await asyncio.wait_for(shell.metadata(key), 60)
    finally:
        await shell.close()


OUTSIDE = ["negative", "minus-one", "38-nines", "38-digits-negative", "exponent", "one-past-2^53"]
"""Counts outside 0..2^53, which the write-back's condition tells (a fraction within it
is not: DynamoDB's conditions cannot test for a whole number, see the test below)."""


@pytest.mark.parametrize("name", OUTSIDE)
def test_the_hit_write_back_leaves_a_planted_count_as_it_is(
    counting: DynamoDBCache, name: str
) -> None:
    _plant(counting, "k", PLANTED[name])
    assert counting.get("k") == "v"
    assert counting.get("k") == "v"
    counting.flush_hits()
    assert _stored(counting, "k") == PLANTED[name]  # never pushed further (nor overflowed)
    counting.put("other", 1)  # a write flushes too
    assert _stored(counting, "k") == PLANTED[name]


def test_a_fraction_counted_on_is_still_reported(counting: DynamoDBCache) -> None:
    _plant(counting, "k", PLANTED["fraction"])
    counting.get("k")
    counting.flush_hits()
    with pytest.raises(CorruptEntryError, match=r"holds hitCount '2\.5'"):
        counting.metadata("k")


def test_counts_within_the_range_are_exact_and_still_counted(counting: DynamoDBCache) -> None:
    _plant(counting, "k", {"N": str(HIT_COUNT_MAX - 2)})
    assert counting.metadata("k").hit_count == HIT_COUNT_MAX - 2  # exact, no float
    counting.get("k")
    counting.get("k")
    counting.flush_hits()
    assert _stored(counting, "k") == {"N": str(HIT_COUNT_MAX)}
    assert counting.metadata("k").hit_count == HIT_COUNT_MAX
    counting.get("k")  # one more would pass the limit: left at it
    assert counting.metadata("k").hit_count == HIT_COUNT_MAX  # before the write-back too
    counting.flush_hits()
    assert _stored(counting, "k") == {"N": str(HIT_COUNT_MAX)}
    _plant(counting, "z", {"N": "0"})
    counting.get("z")
    counting.flush_hits()
    assert counting.metadata("z").hit_count == 1


def test_removing_the_attribute_is_the_fix(counting: DynamoDBCache) -> None:
    _plant(counting, "k", {"N": "-5"})
    counting.client.update_item(
        TableName=counting.table_name,
        Key={counting.key_name: {"S": counting._sk("k")}},
        UpdateExpression="REMOVE #hc",
        ExpressionAttributeNames={"#hc": HITS},
    )
    counting.get("k")
    counting.flush_hits()
    assert counting.metadata("k").hit_count == 1


OVERFLOW = (
    "Number overflow. Attempting to store a number with magnitude larger than supported range"
)
"""DynamoDB's answer to ``ADD hitCount :h`` on a count of 38 nines (moto stores 39 digits
instead, so the answer is injected)."""
WRONG_TYPE = "An operand in the update expression has an incorrect data type"
"""DynamoDB's answer to ``ADD hitCount :h`` on a hitCount of another type."""

CARRIERS: dict[str, Callable[[DynamoDBCache], Any]] = {
    "idle-get": lambda c: c.get("idle"),  # the slide carries the read's hit
    "touch": lambda c: c.touch("k", 60),  # carries the hits pending for k
    "incr": lambda c: c.incr("n"),  # carries the hits pending for n
}


@pytest.mark.parametrize("message", [OVERFLOW, WRONG_TYPE], ids=["overflow", "wrong-type"])
@pytest.mark.parametrize("operation", list(CARRIERS))
def test_an_update_carrying_hits_to_a_planted_count_still_applies(
    injected: Callable[..., Any], operation: str, message: str
) -> None:
    """The idle slide, ``touch`` and ``incr`` carry pending hits in their own UpdateItem
    (``ADD hitCount``). On DynamoDB a planted count of 38 digits (or another type) makes
    that ADD fail the whole update: before, the operation raised "UpdateItem ... was
    rejected: Number overflow ... check the expression syntax" (CacheValueError) and the
    idle entry was not slid. Now the update is sent once more without the hits."""
    cache, counter, injector = injected(settings={"hitCounts": True, "hitFlushInterval": 3600})
    cache.put("idle", "v", idle_time=60)
    cache.put("k", "v")
    cache.put("n", 1)
    cache.get("k")
    cache.get("n")  # hits now pending for k and n
    counter.reset()
    injector.fail("UpdateItem", "ValidationException", times=1, message=message)
    outcome = CARRIERS[operation](cache)
    assert outcome == {"idle-get": "v", "touch": True, "incr": 2}[operation]
    assert counter.count("UpdateItem") == 2  # the refused one, then the one without hits
