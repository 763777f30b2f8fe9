"""The console's guard: token login, host check, CSRF, POST-only writes, headers, limits."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from raw_asgi import asgi_exchange
from starlette.testclient import TestClient

from cachehub.api import MAX_KEY_LENGTH
from cachehub.console.app import create_app
from cachehub.console.security import COOKIE, CSP, MAX_BODY_BYTES, Guard, cookie_name

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
    assert cookie.startswith(f"{COOKIE}_80=")  # the test client's port
    assert TOKEN not in cookie
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
    response = env.post("/put/run", cache="main", key="k" * (MAX_KEY_LENGTH + 1), value="1")
    assert response.status_code == 400
    assert f"at most {MAX_KEY_LENGTH:,}" in response.text
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

    guard = Guard(app, token=TOKEN)
    scope = {
        "type": "http",
        "method": method,
        "path": "/entry/delete",
        "query_string": b"",
        "server": ("127.0.0.1", 8742),
        "headers": [(b"cookie", f"{COOKIE}_8742={guard.cookie_value}".encode()), *headers],
    }
    sent = asyncio.run(asyncio.wait_for(asgi_exchange(guard, scope), 10))
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

    guard = Guard(app, token=TOKEN)
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": b"",
        "server": ("127.0.0.1", 8742),
        "headers": [
            (b"host", b"127.0.0.1:8742"),
            (b"cookie", f"{cookie_name(8742)}={guard.cookie_value}".encode()),
            (b"cookie", b"theme=dark"),
        ],
    }
    asyncio.run(asyncio.wait_for(guard(scope, receive, send), 10))
    assert (sent[0]["status"], reached) == (200, [True])


async def _ok(scope: Any, receive: Any, send: Any) -> None:
    """An app that answers 200 to everything the guard lets through."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def _guard_status(guard: Guard, cookie: bytes, port: int = 8742) -> int:
    """The status of a GET through ``guard`` serving on ``port`` with this Cookie header."""
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": b"",
        "server": ("127.0.0.1", port),
        "headers": [(b"host", b"127.0.0.1"), (b"cookie", cookie)],
    }
    sent = asyncio.run(asyncio.wait_for(asgi_exchange(guard, scope), 10))
    return int(sent[0]["status"])


def test_two_consoles_on_one_host_keep_their_own_logins(tmp_path: Path) -> None:
    """Browsers send a cookie to every port of its host (RFC 6265, 8.5), as httpx's jar
    does: with one cookie name, logging into a second console logged the first one out,
    and any other local server received the URL token itself."""
    import httpx

    from cachehub.console.serve import serving

    config = tmp_path / "c.json"
    config.write_text('{"m": {"class": "memory"}}')
    first = create_app(config, token=TOKEN)
    second = create_app(config, token="second-console-token-xyz")
    received: list[bytes] = []

    async def other(scope: Any, receive: Any, send: Any) -> None:  # any local dev server
        if scope["type"] == "http":
            received.append(dict(scope["headers"]).get(b"cookie", b""))
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    with (
        serving(first) as a,
        serving(second) as b,
        serving(other) as o,
        httpx.Client(follow_redirects=True, timeout=10) as browser,
    ):
        assert browser.get(f"{a}/?token={TOKEN}").status_code == 200
        assert browser.get(f"{b}/?token=second-console-token-xyz").status_code == 200
        assert browser.get(f"{a}/").status_code == 200
        assert browser.get(f"{b}/").status_code == 200
        browser.get(f"{o}/")
    port_a, port_b = a.rsplit(":", 1)[1], b.rsplit(":", 1)[1]
    assert {c.name for c in browser.cookies.jar} == {f"{COOKIE}_{port_a}", f"{COOKIE}_{port_b}"}
    # The other server gets the cookies (browsers send them), but not the URL tokens.
    assert f"{COOKIE}_{port_a}".encode() in received[0]
    assert TOKEN.encode() not in received[0]
    assert b"second-console-token-xyz" not in received[0]


def test_the_cookie_is_derived_from_the_token_and_ends_with_the_process(
    make_console: MakeConsole,
) -> None:
    """The cookie is not the token: the token itself as a cookie is no login, and a
    cookie of the console before a restart (a new key) is refused by the new one."""
    env = make_console()
    (value,) = [c.value for c in env.client.cookies.jar if c.name == cookie_name(80)]
    assert value is not None
    assert value != TOKEN
    assert TOKEN not in value
    restarted = create_app(env.path, token=TOKEN)
    with TestClient(restarted, base_url=BASE_URL, cookies={cookie_name(80): value}) as client:
        assert client.get("/").status_code == 401
    with TestClient(restarted, base_url=BASE_URL, cookies={cookie_name(80): TOKEN}) as client:
        assert client.get("/").status_code == 401
    # The name carries the port: the right value under another port's name is no login.
    with TestClient(env.client.app, base_url=BASE_URL, cookies={cookie_name(81): value}) as c:
        assert c.get("/").status_code == 401
    with TestClient(env.client.app, base_url=BASE_URL, cookies={COOKIE: value}) as c:
        assert c.get("/").status_code == 401


FOREIGN_COOKIES = [
    b"a[b]=1",
    b'json={"a":1}',
    b'x="unterminated',
    "q=\u00e9".encode(),
    "q=\u00e9".encode("latin-1"),
    b"foo=bar baz",
    b"p=a,b",
    b"noequals",
    b"=novalue",
    b";;;",
    b"\xff\xfe=\x00",
    b"cachehub_console_8742=stale-value",  # an old cookie of this name (another Path)
    b"cachehub_console=" + b"0" * 64,
]


@pytest.mark.parametrize("other", FOREIGN_COOKIES)
def test_another_apps_cookie_does_not_hide_the_login(other: bytes) -> None:
    """Every local app's cookies reach the console: SimpleCookie stopped at the first one
    it could not parse, and the operator was locked out (401)."""
    guard = Guard(_ok, token=TOKEN)
    mine = f"{cookie_name(8742)}={guard.cookie_value}".encode()
    assert _guard_status(guard, other + b"; " + mine) == 200
    assert _guard_status(guard, mine + b"; " + other) == 200
    assert _guard_status(guard, b" " + mine + b" ;" + other + b";") == 200
    assert _guard_status(guard, other) == 401
    flipped = guard.cookie_value[:-1] + ("1" if guard.cookie_value.endswith("0") else "0")
    wrong = f"{cookie_name(8742)}={flipped}".encode()
    assert _guard_status(guard, other + b"; " + wrong) == 401
