"""An exception a signal handler raises during a cache call is the program's.

Celery's ``SoftTimeLimitExceeded`` (an ``Exception``) or a ``SIGALRM`` deadline's
``TimeoutError`` can land at any instruction of a call. Before, the error policy took it
for the backend's: a ``CacheBackendError`` "this is a bug" (so the task's own ``except``
for its time limit never ran), or, for a ``TimeoutError`` a provider translates as an
outage, under ``onError: miss`` a miss that swallowed the deadline. A call ended that
way also retires the client when the provider says it may be unsound (redis-py's pool).

Each test raises the signal in the request itself (``signal.raise_signal``): Python runs
the handler right there, as it would for a signal arriving mid-request.
"""

from __future__ import annotations

import functools
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import pytest
from test_provider import Boom, Client, FakeRemote

from cachehub import MISSING, CacheBackendError, CacheUnavailableError
from cachehub.errors import raised_by_signal_handler

SIG = signal.SIGUSR1

pytestmark = pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(),
    reason="signal handlers run in the main thread only",
)


class SoftTimeLimitExceeded(Exception):
    """As Celery (billiard) raises it from its SIGUSR1 handler."""


class Requesting(FakeRemote):
    """A remote provider whose get sends one request on a leased client, through the
    translation every provider uses (``_guarded``); OSError counts as an outage."""

    backend_errors: ClassVar[tuple[type[Exception], ...]] = (Boom, OSError)
    unsound: ClassVar[bool] = True

    def __init__(self, settings: Any = None, /, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.during: Callable[[], object] = lambda: signal.raise_signal(SIG)
        self.seen: list[Client] = []

    def _interrupted(self, client: Client) -> bool:
        return self.unsound

    def _get(self, key: str, now: float) -> Any:
        with self._use() as client:
            return self._guarded(self._request, client)

    def _request(self, client: Client) -> Any:
        self.seen.append(client)
        self.during()
        return MISSING


@pytest.fixture
def handler() -> Iterator[Callable[[Callable[..., Any]], None]]:
    """Installs a SIG handler for the test; the previous one is put back."""
    before = signal.getsignal(SIG)

    def install(fn: Callable[..., Any]) -> None:
        signal.signal(SIG, fn)

    yield install
    signal.signal(SIG, before)


def _raiser(exc: BaseException) -> Callable[[int, Any], None]:
    def on_signal(signum: int, frame: Any) -> None:
        raise exc

    return on_signal


@pytest.mark.parametrize("on_error", ["raise", "miss"])
@pytest.mark.parametrize(
    "raised", [SoftTimeLimitExceeded("soft limit"), TimeoutError("deadline")], ids=repr
)
def test_a_signal_handlers_exception_reaches_the_caller_as_raised(
    handler: Callable[[Callable[..., Any]], None], raised: Exception, on_error: str
) -> None:
    """TimeoutError is an OSError, which this provider translates as an outage: under
    ``miss`` it was a miss and the deadline was lost; SoftTimeLimitExceeded was a
    CacheBackendError."""
    handler(_raiser(raised))
    cache = Requesting({"onError": on_error})
    with pytest.raises(type(raised)) as caught:
        cache.get("k")
    assert caught.value is raised


def test_the_same_exception_raised_by_the_backend_is_still_translated(
    handler: Callable[[Callable[..., Any]], None],
) -> None:
    """Only a handler's exception passes: the same type from the request itself (a
    socket's timeout) is an outage, a miss under ``onError: miss``, a typed error else."""
    handler(_raiser(TimeoutError("never raised: the request does not signal")))

    def times_out() -> None:
        raise TimeoutError("socket timed out")

    miss = Requesting({"onError": "miss"})
    miss.during = times_out
    assert miss.get("k", "default") == "default"
    strict = Requesting()
    strict.during = times_out
    with pytest.raises(CacheUnavailableError):
        strict.get("k")

    def fails() -> None:
        raise ValueError("a bug")

    strict.during = fails
    with pytest.raises(CacheBackendError, match="ValueError"):
        strict.get("k")


def test_a_handler_that_is_a_bound_method_or_a_partial_is_recognised(
    handler: Callable[[Callable[..., Any]], None],
) -> None:
    class Worker:
        def on_signal(self, signum: int, frame: Any) -> None:
            raise SoftTimeLimitExceeded("bound")

    def raise_it(exc: Exception, signum: int, frame: Any) -> None:
        raise exc

    cache = Requesting()
    handler(Worker().on_signal)
    with pytest.raises(SoftTimeLimitExceeded, match="bound"):
        cache.get("k")
    handler(functools.partial(raise_it, SoftTimeLimitExceeded("partial")))
    with pytest.raises(SoftTimeLimitExceeded, match="partial"):
        cache.get("k")


def test_a_handler_that_calls_a_helper_which_raises_is_recognised(
    handler: Callable[[Callable[..., Any]], None],
) -> None:
    def helper() -> None:
        raise SoftTimeLimitExceeded("from a helper")

    def on_signal(signum: int, frame: Any) -> None:
        helper()

    handler(on_signal)
    with pytest.raises(SoftTimeLimitExceeded, match="from a helper"):
        Requesting({"onError": "miss"}).get("k")


@pytest.mark.parametrize("raised", [SoftTimeLimitExceeded("soft"), KeyboardInterrupt()], ids=repr)
def test_an_interrupted_call_retires_an_unsound_client(
    handler: Callable[[Callable[..., Any]], None], raised: BaseException
) -> None:
    handler(_raiser(raised))
    cache = Requesting()
    with pytest.raises(type(raised)):
        cache.get("k")
    first = cache.seen[0]
    assert first.closed == 1  # no other call held it: released at once
    cache.during = lambda: None
    assert cache.get("k", "d") == "d"
    assert cache.seen[1] is not first
    assert cache.seen[1].closed == 0


def test_a_sound_client_is_kept_and_an_ordinary_error_retires_nothing(
    handler: Callable[[Callable[..., Any]], None],
) -> None:
    handler(_raiser(SoftTimeLimitExceeded("soft")))
    sound = Requesting()
    sound.unsound = False  # type: ignore[misc]
    with pytest.raises(SoftTimeLimitExceeded):
        sound.get("k")
    sound.during = lambda: None
    sound.get("k")
    assert sound.seen[0] is sound.seen[1]
    assert sound.seen[0].closed == 0

    def fails() -> None:
        raise Boom("down")

    broken = Requesting({"onError": "miss"})
    broken.during = fails
    broken.get("k")
    broken.get("k")
    assert broken.seen[0] is broken.seen[1]
    assert broken.seen[0].closed == 0


def test_a_retired_client_other_calls_hold_is_released_when_they_end(
    handler: Callable[[Callable[..., Any]], None],
) -> None:
    """The interrupted call retires the client; a call in another thread still on it
    finishes on it, and the last one out releases it."""
    handler(_raiser(SoftTimeLimitExceeded("soft")))
    cache = Requesting()
    inside, leave = threading.Event(), threading.Event()
    answers: list[Any] = []

    def slow_request() -> None:
        inside.set()
        assert leave.wait(10)

    def other() -> None:
        answers.append(cache.get("k", "other's default"))

    cache.during = slow_request
    worker = threading.Thread(target=other)
    worker.start()
    assert inside.wait(10)
    cache.during = lambda: signal.raise_signal(SIG)
    with pytest.raises(SoftTimeLimitExceeded):
        cache.get("k")
    shared = cache.seen[0]
    assert cache.seen[1] is shared
    assert shared.closed == 0
    leave.set()
    worker.join(10)
    assert answers == ["other's default"]
    assert shared.closed == 1
    cache.during = lambda: None
    cache.get("k")
    assert cache.seen[2] is not shared


def test_outside_the_main_thread_nothing_is_taken_for_a_handlers() -> None:
    def on_signal(signum: int, frame: Any) -> None:
        raise SoftTimeLimitExceeded("never")

    found: list[BaseException | None] = []

    def run() -> None:
        try:
            on_signal(0, None)  # the handler's own code, called as a plain function
        except SoftTimeLimitExceeded as exc:
            found.append(raised_by_signal_handler(exc))

    before = signal.signal(SIG, on_signal)
    try:
        worker = threading.Thread(target=run)
        worker.start()
        worker.join(10)
    finally:
        signal.signal(SIG, before)
    assert found == [None]


def test_a_chain_that_loops_ends(handler: Callable[[Callable[..., Any]], None]) -> None:
    first, second = ValueError("a"), ValueError("b")
    first.__context__, second.__context__ = second, first
    handler(_raiser(SoftTimeLimitExceeded("x")))
    assert raised_by_signal_handler(first) is None


@pytest.mark.parametrize(
    "value",
    [
        {"a": 1, "b": [1.5, "x"]},  # a map: the read's hot path
        [{"k": i} for i in range(20)],  # an array of maps
        {1: "int key"},  # read by msgpack after ormsgpack refuses the key
        ("tuple", b"bytes", {"nested": (1, 2)}),  # extensions: read item by item
    ],
    ids=["map", "array", "int-keyed", "extensions"],
)
@pytest.mark.parametrize("read", ["loads", "loads_local", "loads_local_many"])
def test_a_signal_handlers_exception_as_the_decoder_returns_is_never_dropped(
    handler: Callable[[Callable[..., Any]], None],
    monkeypatch: pytest.MonkeyPatch,
    value: Any,
    read: str,
) -> None:
    """A signal landing while ormsgpack decodes a large value is handled as the C call
    returns, inside the ``try`` whose fallback decodes again with msgpack: the handler's
    exception was dropped there and the read answered the value (Celery's soft time limit
    lost for the task)."""
    from cachehub import codec as codec_module

    codec = codec_module.make_codec("safe")
    blob = codec.dumps(value)
    assert codec.loads(blob) == value
    handler(_raiser(SoftTimeLimitExceeded("during the decode")))
    real = codec_module._unpackb
    armed = [True]

    def unpackb(*args: Any, **kwargs: Any) -> Any:
        try:
            return real(*args, **kwargs)
        finally:
            if armed[0]:
                armed[0] = False
                signal.raise_signal(SIG)  # handled here: as the C call returns or fails

    monkeypatch.setattr(codec_module, "_unpackb", unpackb)
    with pytest.raises(SoftTimeLimitExceeded, match="during the decode"):
        if read == "loads_local_many":
            codec.loads_local_many({"k": blob})
        else:
            getattr(codec, read)(blob)
    assert not armed[0]
    assert codec.loads(blob) == value  # nothing left behind for the next read


def test_a_signal_handlers_exception_while_cached_encodes_its_key_is_the_callers(
    handler: Callable[[Callable[..., Any]], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """It was a SerializationError: "argument ... cannot be encoded into a cache key"."""
    from cachehub_memory import MemoryCache

    from cachehub import cached, decorators

    cache = MemoryCache()

    @cached(cache=cache)
    def double(rows: list[int]) -> list[int]:
        return [2 * r for r in rows]

    handler(_raiser(SoftTimeLimitExceeded("while the key was made")))
    real = decorators._arguments_bytes

    def encode(*args: Any) -> bytes:
        try:
            return real(*args)
        finally:
            signal.raise_signal(SIG)

    monkeypatch.setattr(decorators, "_arguments_bytes", encode)
    with pytest.raises(SoftTimeLimitExceeded, match="while the key was made"):
        double(list(range(1000)))
    monkeypatch.undo()
    assert double([1, 2]) == [2, 4]


def test_a_provider_whose_client_is_always_sound_pays_no_look_at_the_handlers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A failed request (a refused conditional write, an outage) leaves the lease by an
    exception; the provider is asked first, so one that never retires its client skips
    the look for a handler's exception there (the error policy still looks once)."""
    from cachehub import provider

    looks: list[BaseException] = []
    real = provider.raised_by_signal_handler

    def counted(exc: BaseException) -> BaseException | None:
        looks.append(exc)
        return real(exc)

    monkeypatch.setattr(provider, "raised_by_signal_handler", counted)

    def fails() -> None:
        raise Boom("down")

    sound = Requesting({"onError": "miss"})
    sound.unsound = False  # type: ignore[misc]
    sound.during = fails
    sound.get("k")
    assert looks == []
    unsound = Requesting({"onError": "miss"})
    unsound.during = fails
    unsound.get("k")
    assert len(looks) == 1  # looked, found none: the client is kept
    assert unsound.seen[0].closed == 0


def test_a_signal_handlers_exception_in_an_async_locks_clean_up_is_not_just_logged(
    handler: Callable[[Callable[..., Any]], None],
) -> None:
    """A waiter cancelled while acquiring gives back what its attempt took; a failure
    there is logged (the lock expires after its ttl anyway), but a handler's exception is
    the program's: it was logged as "could not release after cancel" and lost."""
    import asyncio

    from cachehub_memory import MemoryCache

    cache = MemoryCache()
    lock = cache.aio().lock("job")

    async def release(name: str, token: str, now: float) -> bool:
        signal.raise_signal(SIG)
        return True

    cache._alock_release = release  # type: ignore[method-assign]
    handler(_raiser(SoftTimeLimitExceeded("during the clean-up")))
    with pytest.raises(SoftTimeLimitExceeded, match="during the clean-up"):
        asyncio.run(lock._give_back("token", unanswered=False))  # type: ignore[attr-defined]
