"""SessionStore on the real Redis server and the moto DynamoDB server.

Same servers as the providers' own test fixtures. Without redis-server / moto the tests
skip locally but fail under CI (env var CI set).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import threading
import traceback
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest

from cachehub.api import BaseCache
from cachehub.contrib.wsgi import SessionMiddleware as WSGISessions
from cachehub.errors import CacheValueError
from cachehub.session import SessionStore, TrackedSession


@pytest.fixture(params=["redis", "dynamodb"])
def make_provider(
    request: pytest.FixtureRequest, make_remote: Callable[..., BaseCache]
) -> Callable[..., BaseCache]:
    return lambda **kwargs: make_remote(request.param, **kwargs)


def test_session_lifecycle(make_provider: Callable[..., BaseCache]) -> None:
    store = SessionStore(make_provider(storage=True))
    sid = store.create({"user": "ann", "roles": ["admin"]})
    assert store.load(sid) == {"user": "ann", "roles": ["admin"]}
    new = store.regenerate(sid)
    assert store.load(sid) is None
    assert store.load(new) == {"user": "ann", "roles": ["admin"]}
    assert store.delete(new)
    assert store.load(new) is None


def test_concurrent_commits_merge(make_provider: Callable[..., BaseCache]) -> None:
    store = SessionStore(make_provider(storage=True))
    sid = store.create({"base": 0})
    workers = 6
    sessions = [store.open(sid) for _ in range(workers)]
    barrier = threading.Barrier(workers)

    def request(n: int) -> None:
        sessions[n][f"k{n}"] = n
        barrier.wait()
        store.commit(sessions[n])

    threads = [threading.Thread(target=request, args=(n,)) for n in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.load(sid) == {"base": 0, **{f"k{n}": n for n in range(workers)}}


# --------------------------------------------------------------------------- issue #23

GATE_TIMEOUT = 10.0


def _wsgi(store: SessionStore, gate: threading.Event, inside: threading.Event) -> Any:
    """A WSGI app: /login, /logout, /slow (reads, waits for the test, rewrites all)."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        s: TrackedSession = environ["cachehub.session"]
        path = environ["PATH_INFO"]
        if path == "/login":
            s["user_id"] = 42
            s.regenerate()
        elif path == "/logout":
            s.clear()
        elif path == "/slow":
            inside.set()
            assert gate.wait(GATE_TIMEOUT)
            s["seen"] = True
            s.modified = True
        elif path == "/big":
            s["blob"] = os.urandom(500_000)  # incompressible: beyond DynamoDB's 400 KB items
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [repr(sorted(s)).encode()]

    return WSGISessions(app, store)


def _call(app: Any, path: str, sid: str | None = None) -> list[str]:
    environ: dict[str, Any] = {"PATH_INFO": path}
    setup_testing_defaults(environ)
    if sid:
        environ["HTTP_COOKIE"] = f"session={sid}"
    headers: list[tuple[str, str]] = []

    def start_response(status: str, sent: list[tuple[str, str]], exc_info: Any = None) -> Any:
        headers.extend(sent)
        return lambda data: None

    b"".join(app(environ, start_response))
    return [v.split(";")[0].split("=", 1)[1] for k, v in headers if k == "Set-Cookie"]


def test_late_request_cannot_resurrect_a_logged_out_session(
    make_provider: Callable[..., BaseCache],
) -> None:
    """Real concurrent requests on a real server: a request already running when the
    user logs out commits afterwards (with modified = True) and is refused."""
    store = SessionStore(make_provider(storage=True))
    gate, inside = threading.Event(), threading.Event()
    app = _wsgi(store, gate, inside)
    [sid] = _call(app, "/login")
    late: list[list[str]] = []
    thread = threading.Thread(target=lambda: late.append(_call(app, "/slow", sid)))
    thread.start()
    assert inside.wait(GATE_TIMEOUT)
    assert _call(app, "/logout", sid) == ['""']  # the logout clears the cookie
    gate.set()
    thread.join(GATE_TIMEOUT)
    assert late == [[]]  # the late response sets no cookie at all
    assert store.load(sid) is None
    assert store.update(sid, lambda d: d.update(user_id=42)) is None


