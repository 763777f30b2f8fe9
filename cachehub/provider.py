"""Everything a cache provider author builds on, in one module.

A provider is a :class:`BaseCache` subclass implementing the primitives (``_get``,
``_get_entry``, ``_set``, ``_add``, ``_delete``, ``_delete_if_equal``, ``_incr``,
``_touch``, ``_scan`` and the ``_lock_*`` ones; the batch primitives have loop
defaults). The public contract stays in :mod:`cachehub.api`; this module re-exports
what an author needs from it and adds :class:`RemoteCache`, the base of providers that
talk to a server over the network. It owns, once for every such provider:

* **lazy, thread-safe client creation** (:meth:`RemoteCache._connection`) and ``close()``
  (which writes pending read statistics back first, then releases the client);
* **error translation**: :attr:`RemoteCache.backend_errors` raised by the client library
  become typed :class:`~cachehub.errors.CacheError`\\ s through the provider's
  :meth:`RemoteCache._translate` (:meth:`RemoteCache._guarded`), which runs the
  provider's table of :class:`ErrorRule` rows through :func:`translate_error`;
* **read statistics** (per-entry hit counts and last access), which cost a write on the
  server: off by default (``hitCounts``); when on, counted in process
  (:class:`cachehub.hits.HitBuffer`) and written back in batches by
  :meth:`RemoteCache._write_hits`, every ``hitFlushInterval`` seconds, on ``close()``
  or on :meth:`RemoteCache.flush_hits`;
* warn-once logging, request ids for exactly-once writes, and the shared
  "not an int" error of ``incr``;
* the **async client lifecycle** for natively async providers: one async client per
  running event loop, created lazily by :meth:`RemoteCache._aconnect` and closed by
  ``cache.aio().close()``; :meth:`RemoteCache._aguarded` error translation; async hit
  write-back (:meth:`RemoteCache.aflush_hits`);
* **flows**: a multi-step primitive written once as a generator that yields
  :class:`Call` objects, run by :meth:`RemoteCache._drive` (sync) and
  :meth:`RemoteCache._adrive` (async), which also answer the generic steps :func:`pause`,
  :func:`fanout` and :func:`batch_limit`; :class:`FlowCache` defines every primitive and
  its async twin as the driver of the provider's flow, so a flow provider writes only
  flows. See docs/provider-guide.md, "Async primitives";
* **iterator flows**: a scan written once as a generator that yields :class:`Call`
  objects and :class:`Emit` batches of output (a :data:`Stream`), run by
  :meth:`RemoteCache._drive_iter` (an ``Iterator``) and :meth:`RemoteCache._adrive_iter`
  (an ``AsyncIterator``); :func:`pull` reads one stream inside another flow and
  :func:`rebatched` re-cuts its batches; with :func:`fanout`, parallel pages (DynamoDB's
  Scan segments) are one flow too.

See docs/provider-guide.md for a complete small provider built on it.
"""

from __future__ import annotations

import _thread
import asyncio
import gc
import inspect
import math
import os
import re
import secrets
import threading
import time
import weakref
from abc import abstractmethod
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, suppress
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import time as dt_time
from decimal import Decimal
from functools import lru_cache
from itertools import compress, islice
from typing import Any, ClassVar, Final, Generic, TypeAlias, TypeVar
from uuid import UUID

from .api import (
    COUNTER_RANGE,
    HIT_COUNT_MAX,
    MISSING,
    NO_EXPIRY,
    BaseCache,
    CacheMetadata,
    Entry,
    Expiry,
    counter_overflow,
)
from .codec import FORMAT_PICKLE_ZLIB, FORMAT_SAFE_ZLIB, FORMAT_SIGNED_ZLIB, unflooded
from .config import Option
from .errors import (
    CacheBackendError,
    CacheError,
    CacheOutcomeUnknownError,
    CachePermissionError,
    CacheUnavailableError,
    CacheValueError,
    ConfigError,
    CorruptEntryError,
    InvalidKeyError,
    causes,
    raised_by_signal_handler,
)
from .filters import KeyFilter
from .hits import ANY_VERSION, HitBuffer, PendingHits
from .scrub import scrub

__all__ = [
    "ANY_VERSION",
    "COUNTER_RANGE",
    "HIT_COUNTS",
    "HIT_FLUSH_INTERVAL",
    "HIT_OPTIONS",
    "INFLATION",
    "FIRST_STRETCH",
    "LOOP_STRETCH",
    "MISSING",
    "NO_EXPIRY",
    "ON_LOOP",
    "OFF_LOOP_BYTES",
    "OFF_LOOP_NODES",
    "YIELD_LOOP",
    "CLOSE_WAIT",
    "BaseCache",
    "Call",
    "CancelWatch",
    "Emit",
    "CacheBackendError",
    "CacheError",
    "CacheMetadata",
    "CacheOutcomeUnknownError",
    "CachePermissionError",
    "CacheUnavailableError",
    "CacheValueError",
    "ConfigError",
    "CorruptEntryError",
    "Entry",
    "ErrorRule",
    "Expiry",
    "Flow",
    "FlowCache",
    "InvalidKeyError",
    "KeyFilter",
    "Lease",
    "Option",
    "PendingHits",
    "RemoteCache",
    "Stream",
    "abandon_transport",
    "achunks",
    "adecoded",
    "batch_limit",
    "causes",
    "chunks",
    "counter_overflow",
    "decode_weight",
    "decoded",
    "decodes_inline",
    "encoded",
    "fork_safe_lock",
    "heavy",
    "off_loop",
    "run_off_loop",
    "fanout",
    "stretch_due",
    "stretched",
    "not_an_int",
    "pause",
    "pull",
    "rebatched",
    "request_id",
    "scrub",
    "translate_error",
    "unflooded",
]

C = TypeVar("C")
T = TypeVar("T")

HIT_COUNTS: Final = Option(
    "hitCounts",
    bool,
    False,
    "keep per-entry hit counts and last-access times on the server (metadata()). Off by "
    "default: a plain read is then one read request and never a write. On, reads are "
    "counted in process and written back in batches (see hitFlushInterval).",
)
HIT_FLUSH_INTERVAL: Final = Option(
    "hitFlushInterval",
    float,
    60.0,
    "with hitCounts on: seconds after which counted reads are written back by the next "
    "operation (0: only on close(), flush_hits() or once 10,000 keys are pending).",
    minimum=0,
)
HIT_OPTIONS: Final = (HIT_COUNTS, HIT_FLUSH_INTERVAL)
"""The read-statistics settings every :class:`RemoteCache` takes (add them to ``options``)."""


class CancelWatch:
    """Raises a cancel the client library swallowed during one awaited request.

    Made just before the ``await`` and checked after it (``check()`` on the answer,
    ``check(exc)`` on the library's error): a task cancelled while the call waited gets
    ``CancelledError``, never the call's answer or error. On Python 3.11
    ``asyncio.wait_for`` returns its inner result when the cancel arrives in the loop
    turn that inner call finished in (CPython gh-86296), and redis-py sends every command
    through one (``send_packed_command``): a cancelled ``get`` went on and answered, and a
    cancelled ``get_or_set`` waiter went on to compute. The task's count of cancel
    requests (``Task.cancelling()``), which grew and was not taken back (``uncancel()``),
    tells; a cancel ``asyncio.timeout`` made is then its ``TimeoutError``, as usual.

    A plain object, not a wrapping coroutine: the hot paths (``RedisCache._aget``) await
    the client directly, one coroutine frame fewer.
    """

    __slots__ = ("_cancels", "_task")

    def __init__(self) -> None:
        self._task = asyncio.current_task()
        self._cancels = self._task.cancelling() if self._task is not None else 0

    def check(self, cause: BaseException | None = None) -> None:
        """Raise ``CancelledError`` (chained to ``cause``, the call's own error) if the
        task was cancelled since this watch was made."""
        if self._task is not None and self._task.cancelling() > self._cancels:
            if cause is None:
                raise asyncio.CancelledError
            raise asyncio.CancelledError from cause


@dataclass(frozen=True, slots=True)
class Call:
    """One backend request a flow yields: ``Call("eval", script, key, arg)``.

    ``name`` names a pair of the provider's I/O methods: the sync driver runs
    ``self._<name>(*args)``, the async one awaits ``self._a<name>(*args)``. The pair does
    the one request (and nothing else); the flow decides what to send and what the reply
    means, once for both shells.
    """

    name: str
    args: tuple[Any, ...] = ()

    def __init__(self, name: str, *args: Any) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "args", args)


Flow: TypeAlias = Generator[Call, Any, T]
"""A primitive's logic as a generator: it yields :class:`Call` objects, receives their replies
(or has their errors thrown in), and returns the primitive's result."""

YIELD_LOOP: Final = Call("yield_loop")
"""What a flow yields between two long stretches of its own CPU work (decoding a big
batch): the async driver lets the event loop run its other callbacks first
(``_ayield_loop``: ``await asyncio.sleep(0)``), the sync one goes on at once
(``_yield_loop``). The reply is None. One callback of the loop holds one stretch."""


