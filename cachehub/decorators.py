"""``@cached``: cache a function's results, stampede-protected via ``get_or_set``.

::

    @cached("main", time_span=300)
    def load_user(user_id: int) -> dict[str, Any]: ...

    load_user(42)               # computed once, then served from cache "main"
    load_user.invalidate(42)    # forget that result

An ``async def`` is cached through the cache's async shell (:class:`cachehub.aio.
AsyncCache`): ``await load_user_async(42)``, single flight across tasks, and
``await load_user_async.ainvalidate(42)``.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from operator import itemgetter
from types import MethodType
from typing import Any, Final, Generic, ParamSpec, TypeVar, cast, overload

from .api import BaseCache, TimeSpan, make_expiry
from .codec import MAX_DEPTH, Codec, make_codec
from .errors import CacheError, InvalidKeyError, SerializationError, raised_by_signal_handler
from .registry import get_caches

__all__ = ["cached", "CachedFunction"]

P = ParamSpec("P")
R = TypeVar("R")

_codec: Codec | None = None


def _key_codec() -> Codec:
    # Built lazily: the safe codec is deterministic, so equal arguments hash equally.
    global _codec
    if _codec is None:
        _codec = make_codec("safe")
    return _codec


_SETS: Final = (set, frozenset)
_SCALARS: Final = frozenset({str, int, float, bool, bytes, type(None)})


def _arguments_bytes(args: list[Any], kwargs: list[tuple[str, Any]]) -> bytes:
    """The encoded arguments a key is the digest of, equal in every process for equal values.

    Two things made equal arguments encode differently. A set is encoded in its
    iteration order, and the order of str members changes from one process to the next
    (hash randomisation), so ``f({"a", "b"})`` had a different key in every worker of a
    shared cache; a dict is encoded in insertion order, so ``f({"a": 1, "b": 2})`` and
    ``f({"b": 2, "a": 1})`` missed each other's results. :func:`_canonical` puts each in
    one order. A set, or a dict whose keys are not all str or all int, becomes a sorted
    flat list (see :func:`_tagged`), and the payload then lists where those were, with
    their type, so the replacement can never equal an argument that held a plain list
    there. Arguments
    holding neither keep the plain ``(args, kwargs)`` payload (and so their keys), as do
    dicts already in sorted order.
    """
    found: list[tuple[tuple[Any, ...], str]] = []
    canonical_args = _canonical(args, (0,), found, 0)
    canonical_kwargs = _canonical(kwargs, (1,), found, 0)
    if not found:  # the same structures, dicts in sorted order: the plain payload
        return _key_codec().dumps((canonical_args, canonical_kwargs))
    return _key_codec().dumps((canonical_args, canonical_kwargs, found))


_ORDERED_KEYS: Final = (str, int)
"""Dict key types whose dicts stay dicts, keys sorted: they order among themselves
(bool is not one: ``sorted`` would mix True with 1)."""


def _canonical(
    value: Any, path: tuple[Any, ...], found: list[tuple[tuple[Any, ...], str]], depth: int
) -> Any:
    """``value`` with every set and dict in one order for equal values; ``found`` gets
    the path and type of each one replaced by a list. Past the codec's depth limit
    nothing is replaced (the codec then refuses the value, which also stops a list that
    contains itself)."""
    kind = type(value)
    if kind in _SCALARS or depth > MAX_DEPTH:
        return value
    if kind in _SETS:
        found.append((path, kind.__name__))
        return [part for tagged in sorted(map(_tagged, value)) for part in tagged]
    if kind is list or kind is tuple:
        items = [_canonical(item, (*path, i), found, depth + 1) for i, item in enumerate(value)]
        return items if kind is list else tuple(items)
    if kind is dict:
        first = type(next(iter(value), ""))
        if first in _ORDERED_KEYS and all(type(k) is first for k in value):
            # An equal dict in sorted order; the path names a value by its key, which is
            # a str or an int, so the same in every process.
            return {k: _canonical(value[k], (*path, k), found, depth + 1) for k in sorted(value)}
        # Keys of several types, or of types that do not order (a frozenset, a tuple
        # holding one): sorted as _tagged orders them, flat (tag, key, value) triples.
        pairs = sorted(((_tagged(k), k) for k in value), key=itemgetter(0))
        found.append((path, "dict"))
        flat: list[Any] = []
        for i, ((tag, shown), k) in enumerate(pairs):
            flat += (tag, shown, _canonical(value[k], (*path, i), found, depth + 1))
        return flat
    return value


_TAGS: Final = {type(None): 0, bool: 1, int: 2, float: 3, str: 4, bytes: 5}
_ENCODED: Final = len(_TAGS)


def _tagged(item: Any) -> tuple[int, Any]:
    """A set member or dict key as ``(tag, what orders it)``, the same in every process:
    scalars by their type, then by value (no codec call: a set of 1,000 ints cost 1,000
    encodes); anything else (a tuple, a frozenset, a NaN, which has no order) by its
    canonical encoding. The tag keeps 1, 1.0 and True, and b"x" and an encoding, apart."""
    tag = _TAGS.get(type(item), _ENCODED)
    if tag == _ENCODED or item != item:
        return _ENCODED, _arguments_bytes([item], [])
    return tag, item


def _default_prefix(func: Callable[..., Any]) -> str:
    """``module.qualname``, plus the place in the source for a lambda.

    Every lambda of a module has the qualname ``<lambda>``: ``cached(lambda x: x * x)``
    and ``cached(lambda x: 2 * x)`` shared their keys, so one served the other's results.
    The line and the column of the body tell them apart, the same in every process.
    """
    name = f"{getattr(func, '__module__', None)}.{getattr(func, '__qualname__', func)}"
    code = getattr(func, "__code__", None)
    if "<lambda>" not in name or code is None:
        return name
    columns = [start for _, _, start, _ in code.co_positions() if start]
    return f"{name}@{code.co_firstlineno}:{min(columns, default=0)}"


class CachedFunction(Generic[P, R]):
    """A function whose results are cached; see :func:`cached`."""

    # Copied from the wrapped function by functools.update_wrapper.
    __name__: str
    __qualname__: str
    __wrapped__: Callable[P, R]

    def __init__(
        self,
        func: Callable[P, R],
        cache: str | BaseCache | None,
        *,
        time_span: TimeSpan | None,
        idle_time: TimeSpan | None,
        until: datetime | None,
        key: Callable[..., str] | None,
        prefix: str | None,
    ) -> None:
        # Over @staticmethod / @classmethod: cache the function they hold, and bind as
        # they do (nothing, or the class) instead of as a method (the instance).
        given: Any = func  # typed as a callable; a classmethod object is not one
        self._binding = "static" if isinstance(given, staticmethod) else "method"
        if isinstance(given, classmethod):
            self._binding = "class"
        if isinstance(given, (staticmethod, classmethod)):
            func = cast("Callable[P, R]", given.__func__)
        self.__wrapped__ = func
        self._cache = cache
        self._time_span = time_span
        self._idle_time = idle_time
        self._until = until
        self._key = key
        self._prefix = prefix
        self._default_prefix = _default_prefix(func)
        self._signature = inspect.signature(func)
        self._is_async = inspect.iscoroutinefunction(func)
        functools.update_wrapper(self, func)

    @property
    def cache(self) -> BaseCache:
        """The cache results go to (a name is looked up on every call, so reconfiguring works)."""
        if isinstance(self._cache, BaseCache):
            return self._cache
        return get_caches().get(self._cache)

    def cache_key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The cache key a call with these arguments uses."""
        if self._key is not None:
            custom = self._key(*args, **kwargs)
            if not isinstance(custom, str):
                raise InvalidKeyError(
                    f"the key function of {self._default_prefix} returned "
                    f"{type(custom).__name__}, not str.",
                    hint="make key=... return a string such as f'user:{user_id}'.",
                )
            return f"{self._prefix}:{custom}" if self._prefix else custom
        # Bind so that f(1, b=2) and f(1, 2) (and omitted defaults) share one key.
        bound = self._signature.bind(*args, **kwargs)
        bound.apply_defaults()
        positional = list(bound.args)
        if self._binding == "class" and positional and isinstance(positional[0], type):
            cls = positional[0]  # a class is no value: it stands in the key by its name
            positional[0] = f"{cls.__module__}.{cls.__qualname__}"
        try:
            encoded = _arguments_bytes(positional, sorted(bound.kwargs.items()))
        except RecursionError:
            raise  # the stack is nearly used up (a deep recursion): not the arguments' fault
        except Exception as exc:
            # A signal handler's exception (a Celery soft time limit) during the encode
            # of large arguments is the caller's, not a refusal of its arguments.
            signalled = raised_by_signal_handler(exc)
            if signalled is not None:
                raise signalled from None
            raise self._unencodable(bound) from None
        digest = hashlib.sha256(encoded).hexdigest()
        return f"{self._prefix or self._default_prefix}:{digest}"

    def _unencodable(self, bound: inspect.BoundArguments) -> SerializationError:
        """Name the first argument the codec rejects."""
        codec = _key_codec()
        culprit, why = "?", ""
        for name, value in bound.arguments.items():
            try:
                codec.dumps(value)
            except CacheError as exc:  # the codec's own reason (a type, a size): say it
                culprit, why = f"{name} ({type(value).__name__})", f": {exc.message}"
                break
            except Exception:
                culprit = f"{name} ({type(value).__name__})"
                break
        return SerializationError(
            f"@cached {self._default_prefix}: argument {culprit} cannot be encoded into "
            f"a cache key{why}",
            hint="pass key=lambda ...: '...' to build the key yourself, or use simple "
            "argument types (str, int, float, bool, None, lists, dicts).",
        )

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        key = self.cache_key(*args, **kwargs)
        if self._is_async:
            # The coroutine the caller awaits: the async shell awaits the function's own.
            return cast(R, self._acall(key, args, kwargs))
        return self.cache.get_or_set(
            key,
            lambda: self.__wrapped__(*args, **kwargs),
            self._time_span,
            self._idle_time,
            self._until,
        )

    async def _acall(self, key: str, args: Any, kwargs: Any) -> Any:
        func: Callable[..., Awaitable[Any]] = self.__wrapped__  # type: ignore[assignment]
        return await self.cache.aio().get_or_set(
            key,
            lambda: func(*args, **kwargs),
            self._time_span,
            self._idle_time,
            self._until,
        )

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """Forget the cached result for these arguments; True if one was cached."""
        return self.cache.delete(self.cache_key(*args, **kwargs))

    async def ainvalidate(self, *args: P.args, **kwargs: P.kwargs) -> bool:
        """:meth:`invalidate` through the async shell (for ``async def`` functions)."""
        return await self.cache.aio().delete(self.cache_key(*args, **kwargs))

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        # Behave like what it decorates: a method binds ``self``, a classmethod the class,
        # a staticmethod nothing.
        if self._binding == "class":
            return MethodType(self, owner if owner is not None else type(instance))
        if instance is None or self._binding == "static":
            return self
        return MethodType(self, instance)

    def __repr__(self) -> str:
        target = self._cache if not isinstance(self._cache, BaseCache) else self._cache.name
        return f"<cached {self._default_prefix} cache={target!r}>"


