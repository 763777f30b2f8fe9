"""Namespaces: two caches on one backend never see or touch each other.

The backend is one Redis db, one DynamoDB table, or one in-process memory ``store``.

Both caches hold keys with the same user-visible names, and the filters used would match
the other cache's keys if the namespace were ignored.
"""

from __future__ import annotations

import uuid

import pytest

from cachehub import Caches, ConfigError
from cachehub.api import BaseCache

from .conftest import Factory

REMOTE = ("redis", "dynamodb")
SHARED = ("memory", *REMOTE)
"""Memory caches share a backend through the ``store`` setting."""
ALPHA = {"user_1": "a1", "item_9": "a9"}
BETA = {"user_1": "b1", "user_2": "b2", "session_x": "bx"}


@pytest.fixture(params=SHARED)
def pair(request: pytest.FixtureRequest) -> tuple[BaseCache, BaseCache]:
    """Two caches with different namespaces on one backend, each filled."""
    factory: Factory = request.getfixturevalue(f"{request.param}_factory")
    run = uuid.uuid4().hex[:8]
    shared = {"store": f"iso-{run}"} if request.param == "memory" else {}
    alpha = factory(namespace=f"alpha-{run}:", **shared)
    beta = factory(namespace=f"beta-{run}:", **shared)
    alpha.put_many(ALPHA)
    beta.put_many(BETA)
    return alpha, beta


def test_listing_is_per_namespace(pair: tuple[BaseCache, BaseCache]) -> None:
    alpha, beta = pair
    assert sorted(alpha.keys()) == sorted(ALPHA)
    assert sorted(beta.keys()) == sorted(BETA)
    assert alpha.count() == len(ALPHA)
    assert beta.count("*") == len(BETA)
    assert sorted(alpha.keys("user_*")) == ["user_1"]
    assert alpha.count("user_?") == 1
    assert alpha.get_all("*_*") == ALPHA
    assert list(alpha.keys("session_*")) == []
    # Patterns spelling out the other namespace select nothing either.
    assert list(alpha.keys(beta.namespace + "*")) == []
    assert alpha.count("*" + beta.namespace.rstrip(":") + "*") == 0
    assert list(alpha.keys("*user_2")) == []


def test_reads_and_deletes_are_per_namespace(pair: tuple[BaseCache, BaseCache]) -> None:
    alpha, beta = pair
    assert alpha.get("user_1") == "a1"
    assert beta.get("user_1") == "b1"
    assert alpha.get_many(list(BETA)) == {"user_1": "a1"}
    assert alpha.delete("user_2") is False
    assert alpha.delete_many(["user_2", "session_x"]) == 0
    assert alpha.exists("session_x") is False
    assert beta.get_all() == BETA


def test_clear_is_per_namespace(pair: tuple[BaseCache, BaseCache]) -> None:
    alpha, beta = pair
    assert alpha.clear("user_*") == 1
    assert beta.get_all() == BETA
    assert alpha.clear("*") == 1
    assert alpha.count() == 0
    assert beta.get_all() == BETA
    assert beta.clear() == len(BETA)
    assert alpha.count() == 0


def test_incr_and_locks_are_per_namespace(pair: tuple[BaseCache, BaseCache]) -> None:
    alpha, beta = pair
    assert alpha.incr("hits", 3) == 3
    assert beta.incr("hits", 5) == 5
    with alpha.lock("job", timeout=0), beta.lock("job", timeout=0):
        assert alpha.get("hits") == 3  # both held: same lock name, different namespaces


@pytest.mark.parametrize("backend", REMOTE)
def test_nested_namespaces_are_a_view_and_refused_in_one_config(
    backend: str, request: pytest.FixtureRequest
) -> None:
    # A namespace is a plain key prefix (documented): an outer namespace sees the inner
    # one's entries, so a configuration that nests two namespaces on one backend is refused.
    factory: Factory = request.getfixturevalue(f"{backend}_factory")
    run = uuid.uuid4().hex[:8]
    outer = factory(namespace=f"app{run}:")
    inner = factory(namespace=f"app{run}:x:")
    inner.put("k", "inner")
    assert list(outer.keys()) == ["x:k"]
    assert outer.get("x:k") == "inner"
    outer.clear()
    assert inner.get("k") is None
    custom = {"host": "127.0.0.1"}  # the same backend for both entries
    with pytest.raises(ConfigError, match="lies inside"):
        Caches(
            {
                "outer": {"class": backend, "custom": {**custom, "namespace": "app:"}},
                "inner": {"class": backend, "custom": {**custom, "namespace": "app:x:"}},
            }
        )
