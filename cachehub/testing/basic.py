"""Conformance: put/get/exists/delete, missing keys, odd keys, close and reuse."""

from __future__ import annotations

from typing import Any

import pytest

from cachehub.api import MAX_KEY_LENGTH, MISSING, BaseCache
from cachehub.errors import CacheKeyError, InvalidKeyError

from .support import CacheFactory, ConformanceBase

__all__ = ["BasicTests", "KeyTests", "LifecycleTests", "ODD_KEYS"]

ODD_KEYS: dict[str, str] = {
    "unicode_cyrillic": "ключ",
    "unicode_cjk": "鍵-キー-열쇠",
    "emoji": "cache 🎉🚀",
    "combining": "e\u0301te\u0301",
    "rtl": "مفتاح",
    "space": "a key with spaces",
    "leading_trailing_space": "  padded  ",
    "newline": "line1\nline2\r\n",
    "tab": "col1\tcol2",
    "colons": "user:42:profile",
    "slashes": "/path/to/thing/",
    "backslash": "C:\\temp\\file",
    "quotes": 'it\'s "quoted"',
    "percent_braces": "%s {0} ${VAR}",
    "nul": "before\x00after",
    "control": "bell\x07esc\x1b",
    "single_char": "x",
    "digits": "0123456789",
    "json_like": '{"a": [1, 2]}',
    "sql_like": "SELECT * FROM t WHERE a='1';--",
    "long_2000": "k" * 1_999 + "!",
    "long_10000": "".join(chr(0x61 + i % 26) for i in range(10_000)),
    "long_unicode_3000": "é" * 3_000,
    "max_length": "m" * MAX_KEY_LENGTH,
}
"""Keys every provider must store and list back unchanged (hashing internally if needed)."""


