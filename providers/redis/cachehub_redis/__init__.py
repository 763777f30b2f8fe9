"""cachehub-redis: the Redis cache provider (alias ``redis``).

:class:`RedisCache` is imported on first access, so loading the plugin (``cachehub
--help``, say) does not import redis-py.
"""

from typing import TYPE_CHECKING

from cachehub.plugins import lazy_exports

__all__ = ["RedisCache"]

if TYPE_CHECKING:
    from .cache import RedisCache
else:  # run time only: type checkers see the real names and still flag a misspelt one
    __getattr__, __dir__ = lazy_exports(__name__, {"RedisCache": ".cache"})
