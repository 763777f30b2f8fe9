"""cachehub-redis: the Redis cache provider (alias ``redis``)."""

from .cache import RedisCache

__all__ = ["RedisCache"]
