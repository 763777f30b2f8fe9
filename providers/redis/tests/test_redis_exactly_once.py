"""Request records in a real Redis Cluster: always in the entry's slot, whatever the key."""

from __future__ import annotations

from cachehub_redis import RedisCache
from cachehub_redis.records import MARK
from redis.cluster import RedisCluster
from redis.crc import key_slot

# Keys whose braces make the plain record name land elsewhere, and ones where it does not.
KEYS = ["plain", "{tag}x", "{}x", "open{", "}close", "}{", "a{b}c", "\u00e9{\u00e9}", "k" * 500]


def test_non_idempotent_writes_work_on_every_key_shape(cluster_cache: RedisCache) -> None:
    """A record in another slot would fail the script with CROSSSLOT: none does."""
    for key in KEYS:
        assert cluster_cache.incr(key, 2) == 2
        assert cluster_cache.decr(key) == 1
        assert cluster_cache.delete(key) is True
        assert cluster_cache.add(key, "v") is True
        assert cluster_cache.add(key, "w") is False
        sk = cluster_cache._sk(key)
        assert cluster_cache._delete_if_equal(sk, "v", cluster_cache._clock()) is True


def test_records_sit_in_the_entry_slot(cluster_cache: RedisCache) -> None:
    for key in KEYS:
        cluster_cache.incr(key)
    client = cluster_cache._connection()
    assert isinstance(client, RedisCluster)
    found = [k for k in client.scan_iter(match=f"*{cluster_cache.namespace}*") if MARK in k]
    assert len(found) == len(KEYS)
    for key in KEYS:
        entry = cluster_cache._sk(key).encode()
        mine = [k for k in found if entry + MARK in k]
        assert mine, key
        assert all(key_slot(k) == key_slot(entry) for k in mine)
    assert sorted(cluster_cache.keys()) == sorted(KEYS)