ON_LOOP: Final = Call("on_loop")
"""What a flow yields to learn whether an event loop runs it: True in the async driver,
False in the sync one. A batch flow asks once before weighing each value (:func:`heavy`),
so the sync shell, with no loop to keep free, pays nothing for it."""


LOOP_STRETCH: Final = 0.001
"""Seconds of a flow's own CPU work (encoding or decoding a batch) between two
:data:`YIELD_LOOP` (see :func:`stretched`). Measured by the clock, not by bytes: values
are stored compressed, so 5 MB of 20 KB values may be 50 KB on the wire, and decoding
them whole held the event loop for 10-15 ms under load."""

FIRST_STRETCH: Final = 32
"""Items of a flow's first stretch (see :func:`stretched`): a batch of up to this many is
handled in one go, with no yield."""


def stretched(work: Callable[[range], None], count: int) -> Flow[None]:
    """Call ``work`` on consecutive ranges that cover ``range(count)``, with
    :data:`YIELD_LOOP` whenever :data:`LOOP_STRETCH` seconds have passed since the last:
    the async shell's loop runs others between two stretches, the sync driver goes on,
    so both shells share the flow. The first range holds :data:`FIRST_STRETCH` items;
    each next one as many as half a stretch holds at the last range's pace, at most twice
    the last range (the clock is read per range, not per item: ``work`` keeps its C-level
    passes)."""
    start, size = 0, FIRST_STRETCH
    began = time.perf_counter()
    while start < count:
        stop = min(count, start + size)
        before = time.perf_counter()
        work(range(start, stop))
        after = time.perf_counter()
        if stop < count and after - began >= LOOP_STRETCH:
            yield YIELD_LOOP
            began = time.perf_counter()
        spent = (after - before) / (stop - start)  # per item
        # At most doubled: a batch's cheap first values say little of its later ones.
        size = max(1, min(2 * size, int(LOOP_STRETCH / 2 / spent))) if spent > 0 else 2 * size
        start = stop


OFF_LOOP_BYTES: Final = 64 * 1024
"""Encoded bytes from which the async shell decodes one value in a worker thread (see
:func:`decoded`); below, on the loop. Measured (CPython 3.12, the default codec, one
value): a thread hop costs the loop's thread 50-70 us of CPU (260 us of wall time at a
load of 10); decoding 64 KiB costs from 20 us (one string or bytes value: a copy) to
3-12 ms (a list of dicts or tuples: 75-180 us per KiB). So at 64 KiB the hop moves off
the loop 40-200 times what it costs, for the values that matter, and a string of that
size costs the loop one hop more than its copy (tens of us). Below 16 KiB no decode
reaches 3 ms. A compressed payload weighs :data:`INFLATION` times its size
(:func:`decode_weight`)."""

INFLATION: Final = 8
"""What a compressed payload's size is multiplied by to weigh its decoding: zlib gives
no decompressed size, and the values worth moving compress 5-15 times (a list of 30,000
small tuples: 300 KB, 49 KB compressed, 87 ms to decode). A compressed payload of 8 KiB
or more is decoded off the loop; one that compressed less (at least 1/8 saved, or it is
stored plain) costs the loop a hop it could have spared, tens of us."""

_PACKED: Final = frozenset({FORMAT_SAFE_ZLIB, FORMAT_PICKLE_ZLIB, FORMAT_SIGNED_ZLIB})


def decode_weight(data: bytes | bytearray | memoryview, start: int = 0) -> int:
    """What decoding the codec payload ``data[start:]`` weighs against
    :data:`OFF_LOOP_BYTES`: its size, times :data:`INFLATION` when it is compressed (its
    first byte says, see :mod:`cachehub.codec`)."""
    size = len(data) - start
    if size > 0 and data[start] in _PACKED:
        return size * INFLATION
    return size


def decodes_inline(data: bytes | bytearray | memoryview, start: int = 0) -> bool:
    """Whether the async shell decodes ``data[start:]`` on the loop (see :func:`decoded`)."""
    return decode_weight(data, start) < OFF_LOOP_BYTES


OFF_LOOP_NODES: Final = 256
"""Items (of lists, tuples and sets, entries of dicts, attributes of objects, in all
nesting levels) from which :func:`heavy` calls a value heavy to encode: 256 tuples
encode in 0.4 ms, 256 dict fields in 0.1 ms. The walk that counts them costs the loop
0.1 us for a scalar, 1-3 us for a short flat value, 17-37 us for 100-250 items on a
loaded machine (benchmarks/heavy_cost.py): less than a hop."""


def heavy(value: Any) -> bool:
    """Whether encoding ``value`` may cost the event loop more than a thread hop: a str
    or bytes of :data:`OFF_LOOP_BYTES` or more, or containers holding more than
    :data:`OFF_LOOP_NODES` items in all, or strings of that many bytes in all. Objects
    the codec handles through its extension hooks or pickle (a query, a dataclass, a
    namedtuple or ``OrderedDict``, any object with attributes) are looked into: their
    attributes and items count alike. The size of an encoding is not known before it is
    made: the walk stops at the budget, so a heavy value costs the same small walk as a
    light one."""
    kind = type(value)
    if kind in _STRINGS:
        return len(value) >= OFF_LOOP_BYTES
    if kind in _ATOMS:
        return False  # the most common values: one type look-up, no walk
    if kind in _CONTAINERS:
        if len(value) > OFF_LOOP_NODES:
            return True
        if len(value) <= _SHORT:  # a row, a few ids: one look at the items, no walk
            items = list(value.values() if kind is dict else value)
            kinds = list(map(type, items))
            found = set(kinds)
            if found <= _ATOMS:
                return False
            if found <= _FLAT:
                texts = compress(items, map(_STRINGS.__contains__, kinds))
                return sum(map(len, texts)) >= OFF_LOOP_BYTES
    # One nesting level at a time, in C: the level's types by map, its containers'
    # sizes by len, the next level by gc.get_referents (their items; a dict's values, and
    # its keys unless all are str). A per-item Python loop cost 27-61 us for 20
    # five-field rows, 14-24% of an async Redis put of them (benchmarks/heavy_cost.py).
    budget, size = OFF_LOOP_NODES, 0
    level: list[Any] = [value]
    while level:
        kinds = list(map(type, level))
        found = set(kinds)
        if found <= _ATOMS:
            return False
        if not found.isdisjoint(_STRINGS):
            size += sum(map(len, compress(level, map(_STRINGS.__contains__, kinds))))
            if size >= OFF_LOOP_BYTES:
                return True
        containers = list(compress(level, map(_CONTAINERS.__contains__, kinds)))
        budget -= sum(map(len, containers))  # checked before the next level is built
        if budget < 0:
            return True
        below = gc.get_referents(*containers)
        if not found <= _KNOWN:
            # Objects the codec's hooks or pickle encode by their parts (not passed to
            # get_referents, which would add their classes); a subclass of str or of a
            # container also by its text or items.
            for item in compress(level, map((found - _KNOWN).__contains__, kinds)):
                parts = _attributes(item)
                if isinstance(item, _TEXTS):
                    size += len(item)
                elif isinstance(item, _CONTAINER_BASES):
                    parts.extend(item.values() if isinstance(item, dict) else item)
                budget -= 1 + len(parts)
                if budget < 0 or size >= OFF_LOOP_BYTES:
                    return True
                below.extend(parts)
        level = below
    return False


_CONTAINER_BASES: Final = (list, tuple, dict, set, frozenset)  # and their subclasses
_CONTAINERS: Final = frozenset(_CONTAINER_BASES)
_STRINGS: Final = frozenset({str, bytes, bytearray})
_TEXTS: Final = (str, bytes, bytearray, memoryview)

_ATOMS: Final = frozenset(
    {int, float, bool, complex, type(None), Decimal, datetime, date, dt_time, timedelta, UUID}
)
"""Types whose encoding costs the same whatever the value: no walk looks into them."""

_FLAT: Final = _ATOMS | _STRINGS
_KNOWN: Final = _FLAT | _CONTAINERS

_SHORT: Final = 16
"""Items of a container of scalars and strings (a dict: its values) that :func:`heavy`
weighs at a glance (``map`` in C, no walk): the shape of many values put (a row, ids)."""


def _attributes(obj: Any) -> list[Any]:
    """The attribute values of ``obj`` that pickle or the codec's hooks would encode: its
    ``__dict__`` and ``__slots__`` (a query's rows, a dataclass's fields). An attribute
    that raises on reading counts as absent: the encoder reports it, not this estimate."""
    found: list[Any] = []
    kind: type = type(obj)  # as a plain type: mypy takes type[Any] for unhashable
    has_dict, slots = _layout(kind)
    # A hostile __getattr__ or __dict__: the estimate stays what it has.
    with suppress(Exception):
        if has_dict:
            own = obj.__dict__
            if type(own) is dict:
                found.extend(own.values())
        for name in slots:
            found.append(getattr(obj, name, None))
    return found