class BasicTests(ConformanceBase):
    """The core read/write contract."""

    def test_put_then_get(self, cache: BaseCache) -> None:
        cache.put("k", "v")
        assert cache.get("k") == "v"

    def test_get_missing_returns_none(self, cache: BaseCache) -> None:
        assert cache.get("absent") is None

    def test_get_missing_returns_default(self, cache: BaseCache) -> None:
        sentinel = object()
        assert cache.get("absent", sentinel) is sentinel
        assert cache.get("absent", default=42) == 42

    def test_get_missing_with_missing_sentinel(self, cache: BaseCache) -> None:
        assert cache.get("absent", MISSING) is MISSING

    def test_cached_none_is_not_missing(self, cache: BaseCache) -> None:
        cache.put("none", None)
        assert cache.get("none", MISSING) is None
        assert cache.exists("none")
        assert cache.get("none", "default") is None

    def test_cached_falsy_values_are_hits(self, cache: BaseCache) -> None:
        falsy: dict[str, Any] = {"zero": 0, "false": False, "empty_str": "", "empty_list": []}
        for key, value in falsy.items():
            cache.put(key, value)
        for key, value in falsy.items():
            got = cache.get(key, MISSING)
            assert got == value
            assert type(got) is type(value)

    def test_get_throw_when_not_exist(self, cache: BaseCache) -> None:
        with pytest.raises(CacheKeyError) as info:
            cache.get("absent", throw_when_not_exist=True)
        assert "absent" in str(info.value)

    def test_cache_key_error_is_a_key_error(self, cache: BaseCache) -> None:
        with pytest.raises(KeyError):
            cache.get("absent", throw_when_not_exist=True)

    def test_get_throw_when_exists_returns_value(self, cache: BaseCache) -> None:
        cache.put("k", None)
        assert cache.get("k", throw_when_not_exist=True) is None

    def test_exists(self, cache: BaseCache) -> None:
        assert cache.exists("k") is False
        cache.put("k", 1)
        assert cache.exists("k") is True

    def test_overwrite_replaces_value_and_type(self, cache: BaseCache) -> None:
        cache.put("k", "first")
        cache.put("k", 2)
        assert cache.get("k") == 2
        assert cache.count() == 1

    def test_delete_existing_returns_true(self, cache: BaseCache) -> None:
        cache.put("k", 1)
        assert cache.delete("k") is True
        assert cache.exists("k") is False
        assert cache.get("k", MISSING) is MISSING

    def test_delete_missing_returns_false(self, cache: BaseCache) -> None:
        assert cache.delete("absent") is False

    def test_delete_twice(self, cache: BaseCache) -> None:
        cache.put("k", 1)
        assert cache.delete("k") is True
        assert cache.delete("k") is False

    def test_delete_only_that_key(self, cache: BaseCache) -> None:
        cache.put("a", 1)
        cache.put("ab", 2)
        cache.put("b", 3)
        cache.delete("a")
        assert sorted(cache.keys()) == ["ab", "b"]

    def test_put_after_delete(self, cache: BaseCache) -> None:
        cache.put("k", 1)
        cache.delete("k")
        cache.put("k", 2)
        assert cache.get("k") == 2

    def test_keys_are_case_sensitive(self, cache: BaseCache) -> None:
        cache.put("Key", 1)
        cache.put("key", 2)
        assert cache.get("Key") == 1
        assert cache.get("key") == 2
        assert cache.count() == 2

    def test_str_subclass_key_is_plain_str(self, cache: BaseCache) -> None:
        class Name(str):
            """A str subclass, as an enum or a typed key wrapper would be."""

        cache.put(Name("sub"), 1)
        assert cache.get("sub") == 1
        keys = list(cache.keys())
        assert keys == ["sub"]
        assert type(keys[0]) is str

    def test_count_and_keys_on_empty_cache(self, cache: BaseCache) -> None:
        assert cache.count() == 0
        assert list(cache.keys()) == []
        assert cache.get_all() == {}
        assert cache.clear() == 0

    def test_keys_returns_an_iterator_of_str(self, cache: BaseCache) -> None:
        cache.put_many({f"k{i}": i for i in range(5)})
        keys = cache.keys()
        assert iter(keys) is keys
        listed = list(keys)
        assert sorted(listed) == [f"k{i}" for i in range(5)]
        assert all(type(k) is str for k in listed)

    def test_get_all_returns_values(self, cache: BaseCache) -> None:
        cache.put_many({"a": 1, "b": [2], "c": None})
        assert cache.get_all() == {"a": 1, "b": [2], "c": None}

    def test_clear_returns_number_removed(self, cache: BaseCache) -> None:
        cache.put_many({f"k{i}": i for i in range(7)})
        assert cache.clear() == 7
        assert cache.count() == 0
        assert cache.clear() == 0

    def test_clear_then_reuse(self, cache: BaseCache) -> None:
        cache.put("k", 1)
        cache.clear()
        cache.put("k", 2)
        assert cache.get("k") == 2


