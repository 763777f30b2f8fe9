"""cachehub: pluggable caches for Python, configured like Lucee's caches.

The public API is re-exported here; see the documentation for the full guide.
"""

from .aio import AsyncCache
from .api import MISSING, BaseCache, CacheMetadata, Entry, Expiry
from .decorators import CachedFunction, cached
from .errors import (
    CacheBackendError,
    CacheError,
    CacheKeyError,
    CacheOutcomeUnknownError,
    CachePermissionError,
    CacheThrottledError,
    CacheUnavailableError,
    CacheValueError,
    ConfigError,
    CorruptEntryError,
    InvalidKeyError,
    LockTimeoutError,
    MissingEnvVarError,
    MissingPackageError,
    ReadOnlyCacheError,
    SerializationError,
    StorageNotEnabledError,
    UnknownCacheError,
    UnknownProviderError,
    UnknownSigningKeyError,
)
from .functions import (
    add,
    cache,
    clear,
    count,
    decr,
    delete,
    delete_many,
    exists,
    get,
    get_all,
    get_many,
    get_or_set,
    incr,
    keys,
    lock,
    metadata,
    put,
    put_many,
    touch,
)
from .hookspecs import OperationEvent, hookimpl
from .loader import CacheEntry
from .lock import AsyncLock, Lock
from .migration import MigrationReport, migrate
from .query import Query, query_new
from .registry import Caches, configure, get_caches

__version__ = "0.1.0"

__all__ = [
    # registry and configuration
    "Caches",
    "CacheEntry",
    "configure",
    "get_caches",
    # copying a cache's entries to another (``cachehub migrate``)
    "migrate",
    "MigrationReport",
    # module functions (Lucee's cachePut, cacheGet, ... with cache_name=)
    "cache",
    "put",
    "get",
    "exists",
    "delete",
    "clear",
    "keys",
    "get_all",
    "count",
    "metadata",
    "add",
    "incr",
    "decr",
    "touch",
    "get_many",
    "put_many",
    "delete_many",
    "get_or_set",
    "lock",
    "cached",
    "CachedFunction",
    # the contract
    "MISSING",
    "AsyncCache",
    "AsyncLock",
    "BaseCache",
    "CacheMetadata",
    "Entry",
    "Expiry",
    "Lock",
    "Query",
    "query_new",
    "OperationEvent",
    "hookimpl",
    "CacheError",
    "CacheBackendError",
    "CacheKeyError",
    "CachePermissionError",
    "CacheOutcomeUnknownError",
    "CacheThrottledError",
    "CacheUnavailableError",
    "CacheValueError",
    "ConfigError",
    "CorruptEntryError",
    "UnknownSigningKeyError",
    "InvalidKeyError",
    "LockTimeoutError",
    "MissingEnvVarError",
    "MissingPackageError",
    "ReadOnlyCacheError",
    "SerializationError",
    "StorageNotEnabledError",
    "UnknownCacheError",
    "UnknownProviderError",
]
