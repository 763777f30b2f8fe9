"""Lucee-style key filters: ``*`` matches any run of characters, ``?`` exactly one.

Matching is case-sensitive (unlike Lucee's EHCache) so that every provider can push the
literal prefix of a pattern down to the server (DynamoDB ``begins_with``, Redis ``SCAN MATCH``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from .errors import CacheValueError

__all__ = ["KeyFilter", "compile_filter"]

WILDCARDS = frozenset("*?")


@dataclass(frozen=True, slots=True)
class KeyFilter:
    """A compiled filter over *storage* keys (namespace already prepended).

    ``prefix`` is the literal part before the first wildcard: providers use it for a
    server-side prefix scan. ``tokens`` lets a provider rebuild the pattern in its own
    glob dialect. ``regex`` is the exact, authoritative match.
    """

    pattern: str | None
    namespace: str
    prefix: str
    tokens: tuple[str, ...]
    regex: re.Pattern[str] | None = field(compare=False)

    @property
    def match_all(self) -> bool:
        """True when every key of the namespace matches (no pattern, or only ``*``)."""
        return self.regex is None and self.prefix == self.namespace

    def matches(self, storage_key: str) -> bool:
        """Whether ``storage_key`` (namespaced) is selected by this filter."""
        if not storage_key.startswith(self.prefix):
            return False
        return self.regex is None or self.regex.fullmatch(storage_key) is not None


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

    ``None``, ``""`` and ``"*"`` select everything in the namespace.
    """
    # Checked before the cache lookup: an unhashable pattern must get the typed error.
    if pattern is not None and type(pattern) is not str:
        raise CacheValueError(
            f"filter must be a string such as 'user_*', got {type(pattern).__name__}.",
            hint="pass a str pattern using * and ? wildcards, or None for all keys.",
        )
    return _compile(pattern, namespace)


@lru_cache(maxsize=256)
def _compile(pattern: str | None, namespace: str) -> KeyFilter:
    if not pattern or pattern.strip("*") == "":
        return KeyFilter(pattern or None, namespace, namespace, ("*",), None)
    tokens = _tokenize(pattern)
    prefix = namespace
    if tokens[0] not in WILDCARDS:
        prefix += tokens[0]
    if len(tokens) == 2 and tokens[1] == "*" and tokens[0] not in WILDCARDS:
        regex = None  # plain "prefix*": the prefix test alone is exact
    else:
        body = "".join(".*" if t == "*" else "." if t == "?" else re.escape(t) for t in tokens)
        regex = re.compile(re.escape(namespace) + body, re.DOTALL)
    return KeyFilter(pattern, namespace, prefix, tokens, regex)
