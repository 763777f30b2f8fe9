"""Key filters: the linear-time glob matcher keeps the regex semantics it replaced."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cachehub.filters import GlobMatcher, KeyFilter, compile_filter


def _reference(pattern: str | None, namespace: str, key: str) -> bool:
    """The former implementation: ``*`` -> ``.*``, ``?`` -> ``.``, DOTALL, full match."""
    if not pattern or pattern.strip("*") == "":
        return key.startswith(namespace)
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(re.escape(namespace) + body, key, re.DOTALL) is not None


_ALPHABET = st.sampled_from(["a", "b", "*", "?", "\n", ".", "\\", "𝄞"])
_KEY_CHARS = st.sampled_from(["a", "b", "*", "?", "\n", ".", "\\", "𝄞"])


@settings(max_examples=1000, deadline=None)
@given(
    pattern=st.lists(_ALPHABET, max_size=9).map("".join),
    namespace=st.sampled_from(["", "a", "n*:", "a?"]),
    rest=st.lists(_KEY_CHARS, max_size=12).map("".join),
    prefixed=st.booleans(),
)
def test_matches_exactly_what_the_regex_matched(
    pattern: str, namespace: str, rest: str, prefixed: bool
) -> None:
    key = namespace + rest if prefixed else rest
    flt = compile_filter(pattern, namespace)
    assert flt.matches(key) == _reference(pattern, namespace, key)


@pytest.mark.parametrize(
    ("pattern", "key", "expected"),
    [
        ("a*b", "ab", True),
        ("a*b", "a\nb", True),  # * spans newlines
        ("a?b", "a\nb", True),  # ? is any one character, newline included
        ("?", "𝄞", True),  # one character, not one byte or code unit
        ("??", "𝄞", False),
        ("A*", "abc", False),  # case-sensitive
        ("*a", "ba\n", False),  # anchored at the end: no $-before-newline slack
        ("a.b", "axb", False),  # regex metacharacters are literal
        ("*a?a*", "aa", False),
        ("*a?a*", "aba", True),
        ("a*a", "a", False),  # head and tail cannot overlap
        ("**?**", "", False),
        ("abc", "abcd", False),
    ],
)
def test_semantics(pattern: str, key: str, expected: bool) -> None:
    assert compile_filter(pattern).matches(key) is expected


class _Counting:
    """A segment regex that counts the searches made with it."""

    calls = 0

    def __init__(self, compiled: re.Pattern[str]) -> None:
        self.compiled = compiled

    def search(self, *args: Any) -> Any:
        _Counting.calls += 1
        return self.compiled.search(*args)

    def match(self, *args: Any) -> Any:
        _Counting.calls += 1
        return self.compiled.match(*args)


def _counted(flt: KeyFilter) -> KeyFilter:
    matcher = flt.matcher
    assert matcher is not None

    def wrap(segment: Any) -> Any:
        return None if segment is None else replace(segment, search=_Counting(segment.search))

    counted = GlobMatcher(
        wrap(matcher.head),
        tuple(wrap(s) for s in matcher.middle),
        wrap(matcher.tail),
        matcher.star,
    )
    return replace(flt, matcher=counted)


@pytest.mark.parametrize(
    "pattern", ["*a" * 14 + "*b", "*" + "a?" * 14 + "b", "*a*?" * 7 + "b", "?*a*?*a*b?"]
)
@pytest.mark.parametrize("key", ["a" * 50_000, "ab" * 25_000, "a" * 49_999 + "b"])
def test_each_segment_is_searched_at_most_once(pattern: str, key: str) -> None:
    """No backtracking: one regex call per ``*``-separated segment, whatever the key.

    Each call is a regex of literals and ``.`` only (no repetition), which ``re`` runs
    in at most ``len(key) * segment width`` steps: the whole match is ``O(n * m)``.
    """
    flt = _counted(compile_filter(pattern))
    assert flt.matcher is not None
    segments = len(flt.matcher.middle) + 2
    _Counting.calls = 0
    flt.matches(key)
    assert _Counting.calls <= segments
    assert _Counting.calls <= pattern.count("*") + 1


def test_prefix_only_filters_need_no_matcher() -> None:
    assert compile_filter("user_*", "app:").prefix_only
    assert compile_filter("user_*", "app:").prefix == "app:user_"
    assert compile_filter("user_**", "app:").prefix_only  # "**" is "*"
    assert compile_filter(None, "app:").match_all
    assert compile_filter("**", "app:").match_all
    # Only the namespace itself is everything: a longer literal prefix is a real filter.
    assert not compile_filter("user_*", "app:").match_all
    assert not compile_filter("user_*", "").match_all
    assert not compile_filter("user_*x", "app:").prefix_only
    assert not compile_filter("user_?", "app:").prefix_only
    assert not compile_filter("user", "app:").prefix_only  # exact: "user_1" must not match
    assert not compile_filter("user", "app:").matches("app:user_1")
    assert compile_filter("user", "app:").matches("app:user")
