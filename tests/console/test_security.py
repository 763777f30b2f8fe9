"""The console's guard: token login, host check, CSRF, POST-only writes, headers, limits."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from raw_asgi import asgi_exchange
from starlette.testclient import TestClient

from cachehub.console.app import create_app
from cachehub.console.security import COOKIE, CSP, MAX_BODY_BYTES, Guard

from .conftest import BASE_URL, TOKEN, MakeConsole

PAGES = ("/", "/cache?name=main", "/keys?cache=main", "/put?cache=main", "/config")


def test_every_page_needs_the_token(make_console: MakeConsole) -> None:
    env = make_console(login=False)
    for url in PAGES:
        response = env.client.get(url)
        assert response.status_code == 401, url
        assert "token" in response.text
    assert env.client.get("/?token=wrong-token").status_code == 403
    assert env.client.get("/keys?cache=main").status_code == 401


def test_the_token_is_traded_for_a_strict_httponly_cookie(make_console: MakeConsole) -> None:
    env = make_console(login=False)
    response = env.client.get(f"/keys?cache=main&token={TOKEN}", follow_redirects=False)
    assert response.status_code == 303
    # The token leaves the address bar: the redirect keeps every other parameter.
    assert response.headers["location"] == "/keys?cache=main"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert env.client.get("/keys?cache=main").status_code == 200


def test_the_login_redirect_never_leaves_the_site(make_console: MakeConsole) -> None:
    env = make_console(login=False)
    response = env.client.get(f"//evil.example/x?token={TOKEN}", follow_redirects=False)
    location = response.headers["location"]
    assert location.startswith("/")
    assert not location.startswith("//")


def test_a_foreign_host_header_is_refused(make_console: MakeConsole) -> None:
    # DNS rebinding: a page on evil.example resolving to 127.0.0.1 sends its own Host.
    env = make_console()
    for host in ("evil.example", "evil.example:8742", "127.0.0.1.evil.example"):
        response = env.client.get("/", headers={"host": host})
        assert response.status_code == 400, host
    assert env.client.get("/", headers={"host": "localhost:8742"}).status_code == 200
    assert env.client.get("/", headers={"host": "[::1]:8742"}).status_code == 200


def test_security_headers_and_no_inline_script(make_console: MakeConsole) -> None:
    env = make_console()
    env.cache.put("k", {"a": 1}, time_span=60)
    for url in (*PAGES, "/entry?cache=main&key=k", "/clear?cache=main", "/nope"):
        response = env.client.get(url)
        assert response.headers["content-security-policy"] == CSP
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "same-origin"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "unsafe-inline" not in CSP
        html = response.text
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), url  # only external scripts
        assert not re.search(r"\son[a-z]+=", html), url  # no inline event handlers
        assert " style=" not in html, url


@pytest.mark.parametrize(
    "url", ["/entry/delete", "/clear/run", "/put/run", "/config/save", "/dynamodb/run"]
)
def test_state_changes_are_post_only(make_console: MakeConsole, url: str) -> None:
    env = make_console()
    env.cache.put("k", 1)
    response = env.client.get(f"{url}?cache=main&key=k&filter=*&confirm=yes")
    assert response.status_code == 405
    assert env.cache.get("k") == 1


def test_csrf_token_required_on_every_form(make_console: MakeConsole) -> None:
    env = make_console()
    env.cache.put("k", 1)
    forms = {
        "/entry/delete": {"cache": "main", "key": "k"},
        "/clear/run": {"cache": "main", "filter": "", "confirm": "yes"},
        "/put/run": {"cache": "main", "key": "k", "value": "2"},
        "/config/save": {"name": "x", "class": "memory", "custom": "{}"},
        "/cache/health": {"cache": "main"},
    }
    for url, data in forms.items():
        for csrf in (None, "", "0" * 64, env.csrf[:-1] + "0"):
            form = data if csrf is None else {**data, "csrf": csrf}
            response = env.client.post(url, data=form)
            assert response.status_code == 403, (url, csrf)
            assert "CSRF" in response.text
    # A right token from a foreign Origin is refused too.
    response = env.client.post(
        "/entry/delete",
        data={"csrf": env.csrf, "cache": "main", "key": "k"},
        headers={"origin": "http://evil.example"},
    )
    assert response.status_code == 403
    assert env.cache.get("k") == 1
    assert "x" not in env.path.read_text()


def test_request_bodies_are_bounded(make_console: MakeConsole) -> None:
    env = make_console()
    big = "x" * (MAX_BODY_BYTES + 1)
    response = env.post("/put/run", cache="main", key="big", value=f'"{big}"')
    assert response.status_code == 413
    # A streamed body without Content-Length is refused before it is read.
    chunks = iter([b"csrf=", env.csrf.encode(), b"&cache=main&key=k&value=1"])
    response = env.client.post(
        "/put/run",
        content=chunks,
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 411
    assert env.cache.get("big") is None
    assert env.cache.get("k") is None


def test_form_fields_are_bounded(make_console: MakeConsole) -> None:
    env = make_console()
    response = env.post("/put/run", cache="main", key="k" * 5000, value="1")
    assert response.status_code == 400
    assert "at most 4,096" in response.text
    many = {f"f{i}": "1" for i in range(60)}
    response = env.client.post("/put/run", data={"csrf": env.csrf, **many})
    assert response.status_code == 400


def test_logout_when_the_cookie_is_wrong(make_console: MakeConsole) -> None:
    env = make_console(login=False)
    client = TestClient(env.client.app, base_url=BASE_URL, cookies={COOKIE: "guess"})
    assert client.get("/").status_code == 401
    malformed = TestClient(env.client.app, base_url=BASE_URL)
    assert malformed.get("/", headers={"cookie": '"\\x00;;=;"'}).status_code == 401


def test_allow_remote_accepts_other_host_names_but_still_needs_the_token(
    tmp_path: Path,
) -> None:
    config = tmp_path / "c.json"
    config.write_text('{"m": {"class": "memory"}}')
    app = create_app(config, token=TOKEN, bind_host="0.0.0.0", allow_any_host=True)
    with TestClient(app, base_url="http://console.example:8742") as client:
        assert client.get("/").status_code == 401
        assert client.get(f"/?token={TOKEN}").status_code == 200


def _through_guard(method: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, bool]:
    """(status sent, whether the app was reached) of one raw ASGI request to the guard:
    raw, because an HTTP client would normalise or refuse the hostile headers."""
    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    scope = {
        "type": "http",
        "method": method,
        "path": "/entry/delete",
        "query_string": b"",
        "headers": [(b"cookie", f"{COOKIE}={TOKEN}".encode()), *headers],
    }
    sent = asyncio.run(asyncio.wait_for(asgi_exchange(Guard(app, token=TOKEN), scope), 10))
    assert sent[0]["type"] == "http.response.start"
    return sent[0]["status"], bool(reached)


@pytest.mark.parametrize(
    "length",
    [
        "\u00b2",  # str.isdigit() says yes, int() says no
        "\u00b9\u00b3",
        "1" * 5000,  # more digits than int() converts (sys.get_int_max_str_digits)
        "9" * 40,
        "-1",
        "",
    ],
)
def test_a_hostile_content_length_is_refused_not_a_crash(length: str) -> None:
    """The guard parses Content-Length itself: what a server passes through (the
    header as raw latin-1 bytes) is answered 411/413, never an exception in the guard."""
    status, reached = _through_guard(
        "POST", [(b"host", b"127.0.0.1:8742"), (b"content-length", length.encode("latin-1"))]
    )
    assert (status in (411, 413), reached) == (True, False)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:8742@evil.example",  # a URL built from it would point at evil.example
        "127.0.0.1:evil.example",
        "[::1]evil.example",
        "[::1]:8742@evil.example",
        "localhost/evil.example",
        "localhost:8742:1",
        "",
    ],
)
def test_a_malformed_host_header_is_refused(host: str) -> None:
    status, reached = _through_guard("GET", [(b"host", host.encode("latin-1"))])
    assert (status, reached) == (400, False)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost:8742", "[::1]:8742", "LOCALHOST"])
def test_loopback_host_headers_pass(host: str) -> None:
    assert _through_guard("GET", [(b"host", host.encode())]) == (200, True)


def test_a_non_ascii_page_number_is_a_typed_error(make_console: MakeConsole) -> None:
    env = make_console()
    response = env.client.get("/keys?cache=main&page=\u00b2")
    assert response.status_code == 400
    assert "page must be a number" in response.text


@pytest.mark.parametrize(
    "hosts",
    [
        [b"evil.example", b"127.0.0.1:8742"],  # the app builds its URLs from the first
        [b"127.0.0.1:8742", b"evil.example"],
        [b"127.0.0.1:8742", b"127.0.0.1:8742"],
    ],
)
def test_more_than_one_host_field_is_refused(hosts: list[bytes]) -> None:
    """RFC 9112 ("Request Target"): a request with more than one Host field is a 400. The
    guard read the last one while Starlette builds ``request.url`` (the Origin check,
    redirects) from the first; on main ``evil.example`` then ``127.0.0.1`` passed."""
    status, reached = _through_guard("GET", [(b"host", h) for h in hosts])
    assert (status, reached) == (400, False)


@pytest.mark.parametrize(
    "host", ["127.0.0.1.", "localhost.", "[::ffff:127.0.0.1]", "[0:0:0:0:0:0:0:1]", "0x7f.1"]
)
def test_other_spellings_of_loopback_are_refused(host: str) -> None:
    """Only the names the console prints pass: a trailing dot, a mapped or expanded IPv6
    literal, a hex address are other names a rebinding page could use."""
    assert _through_guard("GET", [(b"host", host.encode())]) == (400, False)


def test_the_token_cookie_is_found_in_any_cookie_field() -> None:
    """HTTP/2 lets a client split Cookie into several fields (RFC 9113, "Compressing the
    Cookie Header Field"), and an ASGI server may pass them on as they came: the console
    cookie in the first of two fields is a login. On main only the last was read (401)."""
    sent: list[dict[str, Any]] = []
    reached: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(True)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8742"),
            (b"cookie", f"{COOKIE}={TOKEN}".encode()),
            (b"cookie", b"theme=dark"),
        ],
    }
    asyncio.run(asyncio.wait_for(Guard(app, token=TOKEN)(scope, receive, send), 10))
    assert (sent[0]["status"], reached) == (200, [True])
