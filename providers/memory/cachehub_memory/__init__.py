"""cachehub-memory: the in-process cache provider (alias ``memory``).

:class:`MemoryCache` is imported on first access, so loading the plugin does not import
cachetools.
"""

from typing import TYPE_CHECKING

from cachehub.plugins import lazy_exports

if TYPE_CHECKING:
    from .cache import MemoryCache

__all__ = ["MemoryCache"]

__getattr__, __dir__ = lazy_exports(__name__, {"MemoryCache": ".cache"})
