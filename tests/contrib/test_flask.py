"""Flask SessionInterface: login flow, regeneration, cookie flags, expiry."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from cachehub_memory import MemoryCache
from flask import Flask, session

from cachehub.contrib.flask import CacheHubSession, CacheHubSessionInterface
from cachehub.errors import StorageNotEnabledError
from cachehub.testing.clock import FakeClock


def make_app(cache: MemoryCache, **config: object) -> Flask:
    app = Flask(__name__)
    app.config.update(SESSION_COOKIE_SECURE=True, **config)
    app.session_interface = CacheHubSessionInterface(cache, idle_time=timedelta(minutes=10))

    @app.post("/cart/<item>")
    def add(item: str) -> str:
        session["cart"] = [*session.get("cart", []), item]
        return "ok"

    @app.post("/login/<user>")
    def login(user: str) -> str:
        assert isinstance(session, CacheHubSession)
        session["user"] = user
        session.regenerate()  # privilege change: new id against session fixation
        return "ok"

    @app.post("/logout")
    def logout() -> str:
        session.clear()
        return "bye"

    @app.get("/me")
    def me() -> dict[str, object]:
        return {"user": session.get("user"), "cart": session.get("cart", [])}

    return app


def sid_of(client: object) -> str | None:
    cookie = client.get_cookie("session")  # type: ignore[attr-defined]
    return None if cookie is None else str(cookie.value)


def test_login_flow_regenerates_id(
    storage_cache: MemoryCache, stored_session: Callable[..., Any]
) -> None:
    client = make_app(storage_cache).test_client()
    assert client.get("/me").json == {"user": None, "cart": []}
    assert sid_of(client) is None  # anonymous visitors get no session
    client.post("/cart/apple")
    anonymous_id = sid_of(client)
    assert anonymous_id is not None
    client.post("/login/ann")
    user_id = sid_of(client)
    assert user_id not in (None, anonymous_id)
    assert client.get("/me").json == {"user": "ann", "cart": ["apple"]}  # data carried over
    assert stored_session(storage_cache, anonymous_id) is None  # old id is dead
    assert stored_session(storage_cache, user_id) == {"cart": ["apple"], "user": "ann"}


def test_logout_deletes_session_and_cookie(
    storage_cache: MemoryCache, stored_session: Callable[..., Any]
) -> None:
    client = make_app(storage_cache).test_client()
    client.post("/login/ann")
    sid = sid_of(client)
    response = client.post("/logout")
    assert "session=;" in response.headers["Set-Cookie"]
    assert sid_of(client) is None
    assert stored_session(storage_cache, sid) is None


def test_cookie_flags(storage_cache: MemoryCache) -> None:
    client = make_app(storage_cache).test_client()
    header = client.post("/cart/pear").headers["Set-Cookie"]
    assert "Secure" in header
    assert "HttpOnly" in header
    assert "SameSite=Lax" in header
    assert "Expires" not in header  # a browser-session cookie unless session.permanent
    strict = make_app(storage_cache, SESSION_COOKIE_SAMESITE="Strict").test_client()
    assert "SameSite=Strict" in strict.post("/cart/pear").headers["Set-Cookie"]


def test_unchanged_session_sets_no_cookie(storage_cache: MemoryCache) -> None:
    client = make_app(storage_cache, SESSION_REFRESH_EACH_REQUEST=False).test_client()
    client.post("/cart/fig")
    assert "Set-Cookie" not in client.get("/me").headers


def test_idle_expiry(storage_cache: MemoryCache, clock: FakeClock) -> None:
    client = make_app(storage_cache).test_client()
    client.post("/login/ann")
    clock.advance(9 * 60)
    assert client.get("/me").json["user"] == "ann"  # activity slides the deadline
    clock.advance(9 * 60)
    assert client.get("/me").json["user"] == "ann"
    clock.advance(10 * 60 + 1)
    expired = client.get("/me")
    assert expired.json == {"user": None, "cart": []}
    assert "session=;" in expired.headers["Set-Cookie"]  # the stale cookie is cleared
    assert sid_of(client) is None


def test_forged_cookie_is_ignored(storage_cache: MemoryCache) -> None:
    client = make_app(storage_cache).test_client()
    client.set_cookie("session", "attacker-chosen-id-aaaaaaaaaaaaaaaaaaaa")
    client.post("/login/ann")
    assert sid_of(client) != "attacker-chosen-id-aaaaaaaaaaaaaaaaaaaa"
    assert storage_cache.get("session:attacker-chosen-id-aaaaaaaaaaaaaaaaaaaa") is None


def test_needs_storage_cache(make_cache: Callable[..., MemoryCache]) -> None:
    with pytest.raises(StorageNotEnabledError):
        CacheHubSessionInterface(make_cache(name="plain"))


def test_a_response_setting_the_cookie_is_never_for_shared_caches(
    storage_cache: MemoryCache,
) -> None:
    """A CDN honouring the view's ``public, s-maxage`` would serve the first visitor's
    Set-Cookie (their session id) to every later visitor without a cookie."""
    app = make_app(storage_cache)

    @app.post("/public/<item>")
    def public(item: str) -> Any:
        session["cart"] = [item]
        response = app.make_response("ok")
        response.headers["Cache-Control"] = "public, max-age=60, s-maxage=600"
        return response

    @app.get("/public-read")
    def public_read() -> Any:
        response = app.make_response(str(session.get("cart")))
        response.headers["Cache-Control"] = "public, max-age=60"
        return response

    client = app.test_client()
    first = client.post("/public/apple")
    assert "session=" in first.headers["Set-Cookie"]
    directives = {d.strip() for d in first.headers["Cache-Control"].split(",")}
    assert directives == {"private", "max-age=60"}
    # A response that sets no cookie keeps the view's caching headers.
    unchanged = client.get("/public-read")
    assert "Set-Cookie" not in unchanged.headers
    assert unchanged.headers["Cache-Control"] == "public, max-age=60"
    # Logging out clears the cookie: that response is private too.
    bye = client.post("/logout")
    assert (
        "Max-Age=0" in bye.headers["Set-Cookie"]
        or "Expires=Thu, 01 Jan 1970" in (bye.headers["Set-Cookie"])
    )
    assert "private" in bye.headers["Cache-Control"]


def test_a_response_setting_the_cookie_drops_the_fields_addressed_to_cdns(
    storage_cache: MemoryCache,
) -> None:
    """A CDN that reads a targeted field (``CDN-Cache-Control``, RFC 9213, or a
    vendor's, or ``Surrogate-Control``) ignores ``Cache-Control``: ``private`` alone does
    not keep it from storing the Set-Cookie. On main those fields stayed."""
    app = make_app(storage_cache)

    @app.post("/cdn/<item>")
    def cdn(item: str) -> Any:
        session["cart"] = [item]
        response = app.make_response("ok")
        response.headers["CDN-Cache-Control"] = "max-age=600"
        response.headers["Cloudflare-CDN-Cache-Control"] = "max-age=600"
        response.headers["surrogate-control"] = "max-age=600"
        response.headers["X-Kept"] = "1"
        return response

    response = app.test_client().post("/cdn/apple")
    assert "session=" in response.headers["Set-Cookie"]
    assert "CDN-Cache-Control" not in response.headers
    assert "Cloudflare-CDN-Cache-Control" not in response.headers
    assert "Surrogate-Control" not in response.headers
    assert response.headers["Cache-Control"] == "private"
    assert response.headers["X-Kept"] == "1"


_FOREIGN = "eyJ1c2VyIjoiZXZlIn0.Z3mNqA.c2lnbmF0dXJl"
"""Flask's own signed session cookie (client-side sessions) of another application on a
parent domain or another path: same name, not an id this store issues."""


@pytest.mark.parametrize("order", ["foreign-first", "foreign-last"])
def test_foreign_cookie_of_the_same_name_is_skipped(storage_cache: MemoryCache, order: str) -> None:
    """The browser sends every ``session`` cookie that matches (another app's, from a
    parent domain or another path), in no order the server can rely on. The first that
    looks like a session id is the session. On main a foreign value first meant no
    session: the user was logged out on every request."""
    app = make_app(storage_cache)
    client = app.test_client()
    client.post("/login/ann")
    user_id = sid_of(client)
    assert user_id is not None
    pair = [f"session={_FOREIGN}", f"session={user_id}"]
    header = "; ".join(pair if order == "foreign-first" else pair[::-1])
    browser = app.test_client(use_cookies=False)  # sends the Cookie header as given
    response = browser.get("/me", headers={"Cookie": header})
    assert response.json == {"user": "ann", "cart": []}
    assert "Set-Cookie" not in response.headers  # the session is not replaced
