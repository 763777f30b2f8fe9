"""Another program's ``idleTime`` that no cachehub writer produces: refused on every path.

A read slides an idle entry's deadline by its ``idleTime``: a negative one made ``get``
answer, then write a deadline in the past (the read deleted the entry, while
``metadata`` called it corrupt); one of 1E+100 made ``get`` write a 101-digit deadline,
which DynamoDB refuses (38 digits).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from cachehub_dynamodb import DynamoDBCache

from cachehub.errors import CacheValueError, CorruptEntryError


@pytest.mark.parametrize("idle", ["-3600", "0", "1E+100", "31557600001"])
def test_a_planted_idle_time_out_of_range_is_a_corrupt_entry_and_nothing_is_written(
    make: Callable[..., DynamoDBCache], idle: str
) -> None:
    cache = make()
    cache.connect()
    deadline = str(time.time() + 3600)
    item = {
        cache.key_name: {"S": "planted"},
        "value": {"N": "7"},
        "idleTime": {"N": idle},
        "deadline": {"N": deadline},
    }
    cache.client.put_item(TableName=cache.table_name, Item=item)
    sent: list[str] = []
    cache.client.meta.events.register(
        "before-send.dynamodb.UpdateItem", lambda **_: sent.append("UpdateItem")
    )
    for read in (cache.get, cache.metadata, lambda key: cache.get_many([key])):
        with pytest.raises(CorruptEntryError, match="idleTime"):
            read("planted")
    assert sent == []  # no slide was written from it
    stored = cache.client.get_item(
        TableName=cache.table_name, Key={cache.key_name: {"S": "planted"}}
    )
    assert stored["Item"]["deadline"]["N"] == deadline
    cache.put("planted", "mine", idle_time=60)  # put() repairs it
    assert cache.get("planted") == "mine"


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("9.9999999999999999999999999999999999999E+125", "does not fit in a signed 64-bit"),
        ("-1E+30", "does not fit in a signed 64-bit"),
        ("1.5", "holds a float"),
    ],
)
def test_incr_on_a_planted_number_names_the_real_problem(
    make: Callable[..., DynamoDBCache], number: str, message: str
) -> None:
    """A Number with an exponent is an int to DynamoDB; incr called 9.99E+125 "an int
    beyond DynamoDB's 38-digit Number range, not an int", though it is a valid Number
    that only a 64-bit counter cannot hold."""
    cache = make()
    cache.connect()
    item = {cache.key_name: {"S": "n"}, "value": {"N": number}}
    cache.client.put_item(TableName=cache.table_name, Item=item)
    with pytest.raises(CacheValueError, match=message):
        cache.incr("n", 1)
    stored = cache.client.get_item(TableName=cache.table_name, Key={cache.key_name: {"S": "n"}})
    assert stored["Item"]["value"] == {"N": number}  # left as it was
