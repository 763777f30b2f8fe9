"""cachehub-memory: the in-process cache provider (alias ``memory``).

:class:`MemoryCache` is imported on first access, so loading the plugin does not import
cachetools.
"""

from typing import TYPE_CHECKING

from cachehub.plugins import lazy_exports

__all__ = ["MemoryCache"]

if TYPE_CHECKING:
    from .cache import MemoryCache
else:  # run time only: type checkers see the real names and still flag a misspelt one
    __getattr__, __dir__ = lazy_exports(__name__, {"MemoryCache": ".cache"})
