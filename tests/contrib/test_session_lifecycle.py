"""Sessions you can log out of (issue #23), on the memory provider and every framework.

No resurrection by late or concurrent saves, bounded waits behind a crashed writer,
no session ids in errors or logs, atomic regenerate, Vary/sliding cookies, absolute
lifetime, read-only requests that write nothing. Provider-specific proofs (Redis,
DynamoDB, stale reads) are in test_provider_sessions.py.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import traceback
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from cachehub_memory import MemoryCache
from django.contrib.sessions.backends.cache import SessionStore as DjangoCacheSession
from django.core.cache import caches
from flask import Flask, session
from raw_asgi import asgi_exchange

from cachehub.api import BaseCache
from cachehub.contrib import vary_cookie
from cachehub.contrib.asgi import SessionMiddleware as ASGISessions
from cachehub.contrib.django import CacheHubCache
from cachehub.contrib.flask import CacheHubSessionInterface
from cachehub.contrib.wsgi import SessionMiddleware as WSGISessions
from cachehub.errors import CacheError, CacheUnavailableError, CacheValueError
from cachehub.session import (
    SessionBusyError,
    SessionCookie,
    SessionStore,
    TrackedSession,
    session_ref,
)
from cachehub.testing.clock import FakeClock

GATE_TIMEOUT = 10.0
"""Upper bound for every wait on a test's own events (never reached when all is well)."""

WRITES = ("put", "add", "delete", "touch", "incr")


class Gate:
    """Parks a request inside the app until the test lets it go."""

    def __init__(self) -> None:
        self.inside = threading.Event()
        self.release = threading.Event()

    def wait(self) -> None:
        self.inside.set()
        assert self.release.wait(GATE_TIMEOUT), "the test never released the request"


def write_ops(cache: BaseCache) -> list[str]:
    """Start recording the write operations ``cache`` performs; returns the live list."""
    seen: list[str] = []

    def observe(event: Any) -> None:
        if event.operation in WRITES:
            seen.append(event.operation)

    cache._observer = observe
    return seen


# --------------------------------------------------------------------------- WSGI


def make_wsgi(store: SessionStore, gates: dict[str, Gate]) -> WSGISessions:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        s: TrackedSession = environ["cachehub.session"]
        path = environ["PATH_INFO"]
        if path == "/login":
            s["user_id"] = 42
            s.regenerate()
        elif path == "/logout":
            s.clear()
        elif path == "/rotate":
            s.regenerate()
        elif path.startswith("/slow/"):  # reads the session, works, writes it all back
            gates[path[6:]].wait()
            s["seen"] = True
            s.modified = True
        elif path.startswith("/set/"):
            s[path[5:]] = 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [repr(sorted(s.items())).encode()]

    return WSGISessions(app, store)


def call(app: Any, path: str, cookie: str | None = None) -> tuple[str, list[str], dict[str, str]]:
    environ: dict[str, Any] = {"PATH_INFO": path}
    setup_testing_defaults(environ)
    if cookie:
        environ["HTTP_COOKIE"] = f"session={cookie}"
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured["headers"] = headers
        return lambda data: None

    body = b"".join(app(environ, start_response)).decode()
    headers = captured["headers"]
    cookies = [v for k, v in headers if k == "Set-Cookie"]
    return body, cookies, {k: v for k, v in headers if k != "Set-Cookie"}


def cookie_sid(cookies: list[str]) -> str:
    assert len(cookies) == 1, cookies
    return cookies[0].split(";")[0].split("=", 1)[1]


def in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    return thread, out


@pytest.fixture
def store(storage_cache: MemoryCache) -> SessionStore:
    return SessionStore(storage_cache, idle_time=timedelta(minutes=30))


