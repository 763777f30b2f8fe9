"""Numbers outside DynamoDB's Number range are refused when written in the Lucee layout.

DynamoDB ("Supported data types", Number) holds magnitudes from 1E-130 to 9.99...E+125
with at most 38 significant digits. Before the fix only ints were checked: a float 1e200
was stored as ``{"N": "1e+200"}`` on moto, and every later Scan of the table failed with
an HTTP 500 (DynamoDB itself refuses the request, as a backend error of the whole put).
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from cachehub_dynamodb import DynamoDBCache
from cachehub_dynamodb.lucee import LuceeDynamoDBCache
from cachehub_dynamodb.lucee_values import encode_attr
from cachehub_memory import MemoryCache

from cachehub.errors import CacheValueError
from cachehub.migration import migrate
from cachehub.testing import FakeClock

T0 = 1_700_000_000.25

Make = Callable[..., DynamoDBCache]

OUT_OF_RANGE: list[Any] = [
    1e200,
    -1e200,
    1e126,
    1e-131,
    5e-324,  # the smallest subnormal float
    Decimal("1E+126"),
    Decimal("-1E-131"),
    Decimal("1." + "1" * 38),  # 39 significant digits
    {"nested": [1.0, 1e300]},
]
IN_RANGE: list[Any] = [
    0.0,
    -0.0,
    1e-130,
    -1e-130,
    9.99e125,
    1.5,
    Decimal("9.9999999999999999999999999999999999999E+125"),
    Decimal("1E-130"),
    Decimal("0E-500"),  # zero in any spelling
    Decimal("1" + "0" * 60),  # trailing zeros do not count (DynamoDB trims them)
    Decimal("0.1" + "0" * 60),
]


@pytest.mark.parametrize("value", OUT_OF_RANGE, ids=repr)
def test_a_number_outside_dynamodbs_range_is_refused(value: Any) -> None:
    with pytest.raises(CacheValueError, match="does not fit a DynamoDB Number") as caught:
        encode_attr(value)
    assert "string" in str(caught.value.hint)


@pytest.mark.parametrize("value", IN_RANGE, ids=repr)
def test_numbers_in_range_are_written_as_before(value: Any) -> None:
    assert "N" in encode_attr(value)


def test_a_long_decimal_is_shown_shortened() -> None:
    with pytest.raises(CacheValueError) as caught:
        encode_attr(Decimal("1" * 5000))
    assert len(caught.value.message) < 300


@pytest.fixture
def lucee(make: Make) -> LuceeDynamoDBCache:
    cache = make(settings={"itemFormat": "lucee"}, clock=FakeClock(T0))
    assert isinstance(cache, LuceeDynamoDBCache)
    return cache


def test_put_refuses_it_and_the_table_stays_readable(lucee: LuceeDynamoDBCache) -> None:
    with pytest.raises(CacheValueError, match="does not fit a DynamoDB Number"):
        lucee.put("m", 1e200)
    lucee.put("a", 1.5)
    assert lucee.get_all() == {"A": 1.5}  # a Scan: on moto, a 500 once 1e+200 was stored
    assert lucee.count() == 1


def test_migrate_counts_it_as_unwritable_and_copies_the_rest(lucee: LuceeDynamoDBCache) -> None:
    source = MemoryCache(clock=FakeClock(T0))
    source.put_many({"a": 1, "m": 1e200, "z": 2})
    report = migrate(source, lucee)
    assert (report.copied, report.unwritable) == (2, 1)
    assert report.first_unwritable[0]["key"] == "m"
    assert "does not fit a DynamoDB Number" in report.first_unwritable[0]["error"]
    assert lucee.get_all() == {"A": 1, "Z": 2}