def test_read_only_request_writes_nothing(make_provider: Callable[..., BaseCache]) -> None:
    """Counted at the server: a request that only reads its session sends one read."""
    cache = make_provider(storage=True, hitFlushInterval=0)
    store = SessionStore(cache)
    app = _wsgi(store, threading.Event(), threading.Event())
    [sid] = _call(app, "/login")
    sent: list[str] = []
    if hasattr(cache, "client") and hasattr(cache.client, "meta"):  # DynamoDB
        cache.client.meta.events.register(
            "before-call.dynamodb", lambda model, **_: sent.append(model.name)
        )
        assert _call(app, "/", sid) == []
        assert sent == ["GetItem"]
    else:  # Redis: the server's own command statistics
        from redis import Redis

        plain = Redis.from_url(cache.settings["url"])

        def stats() -> dict[str, int]:
            raw: dict[str, Any] = plain.info("commandstats")
            return {n.removeprefix("cmdstat_"): int(v["calls"]) for n, v in raw.items()}

        before = stats()
        assert _call(app, "/", sid) == []
        after = stats()
        changed = {n: after[n] - before.get(n, 0) for n in after if after[n] != before.get(n)}
        assert changed == {"getrange": 1, "info": 1}  # get: a GETRANGE bounded by maxValueSize
        plain.close()


def test_dynamodb_stale_reads_lose_no_update_and_revive_nothing(
    make_provider: Callable[..., BaseCache], request: pytest.FixtureRequest
) -> None:
    """Eventually consistent GetItem simulated: reads return an older item. The version
    claim (a conditional write) makes the stale writer re-read instead of overwriting."""
    if request.node.callspec.params["make_provider"] != "dynamodb":
        pytest.skip("stale reads are a DynamoDB property")
    cache: Any = make_provider(storage=True)
    assert cache.settings["consistentRead"] is False  # the documented session config
    store = SessionStore(cache, lock_timeout=GATE_TIMEOUT)
    real = cache.client.get_item
    seen: dict[str, Any] = {}
    stale: dict[str, Any] = {"left": 0, "key": None, "reply": None, "served": 0}

    def get_item(**params: Any) -> Any:
        key = json.dumps(params["Key"], sort_keys=True)
        if not params.get("ConsistentRead") and stale["left"] and key == stale["key"]:
            stale["left"] -= 1
            stale["served"] += 1
            return copy.deepcopy(stale["reply"])
        reply = real(**params)
        seen["key"], seen["reply"] = key, copy.deepcopy(reply)
        return reply

    cache.client.get_item = get_item

    # Lost update: B commits, then A commits from a stale read of the version before B.
    sid = store.create({"base": 0})
    a, b = store.open(sid), store.open(sid)
    stale.update(key=seen["key"], reply=seen["reply"])  # the item as A and B read it
    b["b"] = 1
    assert store.commit(b) == sid
    stale["left"] = 3  # A's next three reads are stale
    a["a"] = 1
    assert store.commit(a) == sid
    assert stale["served"] == 3  # A did read stale data, lost the claim and re-read
    assert store.load(sid) == {"base": 0, "b": 1, "a": 1}

    # Resurrection: a stale read of a logged-out session still finds it "alive".
    sid = store.create({"user_id": 42})
    late = store.open(sid)
    stale.update(key=seen["key"], reply=seen["reply"], served=0)
    assert store.delete(sid)
    stale["left"] = 1_000  # every plain read of it stays stale
    late.modified = True
    assert store.commit(late) is None
    assert late.gone
    assert 1 <= stale["served"] < 10  # refused at the gone marker, not after a timeout
    stale["left"] = 0
    assert store.load(sid) is None


def test_dynamodb_item_too_large_error_carries_no_session_id(
    make_provider: Callable[..., BaseCache],
    request: pytest.FixtureRequest,
    caplog: pytest.LogCaptureFixture,
) -> None:
    if request.node.callspec.params["make_provider"] != "dynamodb":
        pytest.skip("the 400 KB item limit is DynamoDB's")
    store = SessionStore(make_provider(storage=True))
    app = _wsgi(store, threading.Event(), threading.Event())
    [sid] = _call(app, "/login")
    caplog.set_level(logging.DEBUG)
    with pytest.raises(CacheValueError, match="400 KB") as err:
        _call(app, "/big", sid)
    text = "".join(traceback.format_exception(err.value)) + caplog.text
    assert sid not in text
    assert store.load(sid) == {"user_id": 42}
