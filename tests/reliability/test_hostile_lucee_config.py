"""Hostile Lucee-style configurations: many spellings, huge names, secrets in collisions.

Each case runs in a bounded child (:func:`reliability.sandbox.run_bounded`): loading must
end in a value or a typed ConfigError, fast and small, and never show a secret.
"""

from __future__ import annotations

from typing import Any

import pytest

from .sandbox import assert_contained, run_bounded

SECRET = "Hostile-Lucee-Secret-4242"
LUCEE_REDIS = "lucee.extension.io.cache.redis.RedisCache"


def build_and_describe(entry: dict[str, Any]) -> dict[str, Any]:
    """Child: build the cache of ``entry`` and return what a caller could see of it."""
    from cachehub.registry import Caches

    caches = Caches({"c": entry})
    cache = caches["c"]
    shown = repr(caches) + repr(cache)
    return {"secret_shown": SECRET in shown, "namespace_length": len(cache.namespace)}


def _spellings(word: str, count: int) -> list[str]:
    """``count`` distinct capitalisations of ``word`` (binary patterns over its letters)."""
    out = []
    for n in range(count):
        chars = [c.upper() if (n >> i) & 1 else c.lower() for i, c in enumerate(word)]
        out.append("".join(chars))
    return out


CASES = {
    # 2**14 spellings of one ignored Lucee setting: one warning, of bounded size.
    "many-spellings-of-an-ignored-setting": {
        "class": LUCEE_REDIS,
        "custom": dict.fromkeys(_spellings("connectiontimeout", 2**14), "5000"),
    },
    # The same password under many spellings, one of them different: a typed error
    # naming two spellings, never the values.
    "colliding-secret-spellings": {
        "class": "redis",
        "custom": {
            **dict.fromkeys(_spellings("password", 200), SECRET),
            "PASSWORD": SECRET + "-other",
        },
    },
    # A setting name of a megabyte: refused with a short message.
    "huge-unknown-name": {"class": LUCEE_REDIS, "custom": {"x" * 1_000_000: "1"}},
    # A megabyte keyPrefix: a namespace longer than any key may be, refused (not a crash).
    "huge-key-prefix": {"class": LUCEE_REDIS, "custom": {"keyPrefix": "p" * 1_000_000}},
    # A socketTimeout far beyond a float: a typed error.
    "socket-timeout-overflow": {
        "class": LUCEE_REDIS,
        "custom": {"socketTimeout": "9" * 400, "password": SECRET},
    },
}


EXPECTED = {
    "many-spellings-of-an-ignored-setting": "value",
    "colliding-secret-spellings": "both set 'password'",
    "huge-unknown-name": "unknown setting 'xxxxx",
    "huge-key-prefix": "'namespace' is 1,000,001 characters long",
    "socket-timeout-overflow": "Lucee setting 'socketTimeout'",
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_lucee_config_is_contained(name: str) -> None:
    outcome = run_bounded(build_and_describe, CASES[name], memory_mb=384, seconds=60)
    assert_contained(outcome, errors=("ConfigError",), forbidden=(SECRET,))
    expected = EXPECTED[name]
    if expected == "value":
        assert outcome.kind == "value", outcome.describe()
        assert outcome.value["secret_shown"] is False
    else:
        assert expected in outcome.message, outcome.describe()
    # Messages and log records stay short, however many or long the names are.
    for text in outcome.texts:
        assert len(text) < 20_000, f"{name}: {len(text)} characters shown"
