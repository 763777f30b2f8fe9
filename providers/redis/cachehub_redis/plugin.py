"""Registers the Redis provider with cachehub through the ``cachehub`` entry-point group."""

from __future__ import annotations

from cachehub.hookspecs import hookimpl


@hookimpl
def cachehub_providers() -> dict[str, str]:
    """``redis`` plus the class names of Lucee's Redis extension found in .CFConfig.json."""
    target = "cachehub_redis:RedisCache"
    return {
        "redis": target,
        "lucee.extension.io.cache.redis.RedisCache": target,
        "lucee.extension.io.cache.redis.simple.RedisCache": target,
        "lucee.extension.io.cache.redis.RedisSentinelCache": target,
        "lucee.extension.io.cache.redis.sentinel.RedisSentinelCache": target,
    }
