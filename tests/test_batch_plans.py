"""The sans-I/O half of get_many / put_many (issue #17 item 4): the key plans' C-level fast
cases and get_many's finish must answer exactly what the per-key path answers, for every
batch a caller or a provider can hand them, including the ones the fast cases skip."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

import pytest

from cachehub.api import MAX_KEY_LENGTH, Expiry
from cachehub.errors import CacheBackendError, InvalidKeyError
from cachehub.testing.reference import ReferenceCache


class _Reversed(ReferenceCache):
    """A provider whose batch read answers its keys in reverse order (allowed: a dict)."""

    def _get_many(self, keys: list[str], now: float) -> dict[str, Any]:
        found = super()._get_many(keys, now)
        return dict(reversed(found.items()))


class _Unasked(ReferenceCache):
    """A buggy provider that answers a key nobody asked for, next to every real hit."""

    def _get_many(self, keys: list[str], now: float) -> dict[str, Any]:
        found = super()._get_many(keys, now)
        return {**found, f"{self.namespace}zz-unasked": 0} if found else found


class _Recorder(ReferenceCache):
    """Records the storage-key batches its primitives are given."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gets: list[list[str]] = []
        self.sets: list[dict[str, Any]] = []

    def _get_many(self, keys: list[str], now: float) -> dict[str, Any]:
        self.gets.append(list(keys))
        return super()._get_many(keys, now)

    def _set_many(self, items: dict[str, Any], expiry: Expiry, now: float) -> None:
        self.sets.append(dict(items))
        super()._set_many(items, expiry, now)


@pytest.mark.parametrize("namespace", ["", "ns:"])
def test_every_hit_in_order_maps_back_to_the_user_keys(namespace: str) -> None:
    cache = ReferenceCache(namespace=namespace)
    cache.put_many({f"k{i}": i for i in range(50)})
    keys = [f"k{i}" for i in range(50)]
    assert cache.get_many(keys) == {k: i for i, k in enumerate(keys)}
    assert list(cache.get_many(keys)) == keys  # the asked order


@pytest.mark.parametrize("namespace", ["", "ns:"])
def test_partial_hits_and_duplicates_map_back_to_the_user_keys(namespace: str) -> None:
    cache = ReferenceCache(namespace=namespace)
    cache.put_many({"a": 1, "c": 3})
    assert cache.get_many(["a", "b", "c", "a", "b"]) == {"a": 1, "c": 3}
    assert cache.get_many(["c", "c", "c"]) == {"c": 3}


def test_a_provider_answering_out_of_order_still_gets_each_value_its_key() -> None:
    cache = _Reversed(namespace="ns:")
    stored = {f"k{i}": i for i in range(20)}
    cache.put_many(stored)
    # Same length as the batch, other order: the in-order shortcut must not apply.
    assert cache.get_many(list(stored)) == stored


def test_a_provider_answering_an_unasked_key_cannot_shift_the_user_keys() -> None:
    cache = _Unasked(namespace="ns:")
    cache.put("a", 1)
    # {a, zz-unasked} has the length of the batch [a, b]: only the order check keeps the
    # unasked value from being answered as b's.
    assert cache.get_many(["a", "b"]) == {"a": 1, "zz-unasked": 0}


def test_a_provider_answering_no_dict_is_a_typed_error() -> None:
    class _NotDict(ReferenceCache):
        def _get_many(self, keys: list[str], now: float) -> dict[str, Any]:
            return list(keys)  # type: ignore[return-value]

    with pytest.raises(CacheBackendError, match="returned list"):
        _NotDict(namespace="ns:").get_many(["a"])


def test_many_keys_longer_together_than_one_key_may_be_are_still_plain() -> None:
    cache = _Recorder(namespace="ns:")
    width = 1000
    keys = [f"{i:0{width}d}" for i in range(MAX_KEY_LENGTH // width + 5)]  # joined > limit
    cache.put_many(dict.fromkeys(keys, 1))
    assert cache.get_many(keys) == dict.fromkeys(keys, 1)
    assert cache.gets[-1] == ["ns:" + k for k in keys]


@pytest.mark.parametrize("where", [0, 3, 7])
def test_one_key_over_the_limit_in_a_long_batch_is_refused_by_name(where: int) -> None:
    cache = ReferenceCache(namespace="ns:")
    keys = [f"k{i}" for i in range(8)]
    keys[where] = "x" * (MAX_KEY_LENGTH + 1)
    with pytest.raises(InvalidKeyError, match="limit"):
        cache.get_many(keys)
    with pytest.raises(InvalidKeyError, match="limit"):
        cache.put_many(dict.fromkeys(keys, 1))


@pytest.mark.parametrize("bad", ["", 7, b"bytes", None, "caf\u00e9", "\udcff"], ids=repr)
def test_an_unusual_key_in_a_batch_takes_the_per_key_checks(bad: Any) -> None:
    cache = ReferenceCache(namespace="ns:")
    keys = ["a", bad, "b"]
    per_key: Exception | None = None
    try:
        cache._sk(bad)
    except InvalidKeyError as exc:
        per_key = exc
    if per_key is not None:
        with pytest.raises(InvalidKeyError):
            cache.get_many(keys)
        with pytest.raises(InvalidKeyError):
            cache.put_many({"a": 1, bad: 2, "b": 3})
    else:  # a valid non-ASCII key: stored and read under its own name
        cache.put_many({"a": 1, bad: 2, "b": 3})
        assert cache.get_many(keys) == {"a": 1, bad: 2, "b": 3}


class _Pairs(Mapping[str, Any]):
    """A Mapping that is not a dict: the plan may not assume a dict's guarantees."""

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        self._pairs = dict(pairs)

    def __getitem__(self, key: str) -> Any:
        return self._pairs[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)


class _StrKey(str):
    """A str subclass: hashes and compares as itself, stored under its plain str."""


@pytest.mark.parametrize(
    "items",
    [
        _Pairs([("a", 1), ("b", 2)]),
        MappingProxyType({"a": 1, "b": 2}),
        {_StrKey("a"): 1, "b": 2},
    ],
    ids=["Mapping", "MappingProxyType", "str subclass key"],
)
def test_put_many_of_any_mapping_stores_what_a_dict_would(items: Mapping[str, Any]) -> None:
    cache = _Recorder(namespace="ns:")
    cache.put_many(items)
    assert cache.sets == [{"ns:a": 1, "ns:b": 2}]
    assert all(type(k) is str for k in cache.sets[0])
    assert cache.get_many(["a", "b"]) == {"a": 1, "b": 2}


def test_put_many_of_a_plain_dict_hands_the_provider_its_storage_keys_in_order() -> None:
    cache = _Recorder(namespace="ns:")
    items = {f"k{i}": i for i in range(30)}
    cache.put_many(items)
    assert list(cache.sets[0].items()) == [("ns:" + k, v) for k, v in items.items()]
