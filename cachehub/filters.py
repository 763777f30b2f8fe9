"""Lucee-style key filters: ``*`` matches any run of characters, ``?`` exactly one.

Matching is case-sensitive (unlike Lucee's EHCache) so that every provider can push the
literal prefix of a pattern down to the server (DynamoDB ``begins_with``, Redis ``SCAN MATCH``).

Matching never backtracks across a ``*``: a pattern is split at its stars into segments of
literals and ``?`` (each of fixed width), and the segments are found left to right, each
at its leftmost place after the previous one. For ``*``-separated segments the leftmost
place is always the right one (a later place only leaves less room for the segments that
follow), so one pass decides. A key of ``n`` characters against a pattern of ``m`` costs at
most ``O(n·m)`` character comparisons, whatever the pattern; a ``re`` translation of ``*``
to ``.*`` backtracks instead, and ``*a*a*a*b`` against a long run of ``a`` took seconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from .errors import CacheValueError

__all__ = ["WILDCARDS", "GlobMatcher", "KeyFilter", "compile_filter"]

WILDCARDS = frozenset("*?")
"""The filter wildcards: ``*`` (any run of characters) and ``?`` (one character)."""


@dataclass(frozen=True, slots=True)
class _Segment:
    """A run of literals and ``?`` between two stars: a fixed number of characters.

    ``search`` is a regex of literals and ``.`` only: no repetition and no alternation,
    so ``re`` tries each start position once, at most ``width`` steps per try.
    """

    width: int
    search: re.Pattern[str]


def _segment(tokens: list[str]) -> _Segment:
    body = "".join("." if t == "?" else re.escape(t) for t in tokens)
    width = sum(1 if t == "?" else len(t) for t in tokens)
    return _Segment(width, re.compile(body, re.DOTALL))


@dataclass(frozen=True, slots=True)
class GlobMatcher:
    """A linear-time matcher for the part of a filter after its literal prefix.

    ``head`` must match right at the start, ``tail`` right at the end, and each of
    ``middle`` somewhere in between, in order, without overlapping. ``star`` says whether
    the pattern had any ``*`` (without one, ``head`` must cover the whole key).
    """

    head: _Segment | None
    middle: tuple[_Segment, ...]
    tail: _Segment | None
    star: bool

    @classmethod
    def from_tokens(cls, tokens: tuple[str, ...]) -> GlobMatcher:
        """Build the matcher of a tokenized pattern (see :func:`_tokenize`)."""
        parts: list[list[str]] = [[]]
        for part in tokens:
            if part == "*":
                parts.append([])
            else:
                parts[-1].append(part)
        segments = [_segment(p) if p else None for p in parts]
        if len(segments) == 1:
            return cls(segments[0], (), None, star=False)
        middle = tuple(s for s in segments[1:-1] if s is not None)
        return cls(segments[0], middle, segments[-1], star=True)

    def matches(self, key: str, start: int = 0) -> bool:
        """Whether ``key[start:]`` matches: at most ``O(len(key) * pattern length)``."""
        end = len(key)
        pos = start
        head = self.head
        if head is not None:
            if head.search.match(key, pos) is None:
                return False
            pos += head.width
        if not self.star:
            return pos == end
        tail = self.tail
        # The tail is anchored at the end: the middle segments must fit before it.
        limit = end if tail is None else end - tail.width
        if limit < pos:
            return False
        for segment in self.middle:
            # Each search starts where the previous segment ended and never looks back.
            found = segment.search.search(key, pos, limit)
            if found is None:
                return False
            pos = found.end()
        return tail is None or tail.search.match(key, limit) is not None


@dataclass(frozen=True, slots=True)
class KeyFilter:
    """A compiled filter over *storage* keys (namespace already prepended).

    ``prefix`` is the literal part before the first wildcard: providers use it for a
    server-side prefix scan. ``tokens`` lets a provider rebuild the pattern in its own
    glob dialect. ``matcher`` decides the rest of the key after ``prefix`` (None: the
    prefix test alone is exact, see :attr:`prefix_only`).
    """

    pattern: str | None
    namespace: str
    prefix: str
    tokens: tuple[str, ...]
    matcher: GlobMatcher | None = field(compare=False)

    @property
    def match_all(self) -> bool:
        """True when every key of the namespace matches (no pattern, or only ``*``)."""
        return self.matcher is None and self.prefix == self.namespace

    @property
    def prefix_only(self) -> bool:
        """True when a key matches exactly when it starts with :attr:`prefix`.

        Then a server-side prefix scan (``begins_with``) is the whole filter.
        """
        return self.matcher is None

    def matches(self, storage_key: str) -> bool:
        """Whether ``storage_key`` (namespaced) is selected by this filter (linear time)."""
        if not storage_key.startswith(self.prefix):
            return False
        return self.matcher is None or self.matcher.matches(storage_key, len(self.prefix))


def _tokenize(pattern: str) -> tuple[str, ...]:
    tokens: list[str] = []
    literal: list[str] = []
    for ch in pattern:
        if ch in WILDCARDS:
            if literal:
                tokens.append("".join(literal))
                literal = []
            if not (ch == "*" and tokens and tokens[-1] == "*"):  # "**" == "*"
                tokens.append(ch)
        else:
            literal.append(ch)
    if literal:
        tokens.append("".join(literal))
    return tuple(tokens)


def compile_filter(pattern: str | None, namespace: str = "") -> KeyFilter:
    """Compile a Lucee wildcard ``pattern`` for keys stored under ``namespace``.

    ``None``, ``""`` and ``"*"`` select everything in the namespace. Matching a key of
    ``n`` characters costs ``O(n·m)`` at worst for a pattern of ``m`` (no backtracking).
    """
    # Checked before the cache lookup: an unhashable pattern must get the typed error.
    if pattern is not None and type(pattern) is not str:
        raise CacheValueError(
            f"filter must be a string such as 'user_*', got {type(pattern).__name__}.",
            hint="pass a str pattern using * and ? wildcards, or None for all keys.",
        )
    if pattern and not pattern.isascii():
        try:
            pattern.encode()
        except UnicodeEncodeError:
            # As for keys (BaseCache._sk): none can hold one, and a backend sent the
            # pattern could not encode it either.
            raise CacheValueError(
                "filter contains a lone surrogate and cannot be encoded as UTF-8.",
                hint="pass a valid Unicode string (no key can contain a lone surrogate).",
            ) from None
    return _compile(pattern, namespace)


@lru_cache(maxsize=256)
def _compile(pattern: str | None, namespace: str) -> KeyFilter:
    if not pattern or pattern.strip("*") == "":
        return KeyFilter(pattern or None, namespace, namespace, ("*",), None)
    tokens = _tokenize(pattern)
    prefix = namespace
    rest = tokens
    if tokens[0] not in WILDCARDS:
        prefix += tokens[0]
        rest = tokens[1:]
    # A plain "prefix*" needs no matcher: the prefix test alone is exact.
    matcher = None if rest == ("*",) else GlobMatcher.from_tokens(rest)
    return KeyFilter(pattern, namespace, prefix, tokens, matcher)
