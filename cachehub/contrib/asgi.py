"""ASGI middleware putting a server-side session in ``scope["session"]``.

::

    from cachehub.contrib.asgi import SessionMiddleware
    app = SessionMiddleware(app, "sessions")          # a cache with storage: true

HTTP and WebSocket scopes get a :class:`~cachehub.session.TrackedSession`. Changes are
committed (merged key by key as one versioned write) when the app sends
``http.response.start`` or ``websocket.accept``, and the cookie is added to that
message's headers; changes made later are not saved. HTTP responses get
``Vary: Cookie``, and those that set the cookie ``Cache-Control: private`` (a shared
cache must not hand it to others). Cache calls go through the cache's async shell
(``cache.aio()``: native on Redis and memory, worker threads only for a sync-only
provider), so a network cache never blocks the event loop, and a save waiting for a
busy session waits with ``asyncio.sleep``: nothing is parked while another request holds
the session.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from datetime import timedelta
from typing import Any, TypeAlias

from ..api import TimeSpan
from ..session import SessionCookie, SessionStore
from . import CacheSpec, private_response, session_store, vary_cookie

__all__ = ["SessionMiddleware"]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]

_COMMIT_ON = {"http.response.start", "websocket.accept"}


class SessionMiddleware:
    """Loads the session for HTTP/WebSocket scopes; other scopes pass through untouched."""

    def __init__(
        self,
        app: ASGIApp,
        store: SessionStore | CacheSpec,
        *,
        idle_time: TimeSpan = timedelta(minutes=30),
        cookie: SessionCookie | None = None,
        scope_key: str = "session",
    ) -> None:
        self.app = app
        self.store = session_store(store, idle_time=idle_time, where="ASGI SessionMiddleware")
        self.cookie = cookie or SessionCookie()
        self.scope_key = scope_key

    def _cookie_header(self, scope: Scope) -> str | None:
        # HTTP/2 lets a client split Cookie into several fields (RFC 9113 8.2.3), and an
        # ASGI server may pass them on as they came: join them as HTTP/1.1 would.
        fields = [
            bytes(value).decode("latin-1")
            for name, value in scope.get("headers") or ()
            if name.lower() == b"cookie"
        ]
        return "; ".join(fields) if fields else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        sid = self.cookie.read(self._cookie_header(scope))
        session = await self.store.open_async(sid)
        scope = {**scope, self.scope_key: session}

        async def send_with_cookie(message: Message) -> None:
            if message["type"] in _COMMIT_ON:
                set_cookie = await self.cookie.commit_async(self.store, session)
                headers = list(message.get("headers", ()))
                if set_cookie is not None:
                    headers.append((b"set-cookie", set_cookie.encode("latin-1")))
                if message["type"] == "http.response.start":
                    text = vary_cookie(
                        (bytes(n).decode("latin-1"), bytes(v).decode("latin-1")) for n, v in headers
                    )
                    if set_cookie is not None:
                        text = private_response(text)
                    headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in text]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cookie)
