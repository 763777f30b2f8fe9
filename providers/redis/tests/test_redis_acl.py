"""A Redis shared with other apps: ACL users allowed fewer commands or keys than a cache needs.

Every refusal is a typed error naming the ACL rule to grant, whether Redis refused the
command itself or a command a script runs; a refused read inside a script is never taken
for a missing entry (which made ``incr`` and ``add`` overwrite what was there).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cachehub_redis import RedisCache
from cachehub_redis.cache import acl_key_rule
from cachehub_redis.errors import RedisPermissionError, acl_rules, missing_rule
from cachehub_redis.server import RedisClusterServers, RedisServer
from redis import Redis

from cachehub.errors import CachePermissionError

PASSWORD = "acl-Pa55word-q7"

Op = Callable[[RedisCache], Any]


@pytest.fixture
def acl_cache(
    redis_server: RedisServer, plain: Redis
) -> Iterator[Callable[..., tuple[RedisCache, str]]]:
    """Build a cache whose ACL user has exactly ``rules``; ``{keys}`` in a rule is the
    cache's key pattern, ``{ns}`` its namespace. Returns the cache and its namespace; the
    users are deleted after."""
    users: list[str] = []
    caches: list[RedisCache] = []

    def make(*rules: str) -> tuple[RedisCache, str]:
        namespace = f"acl{uuid.uuid4().hex[:8]}:"
        user = f"u{uuid.uuid4().hex[:8]}"
        keys = acl_key_rule(namespace)
        expanded = [p for rule in rules for p in rule.format(keys=keys, ns=namespace).split()]
        plain.execute_command("ACL", "SETUSER", user, "reset", "on", f">{PASSWORD}", *expanded)
        users.append(user)
        url = f"redis://{user}:{PASSWORD}@{redis_server.host}:{redis_server.port}/0"
        cache = RedisCache(url=url, namespace=namespace, retries=0)
        caches.append(cache)
        return cache, namespace

    yield make
    for cache in caches:
        cache.close()
    for user in users:
        plain.execute_command("ACL", "DELUSER", user)


def _every_operation(cache: RedisCache) -> None:
    cache.put("a", {"v": 1})
    cache.put("t", "x", time_span=60)
    cache.put_many({"b": 2, "c": [3]})
    cache.put_many({"d": 4}, time_span=60)
    assert cache.get("a") == {"v": 1}
    assert cache.get_many(["a", "b", "zz"]) == {"a": {"v": 1}, "b": 2}
    assert cache.exists("c")
    assert cache.incr("n", 5) == 5
    assert cache.incr("n", 2) == 7
    assert not cache.add("a", 0)
    assert cache.touch("a", time_span=60)
    assert cache.metadata("t").time_to_live is not None
    assert sorted(cache.keys()) == ["a", "b", "c", "d", "n", "t"]
    assert cache.count() == 6
    assert cache.get_all("a*") == {"a": {"v": 1}}
    assert cache.delete("a")
    assert cache.delete_many(["b", "c"]) == 2
    lock = cache.lock("job", timeout=10)
    assert lock.acquire(blocking=False)
    lock.release()
    assert cache.info()["count"] == 3
    assert cache.clear(include_internal=True) == 3
    assert cache.count() == 0


@pytest.mark.flushes_scripts
def test_the_documented_acl_rules_are_enough_for_every_operation(
    acl_cache: Callable[..., tuple[RedisCache, str]], plain: Redis
) -> None:
    cache, _ = acl_cache(acl_rules("{keys}"))
    plain.script_flush()  # the cache loads its scripts itself: SCRIPT LOAD is in the rules
    _every_operation(cache)

    async def run_async() -> None:
        aio = cache.aio()
        await aio.put("x", 1)
        assert await aio.incr("x") == 2
        assert await aio.count() == 1
        assert await aio.clear() == 1

    asyncio.run(run_async())


@pytest.mark.flushes_scripts
def test_a_user_refused_script_load_works_after_another_client_flushed_the_scripts(
    acl_cache: Callable[..., tuple[RedisCache, str]], plain: Redis
) -> None:
    # Before: a lost script was loaded with SCRIPT LOAD, so a user without it (common on
    # a shared Redis: "+@all -script") failed every scripted operation (incr, delete,
    # count...) with a permission error after any SCRIPT FLUSH or restart.
    cache, _ = acl_cache("{keys}", "+@all", "-script")
    cache.put_many({"a": 1, "b": 2})
    for _ in range(2):
        plain.script_flush()
        assert cache.incr("n") in (1, 2)
        plain.script_flush()
        assert cache.delete_many(["a", "b"]) in (0, 2)
        plain.script_flush()
        assert cache.count() == 1
    assert cache.get("n") == 2  # each incr applied once


def test_the_rules_name_the_namespace_as_a_pattern_of_literal_characters() -> None:
    # A namespace holding glob characters must not grant the user other apps' keys.
    assert acl_key_rule("a*[b]?\\:") == "~a\\*\\[b\\]\\?\\\\:*"
    assert acl_rules("~ns:*").split()[0] == "~ns:*"
    assert "+evalsha" in acl_rules("~ns:*").split()


DENIED: list[tuple[str, str, Op, str]] = [
    # (what is taken away, the rule it is, operation, id) - native commands first.
    ("-scan", "+scan", lambda c: list(c.keys()), "keys"),
    ("-evalsha", "+evalsha", lambda c: c.incr("n"), "incr-evalsha"),
    ("-mset", "+mset", lambda c: c.put_many({"a": 1, "b": 2}), "put_many"),
    # Commands a script runs: Redis names the script and its line, not the command.
    ("-scan", "+scan", lambda c: c.count(), "count"),
    ("-scan", "+scan", lambda c: c.clear(), "clear"),
    ("-unlink", "+unlink", lambda c: c.delete("planted"), "delete"),
    ("-bitfield", "+bitfield", lambda c: c.incr("planted"), "incr"),
    ("-time", "+time", lambda c: c.lock("job", timeout=5).acquire(blocking=False), "lock"),
    ("-setrange", "+setrange", lambda c: c.touch("planted", time_span=30), "touch"),
    # A refused read inside a script: before, redis.pcall turned it into "no entry", so
    # incr(5) on the counter at 10 stored 5, add() replaced it and answered True, delete()
    # answered False - all without an error.
    ("-getrange", "+getrange", lambda c: c.incr("planted", 5), "incr-read"),
    ("-getrange", "+getrange", lambda c: c.add("planted", 99), "add-read"),
    ("-getrange", "+getrange", lambda c: c.delete("planted"), "delete-read"),
    ("-getrange", "+getrange", lambda c: c.touch("planted", time_span=30), "touch-read"),
    ("-getrange", "+getrange", lambda c: c.metadata("planted"), "metadata-read"),
    # get and get_many read with GETRANGE (bounded by maxValueSize), natively and in a script.
    ("-getrange", "+getrange", lambda c: c.get("planted"), "get-read"),
    ("-getrange", "+getrange", lambda c: c.get_many(["planted"]), "get_many-read"),
]


@pytest.mark.parametrize(
    ("taken", "rule", "operation"),
    [pytest.param(t, r, o, id=i) for t, r, o, i in DENIED],
)
def test_a_refused_command_is_a_permission_error_naming_the_rule_to_grant(
    acl_cache: Callable[..., tuple[RedisCache, str]],
    make_cache: Callable[..., RedisCache],
    taken: str,
    rule: str,
    operation: Op,
) -> None:
    # Before: a command refused inside a script was a CacheBackendError "returned an
    # error", and every refusal's hint listed seven commands, not the one refused. The
    # planted entry is unchanged after every refusal.
    cache, namespace = acl_cache(acl_rules("{keys}"), taken)
    admin = make_cache(namespace=namespace)
    admin.put("planted", 10)
    with pytest.raises(RedisPermissionError) as caught:
        operation(cache)
    assert isinstance(caught.value, CachePermissionError)
    assert caught.value.rule == rule
    assert f"ACL SETUSER <user> {rule} " in str(caught.value)
    assert PASSWORD not in str(caught.value)
    assert admin.get("planted") == 10


def test_info_without_info_permission_shows_the_cache_and_names_the_rule(
    acl_cache: Callable[..., tuple[RedisCache, str]],
) -> None:
    # Before: a user of the common "+@all -@dangerous" (INFO is @dangerous) got an error
    # from info() - and so from the console's cache page - instead of its count.
    cache, _ = acl_cache("{keys}", "+@all", "-@dangerous")
    cache.put("a", 1)
    info = cache.info()
    assert info["count"] == 1
    assert info["serverVersion"] is None
    assert "+info" in info["serverInfo"]


def test_a_refused_command_in_the_async_shell_names_the_rule_too(
    acl_cache: Callable[..., tuple[RedisCache, str]],
) -> None:
    cache, _ = acl_cache(acl_rules("{keys}"), "-scan")

    async def count() -> int:
        return await cache.aio().count()

    with pytest.raises(RedisPermissionError) as caught:
        asyncio.run(count())
    assert caught.value.rule == "+scan"


def test_a_key_pattern_narrower_than_the_namespace_names_the_namespace_pattern(
    acl_cache: Callable[..., tuple[RedisCache, str]],
    make_cache: Callable[..., RedisCache],
) -> None:
    # The user may touch only the namespace's keys starting with "a": another app's key
    # "zz" in the namespace makes the scans refuse (inside a script, before: untyped).
    cache, namespace = acl_cache(acl_rules("~{ns}a*"))
    make_cache(namespace=namespace).put("zz", 1)
    cache.put("a1", 1)
    for operation in (cache.count, cache.clear, lambda: cache.get("zz")):
        with pytest.raises(RedisPermissionError) as caught:
            operation()
        assert caught.value.rule == acl_key_rule(namespace)


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        # Redis 7 names the subcommand, 6.2 the container: the rule is the subcommand.
        ("this user has no permissions to run the 'cluster|slots' command", "+cluster|slots"),
        ("this user has no permissions to run the 'cluster' command", "+cluster|slots"),
        ("this user has no permissions to run the 'config' command", "+config"),
        ("this user has no permissions to access one of the keys used as arguments", "~ns:*"),
        ("something Redis never said", acl_rules("~ns:*")),
    ],
)
def test_the_missing_rule_is_read_off_both_versions_replies(text: str, rule: str) -> None:
    assert missing_rule(text, "~ns:*") == rule


def test_the_docs_show_the_rules_the_provider_needs() -> None:
    docs = Path(__file__).resolve().parents[3] / "docs" / "redis.md"
    line = "ACL SETUSER myapp on >password " + acl_rules("~myapp:*")
    assert line in docs.read_text(encoding="utf-8").splitlines()


def test_a_cluster_user_refused_the_slot_map_is_told_which_rule_not_cluster_mode_off(
    redis_cluster: RedisClusterServers,
) -> None:
    # Before: redis-py reports the refused CLUSTER SLOTS as "Cluster mode is not enabled
    # on this node": a CacheUnavailableError telling to check url/host/port.
    user, namespace = f"c{uuid.uuid4().hex[:8]}", f"acl{uuid.uuid4().hex[:8]}:"

    def grant(rules: str) -> None:
        for node in redis_cluster.nodes:
            with node.client() as client:
                client.execute_command(
                    "ACL", "SETUSER", user, "reset", "on", f">{PASSWORD}", *rules.split()
                )

    def cache() -> RedisCache:
        return RedisCache(
            host=redis_cluster.host,
            port=redis_cluster.port,
            cluster=True,
            namespace=namespace,
            username=user,
            password=PASSWORD,
            retries=0,
        )

    async def async_put(made: RedisCache) -> None:
        await made.aio().put("x", 1)

    try:
        grant(acl_rules(acl_key_rule(namespace)))
        refused = cache()
        with pytest.raises(RedisPermissionError) as caught:
            refused.put("a", 1)
        assert caught.value.rule == "+cluster|slots"
        assert "+cluster|slots +command" in str(caught.value)  # the cluster's full rules
        with pytest.raises(RedisPermissionError):
            asyncio.run(async_put(refused))
        refused.close()

        grant(acl_rules(acl_key_rule(namespace), cluster=True))
        granted = cache()
        granted.put_many({f"k{i}": i for i in range(50)})
        assert granted.incr("n") == 1
        asyncio.run(async_put(granted))
        assert granted.count() == 52
        assert granted.clear() == 52
        granted.close()
    finally:
        for node in redis_cluster.nodes:
            with node.client() as client:
                client.execute_command("ACL", "DELUSER", user)
