"""Machinery of the bad-input corpus: a table of cases and the checks every case gets.

A :class:`Case` names the input, the exact :class:`~cachehub.errors.CacheError` subclass
it must raise, and fragments the message must contain (so it says what is wrong).
:func:`check` runs a case and also asserts that no configured secret (they all contain
:data:`~.conftest.SECRET_MARK`) appears in the exception, its causes, ``repr`` of any
cache or registry involved, or any log record captured at DEBUG, and that no planted
pickle ran.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import boto3
import pytest
from cachehub_redis.entry import KIND_CODEC, pack

from cachehub.api import BaseCache
from cachehub.codec import PickleCodec
from cachehub.errors import CacheError
from cachehub.provider import causes
from cachehub.registry import Caches

from .conftest import AWS_ACCESS_KEY_ID, AWS_SECRET_KEY, SECRET_MARK, SHARED_TABLE

OTHER_SIGNING_KEY: Final = "a-different-signing-key-4567"
"""The key of a foreign writer: its entries must be refused by our caches."""


class Exploit:
    """Unpickling this calls ``open(path, "w")``: the marker file appears if it ever runs."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def exploit_bytes(path: Path) -> bytes:
    """A raw pickle that creates ``path`` when loaded."""
    return pickle.dumps(Exploit(path), protocol=5)


def signed_with_other_key(value: Any) -> bytes:
    """A pickle-codec payload signed with :data:`OTHER_SIGNING_KEY`."""
    return PickleCodec(OTHER_SIGNING_KEY).dumps(value)


class Env:
    """What a case may use: provider caches, raw backend clients, files, hidden packages.

    Servers are requested lazily, so memory-only cases never start one.
    """

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path) -> None:
        self.request = request
        self.tmp = tmp_path
        self.marker = tmp_path / "planted-pickle-ran"
        self.shown: list[Any] = []
        """Caches and registries whose repr must stay secret-free."""

    # ------------------------------------------------------------------ caches

    def _build(self, fixture: str, **kwargs: Any) -> BaseCache:
        factory: Callable[..., BaseCache] = self.request.getfixturevalue(fixture)
        cache = factory(**kwargs)
        self.shown.append(cache)
        return cache

    def memory(self, **kwargs: Any) -> BaseCache:
        return self._build("memory_factory", **kwargs)

    def redis(self, **kwargs: Any) -> BaseCache:
        return self._build("redis_factory", **kwargs)

    def dynamo(self, **kwargs: Any) -> BaseCache:
        return self._build("dynamodb_factory", **kwargs)

    def registry(self, config: Any) -> Caches:
        """Load a configuration and build every cache (without connecting)."""
        caches = Caches(config)
        self.shown.append(caches)
        caches.validate()
        return caches

    def file(self, content: str | bytes, name: str = "caches.json") -> Path:
        path = self.tmp / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def hide(self, distribution: str, package: str) -> None:
        """Make a provider distribution look uninstalled (see tests/conftest.py)."""
        self.request.getfixturevalue("without_distribution")(distribution, package)

    @property
    def redis_endpoint(self) -> tuple[str, int]:
        server = self.request.getfixturevalue("redis_server")
        return server.host, server.port

    # ------------------------------------------------------------------ planting

    def plant_redis(self, cache: BaseCache, key: str, payload: bytes) -> None:
        """Write an entry directly, in the layout of docs/redis.md (header + codec bytes)."""
        now = time.time()
        client = self.request.getfixturevalue("redis_server").client()
        try:
            client.set(cache.namespace + key, pack(KIND_CODEC, payload, now, now, None, None))
        finally:
            client.close()

    def plant_dynamo(self, cache: BaseCache, key: str, payload: bytes) -> None:
        """Write an item directly, in the layout of docs/dynamodb.md (``value`` as B)."""
        local = self.request.getfixturevalue("local_dynamodb")
        self.request.getfixturevalue("shared_table")
        client = boto3.client(
            "dynamodb",
            endpoint_url=local.endpoint,
            region_name="us-east-1",
            aws_access_key_id=AWS_ACCESS_KEY_ID,
            aws_secret_access_key=AWS_SECRET_KEY,
        )
        now = {"N": f"{time.time():.6f}"}
        client.put_item(
            TableName=SHARED_TABLE,
            Item={
                "cacheKey": {"S": cache.namespace + key},
                "value": {"B": payload},
                "createdTime": now,
                "updatedTime": now,
                "lastAccessed": now,
                "hitCount": {"N": "0"},
            },
        )
        client.close()


Run = Callable[[Env], Any]
"""A case body: triggers the error using what :class:`Env` offers."""


@dataclass(frozen=True)
class Case:
    """One bad input: what to run, which error it must raise, what the message must say."""

    id: str
    error: type[CacheError]
    says: tuple[str, ...]
    run: Run
    bug: str | None = None
    """Set when the case fails because of a known bug elsewhere (strict xfail)."""


def params(cases: list[Case]) -> list[Any]:
    """pytest params with ids, known bugs marked ``xfail(strict=True)``."""
    ids = [case.id for case in cases]
    assert len(ids) == len(set(ids)), "duplicate case ids"
    return [
        pytest.param(
            case,
            id=case.id,
            marks=[pytest.mark.xfail(strict=True, reason=f"bug: {case.bug}")] if case.bug else [],
        )
        for case in cases
    ]


def check(case: Case, env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """Run ``case`` and assert everything the corpus promises about it."""
    caplog.set_level(logging.DEBUG)
    with pytest.raises(CacheError) as info:
        case.run(env)
    exc = info.value
    assert type(exc) is case.error, f"{type(exc).__name__}: {exc}"
    message = str(exc)
    for fragment in case.says:
        assert fragment in message, f"{fragment!r} not in {message!r}"

    texts = [message, repr(exc), "".join(traceback.format_exception(exc))]
    texts += [f"{type(e).__name__}: {e!s} {e!r}" for e in causes(exc)]
    texts += [repr(shown) for shown in env.shown]
    for record in caplog.records:
        texts.append(record.getMessage())
        if record.exc_info:
            texts.append("".join(traceback.format_exception(*record.exc_info)))
    leaked = [text for text in texts if SECRET_MARK in text]
    assert leaked == [], f"a secret leaked: {leaked[0][:300]!r}"
    assert not os.path.exists(env.marker), "a planted pickle was unpickled"
