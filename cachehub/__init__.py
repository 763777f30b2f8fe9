"""cachehub: pluggable caches for Python, configured like Lucee's caches.

The public API is re-exported here; see the documentation for the full guide.
"""

from .api import MISSING, BaseCache, CacheMetadata, Entry, Expiry
from .errors import (
    CacheBackendError,
    CacheError,
    CacheKeyError,
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
    UnknownProviderError,
)
from .hookspecs import OperationEvent, hookimpl
from .lock import Lock

__version__ = "0.1.0"

__all__ = [
    "MISSING",
    "BaseCache",
    "CacheMetadata",
    "Entry",
    "Expiry",
    "Lock",
    "OperationEvent",
    "hookimpl",
    "CacheError",
    "CacheBackendError",
    "CacheKeyError",
    "CachePermissionError",
    "CacheThrottledError",
    "CacheUnavailableError",
    "CacheValueError",
    "ConfigError",
    "CorruptEntryError",
    "InvalidKeyError",
    "LockTimeoutError",
    "MissingEnvVarError",
    "MissingPackageError",
    "ReadOnlyCacheError",
    "SerializationError",
    "StorageNotEnabledError",
    "UnknownProviderError",
]
