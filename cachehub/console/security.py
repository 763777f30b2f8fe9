"""The console's guard: access token, host check, security headers and bounded bodies.

One pure ASGI middleware in front of every route (the static files included, so the
error pages are styled but nothing else is served to a stranger):

* **Token**, as in Jupyter: ``cachehub console`` prints a URL with ``?token=...``. The
  first visit exchanges it for an ``HttpOnly; SameSite=Strict`` cookie and is redirected
  to the same URL without the token, so it leaves the address bar and the history.
  Browsers send a cookie to every port of its host, so the cookie is named after the
  console's port (:func:`cookie_name`: two consoles do not log each other out) and holds
  an HMAC of the token under a key made for this process, not the token: another local
  server that receives it learns neither the URL token nor a login that outlives a
  restart.
* **Host check**: only the loopback names (and the bound host) are accepted in ``Host``,
  which defeats DNS rebinding: a page on another origin can never reach the console.
* **Headers** on every response: a Content-Security-Policy without inline script,
  ``nosniff``, no framing, no referrer to other sites (the token must not leak into
  one), no caching.
* **Bodies**: state-changing requests must declare their length, at most
  :data:`MAX_BODY_BYTES`, and may not send more than they declared.

CSRF tokens are checked by the routes (:func:`csrf_token`, :func:`csrf_ok`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Final
from urllib.parse import parse_qsl, quote, urlencode

__all__ = [
    "COOKIE",
    "CSP",
    "MAX_BODY_BYTES",
    "Guard",
    "cookie_name",
    "csrf_ok",
    "csrf_token",
    "LOOPBACK_HOSTS",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE: Final = "cachehub_console"
"""Prefix of the name of the login cookie (see :func:`cookie_name`)."""
MAX_BODY_BYTES: Final = 1024 * 1024
"""Largest request body accepted (a JSON value to put, a cache definition)."""
LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS: Final = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # Same-origin: the token never leaves in a Referer, yet form posts carry a real Origin
    # (with no-referrer, Chromium sends "Origin: null", which the CSRF check refuses).
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


def csrf_token(token: str) -> str:
    """The CSRF token of a console whose access token is ``token`` (derived, not stored)."""
    return hmac.new(token.encode(), b"cachehub-console-csrf", hashlib.sha256).hexdigest()


def csrf_ok(token: str, submitted: object) -> bool:
    """Whether ``submitted`` is the console's CSRF token (constant-time comparison)."""
    return isinstance(submitted, str) and hmac.compare_digest(
        submitted.encode(), csrf_token(token).encode()
    )


def cookie_name(port: object) -> str:
    """Name of the login cookie of a console serving on ``port``: ``cachehub_console_8742``.

    Cookies are shared by every port of a host (RFC 6265, 8.5): one name for all consoles
    made each login overwrite the other's cookie. ``COOKIE`` alone when the port is unknown
    (a server on a Unix socket).
    """
    return f"{COOKIE}_{port}" if type(port) is int else COOKIE


def _cookie_values(header: str, name: str) -> list[str]:
    """The values of the cookies named ``name`` in a ``Cookie`` header, read tolerantly.

    :class:`http.cookies.SimpleCookie` stops at the first cookie it cannot parse
    (``a[b]=1``, ``json={"a":1}``, ``q=\\xe9``): another local app's cookie, which the
    browser sends here too, then hid the console's.
    """
    found = []
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key.strip() == name:
            found.append(value.strip())
    return found


_HOST: Final = re.compile(r"(?P<name>\[[0-9a-f:.]+\]|[0-9a-z._-]+)(?::[0-9]{1,5})?")
"""A ``Host`` header: a name or bracketed IPv6 literal, then an optional numeric port."""


def _host_name(host: str) -> str:
    """``Host`` header without its port (IPv6 literals keep their brackets); "" when it is
    not a host and an optional port: ``127.0.0.1:1@evil.example`` would otherwise pass
    as ``127.0.0.1`` while URLs built from it point at evil.example."""
    host = host.strip().lower()
    if host == "::1":  # a bare IPv6 literal, as some clients send it
        return host
    found = _HOST.fullmatch(host)
    return "" if found is None else found.group("name")


