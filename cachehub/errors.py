"""Typed errors. Every message names the problem and, where there is one, the fix.

Each class also derives from the closest builtin exception, so ``except KeyError`` and
friends keep working for code that does not know cachehub.

Messages and hints pass through :func:`cachehub.scrub.scrub` when the error is created,
so no error built by cachehub (or by a provider) can carry a URL password, a query
token or a configured secret, whatever text it was built from.
"""

from __future__ import annotations

import importlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import CodeType
from typing import Final

from .scrub import scrub

__all__ = [
    "MAX_MESSAGE_CHARS",
    "CacheError",
    "ConfigError",
    "UnknownProviderError",
    "UnknownCacheError",
    "MissingPackageError",
    "MissingEnvVarError",
    "CacheKeyError",
    "InvalidKeyError",
    "CacheValueError",
    "SerializationError",
    "CorruptEntryError",
    "UnknownSigningKeyError",
    "ReadOnlyCacheError",
    "CacheUnavailableError",
    "CacheOutcomeUnknownError",
    "CacheBackendError",
    "CachePermissionError",
    "CacheThrottledError",
    "LockTimeoutError",
    "LockLostError",
    "StorageNotEnabledError",
    "causes",
    "raised_by_signal_handler",
]


MAX_MESSAGE_CHARS: Final = 8_192
"""Longest message (and hint) an error keeps; the rest is cut, marked with an ellipsis."""


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class CacheError(Exception):
    """Base of every cachehub error. ``hint`` says how to fix it, when known."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        # Scrubbed first (a cut could split a secret past recognition), then bounded: a
        # message quoting a 1 MB class name or cache name from a config file was 1 MB.
        message = _bounded(scrub(message), MAX_MESSAGE_CHARS)
        hint = None if hint is None else _bounded(scrub(hint), MAX_MESSAGE_CHARS)
        self.message = message
        self.hint = hint
        super().__init__(f"{message} Fix: {hint}" if hint else message)

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return f"{self.message} Fix: {self.hint}" if self.hint else self.message


class ConfigError(CacheError, ValueError):
    """The configuration is invalid: unknown key, wrong type, missing setting."""


class UnknownProviderError(ConfigError):
    """A ``class`` entry names no registered alias and no importable class."""


class UnknownCacheError(ConfigError, KeyError):
    """A cache name that is not configured (also a ``KeyError``, for ``caches[name]``)."""


class MissingPackageError(ConfigError, ImportError):
    """The ``package`` requirement of a cache entry is not installed."""


class MissingEnvVarError(ConfigError):
    """A ``${VAR}`` reference names an environment variable that is not set."""


class CacheKeyError(CacheError, KeyError):
    """``get(..., throw_when_not_exist=True)`` found no live entry."""


class InvalidKeyError(CacheError, ValueError):
    """The key is not a usable cache key (wrong type, empty, too long)."""


class CacheValueError(CacheError, ValueError):
    """An argument value is invalid (negative or NaN TTL, ``until`` in the past...)."""


class SerializationError(CacheError, TypeError):
    """A value cannot be encoded by the configured codec."""


class CorruptEntryError(CacheError):
    """Stored bytes could not be decoded: corrupted, foreign, or badly signed data."""


class UnknownSigningKeyError(CorruptEntryError):
    """A signed entry no configured key can verify (signed with a rotated-away key, or in
    the previous unbound format). Reads treat it as a miss, so it is recomputed."""


class ReadOnlyCacheError(CacheError, PermissionError):
    """A write was attempted on a cache configured with ``readOnly: true``."""


class CacheUnavailableError(CacheError, ConnectionError):
    """The backend cannot be reached (connection refused, timeout, DNS)."""


class CacheOutcomeUnknownError(CacheUnavailableError):
    """A write's reply was lost and whether the backend applied it cannot be told.

    Raised instead of re-sending a non-idempotent write (``incr``, ``add``...) blind,
    which could apply it twice. Read the entry to see where it stands before retrying.
    """


class CacheBackendError(CacheError):
    """The backend answered with an error cachehub cannot map more precisely."""


class CachePermissionError(CacheBackendError, PermissionError):
    """The backend refused the operation: credentials, IAM policy, ACL."""


class CacheThrottledError(CacheBackendError):
    """The backend kept throttling after every retry."""


class LockTimeoutError(CacheError, TimeoutError):
    """A lock could not be acquired within the given timeout."""


class LockLostError(CacheError):
    """A lock this process acquired was no longer held when it was released or extended.

    Its ``ttl`` ran out (or the lock was cleared with ``clear(include_internal=True)``),
    so another holder may have run at the same time. Raised so the loss is observable:
    work guarded by the lock should be checked, or guarded by the lock's fencing token.
    """


class StorageNotEnabledError(ConfigError):
    """A cache was used for session storage but its entry lacks ``storage: true``."""


def causes(exc: BaseException, limit: int | None = None) -> Iterator[BaseException]:
    """``exc``, then the exception it was raised from or while handling (``__cause__``,
    else ``__context__``), and so on, each once: a cycle ends the walk, as does ``limit``.

    Translated errors are raised ``from None`` (see :meth:`RemoteCache._guarded`), which
    keeps the client library's exception as the typed error's ``__context__``: code that
    needs its error code (``doctor`` advice) finds it here, and a translation finds the
    failure a client library wrapped in its own exceptions.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if limit is not None and len(seen) >= limit:
            return
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


_SIGNALS: Final = tuple(int(s) for s in signal.valid_signals())
# signal.getsignal wraps each answer in an enum lookup, which made a look at every
# signal 150 us; the C function it wraps takes 4 us (CPython's, there since 3.0).
_getsignal: Final[Callable[[int], object]] = getattr(
    importlib.import_module("_signal"), "getsignal", signal.getsignal
)


def _handler_codes() -> set[CodeType]:
    """The code of each Python function installed as a signal handler now."""
    codes = set()
    for number in _SIGNALS:
        handler = _getsignal(number)
        function = getattr(handler, "__func__", handler)  # a bound method's function
        function = getattr(function, "func", function)  # a functools.partial's
        code = getattr(function, "__code__", None)
        if isinstance(code, CodeType):
            codes.add(code)
    return codes


def raised_by_signal_handler(exc: BaseException) -> BaseException | None:
    """The exception of ``exc``'s chain (:func:`causes`) that a Python signal handler
    raised, if any: one whose traceback passes through a handler installed now.

    A handler runs in the main thread at whatever instruction the signal finds, so its
    exception can leave any cache call: Celery's ``SoftTimeLimitExceeded``, a SIGALRM
    deadline's ``TimeoutError``. It is the program's, not the backend's: the error policy
    hands it back as it is (its ``except`` must run), never as a backend error or, under
    ``onError: miss``, as a miss that would swallow the deadline. A handler that
    uninstalled itself before raising is not recognised.
    """
    if threading.current_thread() is not threading.main_thread():
        return None  # Python runs signal handlers in the main thread only
    codes: set[CodeType] | None = None
    for cause in causes(exc, limit=16):
        if isinstance(cause, CacheError):  # cachehub's own, never a handler's: no look
            continue
        # The first frame is where it was caught, never the handler's: an exception a C
        # function raised, caught around its call (a decoder's fallback), costs nothing.
        tb = cause.__traceback__
        tb = None if tb is None else tb.tb_next
        while tb is not None:
            if codes is None:
                codes = _handler_codes()
                if not codes:
                    return None
            if tb.tb_frame.f_code in codes:
                return cause
            tb = tb.tb_next
    return None
