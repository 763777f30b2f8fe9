"""cachehub-memory: the in-process cache provider (alias ``memory``)."""

from .cache import MemoryCache

__all__ = ["MemoryCache"]