class Guard:
    """ASGI middleware enforcing the token, the allowed hosts, headers and body limits."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        token: str,
        allowed_hosts: Iterable[str] = LOOPBACK_HOSTS,
        any_host: bool = False,
        max_body: int = MAX_BODY_BYTES,
    ) -> None:
        self.app = app
        self.token = token
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts)
        self.any_host = any_host
        self.max_body = max_body
        # The cookie holds an HMAC of the token under a key of this process: a cookie that
        # leaks (every local server on the host receives it) is not the URL token, and
        # stops working when the console restarts.
        self._cookie_key = secrets.token_bytes(32)

    @property
    def cookie_value(self) -> str:
        """The login cookie's value: derived from the token, valid until the process ends."""
        return hmac.new(self._cookie_key, self.token.encode(), hashlib.sha256).hexdigest()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = self._with_headers(send)
        headers: dict[str, str] = {}
        fields: dict[str, int] = {}
        for raw_name, raw_value in scope["headers"]:
            name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
            fields[name] = fields.get(name, 0) + 1
            # HTTP/2 may split Cookie into several fields (RFC 9113): one header, as
            # HTTP/1.1 sends it. Any other repeated field: the last (Host is refused).
            if name == "cookie" and name in headers:
                value = f"{headers[name]}; {value}"
            headers[name] = value
        if fields.get("host", 0) > 1:
            # RFC 9112: a 400. The app builds its URLs from the first, this check read
            # the last: 'Host: evil.example' then 'Host: 127.0.0.1' passed.
            await _plain(send, 400, "Bad Host header: send exactly one.")
            return
        if not self.any_host and _host_name(headers.get("host", "")) not in self.allowed_hosts:
            await _plain(send, 400, "Bad Host header: open the console by the URL it printed.")
            return
        path: str = scope.get("path", "/")
        # The port the server listens on (not the Host header, which the client writes).
        server = scope.get("server")
        name = cookie_name(server[1] if isinstance(server, (tuple, list)) else None)
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = [v for k, v in query if k == "token"]
        if given:
            if not hmac.compare_digest(given[-1].encode(), self.token.encode()):
                await _plain(send, 403, "Wrong token: open the URL `cachehub console` printed.")
                return
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            # Quoted, and one leading slash: "//evil.example" must not redirect off-site.
            here = "/" + quote(path, safe="/").lstrip("/")
            await self._login(send, here + (f"?{rest}" if rest else ""), name)
            return
        if not path.startswith("/static/") and not self._has_cookie(
            headers.get("cookie", ""), name
        ):
            await _plain(
                send,
                401,
                "This console needs its access token: open the URL that `cachehub console` "
                "printed (it ends in ?token=...).",
            )
            return
        if scope.get("method") not in ("GET", "HEAD"):
            length = headers.get("content-length", "")
            # ASCII digits only: str.isdigit() accepts "²", which int() refuses.
            if not (length.isascii() and length.isdigit()):
                await _plain(send, 411, "Send a Content-Length with the request body.")
                return
            # Checked on the text first: int() refuses (raises on) thousands of digits.
            if len(length.lstrip("0")) > len(str(self.max_body)) or int(length) > self.max_body:
                await _plain(send, 413, f"Request body over {self.max_body:,} bytes.")
                return
            receive = self._bounded(receive, int(length))
        await self.app(scope, receive, send)

    def _has_cookie(self, header: str, name: str) -> bool:
        expected = self.cookie_value.encode()
        # Every cookie of that name is compared: a stale one (another Path) may come first.
        return any(
            hmac.compare_digest(value.encode(), expected) for value in _cookie_values(header, name)
        )

    async def _login(self, send: Send, location: str, name: str) -> None:
        cookie = f"{name}={self.cookie_value}; Path=/; HttpOnly; SameSite=Strict"
        await send(
            {
                "type": "http.response.start",
                "status": 303,
                "headers": [
                    (b"location", location.encode("latin-1", "replace")),
                    (b"set-cookie", cookie.encode()),
                    (b"content-length", b"0"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    @staticmethod
    def _bounded(receive: Receive, declared: int) -> Receive:
        """``receive`` that ends the request once more than ``declared`` bytes arrive."""
        seen = 0

        async def bounded() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > declared:
                    return {"type": "http.disconnect"}
            return message

        return bounded

    @staticmethod
    def _with_headers(send: Send) -> Send:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [
                    *message.get("headers", []),
                    *((k, v) for k, v in _HEADERS if k not in present),
                ]
            await send(message)

        return sending


async def _plain(send: Send, status: int, text: str) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