@pytest.mark.parametrize("ender", ["/logout", "/rotate"])
def test_wsgi_late_save_never_resurrects(
    store: SessionStore, stored_session: Callable[..., Any], ender: str
) -> None:
    """A request running while the user logs out (or the id rotates) cannot bring the
    old session back, even with ``modified = True``, and sets no cookie."""
    gates = {"a": Gate()}
    app = make_wsgi(store, gates)
    _, cookies, _ = call(app, "/login")
    sid = cookie_sid(cookies)
    slow, out = in_thread(lambda: call(app, "/slow/a", sid))
    assert gates["a"].inside.wait(GATE_TIMEOUT)
    _, ended, _ = call(app, ender, sid)  # logout / rotation commits first
    gates["a"].release.set()
    slow.join(GATE_TIMEOUT)
    [(_, late_cookies, _)] = out
    assert late_cookies == []  # the late response leaves the browser's cookie alone
    assert stored_session(store.cache, sid) is None
    assert store.load(sid) is None
    if ender == "/rotate":
        new = cookie_sid(ended)
        assert store.load(new) == {"user_id": 42}  # the rotated session is untouched


def test_session_that_idles_out_during_a_long_request_stays_dead(
    storage_cache: MemoryCache, clock: FakeClock, stored_session: Callable[..., Any]
) -> None:
    store = SessionStore(storage_cache, idle_time=timedelta(minutes=5))
    gates = {"a": Gate()}
    app = make_wsgi(store, gates)
    sid = cookie_sid(call(app, "/login")[1])
    slow, out = in_thread(lambda: call(app, "/slow/a", sid))
    assert gates["a"].inside.wait(GATE_TIMEOUT)
    clock.advance(5 * 60 + 1)
    gates["a"].release.set()
    slow.join(GATE_TIMEOUT)
    assert out[0][1] == []
    assert stored_session(storage_cache, sid) is None


def test_store_refuses_saves_of_ended_sessions(store: SessionStore) -> None:
    sid = store.create({"user_id": 42})
    late = store.open(sid)
    late.modified = True
    assert store.delete(sid)
    assert store.update(sid, lambda d: d.update(x=1)) is None
    assert store.save(sid, {"user_id": 42}) is False
    assert store.touch(sid) is False
    assert store.commit(late) is None
    assert late.gone
    assert store.load(sid) is None
    assert store.regenerate(sid) != sid  # a fresh, empty session: nothing carried over
    assert not any(v == {"user_id": 42} for v in store.cache.get_all().values())


def test_hostile_records_are_absent_not_errors(store: SessionStore) -> None:
    """Another process writing junk at a session's key cannot crash or steer the store."""
    sid = store.create({"a": 1})
    key = store.storage_key(sid)
    junk: list[Any] = [
        None,
        "x",
        {"v": 1},
        {"v": True, "d": {}, "c": 0, "r": 0},
        {"v": 2**60, "d": {}, "c": 0, "r": 0},
        {"v": 1, "d": {1: 2}, "c": 0, "r": 0},
        {"v": 1, "d": {}, "c": float("nan"), "r": 0},
        {"v": 1, "d": [], "c": 0, "r": 0},
        # Whole numbers beyond a float's range: parsing raised a raw OverflowError.
        {"v": 1, "d": {}, "c": 10**400, "r": 0},
        {"v": 1, "d": {}, "c": 0, "r": -(10**400)},
    ]
    for value in junk:
        store.cache.put(key, value)
        assert store.load(sid) is None
        assert store.update(sid, lambda d: d.update(x=1)) is None
        assert repr(store.cache.get(key)) == repr(value)  # refused, not overwritten


def test_concurrent_logout_and_saves_through_wsgi(
    store: SessionStore, stored_session: Callable[..., Any]
) -> None:
    """Many requests of one user race a logout: whatever order, the session ends dead."""
    gates = {str(n): Gate() for n in range(8)}
    app = make_wsgi(store, gates)
    sid = cookie_sid(call(app, "/login")[1])
    running = [in_thread(lambda n=n: call(app, f"/slow/{n}", sid)) for n in range(8)]
    for gate in gates.values():
        assert gate.inside.wait(GATE_TIMEOUT)
    barrier = threading.Barrier(9)

    def release(gate: Gate) -> None:
        barrier.wait(GATE_TIMEOUT)
        gate.release.set()

    releasers = [threading.Thread(target=release, args=(g,)) for g in gates.values()]
    for t in releasers:
        t.start()
    barrier.wait(GATE_TIMEOUT)
    _, _logout_cookies, _ = call(app, "/logout", sid)
    for t in releasers:
        t.join(GATE_TIMEOUT)
    for thread, _ in running:
        thread.join(GATE_TIMEOUT)
    assert stored_session(store.cache, sid) is None
    assert store.load(sid) is None
    for _, out in running:
        [(_, cookies, _)] = out
        assert cookies == []  # merged before the logout (no change of id) or refused after


