"""Cluster specifics: batches across slots and nodes, SCAN on every primary, shared client."""

from __future__ import annotations

from typing import Any

import pytest
from cachehub_redis import RedisCache
from cachehub_redis.server import RedisClusterServers
from redis.cluster import RedisCluster
from redis.connection import AbstractConnection


def test_batches_span_every_node(
    cluster_cache: RedisCache, redis_cluster: RedisClusterServers
) -> None:
    items = {f"k{i}": i for i in range(300)}
    cluster_cache.put_many(items, time_span=600)
    per_node = []
    for node in redis_cluster.nodes:
        client = node.client()
        per_node.append(sum(1 for _ in client.scan_iter(match=f"{cluster_cache.namespace}*")))
        client.close()
    assert sum(per_node) == 300
    assert all(count > 0 for count in per_node)  # the keys really are spread out
    assert cluster_cache.get_many(list(items)) == items
    assert cluster_cache.count() == 300
    assert cluster_cache.count("k1?") == 10
    assert sorted(cluster_cache.keys("k29?")) == [f"k29{i}" for i in range(10)]
    assert cluster_cache.delete_many([f"k{i}" for i in range(100)]) == 100
    assert cluster_cache.clear() == 200
    assert cluster_cache.count() == 0


def test_caches_with_the_same_settings_share_one_cluster_client(
    redis_cluster: RedisClusterServers,
) -> None:
    settings = {"host": redis_cluster.host, "port": redis_cluster.port, "cluster": True}
    first = RedisCache(settings, namespace="a:")
    second = RedisCache(settings, namespace="b:")
    first.put("k", 1)
    second.put("k", 2)
    assert first._conn is second._conn
    assert isinstance(first._conn, RedisCluster)
    first.close()
    assert second.get("k") == 2  # closing one cache leaves the other working
    second.close()
    assert first.get("k") == 1  # and a closed cache reconnects lazily
    first.clear()
    second.clear()
    first.close()


def test_batches_are_one_round_trip_per_node(
    cluster_cache: RedisCache, redis_cluster: RedisClusterServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = {f"k{i}": i for i in range(300)}  # spread over all three primaries
    cluster_cache.put_many(items)
    cluster_cache.get_many(list(items))  # scripts loaded everywhere
    sent = []
    original = AbstractConnection.send_packed_command

    def counting(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        sent.append(self.port)  # type: ignore[attr-defined]
        original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    assert cluster_cache.get_many(list(items)) == items
    assert sorted(sent) == sorted(node.port for node in redis_cluster.nodes)
    sent.clear()
    assert cluster_cache.delete_many(list(items)) == 300
    assert len(sent) == 3


def test_batches_keep_keys_of_one_slot_together(cluster_cache: RedisCache) -> None:
    # Hash tags put every key in one slot: one script call takes them all.
    items = {f"{{user42}}:k{i}": i for i in range(50)}
    cluster_cache.put_many(items)
    assert cluster_cache.get_many(list(items)) == items
    assert cluster_cache.count("{user42}:*") == 50
    assert cluster_cache.clear("{user42}:k1*") == 11
    assert cluster_cache.count() == 39
    cluster_cache.clear()
