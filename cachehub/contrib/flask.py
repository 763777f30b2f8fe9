"""A Flask ``SessionInterface`` keeping sessions server-side in a cachehub cache.

::

    from cachehub.contrib.flask import CacheHubSessionInterface
    app.session_interface = CacheHubSessionInterface("sessions")  # storage: true cache

Only a random 256-bit session id travels in the cookie; the data stays in the cache,
through its codec (no pickle). The cookie takes Flask's ``SESSION_COOKIE_*`` settings,
except that ``SameSite`` defaults to ``Lax`` when unset. Call ``session.regenerate()``
on every privilege change (login, logout) to issue a new id. A response that sets or
clears the cookie gets ``Cache-Control: private``, so no shared cache hands it to
others. Concurrent requests on one session merge their changes key by key, and a
request that saves after the session was ended (logout, expiry, rotation) is refused
instead of bringing it back (see docs/sessions.md).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from flask.sessions import SessionInterface, SessionMixin

from ..api import TimeSpan
from ..session import SessionStore, TrackedSession
from . import CacheSpec, for_cdns_only, private_response, session_store

if TYPE_CHECKING:
    from flask import Flask
    from flask.wrappers import Request, Response

__all__ = ["CacheHubSession", "CacheHubSessionInterface"]


class CacheHubSession(TrackedSession, SessionMixin):
    """Flask's session object: a change-tracking dict with ``permanent``/``new``/``modified``."""


class CacheHubSessionInterface(SessionInterface):
    """Stores Flask sessions in a cache built with ``storage: true``.

    ``cache`` is a cache object, a configured cache name, a cache entry mapping, or a
    ready :class:`SessionStore`. ``idle_time`` is the server-side sliding lifetime.
    """

    session_class = CacheHubSession

    def __init__(
        self,
        cache: SessionStore | CacheSpec,
        *,
        idle_time: TimeSpan = timedelta(minutes=30),
    ) -> None:
        self.store = session_store(cache, idle_time=idle_time, where="CacheHubSessionInterface")

    def get_cookie_samesite(self, app: Flask) -> str | None:
        """``SESSION_COOKIE_SAMESITE``, defaulting to ``Lax`` instead of none."""
        return super().get_cookie_samesite(app) or "Lax"

    def open_session(self, app: Flask, request: Request) -> CacheHubSession:
        """Load the session named by the request's cookie, or start an empty one."""
        # Every cookie of that name the browser sent (another path's or a parent
        # domain's too): the first that looks like an id, as SessionCookie.read does.
        values = request.cookies.getlist(self.get_cookie_name(app))
        sid = next((v for v in values if SessionStore.valid_id(v)), None)
        return self.store.open(sid, CacheHubSession)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Commit the request's changes and set, refresh or clear the cookie."""
        if not isinstance(session, CacheHubSession):
            return  # a null session (e.g. the app failed before open_session) saves nothing
        name = self.get_cookie_name(app)
        domain = self.get_cookie_domain(app)
        path = self.get_cookie_path(app)
        secure = self.get_cookie_secure(app)
        partitioned = self.get_cookie_partitioned(app)
        samesite = self.get_cookie_samesite(app)
        httponly = self.get_cookie_httponly(app)
        if session.accessed:
            response.vary.add("Cookie")
        refresh = self.should_set_cookie(app, session)
        sid = self.store.commit(session)
        if sid is None:
            # A session another request ended meanwhile (logout, rotation) keeps whatever
            # cookie that request set: clearing it here would log the new session out.
            if session.presented is not None and not session.gone:
                response.delete_cookie(
                    name,
                    domain=domain,
                    path=path,
                    secure=secure,
                    partitioned=partitioned,
                    samesite=samesite,
                    httponly=httponly,
                )
                response.vary.add("Cookie")
                _private(response)
            return
        if sid != session.presented or refresh or (session.extended and session.permanent):
            session.presented = sid
            response.set_cookie(
                name,
                sid,
                expires=self.get_expiration_time(app, session),
                domain=domain,
                path=path,
                secure=secure,
                partitioned=partitioned,
                samesite=samesite,
                httponly=httponly,
            )
            response.vary.add("Cookie")
            _private(response)


def _private(response: Response) -> None:
    """``Cache-Control: private`` on a response that sets the session cookie, so that no
    shared cache hands that cookie to other visitors (see
    :func:`cachehub.contrib.private_response`)."""
    fields = [("Cache-Control", v) for v in response.headers.getlist("Cache-Control")]
    ((_, value),) = private_response(fields)
    response.headers["Cache-Control"] = value
    for name in {name for name, _ in response.headers.items() if for_cdns_only(name)}:
        del response.headers[name]