@overload
def cached(cache: Callable[P, R]) -> CachedFunction[P, R]: ...


@overload
def cached(
    cache: str | BaseCache | None = None,
    *,
    time_span: TimeSpan | None = None,
    idle_time: TimeSpan | None = None,
    until: datetime | None = None,
    key: Callable[..., str] | None = None,
    prefix: str | None = None,
) -> Callable[[Callable[P, R]], CachedFunction[P, R]]: ...


def cached(
    cache: str | BaseCache | Callable[P, R] | None = None,
    *,
    time_span: TimeSpan | None = None,
    idle_time: TimeSpan | None = None,
    until: datetime | None = None,
    key: Callable[..., str] | None = None,
    prefix: str | None = None,
) -> CachedFunction[P, R] | Callable[[Callable[P, R]], CachedFunction[P, R]]:
    """Cache a function's results in ``cache`` (a name, a cache, or None for the default).

    The key is ``"<prefix or module.qualname>:<sha256 of the arguments>"``, the
    arguments encoded with the safe codec (sets by their sorted items and dicts in key
    order, so equal arguments have one key in every process); pass ``key=`` (same
    arguments as the function, returning a str) to build it yourself, e.g. for methods.
    Functions made by one factory share their qualified name: give each its own
    ``prefix=``. ``None`` results are cached too. Concurrent calls with the same
    arguments compute once. The wrapper has ``.invalidate(*args, **kwargs)`` and
    ``.cache_key(*args, **kwargs)``. Put on top of ``@staticmethod`` or
    ``@classmethod``, it binds as they do; a classmethod's class is in the key by its
    qualified name, so a subclass has results of its own.
    """
    # Fail when decorating, not on the first call, for a bad TTL.
    make_expiry(time_span, idle_time, until, time.time())
    if (callable(cache) or isinstance(cache, (staticmethod, classmethod))) and not isinstance(
        cache, BaseCache
    ):
        # Used bare, as @cached: the "cache" argument is the function itself.
        return CachedFunction(
            cache,
            None,
            time_span=time_span,
            idle_time=idle_time,
            until=until,
            key=key,
            prefix=prefix,
        )
    target = cache

    def decorate(func: Callable[P, R]) -> CachedFunction[P, R]:
        return CachedFunction(
            func,
            target,
            time_span=time_span,
            idle_time=idle_time,
            until=until,
            key=key,
            prefix=prefix,
        )

    return decorate