# --------------------------------------------------------------------------- Flask, Django


def test_flask_late_save_after_logout(
    store: SessionStore, stored_session: Callable[..., Any]
) -> None:
    app = Flask(__name__)
    app.config.update(SESSION_COOKIE_SECURE=True)
    app.session_interface = CacheHubSessionInterface(store)
    gate = Gate()

    @app.post("/login")
    def login() -> str:
        session["user_id"] = 42
        session.regenerate()  # type: ignore[attr-defined]
        return "ok"

    @app.post("/logout")
    def logout() -> str:
        session.clear()
        return "bye"

    @app.get("/slow")
    def slow() -> str:
        _ = session.get("user_id")
        gate.wait()
        session.modified = True
        return "slow"

    client = app.test_client()
    client.post("/login")
    cookie = client.get_cookie("session")
    assert cookie is not None
    sid = cookie.value
    late_client = app.test_client()
    late_client.set_cookie("session", sid)
    thread, out = in_thread(lambda: late_client.get("/slow"))
    assert gate.inside.wait(GATE_TIMEOUT)
    client.post("/logout")
    gate.release.set()
    thread.join(GATE_TIMEOUT)
    assert out[0].status_code == 200
    assert "Set-Cookie" not in out[0].headers
    assert stored_session(store.cache, sid) is None


def test_django_stock_engine_refused_without_storage_flag(
    make_cache: Callable[..., MemoryCache],
) -> None:
    backend = caches["sessions"]
    assert isinstance(backend, CacheHubCache)
    original = backend.cachehub
    backend.cachehub = make_cache(name="plain-django")
    try:
        s = DjangoCacheSession()
        s["user_id"] = 1
        with pytest.raises(CacheError, match="not enabled for session storage") as err:
            s.save()
        assert s.session_key is None or s.session_key not in str(err.value)
        backend.cachehub = make_cache(name="stored-django", storage=True)
        s.save()  # the same engine on a storage cache works
        assert DjangoCacheSession(session_key=s.session_key)["user_id"] == 1
        assert s.session_key is not None
        assert all(s.session_key not in k for k in list(backend.cachehub.keys()))
    finally:
        backend.cachehub = original


def test_cachehub_django_engine_hashes_keys(storage_cache: MemoryCache) -> None:
    from cachehub.contrib.django_session import SessionStore as GuardedSession

    backend = caches["sessions"]
    assert isinstance(backend, CacheHubCache)
    original = backend.cachehub
    backend.cachehub = storage_cache
    try:
        s = GuardedSession()
        s["user_id"] = 7
        s.save()
        key = s.session_key
        assert key
        stored = list(storage_cache.keys())
        assert stored
        assert all(key not in k for k in stored)
        assert GuardedSession(session_key=key)["user_id"] == 7
        assert s.exists(key)
        s.delete()
        assert not s.exists(key)
        assert list(storage_cache.keys()) == []
    finally:
        backend.cachehub = original


# --------------------------------------------------------------------------- waits


def test_crashed_writer_only_delays_the_next_save(stored_session: Callable[..., Any]) -> None:
    """A claim left by a writer that died expires after lock_ttl; the next save waits
    for it (bounded by lock_timeout) and then succeeds."""
    cache = MemoryCache(storage=True, name="real-clock")  # claims expire on real time
    store = SessionStore(cache, lock_ttl=0.2, lock_timeout=5.0)
    sid = store.create({"a": 1})
    assert cache.add(store.storage_key(sid) + "#2", "write", time_span=0.2)  # crashed writer
    assert store.update(sid, lambda d: d.update(b=2)) == {"a": 1, "b": 2}
    assert stored_session(cache, sid) == {"a": 1, "b": 2}


