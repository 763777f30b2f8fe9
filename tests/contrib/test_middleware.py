"""WSGI and ASGI session middleware with tiny apps and no extra dependencies."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
from cachehub_memory import MemoryCache
from raw_asgi import asgi_exchange

from cachehub.contrib import private_response
from cachehub.contrib.asgi import SessionMiddleware as ASGISessions
from cachehub.contrib.wsgi import SessionMiddleware as WSGISessions
from cachehub.session import SessionCookie, TrackedSession
from cachehub.testing.clock import FakeClock


def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    session: TrackedSession = environ["cachehub.session"]
    path = environ["PATH_INFO"]
    if path == "/login":
        session["user"] = "ann"
        session.regenerate()
    elif path == "/logout":
        session.clear()
    elif path.startswith("/set/"):
        session[path[5:]] = True
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [repr(sorted(session.items())).encode()]


def wsgi_exchange(
    app: Any, path: str = "/", cookie: str | None = None
) -> tuple[list[tuple[str, str]], str]:
    """The response headers and body of one WSGI request to ``app``."""
    environ: dict[str, Any] = {"PATH_INFO": path}
    setup_testing_defaults(environ)
    if cookie:
        environ["HTTP_COOKIE"] = cookie
    captured: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured["headers"] = headers
        return lambda data: None

    body = b"".join(app(environ, start_response)).decode()
    return captured["headers"], body


def call_wsgi(app: Any, path: str, cookie: str | None = None) -> tuple[list[str], str]:
    headers, body = wsgi_exchange(app, path, cookie)
    return [v for k, v in headers if k == "Set-Cookie"], body


def sid(set_cookie: list[str]) -> str:
    assert len(set_cookie) == 1
    return set_cookie[0].split(";")[0].split("=", 1)[1]


def test_wsgi_session_lifecycle(storage_cache: MemoryCache, clock: FakeClock) -> None:
    app = WSGISessions(wsgi_app, storage_cache, idle_time=timedelta(minutes=5))
    cookies, body = call_wsgi(app, "/")
    assert cookies == []
    assert body == "[]"
    cookies, _ = call_wsgi(app, "/set/cart")
    first = sid(cookies)
    assert all(f in cookies[0] for f in ("Secure", "HttpOnly", "SameSite=Lax", "Path=/"))
    cookies, body = call_wsgi(app, "/", f"session={first}")
    assert cookies == []
    assert body == "[('cart', True)]"
    cookies, _ = call_wsgi(app, "/login", f"session={first}")
    second = sid(cookies)
    assert second != first
    assert call_wsgi(app, "/", f"session={first}")[1] == "[]"  # old id is dead
    assert call_wsgi(app, "/", f"session={second}")[1] == "[('cart', True), ('user', 'ann')]"
    clock.advance(5 * 60 + 1)
    cookies, body = call_wsgi(app, "/", f"session={second}")
    assert body == "[]"
    assert "Max-Age=0" in cookies[0]


def test_wsgi_logout_clears_cookie(
    storage_cache: MemoryCache, stored_session: Callable[..., Any]
) -> None:
    app = WSGISessions(wsgi_app, storage_cache, cookie=SessionCookie(name="sid", secure=False))
    cookies, _ = call_wsgi(app, "/set/x")
    assert "Secure" not in cookies[0]
    value = sid(cookies)
    cookies, _ = call_wsgi(app, "/logout", f"sid={value}")
    assert cookies[0].startswith("sid=")
    assert "Max-Age=0" in cookies[0]
    assert stored_session(storage_cache, value) is None


async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await send({"type": "lifespan.startup.complete"})
        return
    session: TrackedSession = scope["session"]
    if scope["path"] == "/login":
        session["user"] = "bob"
        session.regenerate()
    elif scope["path"] == "/logout":
        session.clear()
    elif scope["path"].startswith("/set/"):
        session[scope["path"][5:]] = True
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-app", b"1")]})
    await send({"type": "http.response.body", "body": repr(sorted(session.items())).encode()})


def call_asgi(app: Any, path: str, cookie: str | None = None) -> tuple[list[str], str]:
    headers = [(b"host", b"test")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    scope = {"type": "http", "method": "GET", "path": path, "headers": headers}
    start, body = asyncio.run(asgi_exchange(app, scope))
    assert (b"x-app", b"1") in start["headers"]
    cookies = [v.decode() for k, v in start["headers"] if k == b"set-cookie"]
    return cookies, body["body"].decode()


def test_asgi_session_lifecycle(
    storage_cache: MemoryCache, stored_session: Callable[..., Any]
) -> None:
    app = ASGISessions(asgi_app, storage_cache)
    assert call_asgi(app, "/") == ([], "[]")
    cookies, _ = call_asgi(app, "/login")
    first = sid(cookies)
    assert "HttpOnly" in cookies[0]
    cookies, body = call_asgi(app, "/", f"session={first}")
    assert cookies == []
    assert body == "[('user', 'bob')]"
    cookies, body = call_asgi(app, "/logout", f"session={first}")
    assert "Max-Age=0" in cookies[0]
    assert stored_session(storage_cache, first) is None


def test_asgi_passes_other_scopes_through(storage_cache: MemoryCache) -> None:
    app = ASGISessions(asgi_app, storage_cache)
    sent = asyncio.run(asgi_exchange(app, {"type": "lifespan"}, {"type": "lifespan.startup"}))
    assert sent == [{"type": "lifespan.startup.complete"}]
    assert storage_cache.count() == 0


def test_asgi_sessions_use_the_async_shell_not_threads(
    storage_cache: MemoryCache, monkeypatch: Any
) -> None:
    # The memory provider's async primitives are native: any worker thread here would
    # mean the middleware fell back to running the sync cache in threads.
    def no_threads(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the ASGI middleware ran a cache call in a worker thread")

    monkeypatch.setattr(asyncio, "to_thread", no_threads)
    calls: list[str] = []
    shell = storage_cache.aio()
    for name in ("get", "add", "put", "delete"):
        real = getattr(shell, name)

        def counted(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(shell, name, counted)
    app = ASGISessions(asgi_app, storage_cache)
    cookies, _ = call_asgi(app, "/login")
    first = sid(cookies)
    assert call_asgi(app, "/", f"session={first}")[1] == "[('user', 'bob')]"
    call_asgi(app, "/logout", f"session={first}")
    assert {"get", "add", "delete"} <= set(calls)


def test_asgi_concurrent_saves_of_one_session_wait_cooperatively(
    storage_cache: MemoryCache,
) -> None:
    app = ASGISessions(asgi_app, storage_cache)
    first = sid(call_asgi(app, "/login")[0])

    async def request(path: str) -> None:
        headers = [(b"host", b"test"), (b"cookie", f"session={first}".encode())]
        scope = {"type": "http", "method": "GET", "path": path, "headers": headers}

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            await asyncio.sleep(0)

        await app(scope, receive, send)

    async def together() -> None:
        await asyncio.gather(*(request(f"/set/k{i}") for i in range(20)))

    asyncio.run(asyncio.wait_for(together(), 30))
    _cookies, body = call_asgi(app, "/", f"session={first}")
    assert all(f"('k{i}', True)" in body for i in range(20))  # no save was lost


def test_responses_setting_the_cookie_are_private(storage_cache: MemoryCache) -> None:
    """A shared cache storing a response with Set-Cookie hands that session to every
    later visitor (Vary: Cookie does not stop it: they send no cookie either)."""

    def cached_wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        environ["cachehub.session"]["seen"] = True
        start_response(
            "200 OK", [("Cache-Control", "public, max-age=60"), ("cache-control", "s-maxage=9")]
        )
        return [b"ok"]

    headers, _ = wsgi_exchange(WSGISessions(cached_wsgi, storage_cache))
    assert any(k == "Set-Cookie" for k, _ in headers)
    assert [v for k, v in headers if k.lower() == "cache-control"] == ["max-age=60, private"]

    async def cached_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["session"]["seen"] = True
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"cache-control", b"public, s-maxage=600")],
            }
        )
        await send({"type": "http.response.body", "body": b"ok"})

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"host", b"t")]}
    sent = asyncio.run(asgi_exchange(ASGISessions(cached_asgi, storage_cache), scope))
    headers = sent[0]["headers"]
    assert any(k == b"set-cookie" for k, _ in headers)
    assert [v for k, v in headers if k.lower() == b"cache-control"] == [b"private"]
    # no-store already keeps every cache away; no Cache-Control at all becomes private.
    assert private_response([("Cache-Control", "no-store")]) == [("Cache-Control", "no-store")]
    assert private_response([]) == [("Cache-Control", "private")]


def test_asgi_reads_the_session_cookie_from_any_cookie_field(storage_cache: MemoryCache) -> None:
    """Over HTTP/2 a browser may split ``Cookie`` into several fields (RFC 9113 8.2.3),
    and an ASGI server may pass them on as they came: the session cookie can be in any."""
    app = ASGISessions(asgi_app, storage_cache)
    cookies, _ = call_asgi(app, "/login")
    value = sid(cookies)
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [
            (b"host", b"test"),
            (b"cookie", b"theme=dark; lang=en"),
            (b"cookie", f"session={value}".encode()),
        ],
    }
    sent = asyncio.run(asgi_exchange(app, scope))
    assert sent[1]["body"] == b"[('user', 'bob')]"


@pytest.mark.parametrize(
    "field",
    ["CDN-Cache-Control", "cdn-cache-control", "Fastly-CDN-Cache-Control", "Surrogate-Control"],
)
def test_responses_setting_the_cookie_drop_the_fields_addressed_to_cdns(
    storage_cache: MemoryCache, field: str
) -> None:
    """A CDN that reads a targeted field (RFC 9213, or Surrogate-Control) ignores
    Cache-Control, so ``private`` alone would not keep it from storing the Set-Cookie:
    the field goes (the CDN then reads ``private``). On main it stayed."""

    def wsgi_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        environ["cachehub.session"]["seen"] = True
        start_response("200 OK", [(field, "max-age=600"), ("X-Kept", "1")])
        return [b"ok"]

    headers, _ = wsgi_exchange(WSGISessions(wsgi_app, storage_cache))
    names = [k.lower() for k, _ in headers]
    assert "set-cookie" in names
    assert field.lower() not in names
    assert "x-kept" in names

    async def asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["session"]["seen"] = True
        headers = [(field.lower().encode(), b"max-age=600"), (b"x-kept", b"1")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})

    scope = {"type": "http", "method": "GET", "path": "/", "headers": [(b"host", b"t")]}
    sent = asyncio.run(asgi_exchange(ASGISessions(asgi_app, storage_cache), scope))
    names_b = [k.lower() for k, _ in sent[0]["headers"]]
    assert b"set-cookie" in names_b
    assert field.lower().encode() not in names_b
    assert b"x-kept" in names_b
    # The helper itself: the field goes, Cache-Control says private.
    assert private_response([(field, "max-age=600")]) == [("Cache-Control", "private")]


_FOREIGN = "eyJ1c2VyIjoiZXZlIn0.Z3mNqA.c2lnbmF0dXJl"
"""Another application's ``session`` cookie (a parent domain's, another path's)."""


@pytest.mark.parametrize("order", ["foreign-first", "foreign-last"])
def test_foreign_cookie_of_the_same_name_is_skipped(storage_cache: MemoryCache, order: str) -> None:
    """A browser sends every cookie of the name that matches, in no order the server can
    rely on (RFC 6265, "The Cookie Header"): the first value that looks like a session
    id is the session, on WSGI and ASGI. On main a foreign value first meant no session
    (a new one on every request), also as an empty value or a lone name."""
    wsgi = WSGISessions(wsgi_app, storage_cache)
    asgi = ASGISessions(asgi_app, storage_cache)
    for call, user in ((call_wsgi, "ann"), (call_asgi, "bob")):
        value = sid(call(wsgi if call is call_wsgi else asgi, "/login")[0])
        for foreign in (f"session={_FOREIGN}", "session=", 'session=""', "session"):
            pair = [foreign, f"session={value}"]
            header = "; ".join(pair if order == "foreign-first" else pair[::-1])
            cookies, body = call(wsgi if call is call_wsgi else asgi, "/", header)
            assert body == f"[('user', '{user}')]"
            assert cookies == []
