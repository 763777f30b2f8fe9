"""Conformance: Lucee wildcard filters on keys/get_all/count/clear, and namespace isolation."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from cachehub.api import BaseCache
from cachehub.errors import CacheValueError

from .support import CacheFactory, ConformanceBase

__all__ = ["FILTER_CASES", "FILTER_KEYS", "FilterTests", "NamespaceTests"]

FILTER_KEYS: tuple[str, ...] = (
    "user_1",
    "user_2",
    "user_10",
    "User_3",
    "admin_1",
    "session:abc",
    "session:abd",
    "a.b",
    "axb",
    "a+b",
    "aab",
    "a[b]",
    "a(b)",
    "^a$",
    "a\\b",
    "a|b",
    "a{2}",
    "star*key",
    "starXkey",
    "q?key",
    "qxkey",
    "x",
    "ünï_1",
    "日本:鍵",
    "50%",
    "500",
    "userX1",
)
"""The keys each filter case runs against: regex and glob metacharacters included."""

_ALL = frozenset(FILTER_KEYS)

FILTER_CASES: dict[str, tuple[str | None, frozenset[str]]] = {
    "none": (None, _ALL),
    "empty_string": ("", _ALL),
    "star": ("*", _ALL),
    "double_star": ("**", _ALL),
    "prefix": ("user_*", frozenset({"user_1", "user_2", "user_10"})),
    "prefix_case_sensitive": ("User_*", frozenset({"User_3"})),
    "lowercase_prefix_misses_uppercase": (
        "user*",
        frozenset({"user_1", "user_2", "user_10", "userX1"}),
    ),
    "underscore_is_literal": ("user_1*", frozenset({"user_1", "user_10"})),
    "question_one_char": ("user_?", frozenset({"user_1", "user_2"})),
    "question_two_chars": ("user_??", frozenset({"user_10"})),
    "single_question": ("?", frozenset({"x"})),
    "suffix": ("*_1", frozenset({"user_1", "admin_1", "ünï_1"})),
    "infix": ("*min*", frozenset({"admin_1"})),
    "exact_without_wildcard": ("user_1", frozenset({"user_1"})),
    "no_wildcard_no_match": ("user_", frozenset()),
    "no_match": ("nomatch*", frozenset()),
    "colon_prefix": ("session:*", frozenset({"session:abc", "session:abd"})),
    "inner_question": ("session:ab?", frozenset({"session:abc", "session:abd"})),
    "dot_is_literal": ("a.b", frozenset({"a.b"})),
    "plus_is_literal": ("a+b", frozenset({"a+b"})),
    "brackets_are_literal": ("a[b]", frozenset({"a[b]"})),
    "parens_are_literal": ("a(b)", frozenset({"a(b)"})),
    "anchors_are_literal": ("^a$", frozenset({"^a$"})),
    "backslash_is_literal": ("a\\b", frozenset({"a\\b"})),
    "pipe_is_literal": ("a|b", frozenset({"a|b"})),
    "braces_are_literal": ("a{2}", frozenset({"a{2}"})),
    "percent_is_literal": ("50%", frozenset({"50%"})),
    "regex_chars_with_wildcard": ("a?b", frozenset({"a.b", "axb", "a+b", "aab", "a\\b", "a|b"})),
    "star_in_key_and_pattern": ("star*key", frozenset({"star*key", "starXkey"})),
    "question_in_key_and_pattern": ("q?key", frozenset({"q?key", "qxkey"})),
    "bracket_prefix": ("a[*", frozenset({"a[b]"})),
    "unicode_prefix": ("ünï*", frozenset({"ünï_1"})),
    "unicode_infix": ("*:鍵", frozenset({"日本:鍵"})),
    "leading_and_trailing_star": ("*ession:ab*", frozenset({"session:abc", "session:abd"})),
    "star_between": ("s*c", frozenset({"session:abc"})),
}
"""``name: (pattern, keys it selects out of FILTER_KEYS)``."""


def _apply(cache: BaseCache, op: str, pattern: str | None) -> frozenset[str]:
    """Run filtered ``op`` and return the keys it selected (checking its own result)."""
    if op == "keys":
        listed = list(cache.keys(pattern))
        assert len(listed) == len(set(listed)), "keys() yielded a key twice"
        return frozenset(listed)
    if op == "get_all":
        found = cache.get_all(pattern)
        assert all(found[k] == f"value of {k}" for k in found)
        return frozenset(found)
    if op == "count":
        # count alone cannot say which keys matched: compare numbers, then trust keys().
        number = cache.count(pattern)
        matched = frozenset(cache.keys(pattern))
        assert number == len(matched)
        return matched
    assert op == "clear"
    removed = cache.clear(pattern)
    selected = _ALL - frozenset(cache.keys())
    assert removed == len(selected)
    return selected


class FilterTests(ConformanceBase):
    """Every filter case through every filtered operation."""

    @pytest.fixture
    def filled(self, cache: BaseCache) -> BaseCache:
        cache.put_many({key: f"value of {key}" for key in FILTER_KEYS})
        return cache

    @pytest.mark.parametrize("op", ["keys", "get_all", "count", "clear"])
    @pytest.mark.parametrize("case", list(FILTER_CASES))
    def test_filter(self, filled: BaseCache, case: str, op: str) -> None:
        pattern, expected = FILTER_CASES[case]
        assert _apply(filled, op, pattern) == expected

    def test_clear_with_filter_leaves_others(self, filled: BaseCache) -> None:
        assert filled.clear("user_*") == 3
        assert frozenset(filled.keys()) == _ALL - {"user_1", "user_2", "user_10"}
        assert filled.get("admin_1") == "value of admin_1"

    def test_clear_filter_matching_nothing(self, filled: BaseCache) -> None:
        assert filled.clear("zzz*") == 0
        assert filled.count() == len(FILTER_KEYS)

    @pytest.mark.parametrize("bad", [42, b"user_*", ["user_*"]], ids=["int", "bytes", "list"])
    def test_non_string_filter_rejected(self, filled: BaseCache, bad: Any) -> None:
        with pytest.raises(CacheValueError):
            filled.count(bad)
        with pytest.raises(CacheValueError):
            filled.clear(bad)
        with pytest.raises(CacheValueError):
            list(filled.keys(bad))
        with pytest.raises(CacheValueError):
            filled.get_all(bad)
        assert filled.count() == len(FILTER_KEYS)

    @pytest.mark.parametrize("bad", ["user_\udcff*", "*\ud800?"], ids=["low", "high"])
    def test_filter_with_a_lone_surrogate_rejected(self, filled: BaseCache, bad: str) -> None:
        # No key can hold one (keys must encode as UTF-8), and a backend that is sent the
        # pattern cannot encode it either: the same typed refusal everywhere, not a
        # provider's encoding failure (Redis) or a silent "nothing matched" (others).
        for call in (filled.count, filled.clear, filled.keys, filled.get_all):
            with pytest.raises(CacheValueError, match="surrogate"):
                call(bad)
        assert filled.count() == len(FILTER_KEYS)

    def test_filter_over_many_keys(self, cache: BaseCache) -> None:
        # Enough keys to need several pages/chunks on paginating backends.
        cache.put_many({f"item:{i:04d}": i for i in range(1_200)})
        cache.put_many({f"other:{i}": i for i in range(30)})
        assert cache.count("item:*") == 1_200
        assert cache.count("item:00??") == 100
        assert len(cache.get_all("item:1*")) == 200
        assert cache.clear("item:*") == 1_200
        assert cache.count() == 30

    def test_keys_while_the_loop_writes(self, cache: BaseCache) -> None:
        """Writes during the iteration never hide a key that stays (as Redis SCAN promises).

        Keys added or removed meanwhile may or may not come; a kept key may come twice on
        backends that say so (SCAN), which a set absorbs.
        """
        keep = {f"keep:{i:03d}" for i in range(200)}
        drop = {f"drop:{i:03d}" for i in range(200)}
        cache.put_many(dict.fromkeys(keep, 0))
        cache.put_many(dict.fromkeys(drop, 0))
        seen: set[str] = set()
        added: set[str] = set()
        for n, key in enumerate(cache.keys(None)):
            seen.add(key)
            if key in drop:
                cache.delete(key)  # a removal behind the iteration
            elif n % 2:
                cache.put(key, n)  # a rewrite in place
            if n % 4 == 0:
                added.add(f"new:{n}")
                cache.put(f"new:{n}", n)  # an insertion
        assert keep <= seen
        assert seen <= keep | drop | added
        assert cache.count("drop:*") == 0  # each drop key stayed until it was returned
        assert cache.count("keep:*") == len(keep)


class NamespaceTests(ConformanceBase):
    """Caches with different namespaces on one backend.

    A namespace is a plain prefix of every storage key, used as given. So namespaces
    that are not prefixes of one another (``<base>a:`` and ``<base>ab:`` share leading
    characters, but neither starts with the other) are fully isolated, while a nested
    namespace (``<base>`` and ``<base>x:``) is a *view* into its parent: the parent sees
    the child's entries under ``x:<key>``, and the child sees only those.
    """

    @pytest.fixture
    def pair(self, make_cache: CacheFactory, namespace: str) -> tuple[BaseCache, BaseCache]:
        first = make_cache(namespace=namespace + "a:")
        second = make_cache(namespace=namespace + "ab:")
        first.put_many({"k1": "first-1", "k2": "first-2", "shared": "first"})
        second.put_many({"k3": "second-3", "shared": "second"})
        return first, second

    def test_siblings_get_and_exists(self, pair: tuple[BaseCache, BaseCache]) -> None:
        first, second = pair
        assert first.get("shared") == "first"
        assert second.get("shared") == "second"
        assert first.exists("k3") is False
        assert second.exists("k1") is False

    def test_siblings_keys_count_get_all(self, pair: tuple[BaseCache, BaseCache]) -> None:
        first, second = pair
        assert sorted(first.keys()) == ["k1", "k2", "shared"]
        assert sorted(second.keys()) == ["k3", "shared"]
        assert first.count() == 3
        assert second.count() == 2
        assert second.get_all() == {"k3": "second-3", "shared": "second"}
        assert first.count("k*") == 2
        assert second.count("b:*") == 0

    def test_siblings_clear(self, pair: tuple[BaseCache, BaseCache]) -> None:
        first, second = pair
        assert first.clear() == 3
        assert second.count() == 2
        assert second.get("shared") == "second"

    def test_siblings_clear_filter(self, pair: tuple[BaseCache, BaseCache]) -> None:
        first, second = pair
        assert second.clear("shared") == 1
        assert first.get("shared") == "first"

    def test_siblings_delete_and_batch(self, pair: tuple[BaseCache, BaseCache]) -> None:
        first, second = pair
        assert first.delete("k3") is False
        assert first.delete_many(["k3", "shared"]) == 1
        assert second.get_many(["k1", "k3", "shared"]) == {"k3": "second-3", "shared": "second"}

    def test_siblings_counters_and_add(self, pair: tuple[BaseCache, BaseCache]) -> None:
        first, second = pair
        assert first.add("only", 1) is True
        assert second.add("only", 2) is True
        assert first.incr("n", 5) == 5
        assert second.incr("n") == 1
        assert (first.get("only"), second.get("only")) == (1, 2)

    def test_siblings_locks(self, pair: tuple[BaseCache, BaseCache]) -> None:
        first, second = pair
        with first.lock("job", timeout=0), second.lock("job", timeout=0):
            assert first.lock("job").acquire(blocking=False) is False

    def test_nested_namespace_is_a_view(self, make_cache: CacheFactory, namespace: str) -> None:
        parent = make_cache(namespace=namespace)
        child = make_cache(namespace=namespace + "x:")
        parent.put("top", 1)
        child.put("inner", 2)
        assert list(child.keys()) == ["inner"]
        assert child.get_all() == {"inner": 2}
        assert child.exists("top") is False
        assert sorted(parent.keys()) == ["top", "x:inner"]
        assert parent.get("x:inner") == 2

    def test_nested_child_clear_spares_parent(
        self, make_cache: CacheFactory, namespace: str
    ) -> None:
        parent = make_cache(namespace=namespace)
        child = make_cache(namespace=namespace + "x:")
        parent.put_many({"top": 1, "xylophone": 2})
        child.put("inner", 3)
        assert child.clear() == 1
        assert sorted(parent.keys()) == ["top", "xylophone"]

    def test_namespace_with_metacharacters(self, make_cache: CacheFactory, namespace: str) -> None:
        # Glob/regex characters in a namespace are literal: this one, read as a glob,
        # would also match the sibling below.
        odd = make_cache(namespace=namespace + "a*[x]?.+:")
        sibling = make_cache(namespace=namespace + "aZx!.+:")
        odd.put("k", 1)
        sibling.put_many({"k": 2, "j": 3})
        assert list(odd.keys()) == ["k"]
        assert odd.count() == 1
        assert odd.count("*") == 1
        assert odd.clear() == 1
        assert sibling.count() == 2

    def test_empty_namespace_sees_everything_it_wrote(self, make_cache: CacheFactory) -> None:
        # Without a namespace the cache sees the whole backend, so only look up own keys.
        bare = make_cache(namespace="")
        key = f"no-namespace-{uuid.uuid4().hex}"
        bare.put(key, 1)
        try:
            assert bare.get(key) == 1
            assert key in set(bare.keys(key))
        finally:
            bare.delete(key)