def test_busy_session_error_is_bounded_typed_and_carries_no_id(
    storage_cache: MemoryCache, caplog: pytest.LogCaptureFixture
) -> None:
    store = SessionStore(storage_cache, lock_ttl=0.05, lock_timeout=0.05)
    sid = store.create({"a": 1})
    # A claim that never lapses (the fake clock stands still): the save must give up.
    storage_cache.add(store.storage_key(sid) + "#2", "write", time_span=60)
    session = store.open(sid)
    session["b"] = 2
    app = make_wsgi(store, {})
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SessionBusyError) as err:
        call(app, "/set/b", sid)
    assert isinstance(err.value, CacheError)
    text = "".join(traceback.format_exception(err.value)) + caplog.text
    assert sid not in text
    assert session_ref(sid) in str(err.value)
    assert store.load(sid) == {"a": 1}


def test_asgi_waits_without_parking_executor_threads(storage_cache: MemoryCache) -> None:
    """With a one-thread default executor, an unrelated request completes while another
    request's save waits for a busy session: the wait holds no thread."""
    store = SessionStore(storage_cache, lock_ttl=60, lock_timeout=GATE_TIMEOUT)
    busy = store.create({"a": 1})
    other = store.create({"b": 1})
    blocker = store.storage_key(busy) + "#2"
    storage_cache.add(blocker, "write", time_span=60)  # held until the test deletes it

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["session"]["touched"] = True
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    mw = ASGISessions(app, store)

    async def request(sid: str) -> list[dict[str, Any]]:
        scope = {
            "type": "http",
            "path": "/",
            "headers": [(b"cookie", f"session={sid}".encode())],
        }
        return await asgi_exchange(mw, scope)

    async def main() -> tuple[bool, list[dict[str, Any]]]:
        asyncio.get_running_loop().set_default_executor(
            concurrent.futures.ThreadPoolExecutor(max_workers=1)
        )
        stalled = asyncio.ensure_future(request(busy))
        for _ in range(50):  # let the stalled save reach its waiting loop
            await asyncio.sleep(0.01)
        unrelated = await asyncio.wait_for(request(other), GATE_TIMEOUT)
        was_waiting = not stalled.done()
        await asyncio.to_thread(storage_cache.delete, blocker)
        await asyncio.wait_for(stalled, GATE_TIMEOUT)
        return was_waiting, unrelated

    was_waiting, unrelated = asyncio.run(main())
    assert was_waiting  # the unrelated request finished while the other still waited
    assert unrelated[0]["status"] == 200
    assert store.load(other) == {"b": 1, "touched": True}
    assert store.load(busy) == {"a": 1, "touched": True}


# --------------------------------------------------------------------------- regenerate


class FailingAdds(MemoryCache):
    """A cache whose adds of records or claims, or deletes of records, fail on demand."""

    fail = False
    fail_claims = False
    fail_deletes = False

    def add(self, key: str, value: Any, *args: Any, **kwargs: Any) -> bool:
        if self.fail_claims if "#" in key else self.fail:
            raise CacheUnavailableError("simulated outage during add().")
        return super().add(key, value, *args, **kwargs)

    def delete(self, key: str) -> bool:
        if self.fail_deletes and "#" not in key:
            raise CacheUnavailableError("simulated outage during delete().")
        return super().delete(key)


def test_failed_regenerate_leaves_the_user_logged_in(clock: FakeClock) -> None:
    cache = FailingAdds(storage=True, name="flaky", clock=clock)
    store = SessionStore(cache)
    app = make_wsgi(store, {})
    sid = cookie_sid(call(app, "/login")[1])
    cache.fail = True
    with pytest.raises(CacheUnavailableError):
        call(app, "/rotate", sid)
    cache.fail = False
    assert store.load(sid) == {"user_id": 42}  # the old session is intact
    assert len(list(cache.keys())) == 1  # the old record only: no orphaned copy


