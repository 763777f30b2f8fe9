"""Hostile Lucee-shaped items (issue #18): bombs and malformed bytes stay contained.

Each case plants one item in the shared moto table with the raw boto3 client - as another
program with write access could - then reads it through a Lucee-format cache and a
default-format cache in a child process (:func:`~.sandbox.run_bounded`) capped in memory
and time. Every read must end in a value, a miss or a typed CacheError; ``get_all()``
must return the table's other entries whatever the hostile one holds.
"""

from __future__ import annotations

import gzip
import struct
import uuid
from collections.abc import Callable
from typing import Any, Final

import pytest

from cachehub.errors import CacheError

from .conftest import SECRET_MARK, dynamodb_settings
from .sandbox import assert_contained, run_bounded

_JAVA: Final = b"\xac\xed\x00\x05"


def _jutf(text: str) -> bytes:
    raw = text.encode()
    return struct.pack(">H", len(raw)) + raw


def _bson_nested(levels: int) -> bytes:
    doc = struct.pack("<i", 5) + b"\x00"
    for _ in range(levels):
        body = b"\x03d\x00" + doc + b"\x00"
        doc = struct.pack("<i", len(body) + 4) + body
    return doc


def _values() -> dict[str, Callable[[], dict[str, Any]]]:
    """Hostile ``value`` attributes, built in the child (no big pickles)."""
    return {
        "gzip-bomb": lambda: {"B": gzip.compress(b"\x00" * 60_000_000, 9)},
        "gzip-bomb-of-java": lambda: {"B": gzip.compress(_JAVA + b"\x73" + b"\x00" * 50_000_000)},
        "deep-bson": lambda: {"B": _bson_nested(20_000)},
        "bson-lying-lengths": lambda: {
            "B": struct.pack("<i", 2**31 - 1)
            + b"\x02s\x00"
            + struct.pack("<i", 2**31 - 1)
            + b"\x00"
        },
        "java-huge-block": lambda: {
            "B": _JAVA
            + b"\x73\x72"
            + _jutf("java.util.Date")
            + bytes.fromhex("686a81014b597419")
            + b"\x03\x00\x00\x78\x70\x7a"
            + struct.pack(">i", 2**31 - 1)
        },
        "java-class-chain": lambda: {
            "B": _JAVA
            + b"\x73"
            + b"".join(
                b"\x72" + _jutf(f"C{i}") + bytes(8) + b"\x02\x00\x00\x78" for i in range(5000)
            )
        },
        "java-many-fields": lambda: {
            "B": _JAVA
            + b"\x73\x72"
            + _jutf("Evil")
            + bytes(8)
            + b"\x02\xff\xff"
            + b"I\x00\x01x" * 65535
        },
        "session-not-pairs": lambda: {
            "B": struct.pack("<i", 23) + b"\x12iksvk\x00" + bytes(8) + b"\x0a\x78\x00\x00"
        },
        "absurd-ttl": lambda: {"S": "forever"},
    }


CASES: Final = sorted(_values())
_NOT_BSON: Final = ("deep-bson", "bson-lying-lengths")
"""Cases whose bytes are no BSON Lucee's reader would accept: they read as bytes."""


def _attempt(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except CacheError as exc:
        return type(exc).__name__


def read_hostile(case: str, endpoint: str) -> dict[str, Any]:
    """Child: plant the case's item beside a good one, read both through both layouts."""
    from cachehub_dynamodb import DynamoDBCache

    ns = f"LUCEE{uuid.uuid4().hex[:10].upper()}:"
    settings = dynamodb_settings(endpoint, namespace=ns)
    lucee = DynamoDBCache({**settings, "itemFormat": "lucee"})
    plain = DynamoDBCache(settings)
    raw: Any = getattr(lucee, "client")  # noqa: B009 - the boto3 client
    table, kn = lucee.table_name, lucee.key_name
    item: dict[str, Any] = {kn: {"S": ns + "BAD"}, "value": _values()[case]()}
    item["createdTime"] = {"N": "1700000000000"}
    if case == "absurd-ttl":
        item["ttl"] = {"N": "9" * 38}
    raw.put_item(TableName=table, Item=item)
    lucee.put("GOOD", "ok")
    seen: list[str] = []
    lucee.on_foreign_entry = lambda error: seen.append(error.key)
    try:
        return {
            "lucee.get": repr(_attempt(lambda: lucee.get("bad")))[:80],
            "lucee.metadata": repr(_attempt(lambda: lucee.metadata("bad")))[:80],
            "lucee.get_all": _attempt(lucee.get_all),
            "skipped": seen,
            "plain.get": repr(_attempt(lambda: plain.get("BAD")))[:80],
            "plain.get_all.good": _attempt(plain.get_all).get("GOOD"),
        }
    finally:
        lucee.close()
        plain.close()


@pytest.mark.parametrize("case", CASES)
def test_hostile_lucee_items_are_contained(
    case: str, local_dynamodb: Any, shared_table: str
) -> None:
    outcome = run_bounded(read_hostile, case, local_dynamodb.endpoint, memory_mb=384, seconds=90)
    assert_contained(outcome, forbidden=(SECRET_MARK,))
    assert outcome.kind == "value", outcome.describe()
    seen = outcome.value
    assert isinstance(seen["lucee.get_all"], dict), seen
    assert seen["lucee.get_all"].get("GOOD") == "ok", seen  # the rest stays readable
    assert seen["plain.get_all.good"] == "ok", seen
    if case == "absurd-ttl":  # live, but no date: metadata says so, typed
        assert seen["lucee.get"] == "'forever'"
        assert seen["lucee.metadata"] == "'ForeignEntryError'"
    elif case in _NOT_BSON:  # Lucee's last resort too: the bytes themselves
        assert seen["lucee.get"].startswith("b'"), seen
    else:
        assert seen["lucee.get"] == "'ForeignEntryError'", seen
        assert seen["skipped"] == ["BAD"], seen
