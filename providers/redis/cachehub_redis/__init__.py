"""cachehub-redis: the Redis cache provider (alias ``redis``).

:class:`RedisCache` is imported on first access, so loading the plugin (``cachehub
--help``, say) does not import redis-py.
"""

from typing import TYPE_CHECKING

from cachehub.plugins import lazy_exports

if TYPE_CHECKING:
    from .cache import RedisCache

__all__ = ["RedisCache"]

__getattr__, __dir__ = lazy_exports(__name__, {"RedisCache": ".cache"})