def test_failed_rotation_claim_leaves_no_orphaned_copy(clock: FakeClock) -> None:
    cache = FailingAdds(storage=True, name="flaky", clock=clock)
    store = SessionStore(cache)
    app = make_wsgi(store, {})
    sid = cookie_sid(call(app, "/login")[1])
    cache.fail_claims = True  # the copy under the new id is written, then the claim fails
    with pytest.raises(CacheUnavailableError):
        call(app, "/rotate", sid)
    cache.fail_claims = False
    assert store.load(sid) == {"user_id": 42}
    assert list(cache.keys()) == [store.storage_key(sid)]  # the copy was removed again


def test_failed_removal_after_a_rotation_or_logout(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    cache = FailingAdds(storage=True, name="flaky", clock=clock)
    store = SessionStore(cache)
    app = make_wsgi(store, {})
    sid = cookie_sid(call(app, "/login")[1])
    cache.fail_deletes = True
    _, cookies, _ = call(app, "/rotate", sid)  # moved: the user gets the new id anyway
    new = cookie_sid(cookies)
    assert store.load(new) == {"user_id": 42}
    assert session_ref(sid) in caplog.text
    assert sid not in caplog.text
    assert store.update(sid, lambda d: d.update(user_id=1)) is None  # old id: frozen
    with pytest.raises(CacheUnavailableError):
        call(app, "/logout", new)  # a logout reports the failure
    cache.fail_deletes = False
    for ended in (sid, new):  # the next write attempt finishes the removal
        assert store.cache.exists(store.storage_key(ended))
        assert store.save(ended, {"user_id": 1}) is False
        assert not store.cache.exists(store.storage_key(ended))


def test_regenerate_stores_the_new_session_before_ending_the_old(store: SessionStore) -> None:
    sid = store.create({"user_id": 1})
    order: list[str] = []
    cache = store.cache

    def observe(event: Any) -> None:
        if event.operation in ("add", "delete") and event.error is None:
            order.append(event.operation + (" claim" if "#" in str(event.key) else ""))

    cache._observer = observe
    new = store.regenerate(sid)
    assert order == ["add", "add claim", "delete"]
    assert store.load(new) == {"user_id": 1}


# --------------------------------------------------------------------------- cookies, cost


def test_read_only_requests_write_nothing(storage_cache: MemoryCache, clock: FakeClock) -> None:
    store = SessionStore(storage_cache, idle_time=timedelta(minutes=30))
    app = make_wsgi(store, {})
    sid = cookie_sid(call(app, "/login")[1])
    writes = write_ops(storage_cache)
    for _ in range(5):
        clock.advance(30)
        assert call(app, "/", sid)[1] == []
    assert writes == []
    clock.advance(3 * 60)  # past refresh (idle_time / 10): one refresh, cookie re-sent
    _, cookies, _ = call(app, "/", sid)
    assert writes == ["add", "put"]
    assert cookie_sid(cookies) == sid
    assert "Max-Age=1800" in cookies[0]


def test_cookie_slides_with_the_idle_window(storage_cache: MemoryCache, clock: FakeClock) -> None:
    """An active user's session and cookie both outlive any fixed window after login."""
    store = SessionStore(storage_cache, idle_time=timedelta(minutes=10))
    app = make_wsgi(store, {})
    _, cookies, _ = call(app, "/login")
    sid = cookie_sid(cookies)
    assert "Max-Age=600" in cookies[0]
    for _ in range(12):  # two hours of activity, a request every 10 minutes minus 1 s
        clock.advance(10 * 60 - 1)
        body, cookies, _ = call(app, "/", sid)
        assert "user_id" in body
        assert cookie_sid(cookies) == sid
        assert "Max-Age=600" in cookies[0]
    clock.advance(10 * 60 + 1)
    body, cookies, _ = call(app, "/", sid)
    assert body == "[]"
    assert "Max-Age=0" in cookies[0]


def test_absolute_lifetime_ends_active_sessions(
    storage_cache: MemoryCache, clock: FakeClock
) -> None:
    store = SessionStore(
        storage_cache, idle_time=timedelta(minutes=10), absolute_time=timedelta(minutes=25)
    )
    app = make_wsgi(store, {})
    sid = cookie_sid(call(app, "/login")[1])
    clock.advance(9 * 60)
    call(app, "/set/x", sid)
    clock.advance(9 * 60)
    _, cookies, _ = call(app, "/rotate", sid)  # rotation keeps the creation time
    new = cookie_sid(cookies)
    assert "Max-Age=420" in cookies[0]  # the cookie ends with the absolute lifetime
    clock.advance(7 * 60 + 1)
    assert store.load(new) is None
    with pytest.raises(CacheValueError, match="absolute_time must be a positive"):
        SessionStore(storage_cache, absolute_time=0)


@pytest.mark.parametrize("op", ["touch", "save", "update", "commit", "regenerate"])
def test_a_session_reaching_its_absolute_end_mid_write_is_gone_not_an_error(
    storage_cache: MemoryCache, clock: FakeClock, op: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The read finds 1 s of life left; by the time the write takes its own "now", the
    # lifetime has run out (a slow read, or the clock stepped). The write then asked the
    # cache for a negative TTL: "time_span must be a positive, finite duration, got
    # -0.2", a CacheValueError out of every save of a session in its last moment.
    store = SessionStore(storage_cache, idle_time=600, absolute_time=600)
    sid = store.create({"user_id": 42})
    session = store.open(sid)
    session["x"] = 1
    clock.advance(599)
    monkeypatch.setattr(store, "_now", lambda: clock.advance(0.6))  # each look: 0.6 s on
    calls: dict[str, Callable[[], Any]] = {
        "touch": lambda: store.touch(sid),
        "save": lambda: store.save(sid, {"user_id": 7}),
        "update": lambda: store.update(sid, lambda data: data.update(x=2)),
        "commit": lambda: store.commit(session),
        "regenerate": lambda: store.regenerate(sid),
    }
    result = calls[op]()
    if op == "regenerate":  # nothing of the ended session is carried over
        assert result != sid
        assert store.load(result) == {}
    else:
        assert result in (False, None)
    assert op != "commit" or session.gone
    assert store.load(sid) is None


def test_vary_cookie_on_every_response(store: SessionStore) -> None:
    app = make_wsgi(store, {})
    assert call(app, "/")[2]["Vary"] == "Cookie"
    assert vary_cookie([("Vary", "Accept-Encoding")]) == [("Vary", "Accept-Encoding, Cookie")]
    assert vary_cookie([("vary", "cookie")]) == [("vary", "cookie")]
    assert vary_cookie([("Vary", "*")]) == [("Vary", "*")]

    async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    scope = {"type": "http", "headers": []}
    mw = ASGISessions(asgi_app, store)
    sent = asyncio.run(asgi_exchange(mw, scope, {"type": "http.request"}))
    assert (b"Vary", b"Cookie") in sent[0]["headers"]


def test_cookie_options() -> None:
    sid = "A" * 43
    assert "Max-Age" not in SessionCookie(persistent=False).render(sid, 600)
    assert "Max-Age=600" in SessionCookie().render(sid, 600)
    assert "Max-Age=60" in SessionCookie(max_age=60).render(sid, 600)
    with pytest.raises(CacheValueError, match="max_age must be a positive int"):
        SessionCookie(max_age=0)
    with pytest.raises(CacheValueError, match=r"refresh .* must be shorter"):
        SessionStore(MemoryCache(storage=True), idle_time=60, refresh=60)


# -- a save stalled between its read and its claim (probe findings of this stop) ----------


class _Monotonic:
    """time.monotonic for the store, moved by the test (the cache has the FakeClock)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def _drive(store: SessionStore, steps: Any, reply: Any) -> Any:
    """Run a store's remaining steps on the sync cache, from ``reply`` to the end."""
    while True:
        try:
            step = steps.send(reply)
        except StopIteration as stop:
            return stop.value
        reply = None if isinstance(step, float) else step.call(store.cache)


@pytest.fixture
def stalled(
    storage_cache: MemoryCache, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> tuple[SessionStore, Callable[[float], None]]:
    """A store whose save can be parked between its read and its claim; the returned
    function lets seconds pass on both the cache's clock and the store's timer."""
    mono = _Monotonic()
    monkeypatch.setattr("cachehub.session.time.monotonic", mono)
    store = SessionStore(storage_cache, idle_time=timedelta(minutes=10), lock_ttl=2)

    def stall(seconds: float) -> None:
        clock.advance(seconds)
        mono.now += seconds

    return store, stall


def _parked_commit(store: SessionStore, sid: str, key: str) -> tuple[Any, Any, TrackedSession]:
    """A request's commit that has read the record and stops before its claim."""
    session = store.open(sid)
    assert session is not None
    session[key] = True
    steps = store._commit(session)
    op = next(steps)
    assert op.name == "get"
    return steps, op.call(store.cache), session


def test_a_save_stalled_past_the_claims_it_read_never_resurrects_a_logout(
    stalled: tuple[SessionStore, Callable[[float], None]],
) -> None:
    # On main: B read version 1, A wrote version 2 (its claim then lapsed), the user
    # logged out (gone marker at 3); B, resumed after lock_ttl, won the claim on 2 again
    # and wrote the logged-out session back.
    store, stall = stalled
    sid = store.create({"user_id": 42})
    steps, reply, late = _parked_commit(store, sid, "theme")
    assert store.update(sid, lambda data: data.__setitem__("cart", [1])) is not None
    assert store.delete(sid)
    stall(3)  # longer than lock_ttl: every write claim has expired
    assert _drive(store, steps, reply) is None
    assert late.gone
    assert store.load(sid) is None
    assert not store.exists(sid)


def test_a_save_stalled_past_the_claims_it_read_loses_no_update(
    stalled: tuple[SessionStore, Callable[[float], None]],
) -> None:
    # On main B's stale read was written back over A's update (the cart was lost).
    store, stall = stalled
    sid = store.create({"user_id": 42})
    steps, reply, _ = _parked_commit(store, sid, "theme")
    store.update(sid, lambda data: data.__setitem__("cart", [1]))
    stall(3)
    assert _drive(store, steps, reply) == sid
    assert store.load(sid) == {"user_id": 42, "cart": [1], "theme": True}


def test_a_save_whose_change_outlasts_half_the_claim_is_busy_not_written(
    stalled: tuple[SessionStore, Callable[[float], None]],
) -> None:
    store, stall = stalled

    def slow(data: dict[str, Any]) -> None:
        stall(1.5)  # each attempt's read is too old to claim from: bounded by lock_timeout
        data["x"] = 1

    sid = store.create({"user_id": 42})
    with pytest.raises(SessionBusyError, match="half of lock_ttl"):
        store.update(sid, slow)
    assert store.load(sid) == {"user_id": 42}


def test_a_refused_value_gives_its_claim_back(store: SessionStore) -> None:
    # On main the claim stayed: every save of the session waited lock_ttl (2 s) behind a
    # write that never came.
    sid = store.create({"user_id": 42})
    key = store.storage_key(sid)
    with pytest.raises(CacheError):
        store.update(sid, lambda data: data.__setitem__("bad", object()))
    assert not store.cache.exists(store._claim_key(key, 2))
    assert store.update(sid, lambda data: data.__setitem__("ok", 1)) == {"user_id": 42, "ok": 1}


def test_touching_a_session_created_empty_keeps_it(store: SessionStore) -> None:
    # On main touch() answered True and deleted it (an empty session "ends").
    sid = store.create()
    assert store.touch(sid)
    assert store.exists(sid)
    assert store.load(sid) == {}


def test_an_entry_the_codec_cannot_read_is_no_session(
    store: SessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On main a sound header over a junk body raised CorruptEntryError on every request
    # carrying that cookie (a 500 until the entry expired).
    from cachehub.errors import CorruptEntryError

    sid = store.create({"user_id": 42})
    key = store.storage_key(sid)
    real = store.cache.get

    def corrupt(k: str, default: Any = None, **kwargs: Any) -> Any:
        if k == key:
            raise CorruptEntryError("cached entry cannot be decoded: junk body.")
        return real(k, default, **kwargs)

    monkeypatch.setattr(store.cache, "get", corrupt)
    assert store.load(sid) is None
    opened = store.open(sid)
    assert opened == {}
    assert opened.sid is None  # a new session, as for any id with no session
    assert store.update(sid, lambda data: data.__setitem__("x", 1)) is None