class KeyTests(ConformanceBase):
    """Unusual but valid keys must round-trip through every operation; invalid ones fail."""

    @pytest.mark.parametrize("key", list(ODD_KEYS.values()), ids=list(ODD_KEYS))
    def test_odd_key_roundtrip(self, cache: BaseCache, key: str) -> None:
        cache.put(key, {"key": key})
        assert cache.exists(key)
        assert cache.get(key) == {"key": key}
        assert list(cache.keys()) == [key]
        assert cache.get_many([key]) == {key: {"key": key}}
        assert cache.get_all() == {key: {"key": key}}
        assert cache.metadata(key).hit_count >= int(cache.counts_hits)
        assert cache.delete(key) is True
        assert cache.exists(key) is False

    def test_long_keys_sharing_a_prefix_stay_distinct(self, cache: BaseCache) -> None:
        # Providers that hash long keys must not truncate: these differ only at the end.
        base = "p" * 9_000
        keys = [base + suffix for suffix in ("a", "b", "c")]
        for i, key in enumerate(keys):
            cache.put(key, i)
        assert [cache.get(key) for key in keys] == [0, 1, 2]
        assert sorted(cache.keys()) == sorted(keys)
        assert cache.delete(keys[1]) is True
        assert sorted(cache.keys()) == [keys[0], keys[2]]

    def test_long_key_is_filterable(self, cache: BaseCache) -> None:
        key = "long:" + "z" * 5_000
        cache.put(key, 1)
        cache.put("short", 2)
        assert list(cache.keys("long:*")) == [key]
        assert cache.count("*z") == 1
        assert cache.clear("long:*") == 1
        assert list(cache.keys()) == ["short"]

    def test_many_odd_keys_together(self, cache: BaseCache) -> None:
        cache.put_many({key: name for name, key in ODD_KEYS.items()})
        assert sorted(cache.keys()) == sorted(ODD_KEYS.values())
        assert cache.get_all() == {key: name for name, key in ODD_KEYS.items()}

    @pytest.mark.parametrize(
        "call",
        [
            pytest.param(lambda c, k: c.get(k), id="get"),
            pytest.param(lambda c, k: c.put(k, 1), id="put"),
            pytest.param(lambda c, k: c.exists(k), id="exists"),
            pytest.param(lambda c, k: c.delete(k), id="delete"),
            pytest.param(lambda c, k: c.add(k, 1), id="add"),
            pytest.param(lambda c, k: c.incr(k), id="incr"),
            pytest.param(lambda c, k: c.touch(k), id="touch"),
            pytest.param(lambda c, k: c.metadata(k), id="metadata"),
            pytest.param(lambda c, k: c.get_many(["ok", k]), id="get_many"),
            pytest.param(lambda c, k: c.put_many({"ok": 1, k: 2}), id="put_many"),
            pytest.param(lambda c, k: c.delete_many(["ok", k]), id="delete_many"),
            pytest.param(lambda c, k: c.get_or_set(k, lambda: 1), id="get_or_set"),
        ],
    )
    @pytest.mark.parametrize("bad", ["", 42, None, b"bytes"], ids=["empty", "int", "none", "bytes"])
    def test_invalid_key_rejected(self, cache: BaseCache, call: Any, bad: Any) -> None:
        cache.put("ok", 0)
        with pytest.raises(InvalidKeyError):
            call(cache, bad)
        # The whole call was refused: the valid key beside the bad one is untouched.
        assert cache.get("ok") == 0
        assert list(cache.keys()) == ["ok"]

    def test_too_long_key_rejected(self, cache: BaseCache) -> None:
        with pytest.raises(InvalidKeyError, match=str(MAX_KEY_LENGTH)):
            cache.put("x" * (MAX_KEY_LENGTH + 1), 1)
        assert cache.count() == 0

    def test_lone_surrogate_key_rejected(self, cache: BaseCache) -> None:
        with pytest.raises(InvalidKeyError):
            cache.put("bad\ud800key", 1)
        assert cache.count() == 0


class LifecycleTests(ConformanceBase):
    """close() releases resources; the cache reconnects lazily when used again."""

    def test_construction_does_not_need_use(self, make_cache: CacheFactory) -> None:
        cache = make_cache()
        cache.close()  # closing a never-used cache is harmless

    def test_close_then_reuse(self, cache: BaseCache) -> None:
        cache.put("k", 1)
        cache.close()
        assert cache.get("k") == 1
        cache.put("k2", 2)
        assert sorted(cache.keys()) == ["k", "k2"]

    def test_close_twice(self, cache: BaseCache) -> None:
        cache.put("k", 1)
        cache.close()
        cache.close()
        assert cache.exists("k")

    def test_context_manager_returns_the_cache(self, make_cache: CacheFactory) -> None:
        cache = make_cache()
        with cache as entered:
            assert entered is cache
            entered.put("k", "v")
        # __exit__ closed it; using it again reconnects.
        assert cache.get("k") == "v"

    def test_context_manager_closes_on_error(self, make_cache: CacheFactory) -> None:
        cache = make_cache()
        with pytest.raises(RuntimeError), cache:
            cache.put("k", 1)
            raise RuntimeError("boom")
        assert cache.get("k") == 1

    def test_second_instance_sees_data(self, make_cache: CacheFactory, namespace: str) -> None:
        writer = make_cache()
        writer.put("shared", [1, 2])
        reader = make_cache(namespace=namespace)
        assert reader is not writer
        assert reader.get("shared") == [1, 2]
        reader.delete("shared")
        assert writer.exists("shared") is False

    def test_name_is_kept(self, make_cache: CacheFactory) -> None:
        cache = make_cache(name="conformance-name")
        assert cache.name == "conformance-name"
        with pytest.raises(CacheKeyError, match="conformance-name"):
            cache.get("absent", throw_when_not_exist=True)