@lru_cache(maxsize=256)  # classes made on the fly: the table stays bounded
def _layout(kind: type) -> tuple[bool, tuple[str, ...]]:
    """Whether instances of ``kind`` have a ``__dict__``, and the ``__slots__`` names of
    ``kind`` and its bases (looked up once per class, for the last 256 classes)."""
    names: list[str] = []
    for cls in kind.__mro__:
        slots = cls.__dict__.get("__slots__", ())
        names.extend((slots,) if isinstance(slots, str) else slots)
    has_dict = any("__dict__" in cls.__dict__ for cls in kind.__mro__[:-1])
    return has_dict, tuple(n for n in names if n not in ("__dict__", "__weakref__"))


def off_loop(fn: Callable[..., Any], *args: Any) -> Call:
    """The step of running ``fn(*args)``: CPU work on one value that would hold the event
    loop (:func:`decoded`, :func:`encoded`). The sync driver calls it; the async one in a
    worker thread (:meth:`RemoteCache._aoff_loop`). ``fn`` must touch nothing the flow
    or another task shares: a cancelled caller leaves it running to its end, unread."""
    return Call("off_loop", fn, *args)


def decoded(loads: Callable[[bytes, str], Any], data: bytes, key: str) -> Flow[Any]:
    """``loads(data, key)`` inside a flow: off the event loop (:func:`off_loop`) unless
    the payload :func:`decodes_inline`, else at once."""
    if decodes_inline(data):
        return loads(data, key)
    return (yield off_loop(loads, data, key))


def encoded(value: Any, fn: Callable[..., T], *args: Any) -> Flow[T]:
    """``fn(*args)``, the encoding of ``value``, inside a flow: off the event loop
    (:func:`off_loop`) when ``value`` is :func:`heavy`, else at once."""
    if not heavy(value):
        return fn(*args)
    done: T = yield off_loop(fn, *args)
    return done


