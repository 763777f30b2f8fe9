"""WSGI middleware putting a server-side session in ``environ["cachehub.session"]``.

::

    from cachehub.contrib.wsgi import SessionMiddleware
    app = SessionMiddleware(app, "sessions")          # a cache with storage: true

The session is a :class:`~cachehub.session.TrackedSession` (a ``dict``). Changes are
committed, merged key by key as one versioned write, when the application calls
``start_response``; changes made after that (while streaming the body) are not saved.
Call ``session.regenerate()`` after a privilege change (login) to get a new id. Every
response gets ``Vary: Cookie`` (it may depend on the session), one that sets the cookie
``Cache-Control: private`` (a shared cache must not hand it to others), and the cookie is
re-sent whenever the session's idle deadline moves, so it expires with the session.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import Any, TypeAlias

from ..api import TimeSpan
from ..session import SessionCookie, SessionStore
from . import CacheSpec, private_response, session_store, vary_cookie

__all__ = ["SessionMiddleware", "ENVIRON_KEY"]

ENVIRON_KEY = "cachehub.session"
"""Default environ key of the session."""

StartResponse: TypeAlias = Callable[..., Callable[[bytes], object]]
WSGIApp: TypeAlias = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class SessionMiddleware:
    """Loads the request's session before the app runs and saves it with the response."""

    def __init__(
        self,
        app: WSGIApp,
        store: SessionStore | CacheSpec,
        *,
        idle_time: TimeSpan = timedelta(minutes=30),
        cookie: SessionCookie | None = None,
        environ_key: str = ENVIRON_KEY,
    ) -> None:
        self.app = app
        self.store = session_store(store, idle_time=idle_time, where="WSGI SessionMiddleware")
        self.cookie = cookie or SessionCookie()
        self.environ_key = environ_key

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        session = self.store.open(self.cookie.read(environ.get("HTTP_COOKIE")))
        environ[self.environ_key] = session

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if exc_info is None:  # an error page replacing a failed response saves nothing
                set_cookie = self.cookie.commit(self.store, session)
                if set_cookie is not None:
                    headers = private_response([*headers, ("Set-Cookie", set_cookie)])
            headers = vary_cookie(headers)
            return start_response(status, headers, exc_info)

        return self.app(environ, start)