async def run_off_loop(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a worker thread: the one way the async shells move a value's
    encoding or decoding off the event loop. Call it as ``provider.run_off_loop``: tests
    count the hops by patching it here."""
    return await asyncio.to_thread(fn, *args)


async def adecoded(loads: Callable[[bytes, str], Any], data: bytes, key: str) -> Any:
    """:func:`decoded` for an async primitive that is no flow (a hot path)."""
    if decodes_inline(data):
        return loads(data, key)
    return await run_off_loop(loads, data, key)


def stretch_due(began: float) -> bool:
    """Whether a flow that started its stretch at ``began`` (``time.perf_counter()``) has
    worked :data:`LOOP_STRETCH` seconds: time to :data:`YIELD_LOOP` (for loops that
    handle one item at a time; see :func:`stretched`)."""
    return time.perf_counter() - began >= LOOP_STRETCH


def pause(seconds: float) -> Call:
    """The step of waiting ``seconds`` before the next one (a retry's backoff); the
    driver answers it with ``time.sleep`` on the sync shell, ``asyncio.sleep`` on the loop."""
    return Call("pause", seconds)


def batch_limit(size: int) -> Call:
    """The step of asking how many items one request of a batch, or one scan page, may
    carry, the flow's own limit being ``size``. The sync driver answers ``size``; the
    async one at most :attr:`RemoteCache.loop_batch_limit`: a client library parses each
    reply in one event-loop callback, so a smaller reply is a shorter stall of the loop
    (more commands per round trip, or more pages, on the loop only)."""
    return Call("batch_limit", size)


def fanout(calls: Iterable[Call], workers: int) -> Call:
    """The step of sending independent ``calls``, ``workers`` at a time (threads on the
    sync shell, tasks on the loop). Its reply lists each call's reply in order, or its
    :class:`CacheError` as a value: one failure neither stops nor hides the others."""
    return Call("fanout", tuple(calls), workers)


@dataclass(frozen=True, slots=True)
class Emit(Generic[T]):
    """Output of an iterator flow (a :data:`Stream`): ``yield Emit(keys)`` hands ``keys``
    to the consumer, one at a time; the flow resumes (with ``None``) once they are taken.

    A batch per backend page keeps the driver's cost per page, not per item; the flow
    is suspended while the consumer holds the iterator, so memory is one batch.
    """

    items: Sequence[T]


Stream: TypeAlias = Generator["Call | Emit[T]", Any, None]
"""An iterator flow: a :data:`Flow` that also yields :class:`Emit` batches of output.
Driven by :meth:`RemoteCache._drive_iter` / :meth:`RemoteCache._adrive_iter`, or read
inside another flow by :func:`pull`."""


def pull(stream: Stream[T]) -> Flow[Sequence[T] | None]:
    """The next :class:`Emit` batch of ``stream``, inside another flow (None once it ends).

    ``batch = yield from pull(stream)``: the stream's calls pass through the outer flow's
    driver (their errors are thrown back into the stream, which may handle them). The
    outer flow owns ``stream`` and closes it (``with closing(stream):``).
    """
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = stream.send(reply) if error is None else stream.throw(error)
        except StopIteration:
            return None
        if isinstance(step, Emit):
            return step.items
        error = reply = None
        try:
            reply = yield step
        except Exception as exc:  # back into the stream: it may handle it
            error = exc


def rebatched(stream: Stream[T], size: int) -> Stream[T]:
    """``stream``'s output in :class:`Emit` batches of exactly ``size`` items (the last may
    hold fewer): a backend's page sizes vary, a batch request's limit does not. At most
    ``size`` items plus one batch of ``stream`` are held."""
    held: list[T] = []
    with closing(stream):
        while (batch := (yield from pull(stream))) is not None:
            held += batch
            while len(held) >= size:
                yield Emit(held[:size])
                del held[:size]
    if held:
        yield Emit(held)


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of at most ``size``, read lazily: a scan streams through in batches."""
    it = iter(items)
    while chunk := list(islice(it, size)):
        yield chunk


async def achunks(items: AsyncIterator[T], size: int) -> AsyncIterator[list[T]]:
    """:func:`chunks` for an async iterator: lists of at most ``size``, read lazily."""
    chunk: list[T] = []
    async for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def request_id() -> str:
    """A fresh id for a write that must apply once: 128 random bits, as 32 hex digits."""
    return secrets.token_hex(16)


@dataclass(frozen=True, slots=True)
class ErrorRule:
    """One row of a provider's error table: which client-library failures it covers and
    the typed :class:`CacheError` they become.

    A rule covers an exception when every criterion it gives holds: ``types`` (an
    ``isinstance`` check), ``codes`` (the backend's error code, e.g. an AWS error code)
    and ``text`` (a regular expression searched, case-insensitively, in the failure's
    text). A rule with no criterion covers everything: the table's last, catch-all row.
    ``message`` and ``hint`` are :meth:`str.format` templates filled with the fields
    given to :func:`translate_error` (what the server and the call were, the scrubbed
    detail); the values are never parsed as templates themselves.
    """

    error: type[CacheError]
    message: str
    hint: str | None = None
    types: tuple[type[BaseException], ...] = ()
    codes: frozenset[str] = frozenset()
    text: str | None = None

    def covers(self, exc: BaseException, code: str, text: str) -> bool:
        """Whether this rule applies to ``exc`` (with error code ``code`` and text ``text``)."""
        return (
            (not self.types or isinstance(exc, self.types))
            and (not self.codes or code in self.codes)
            and (self.text is None or re.search(self.text, text, re.IGNORECASE) is not None)
        )


def translate_error(
    rules: Iterable[ErrorRule],
    exc: BaseException,
    /,
    *,
    code: str = "",
    text: str | None = None,
    **fields: str,
) -> CacheError:
    """The typed error of the first of ``rules`` covering ``exc``, its templates
    filled with ``fields`` (``code`` and ``text`` too; ``text`` defaults to ``str(exc)``).

    Every provider's translation is this loop over its own table; the table is the
    backend's words (which failures mean unavailable, throttled, denied), the loop is
    not. Pass only scrubbed text in ``fields``: the error scrubs known secret shapes
    (:mod:`cachehub.scrub`), but only the provider knows its configured secrets. A table
    without a catch-all row that covers nothing gives a :class:`CacheBackendError`
    naming the exception's type alone (its text may hold what the table would scrub).
    """
    text = str(exc) if text is None else text
    for rule in rules:
        if rule.covers(exc, code, text):
            values = {"code": code, "text": text, **fields}
            hint = None if rule.hint is None else rule.hint.format(**values)
            return rule.error(rule.message.format(**values), hint=hint)
    return CacheBackendError(f"the backend failed with {type(exc).__name__}.")


def not_an_int(user_key: str, held: str, counter: str = "an int") -> CacheValueError:
    """The error of ``incr`` on an entry holding ``held`` (a type name) instead of a counter."""
    return CacheValueError(
        f"cannot incr key {user_key!r:.200}: it holds a {held}, not {counter}.",
        hint="incr/decr only work on entries created by incr or put with an int.",
    )


def fork_safe_lock() -> _thread.LockType:
    """A module-level lock that a forked child gets unheld.

    A lock held across ``os.fork()`` by another thread of the parent (one building a
    client under it: a cluster's topology, a botocore client, hundreds of ms) stays held
    in the child, where that thread does not exist: the child's first call that takes it
    hangs for good. The child re-initialises this one, as CPython does its own module
    locks (logging, concurrent.futures). The child then sees what the lock guards as the
    holder left it, between any two of its steps: guard only state that is usable at
    each (a dict whose entries are each set in one step).
    """
    lock = threading.Lock()
    if hasattr(os, "register_at_fork"):  # not on Windows, which never forks
        os.register_at_fork(after_in_child=lock._at_fork_reinit)  # type: ignore[attr-defined]
    return lock


CLOSE_WAIT: Final = 10.0
"""Seconds ``await aio().close()`` waits for the requests other tasks have in flight on
the loop's client before it closes the client under them."""


def _interrupting(exc: BaseException) -> bool:
    """Whether ``exc`` came from outside the request it ended, at any instruction: it is
    not an ``Exception`` (KeyboardInterrupt, SystemExit, a gevent Timeout) or a signal
    handler raised it (Celery's SoftTimeLimitExceeded)."""
    return not isinstance(exc, Exception) or raised_by_signal_handler(exc) is not None


class Lease(Generic[C]):
    """A client and the calls holding it.

    ``close()`` retires the cache's lease (later calls get a new client) and the retired
    client is released, exactly once, when no call holds it: a call in flight in another
    thread or task is never cut by a close (redis-py read a reply from a socket the
    closer had torn down and failed with ``AttributeError``, or waited its whole
    ``socketTimeout``). A call joins the lease (:meth:`join`, done by
    :meth:`RemoteCache._use`) and leaves it at the end of ``with lease as client:``.
    """

    __slots__ = ("__weakref__", "_interrupted", "_release", "client", "retired", "users")

    def __init__(
        self, client: C, interrupted: Callable[[Lease[C], BaseException], object] | None = None
    ) -> None:
        self.client = client
        # Run when a call ends by an exception: it decides whether the exception came from
        # outside the request, at any instruction of it (see _interrupting).
        self._interrupted = interrupted
        # One item per call holding the client: list.append and list.pop are each one
        # step under the GIL (and locked per list without it), so no lock on the hot path.
        self.users: list[None] = []
        self.retired = False
        # The release, once retired: popped by whoever runs it, so it runs exactly once
        # (two calls may end together, and a call may leave a lease it found retired).
        self._release: list[Callable[[C], object]] = []

    def join(self) -> bool:
        """Count one more call holding the client; False (nothing counted) if retired.

        Counted first, checked second, while :meth:`retire` marks first and checks the
        count second: a call and a close racing see each other, so no call starts on a
        client its close released.
        """
        self.users.append(None)
        if self.retired:
            self.__exit__()
            return False
        return True

    def __enter__(self) -> C:
        return self.client

    def __exit__(
        self, kind: type[BaseException] | None = None, exc: BaseException | None = None, *_: object
    ) -> None:
        users = self.users
        users.pop()
        if self.retired and not users:
            self._idle()
        if exc is not None and self._interrupted is not None:
            self._interrupted(self, exc)

    def retire(self, release: Callable[[C], object]) -> bool:
        """Take the lease out of use. True: no call holds the client, and the caller
        releases it now; else ``release(client)`` runs once, when the last call leaves.

        A call interrupted between joining and leaving (a signal handler's exception
        at an unlucky instruction) would keep the count up for good: the release then
        runs when the lease is collected.
        """
        self._release.append(release)
        self.retired = True
        if not self.users:
            try:
                self._release.pop()
            except IndexError:  # the last call left meanwhile and released it
                return False
            return True
        weakref.finalize(self, _release_left, self._release, self.client).atexit = False
        return False

    def _idle(self) -> None:
        _release_left(self._release, self.client)


def _release_left(pending: list[Callable[[C], object]], client: C) -> None:
    """Run a retired lease's release unless it ran (``pending`` is popped once)."""
    try:
        release = pending.pop()
    except IndexError:
        return
    release(client)


class RemoteCache(BaseCache, Generic[C]):
    """Base of providers whose data lives on a server, reached through a client of type ``C``.

    Subclasses implement the primitives plus :meth:`_connect` (build the client; called
    once, lazily), :meth:`_translate` (a client-library error as a typed CacheError) and,
    when they support ``hitCounts``, :meth:`_write_hits`. They add :data:`HIT_OPTIONS`
    to their ``options`` and call the hit helpers from their read and write paths:
    :meth:`_count_read` when a live plain entry was read, :meth:`_forget` when keys were
    overwritten or deleted, :meth:`_after_write` after a write (flushes when due).
    """

    distributed: ClassVar[bool] = True
    backend_errors: ClassVar[tuple[type[Exception], ...]] = ()
    """What the client library raises; :meth:`_guarded` translates exactly these."""
    loop_batch_limit: ClassVar[int | None] = None
    """Most items one request of a batch (or one scan page) carries in the async shell,
    where the client parses each reply in one callback of the event loop: the async
    driver's answer to :func:`batch_limit` (None: the flow's own limit, as in sync)."""

    def __init__(self, settings: Mapping[str, Any] | None = None, /, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.counts_hits = bool(self.settings.get("hitCounts", False))
        interval = self.settings.get("hitFlushInterval", 60.0)
        if not math.isfinite(interval):  # "inf"/"nan" parse as floats: never by time
            raise ConfigError(
                f"cache '{self.name}' ({type(self).__name__}): setting 'hitFlushInterval' "
                f"is {interval}, not a number of seconds.",
                hint="give seconds such as 60, or 0 to write counts back only on close() "
                "and flush_hits().",
            )
        self._hits: HitBuffer[str] = HitBuffer(interval)
        self._lease: Lease[C] | None = None
        self._conn_lock = threading.Lock()
        # One async client per running event loop (a client's connections belong to the
        # loop that opened them); a loop that is gone drops its client with it.
        self._aconns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Lease[Any]] = (
            weakref.WeakKeyDictionary()
        )
        # The one client build in flight per loop (see _ause), until it ends.
        self._aconnecting: dict[asyncio.AbstractEventLoop, asyncio.Task[Any]] = {}
        # Per loop, the async generator that closes its client at the loop's shutdown
        # (see _shutdown_guard); kept here because the loop only holds it weakly.
        self._aguards: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, AsyncGenerator[None, None]
        ] = weakref.WeakKeyDictionary()
        # Hit write-backs running in tasks of their own (see _awrite_hits_shielded), and
        # those whose caller was cancelled: close() waits for them, their errors are logged.
        self._hit_writes: set[asyncio.Task[None]] = set()
        self._orphan_writes: set[asyncio.Task[None]] = set()
        self._warn_lock = threading.Lock()
        self._warned: set[str] = set()

    def _forked(self) -> None:
        """In a forked child: the parent's clients are left as they are (closing them
        would close the parent's sockets too), the child makes its own on first use;
        reads the parent counted are the parent's to write back."""
        super()._forked()
        self._lease = None
        self._conn_lock = threading.Lock()
        self._aconns = weakref.WeakKeyDictionary()
        self._aconnecting = {}
        self._aguards = weakref.WeakKeyDictionary()
        self._hit_writes = set()
        self._orphan_writes = set()
        self._hits = HitBuffer(self._hits.interval, self._hits.max_keys)
        self._warn_lock = threading.Lock()

    # ------------------------------------------------------------------ the client

    @abstractmethod
    def _connect(self) -> C:
        """A new client for this cache's server (no request needs to be sent yet)."""

    def _interrupted(self, client: C) -> bool:
        """Whether ``client`` may be unsound after a sync call on it was interrupted: ended
        by a KeyboardInterrupt, a gevent Timeout or a signal handler's exception, at any
        instruction of the client library (between sending a request and reading its
        reply, inside its pool's bookkeeping). True retires the client as ``close()``
        does (:meth:`_lease_interrupted`). Default: False, for a library that cleans up
        after any exception itself."""
        return False

    def _lease_interrupted(self, lease: Lease[C], exc: BaseException) -> None:
        """Retire ``lease`` after a call on it ended by ``exc``, if ``exc`` came from outside
        the request and the provider says its client may then be unsound
        (:meth:`_interrupted`): later calls get a new client, and the old one is released
        when the calls still holding it end, as a close releases it. The provider is asked
        first: one that never says so pays nothing per failed request (a refused
        conditional write) for the look at the signal handlers."""
        if not self._interrupted(lease.client) or not _interrupting(exc):
            return
        with self._conn_lock:
            if self._lease is not lease:  # a close, or another interrupted call, retired it
                return
            self._lease = None
        if lease.retire(self._release_retired):
            self._release_retired(lease.client)

    def _disconnect(self, client: C) -> None:
        """Release ``client`` (default: its ``close()``, if it has one)."""
        close: Callable[[], object] | None = getattr(client, "close", None)
        if close is not None:
            close()

    def _use(self) -> Lease[C]:
        """The cache's one client, shared by all threads and created on first use, joined
        for one call that sends requests: ``with self._use() as client:``.

        Held that way, the client outlives a ``close()`` from another thread until the
        call ends (:class:`Lease`).
        """
        lease = self._lease
        if lease is not None:
            # Lease.join, inlined: the hot path of every request.
            users = lease.users
            users.append(None)
            if not lease.retired:
                return lease
            lease.__exit__()
        while True:
            joined = self._leased()
            if joined.join():
                return joined
            # retired by a close meanwhile: the next client

    def _leased(self) -> Lease[C]:
        """The current lease, making the client if there is none."""
        lease = self._lease
        if lease is None:
            with self._conn_lock:
                if self._lease is None:
                    self._lease = Lease(self._guarded(self._connect), self._lease_interrupted)
                lease = self._lease
        return lease

    def _connection(self) -> C:
        """The client, not held: for what sends nothing (its type, its key routing)."""
        return self._leased().client

    @property
    def _conn(self) -> C | None:
        """The client if one is made (None before the first call and after ``close()``)."""
        lease = self._lease
        return None if lease is None else lease.client

    def _close(self) -> None:
        """Write pending read statistics back, then release the client (recreated lazily),
        and what loops closed by hand left (:meth:`_forget_closed_loops`): a process that
        ran its last loop that way has no next loop to release them.

        A client that calls in other threads still hold is released by the last of them
        (:class:`Lease`), after this returns.
        """
        if self._lease is not None or len(self._hits):
            # Reads counted after an earlier close's flush are pending too: closed, the
            # cache has no later flush to write them.
            try:
                self.flush_hits()
            except CacheError as exc:
                self.log.warning("cache '%s': could not flush hit counts: %s", self.name, exc)
        with self._conn_lock:
            lease, self._lease = self._lease, None
        self._forget_closed_loops()
        if lease is not None and lease.retire(self._release_retired):
            self._guarded(self._disconnect, lease.client)

    def _release_retired(self, client: C) -> None:
        """Release a closed cache's client at the end of the last call that held it: that
        call's outcome stands, so a failure to release is logged, never raised."""
        try:
            self._guarded(self._disconnect, client)
        except Exception as exc:
            self.log.warning(
                "cache '%s': releasing the client of a closed cache failed: %s",
                self.name,
                scrub(str(exc)),
            )

    # ------------------------------------------------------------------ the async client

    async def _aconnect(self) -> Any:
        """A new async client for this cache's server, for the running loop.

        Natively async providers override it (and the ``_a*`` primitives); the default
        says the provider has none, and the async shell then runs the sync primitives in
        worker threads (:class:`~cachehub.api.BaseCache`'s defaults).
        """
        raise NotImplementedError(f"{type(self).__name__} has no async client")

    async def _adisconnect(self, client: Any) -> None:
        """Release an async ``client`` (default: its ``aclose()`` or ``close()``, awaited)."""
        close = getattr(client, "aclose", None) or getattr(client, "close", None)
        if close is not None:
            result = close()
            if inspect.isawaitable(result):
                await result

    async def _aconnection(self) -> Any:
        """The async client of the running event loop, not held: for what sends nothing."""
        loop = asyncio.get_running_loop()
        return (self._aconns.get(loop) or await self._aleased(loop)).client

    def _ajoin(self) -> Lease[Any] | None:
        """The running loop's client, joined for one call, without a coroutine once it
        exists (hot paths: ``lease = self._ajoin() or await self._ause()``)."""
        lease = self._aconns.get(asyncio.get_running_loop())
        # A lease in the map is not retired: a close takes it out first, on this thread.
        if lease is not None and not lease.retired:
            lease.users.append(None)
            return lease
        return None

    async def _ause(self) -> Lease[Any]:
        """The async client of the running event loop, created on its first use there,
        joined for one call: ``with await self._ause() as client:``.

        A client is never used on another loop than its own: each loop gets its own,
        and ``cache.aio().close()`` closes the running loop's once no call holds it.
        """
        loop = asyncio.get_running_loop()
        while True:
            lease = self._aconns.get(loop) or await self._aleased(loop)
            # A close of this loop may have taken the built client while this task
            # waited for it: the call then takes the next one.
            if self._aconns.get(loop) is lease and lease.join():
                return lease

    async def _aleased(self, loop: asyncio.AbstractEventLoop) -> Lease[Any]:
        """The lease of ``loop``'s client, once its one build ends."""
        # One build per loop, whatever number of tasks arrive before it ends: each build
        # is a client made in a worker thread (for aiobotocore 0.1-1 s of CPU), and N
        # tasks starting together (a web worker's first requests) used to make N of them
        # and keep one. N builds racing for the GIL cost the loop's own thread 50-110 ms
        # of CPU in a single callback (thread starts and GIL hand-offs, thousands of
        # context switches), and the thrown-away clients were pure waste.
        build = self._aconnecting.get(loop)
        if build is None:
            self._forget_closed_loops()
            build = loop.create_task(self._abuild_client(loop))
            self._aconnecting[loop] = build
            build.add_done_callback(self._aconnect_ended)
        # Shielded: a waiter's cancellation must not cancel the build the others await.
        return await asyncio.shield(build)

    def _forget_closed_loops(self) -> None:
        """Drop the clients, guards and builds of closed loops, and close what the clients
        left open (on a new loop's first operation).

        A client keeps its loop alive (its connections refer to it: redis-py's streams,
        aiobotocore's HTTP session), so the weak map alone never lets a closed loop's
        client go, and a loop closed while its build waited never ends that build: each
        ``asyncio.run`` (or ``async_to_sync``) of a process would keep a loop, a client
        and its sockets for good. A loop closed without ``shutdown_asyncgens`` (a
        ``loop.run_until_complete(...)`` then ``loop.close()``) never ran
        :meth:`_shutdown_guard`: its client's sockets are closed here
        (:meth:`_abandon`). One sweep over the three per-loop maps; copies, and pop:
        loops in other threads change the maps meanwhile (``keyrefs()`` copies the weak
        maps in one step).
        """
        refs = [*self._aconns.keyrefs(), *self._aguards.keyrefs()]
        loops = {loop for loop in (ref() for ref in refs) if loop is not None}
        for loop in loops.union(list(self._aconnecting)):
            if not loop.is_closed():
                continue
            self._aconnecting.pop(loop, None)
            _end_guard(self._aguards.pop(loop, None))
            lease = self._aconns.pop(loop, None)
            if lease is not None:
                try:
                    self._abandon(lease.client)
                except Exception as exc:  # a library's internals moved: the collector's then
                    self.log.debug("cache '%s': abandoning a client: %r", self.name, exc)

    def _abandon(self, client: Any) -> None:
        """Release the async ``client`` of a loop that was closed with it open.

        Nothing runs on a closed loop any more, so nothing is awaited: a provider closes
        the client's sockets here and now (:func:`abandon_transport`) and marks it
        closed, so that it warns of nothing when collected. Default: nothing (the
        collector closes what it can).
        """

    async def _abuild_client(self, loop: asyncio.AbstractEventLoop) -> Lease[Any]:
        """Make the client of ``loop`` and keep it (:meth:`_ause`'s single build)."""
        made = await self._aguarded(self._aconnect)
        lease = self._aconns.setdefault(loop, Lease(made))
        if lease.client is not made:  # kept by a subclass or a test meanwhile: one per loop
            await self._adisconnect(made)
        else:
            _end_guard(self._aguards.pop(loop, None))
            guard = self._shutdown_guard(loop, made)
            await anext(guard)  # started on this loop: the loop now finalizes it
            self._aguards[loop] = guard
        return lease

    async def _shutdown_guard(
        self, loop: asyncio.AbstractEventLoop, client: Any
    ) -> AsyncGenerator[None, None]:
        """Close ``client`` when ``loop`` shuts down without ``aio().close()``.

        ``asyncio.run`` (and every runner that calls ``loop.shutdown_asyncgens()``) closes
        the async generators started on the loop before closing it, while the loop still
        runs: this one then closes the loop's client. Without it the client of a loop
        closed without ``aio().close()`` was only dropped at the next loop's first
        operation, its connections never closed: aiohttp logged "Unclosed client
        session" and redis-py "Unclosed ... client" whenever the collector reached it.
        Ended without awaiting anything once the client was closed or the loop is gone
        (:func:`_end_guard`).
        """
        try:
            yield
        finally:
            self._aguards.pop(loop, None)  # this guard, or one _end_guard is ending
            lease = self._aconns.get(loop)
            if not loop.is_closed() and lease is not None and lease.client is client:
                del self._aconns[loop]
                try:
                    await self._adisconnect(client)
                except Exception as exc:  # shutting down: say so, never raise out of it
                    self.log.warning(
                        "cache '%s': closing the client of a loop shutting down failed: %s",
                        self.name,
                        scrub(str(exc)),
                    )

    def _aconnect_ended(self, build: asyncio.Task[Any]) -> None:
        """Forget a finished build (a failed one is retried by the next operation)."""
        loop = build.get_loop()
        if self._aconnecting.get(loop) is build:
            del self._aconnecting[loop]
        if not build.cancelled():
            # Its error reached every waiter; read here so that a build whose waiters were
            # all cancelled is not logged as "exception never retrieved".
            build.exception()

    async def _aguarded(self, fn: Callable[..., Awaitable[T]], /, *args: Any) -> T:
        """``await fn(*args)``, with :attr:`backend_errors` raised as :meth:`_translate` says.

        A cancel the client library swallowed is raised here (:class:`CancelWatch`): a
        task cancelled while the call waited gets ``CancelledError``, never the call's
        answer or error.
        """
        watch = CancelWatch()
        try:
            result = await fn(*args)
        except self.backend_errors as exc:
            watch.check(exc)
            raise self._translate(exc) from None
        watch.check()
        return result

    async def _aclose(self) -> None:
        """Write pending read statistics back, then close the running loop's async client
        once the calls of other tasks holding it have ended (:class:`Lease`).

        Without an async client (a sync-only provider) the sync client is closed, off
        the loop, as :meth:`BaseCache._aclose` does.
        """
        if type(self)._aconnect is RemoteCache._aconnect:
            await super()._aclose()
            return
        loop = asyncio.get_running_loop()
        build = self._aconnecting.get(loop)
        if build is not None:
            # A build in flight would keep its client after this close: let it end (its
            # error is its waiters'), then close what it kept. Not shielded from this
            # task's cancel, and never cancelling the build the waiters share.
            await asyncio.wait((build,))
        # Write-backs of cancelled operations first: they need this loop's client.
        mine = [task for task in self._hit_writes if task.get_loop() is loop]
        if mine:
            await asyncio.wait(mine)
        if loop in self._aconns:
            try:
                await self.aflush_hits()
            except CacheError as exc:
                self.log.warning("cache '%s': could not flush hit counts: %s", self.name, exc)
        lease = self._aconns.pop(loop, None)
        _end_guard(self._aguards.pop(loop, None))
        if lease is None:
            return
        idle = asyncio.Event()
        try:
            if not lease.retire(lambda _: idle.set()):
                # Calls of other tasks hold the client: they end on it, and new calls get
                # a new client meanwhile. Each is bounded by the client's timeouts per
                # attempt, which retries multiply: past CLOSE_WAIT the close goes ahead.
                try:
                    await asyncio.wait_for(idle.wait(), CLOSE_WAIT)
                except TimeoutError:
                    self.log.warning(
                        "cache '%s': closing the async client under %d request(s) still "
                        "in flight after %g s.",
                        self.name,
                        len(lease.users),
                        CLOSE_WAIT,
                    )
        finally:
            # Shielded: once forgotten, the client is closed whatever happens to this
            # task; a close cancelled in its disconnect left the client's connections
            # open, referenced by nothing (ResourceWarning: unclosed Connection). A
            # close cancelled while it waited closes the client now.
            await asyncio.shield(self._aguarded(self._adisconnect, lease.client))

    # ------------------------------------------------------------------ flows

    def _drive(self, flow: Flow[T]) -> T:
        """Run ``flow`` with the sync I/O methods (``self._<name>``)."""
        reply: Any = None
        error: BaseException | None = None
        try:
            while True:
                try:
                    call = flow.send(reply) if error is None else flow.throw(error)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
                error = None
                try:
                    reply = getattr(self, "_" + call.name)(*call.args)
                except Exception as exc:  # the flow may handle it; if not, it comes back out
                    error = exc
        finally:
            # Interrupted mid-flow (KeyboardInterrupt, a cancelled task): the flow's cleanup
            # runs now, not when a kept traceback lets the collector reach it.
            flow.close()

    async def _adrive(self, flow: Flow[T]) -> T:
        """Run ``flow`` with the async I/O methods (``self._a<name>``)."""
        reply: Any = None
        error: BaseException | None = None
        try:
            while True:
                try:
                    call = flow.send(reply) if error is None else flow.throw(error)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
                error = None
                try:
                    reply = await getattr(self, "_a" + call.name)(*call.args)
                except Exception as exc:
                    error = exc
        finally:
            flow.close()  # as in _drive: a cancelled task's flow is closed at once

    def _drive_iter(self, flow: Stream[T]) -> Iterator[T]:
        """Run the iterator flow ``flow`` with the sync I/O methods; its output, lazily.

        As :meth:`_drive`, plus :class:`Emit` steps: their items are yielded to the
        consumer. A consumer that stops early (``close()``), raises or is interrupted
        closes the flow at once (the ``finally``), whatever it was waiting on.
        """
        reply: Any = None
        error: BaseException | None = None
        try:
            while True:
                try:
                    step = flow.send(reply) if error is None else flow.throw(error)
                except StopIteration:
                    return
                error = reply = None
                if isinstance(step, Emit):
                    yield from step.items
                    continue
                try:
                    reply = getattr(self, "_" + step.name)(*step.args)
                except Exception as exc:
                    error = exc
        finally:
            flow.close()

    async def _adrive_iter(self, flow: Stream[T]) -> AsyncIterator[T]:
        """Run the iterator flow ``flow`` with the async I/O methods (``self._a<name>``)."""
        reply: Any = None
        error: BaseException | None = None
        try:
            while True:
                try:
                    step = flow.send(reply) if error is None else flow.throw(error)
                except StopIteration:
                    return
                error = reply = None
                if isinstance(step, Emit):
                    for item in step.items:
                        yield item
                    continue
                try:
                    reply = await getattr(self, "_a" + step.name)(*step.args)
                except Exception as exc:
                    error = exc
        finally:
            flow.close()  # as in _drive_iter: aclose(), a cancelled task, an error

    # Steps any flow may yield besides the provider's own I/O (:func:`pause`,
    # :func:`fanout`): how to wait and how to run calls at once is the shell's business.

    def _pause(self, seconds: float) -> None:
        time.sleep(seconds)

    async def _apause(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def _settled(self, call: Call) -> Any:
        try:
            return getattr(self, "_" + call.name)(*call.args)
        except CacheError as exc:
            return exc

    def _fanout(self, calls: tuple[Call, ...], workers: int) -> list[Any]:
        if workers <= 1 or len(calls) <= 1:
            return [self._settled(call) for call in calls]
        with ThreadPoolExecutor(min(workers, len(calls)), "cachehub-fanout") as pool:
            return list(pool.map(self._settled, calls))

    async def _afanout(self, calls: tuple[Call, ...], workers: int) -> list[Any]:
        gate = asyncio.Semaphore(max(1, workers))

        async def settled(call: Call) -> Any:
            async with gate:
                try:
                    return await getattr(self, "_a" + call.name)(*call.args)
                except CacheError as exc:
                    return exc

        return list(await asyncio.gather(*(settled(call) for call in calls)))

    def _batch_limit(self, size: int) -> int:
        """:func:`batch_limit` in the sync driver: the flow's own limit."""
        return size

    async def _abatch_limit(self, size: int) -> int:
        """:func:`batch_limit` in the async driver: at most :attr:`loop_batch_limit`."""
        limit = self.loop_batch_limit
        return size if limit is None else max(1, min(size, limit))

    def _on_loop(self) -> bool:
        """:data:`ON_LOOP` in the sync driver."""
        return False

    async def _aon_loop(self) -> bool:
        """:data:`ON_LOOP` in the async driver."""
        return True

    def _off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """:func:`off_loop` in the sync driver: no loop to keep free, at once."""
        return fn(*args)

    async def _aoff_loop(self, fn: Callable[..., T], *args: Any) -> T:
        """:func:`off_loop` in the async driver: in a worker thread (:func:`run_off_loop`)."""
        return await run_off_loop(fn, *args)

    def _yield_loop(self) -> None:
        """:data:`YIELD_LOOP` in the sync driver: no loop to hand over, the flow goes on."""

    async def _ayield_loop(self) -> None:
        """:data:`YIELD_LOOP` in the async driver: the loop's other callbacks run first."""
        await asyncio.sleep(0)

    # ------------------------------------------------------------------ errors

    @abstractmethod
    def _translate(self, exc: Exception) -> CacheError:
        """The typed cachehub error for one of :attr:`backend_errors` (secrets scrubbed)."""

    def _guarded(self, fn: Callable[..., T], /, *args: Any) -> T:
        """``fn(*args)``, with :attr:`backend_errors` raised as :meth:`_translate` says.

        The original exception is not chained (``from None``): client-library messages
        and tracebacks may carry connection strings that the translation scrubbed.
        """
        try:
            return fn(*args)
        except self.backend_errors as exc:
            raise self._translate(exc) from None

    def _warn_once(self, topic: str, message: str) -> None:
        """Log ``message`` as a warning the first time ``topic`` comes up for this cache."""
        with self._warn_lock:
            if topic in self._warned:
                return
            self._warned.add(topic)
        self.log.warning("cache '%s': %s", self.name, message)

    # ------------------------------------------------------------------ read statistics

    def _count_read(self, key: str, version: object, now: float) -> None:
        """Count one read of ``key`` (entry version ``version``) when hit counting is on."""
        if self.counts_hits:
            self._hits.count(key, version, now)

    def _count_reads(self, reads: Iterable[tuple[str, object]], now: float) -> None:
        """Count one read of each ``(key, version)`` when hit counting is on (one lock)."""
        if self.counts_hits:
            self._hits.count_many(reads, now)

    def _with_pending(self, entry: Entry, key: str, version: object) -> Entry:
        """``entry`` with this process's reads not yet written back added in (metadata)."""
        pending = self._hits.peek(key, version)
        if pending is not None:
            if entry.hits <= HIT_COUNT_MAX:
                # Saturated, as the write-back leaves a count at the limit: a count
                # another program set to exactly 2^53 was reported corrupt after one read.
                entry.hits = min(entry.hits + pending.hits, HIT_COUNT_MAX)
            entry.accessed = max(entry.accessed, pending.accessed)
        return entry

    def _take_hits(self, key: str, version: object = ANY_VERSION) -> int:
        """Remove and return the pending reads of ``key`` (a write carries them along)."""
        return self._hits.take(key, version)

    def _forget(self, *keys: str) -> None:
        """Drop pending reads of ``keys``: they were overwritten or deleted."""
        self._hits.forget(*keys)

    def pending_hits(self) -> int:
        """How many keys have reads counted in process, not yet written to the server."""
        return len(self._hits)

    def flush_hits(self) -> int:
        """Write counted reads (hit counts, last access) back; the number of keys sent.

        Reads of entries replaced or deleted meanwhile are dropped by the provider's
        conditional write (they belonged to the old entry). Nothing is sent when hit
        counting is off.
        """
        pending = self._hits.drain()
        if pending:
            self._write_hits(pending)
        return len(pending)

    def _write_hits(self, pending: dict[str, PendingHits]) -> None:
        """Write ``key: pending reads`` back to the server (needed for ``hitCounts``)."""
        raise NotImplementedError(f"{type(self).__name__} does not write hit counts back")

    def _after_write(self) -> None:
        """Write counted reads back when due; a failure is logged, never raised."""
        if not self._hits.due():
            return
        try:
            self.flush_hits()
        except CacheError as exc:
            self.log.warning("cache '%s': could not flush hit counts: %s", self.name, exc)

    async def aflush_hits(self) -> int:
        """:meth:`flush_hits` for async code (through :meth:`_awrite_hits`)."""
        pending = self._hits.drain()
        if pending:
            await self._awrite_hits_shielded(pending)
        return len(pending)

    def _write_hits_shielded(self, pending: dict[str, PendingHits]) -> None:
        """The sync twin of :meth:`_awrite_hits_shielded`: nothing cancels a thread."""
        self._write_hits(pending)

    async def _awrite_hits_shielded(self, pending: dict[str, PendingHits]) -> None:
        """:meth:`_awrite_hits` in a task of its own, which a cancel of the caller leaves
        running: the reads taken out of the buffer are written exactly once.

        Put back into the buffer instead, counts whose request had reached the server
        would be written twice; dropped, they were lost (a cancelled close(), or a write
        that flushed counts back). ``close()`` waits for such a task before it closes the
        loop's client, and logs its failure (the cancelled caller cannot see it).
        """
        task = asyncio.get_running_loop().create_task(self._awrite_hits(pending))
        self._hit_writes.add(task)
        task.add_done_callback(self._hit_write_done)
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            if not task.done():
                self._orphan_writes.add(task)
            raise

    def _hit_write_done(self, task: asyncio.Task[None]) -> None:
        self._hit_writes.discard(task)
        if task in self._orphan_writes:
            self._orphan_writes.discard(task)
            error = None if task.cancelled() else task.exception()
            if error is not None:
                self.log.warning("cache '%s': could not flush hit counts: %s", self.name, error)

    async def _awrite_hits(self, pending: dict[str, PendingHits]) -> None:
        """:meth:`_write_hits` for async code (default: the sync one, in a worker thread)."""
        await asyncio.to_thread(self._write_hits, pending)

    async def _aafter_write(self) -> None:
        """:meth:`_after_write` for async code."""
        if not self._hits.due():
            return
        try:
            await self.aflush_hits()
        except CacheError as exc:
            self.log.warning("cache '%s': could not flush hit counts: %s", self.name, exc)


class FlowCache(RemoteCache[C]):
    """A :class:`RemoteCache` whose primitives are flows, driven here for both shells.

    A provider writes each primitive once, as a flow (``_get_flow``, ``_set_flow``, ...,
    the same arguments as the primitive, see :class:`Call`); this class defines every
    primitive ``_x`` as ``self._drive(self._x_flow(...))`` and its async twin ``_ax`` as
    ``await self._adrive(self._x_flow(...))`` - the one call a provider would write, no
    extra layer. A provider may still override a primitive directly (a single-request hot
    path); it then needs no flow for it. A primitive with neither raises
    ``NotImplementedError`` naming both.

    Hit write-back is a flow too: :meth:`_write_hits_flow` (written by the provider) backs
    ``flush_hits()``/``aflush_hits()``, and :meth:`_flush_due_flow` is
    :meth:`RemoteCache._after_write` inside a flow (on the event loop as well).
    """

    def _unwritten(self, primitive: str) -> NotImplementedError:
        return NotImplementedError(
            f"{type(self).__name__} implements neither {primitive}() nor {primitive}_flow(); "
            f"a FlowCache provider writes {primitive}_flow (docs/provider-guide.md, "
            "'Async primitives')."
        )

    # ------------------------------------------------------------------ the flows to write
    # Defaults raise: a provider that writes neither the flow nor the primitive is told
    # which at the first call. The batch and internal-space primitives have no loop
    # default here (BaseCache's loops call the sync primitives, which a flow provider's
    # async shell must not block on).

    def _get_flow(self, key: str, now: float) -> Flow[Any]:
        """:meth:`BaseCache._get` as a flow."""
        raise self._unwritten("_get")

    def _get_entry_flow(self, key: str, now: float) -> Flow[Entry | None]:
        """:meth:`BaseCache._get_entry` as a flow."""
        raise self._unwritten("_get_entry")

    def _exists_flow(self, key: str, now: float) -> Flow[bool]:
        """:meth:`BaseCache._exists` as a flow (default: as BaseCache's, via the entry)."""
        return (yield from self._get_entry_flow(key, now)) is not None

    def _set_flow(self, key: str, value: Any, expiry: Expiry, now: float) -> Flow[None]:
        """:meth:`BaseCache._set` as a flow."""
        raise self._unwritten("_set")

    def _add_flow(self, key: str, value: Any, expiry: Expiry, now: float) -> Flow[bool]:
        """:meth:`BaseCache._add` as a flow."""
        raise self._unwritten("_add")

    def _delete_flow(self, key: str, now: float) -> Flow[bool]:
        """:meth:`BaseCache._delete` as a flow."""
        raise self._unwritten("_delete")

    def _delete_if_equal_flow(self, key: str, value: Any, now: float) -> Flow[bool]:
        """:meth:`BaseCache._delete_if_equal` as a flow."""
        raise self._unwritten("_delete_if_equal")

    def _incr_flow(self, key: str, delta: int, now: float) -> Flow[int]:
        """:meth:`BaseCache._incr` as a flow."""
        raise self._unwritten("_incr")

    def _touch_flow(self, key: str, expiry: Expiry, now: float) -> Flow[bool]:
        """:meth:`BaseCache._touch` as a flow."""
        raise self._unwritten("_touch")

    def _get_many_flow(self, keys: list[str], now: float) -> Flow[dict[str, Any]]:
        """:meth:`BaseCache._get_many` as a flow."""
        raise self._unwritten("_get_many")

    def _set_many_flow(self, items: dict[str, Any], expiry: Expiry, now: float) -> Flow[None]:
        """:meth:`BaseCache._set_many` as a flow."""
        raise self._unwritten("_set_many")

    def _delete_many_flow(self, keys: list[str], now: float) -> Flow[int]:
        """:meth:`BaseCache._delete_many` as a flow."""
        raise self._unwritten("_delete_many")

    def _lock_acquire_flow(self, name: str, token: str, ttl: float, now: float) -> Flow[int | None]:
        """:meth:`BaseCache._lock_acquire` as a flow."""
        raise self._unwritten("_lock_acquire")

    def _lock_release_flow(self, name: str, token: str, now: float) -> Flow[bool]:
        """:meth:`BaseCache._lock_release` as a flow."""
        raise self._unwritten("_lock_release")

    def _lock_extend_flow(self, name: str, token: str, ttl: float, now: float) -> Flow[bool]:
        """:meth:`BaseCache._lock_extend` as a flow."""
        raise self._unwritten("_lock_extend")

    def _lock_holder_flow(self, name: str, now: float) -> Flow[str | None]:
        """:meth:`BaseCache._lock_holder` as a flow."""
        raise self._unwritten("_lock_holder")

    def _clear_internal_flow(self, now: float) -> Flow[int]:
        """:meth:`BaseCache._clear_internal` as a flow (the locks live on the server)."""
        raise self._unwritten("_clear_internal")

    # The scans: one iterator flow, and count/clear over it unless the backend counts or
    # deletes server-side (then the provider overrides them with its own flows).

    def _scan_flow(self, flt: KeyFilter, now: float) -> Stream[str]:
        """:meth:`BaseCache._scan` as an iterator flow: ``yield Emit(keys)`` per page."""
        raise self._unwritten("_scan")

    def _count_flow(self, flt: KeyFilter, now: float) -> Flow[int]:
        """:meth:`BaseCache._count` as a flow (default: the keys of :meth:`_scan_flow`)."""
        counted = 0
        with closing(self._scan_flow(flt, now)) as keys:
            while (batch := (yield from pull(keys))) is not None:
                counted += len(batch)
        return counted

    def _clear_flow(self, flt: KeyFilter, now: float) -> Flow[int]:
        """:meth:`BaseCache._clear` as a flow (default: each batch of :meth:`_scan_flow`
        deleted by :meth:`_delete_many_flow` before the next page is read)."""
        removed = 0
        with closing(self._scan_flow(flt, now)) as keys:
            while (batch := (yield from pull(keys))) is not None:
                if batch:
                    removed += yield from self._delete_many_flow(list(batch), now)
        return removed

    def _write_hits_flow(self, pending: dict[str, PendingHits]) -> Flow[None]:
        """:meth:`RemoteCache._write_hits` as a flow (needed for ``hitCounts``)."""
        raise NotImplementedError(f"{type(self).__name__} does not write hit counts back")

    def _flush_due_flow(self) -> Flow[None]:
        """:meth:`RemoteCache._after_write` as a flow: write counted reads back when due;
        a failure is logged, never raised (the write that called it succeeded).

        One step, ``write_hits_shielded``: on the loop, :meth:`_awrite_hits_shielded`, so a cancel
        of the operation neither loses the drained counts nor writes them twice (their
        requests were yielded by this flow before, and died with it).
        """
        if not self._hits.due():
            return
        try:
            yield Call("write_hits_shielded", self._hits.drain())
        except CacheError as exc:
            self.log.warning("cache '%s': could not flush hit counts: %s", self.name, exc)

    # ------------------------------------------------------------------ the drivers
    # Each is the one line a provider would otherwise write twice: keep them that thin
    # (the hot paths run through them).

    def _get(self, key: str, now: float) -> Any:
        return self._drive(self._get_flow(key, now))

    async def _aget(self, key: str, now: float) -> Any:
        return await self._adrive(self._get_flow(key, now))

    def _get_entry(self, key: str, now: float) -> Entry | None:
        return self._drive(self._get_entry_flow(key, now))

    async def _aget_entry(self, key: str, now: float) -> Entry | None:
        return await self._adrive(self._get_entry_flow(key, now))

    def _exists(self, key: str, now: float) -> bool:
        return self._drive(self._exists_flow(key, now))

    async def _aexists(self, key: str, now: float) -> bool:
        return await self._adrive(self._exists_flow(key, now))

    def _set(self, key: str, value: Any, expiry: Expiry, now: float) -> None:
        self._drive(self._set_flow(key, value, expiry, now))

    async def _aset(self, key: str, value: Any, expiry: Expiry, now: float) -> None:
        await self._adrive(self._set_flow(key, value, expiry, now))

    def _add(self, key: str, value: Any, expiry: Expiry, now: float) -> bool:
        return self._drive(self._add_flow(key, value, expiry, now))

    async def _aadd(self, key: str, value: Any, expiry: Expiry, now: float) -> bool:
        return await self._adrive(self._add_flow(key, value, expiry, now))

    def _delete(self, key: str, now: float) -> bool:
        return self._drive(self._delete_flow(key, now))

    async def _adelete(self, key: str, now: float) -> bool:
        return await self._adrive(self._delete_flow(key, now))

    def _delete_if_equal(self, key: str, value: Any, now: float) -> bool:
        return self._drive(self._delete_if_equal_flow(key, value, now))

    async def _adelete_if_equal(self, key: str, value: Any, now: float) -> bool:
        return await self._adrive(self._delete_if_equal_flow(key, value, now))

    def _incr(self, key: str, delta: int, now: float) -> int:
        return self._drive(self._incr_flow(key, delta, now))

    async def _aincr(self, key: str, delta: int, now: float) -> int:
        return await self._adrive(self._incr_flow(key, delta, now))

    def _touch(self, key: str, expiry: Expiry, now: float) -> bool:
        return self._drive(self._touch_flow(key, expiry, now))

    async def _atouch(self, key: str, expiry: Expiry, now: float) -> bool:
        return await self._adrive(self._touch_flow(key, expiry, now))

    def _get_many(self, keys: list[str], now: float) -> dict[str, Any]:
        return self._drive(self._get_many_flow(keys, now))

    async def _aget_many(self, keys: list[str], now: float) -> dict[str, Any]:
        return await self._adrive(self._get_many_flow(keys, now))

    def _set_many(self, items: dict[str, Any], expiry: Expiry, now: float) -> None:
        self._drive(self._set_many_flow(items, expiry, now))

    async def _aset_many(self, items: dict[str, Any], expiry: Expiry, now: float) -> None:
        await self._adrive(self._set_many_flow(items, expiry, now))

    def _delete_many(self, keys: list[str], now: float) -> int:
        return self._drive(self._delete_many_flow(keys, now))

    async def _adelete_many(self, keys: list[str], now: float) -> int:
        return await self._adrive(self._delete_many_flow(keys, now))

    def _lock_acquire(self, name: str, token: str, ttl: float, now: float) -> int | None:
        return self._drive(self._lock_acquire_flow(name, token, ttl, now))

    async def _alock_acquire(self, name: str, token: str, ttl: float, now: float) -> int | None:
        return await self._adrive(self._lock_acquire_flow(name, token, ttl, now))

    def _lock_release(self, name: str, token: str, now: float) -> bool:
        return self._drive(self._lock_release_flow(name, token, now))

    async def _alock_release(self, name: str, token: str, now: float) -> bool:
        return await self._adrive(self._lock_release_flow(name, token, now))

    def _lock_extend(self, name: str, token: str, ttl: float, now: float) -> bool:
        return self._drive(self._lock_extend_flow(name, token, ttl, now))

    async def _alock_extend(self, name: str, token: str, ttl: float, now: float) -> bool:
        return await self._adrive(self._lock_extend_flow(name, token, ttl, now))

    def _lock_holder(self, name: str, now: float) -> str | None:
        return self._drive(self._lock_holder_flow(name, now))

    async def _alock_holder(self, name: str, now: float) -> str | None:
        return await self._adrive(self._lock_holder_flow(name, now))

    def _clear_internal(self, now: float) -> int:
        return self._drive(self._clear_internal_flow(now))

    async def _aclear_internal(self, now: float) -> int:
        return await self._adrive(self._clear_internal_flow(now))

    def _scan(self, flt: KeyFilter, now: float) -> Iterator[str]:
        return self._drive_iter(self._scan_flow(flt, now))

    def _ascan(self, flt: KeyFilter, now: float) -> AsyncIterator[str]:
        return self._adrive_iter(self._scan_flow(flt, now))

    def _count(self, flt: KeyFilter, now: float) -> int:
        return self._drive(self._count_flow(flt, now))

    async def _acount(self, flt: KeyFilter, now: float) -> int:
        return await self._adrive(self._count_flow(flt, now))

    def _clear(self, flt: KeyFilter, now: float) -> int:
        return self._drive(self._clear_flow(flt, now))

    async def _aclear(self, flt: KeyFilter, now: float) -> int:
        return await self._adrive(self._clear_flow(flt, now))

    def _write_hits(self, pending: dict[str, PendingHits]) -> None:
        self._drive(self._write_hits_flow(pending))

    async def _awrite_hits(self, pending: dict[str, PendingHits]) -> None:
        await self._adrive(self._write_hits_flow(pending))


def abandon_transport(transport: Any) -> None:
    """Close the socket under ``transport``, whose event loop was closed with it open.

    ``transport.close()`` marks the transport closing (so its stream warns of nothing),
    then schedules the rest on its loop, which a closed loop refuses (RuntimeError): the
    socket is closed here instead and dropped from the transport, which would otherwise
    warn "unclosed transport" and close it only when collected. An SSL transport's
    socket is its inner transport's.
    """
    inner = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None)
    if inner is not None:
        abandon_transport(inner)
    with suppress(RuntimeError):
        transport.close()
    sock = getattr(transport, "_sock", None)
    if sock is not None:
        sock.close()
        transport._sock = None


def _end_guard(guard: AsyncGenerator[None, None] | None) -> None:
    """End a :meth:`RemoteCache._shutdown_guard` whose client is closed or whose loop is
    gone, here and now: its cleanup then awaits nothing, so one ``send`` runs it, and a
    guard collected unfinished never asks its closed loop to finalize it."""
    if guard is None:
        return
    closing = guard.aclose()
    try:
        closing.send(None)
    except StopIteration:
        return
    except RuntimeError:  # already running or finished elsewhere: nothing left to end
        return
    closing.close()  # unreachable by construction: its cleanup awaits nothing here
