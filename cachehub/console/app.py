"""The console's Starlette application: routes, pages and the state behind them.

:func:`create_app` builds the ASGI app for one configuration file. Pages are rendered by
Jinja2 with autoescaping on (keys, values and cache names are attacker-controlled), every
state-changing route is POST-only and checks the CSRF token, and a read-only console
builds every cache read-only, hides every write control and answers writes with 403.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import re
import secrets
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..api import MAX_KEY_LENGTH, BaseCache, CacheMetadata
from ..display import visible, visible_prefix
from ..errors import (
    CacheError,
    CacheKeyError,
    CacheUnavailableError,
    CacheValueError,
    ConfigError,
    ReadOnlyCacheError,
    UnknownCacheError,
)
from ..loader import _entries_of, load_file, parse_json, referenced_variables
from ..plugins import plugin_manager, register, unregister
from ..registry import Caches
from ..scrub import register_secret, scrub
from ..stats import OperationStats, StatsCollector, cache_stats
from .browse import BrowseSessions
from .config_edit import ConfigFile, camel
from .preview import preview
from .security import LOOPBACK_HOSTS, Guard, csrf_ok, csrf_token

__all__ = [
    "Console",
    "create_app",
    "form_safe",
    "json_literal",
    "key_label",
    "visible",
    "MAX_JSON_CHARS",
    "MAX_KEY_LABEL_CHARS",
    "MAX_KEY_LINK_CHARS",
]

_log = logging.getLogger("cachehub.console")
HERE: Final = Path(__file__).parent
MAX_JSON_CHARS: Final = 512 * 1024
"""Longest JSON value the put form accepts."""
COMMAND_LIMIT: Final = 1000
"""``Limit`` given to a dynamodb_command scan or query that names none."""
MAX_COMMAND_LIMIT: Final = 10_000
"""Largest ``Limit`` the console runs: every item is held in the process and the page."""
MAX_FILTER_CHARS: Final = 512
"""Longest key filter accepted."""
MAX_KEY_LABEL_CHARS: Final = 200
"""Most characters of a key's escaped form (:func:`visible`) the key list shows."""
MAX_KEY_LINK_CHARS: Final = 512
"""Longest percent-encoded key a key list links to by name; longer keys are linked by
their position in the browse session (a page of 50 keys of 16,384 right-to-left overrides
embedded by name was 12 MB)."""
_DECIMAL: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?|\.[0-9]+")
"""A TTL as the put form takes it: ASCII digits and maybe a decimal point, no sign."""
_JSON_ESCAPE_CHARS: Final = 12
"""Most characters one character takes as an ASCII JSON string (an escaped surrogate
pair: ``\\ud83d\\ude00``)."""
Handler = Callable[[Request], Awaitable[Response]]


class Console:
    """The state of one running console: its configuration, caches and browse sessions."""

    def __init__(
        self,
        config_path: Path,
        *,
        read_only: bool = False,
        token: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.config_path = config_path
        self.read_only = read_only
        self.token = token or secrets.token_urlsafe(32)
        register_secret(self.token)  # never in a log line, even by accident
        self.csrf = csrf_token(self.token)
        self.environ = environ
        self.config_file = ConfigFile(config_path, environ)
        self.browse = BrowseSessions()
        self._lock = threading.Lock()
        # The console's own collector, registered before any cache is built so every
        # cache is observed, and unregistered on close: the process is left as it was.
        self.stats = StatsCollector()
        register(self.stats, name=f"cachehub.console.stats.{id(self)}")
        self._referenced: tuple[str, ...] = ()
        try:
            self._caches = self._load()
        except BaseException:
            unregister(self.stats)
            raise

    def _load(self) -> Caches:
        """The registry of the file; in a read-only console every cache is read-only."""
        if not self.config_path.exists():
            self._referenced = ()
            return Caches({}, environ=self.environ)  # the editor creates the file
        block = _entries_of(load_file(self.config_path))
        self._referenced = self.variable_values(block)
        if not self.read_only:
            return Caches(server_config=self.config_path, environ=self.environ)
        forced: dict[str, Any] = {}
        for name, raw in block.items():
            if isinstance(raw, Mapping):
                kept = {k: v for k, v in raw.items() if camel(str(k)) != "readonly"}
                forced[name] = {**kept, "readOnly": True}
            else:
                forced[name] = raw  # the loader reports it
        return Caches(server_config={"caches": forced}, environ=self.environ)

    def variable_values(self, raw: Any) -> tuple[str, ...]:
        """The values of the environment variables that ``${VAR}`` references in ``raw``
        (configuration as written: strings, mappings and lists) name."""
        environ = os.environ if self.environ is None else self.environ
        names = referenced_variables(raw)
        values = [value for name in sorted(names) if (value := environ.get(name))]
        # Parsers lower-case what they take for a host name ("redis://${VAR}:6379").
        return tuple(dict.fromkeys([*values, *(value.lower() for value in values)]))

    def hide(self, text: str, extra: tuple[str, ...] = ()) -> str:
        """``text`` safe to show: :func:`~cachehub.scrub.scrub`, and the value of every
        variable the configuration references masked too.

        A value resolved from ``${VAR}`` may be a secret in any setting (a namespace, a
        host, a table name), and anyone with the console's token can add a cache that
        references any variable: what the backend reports of its settings (``info()``,
        errors, doctor checks) must not show it.
        """
        return scrub(text, (*self._referenced, *extra))

    @property
    def caches(self) -> Caches:
        """The current registry (replaced whole when the configuration is saved)."""
        return self._caches

    def reload(self) -> None:
        """Re-read the configuration file after the editor wrote it."""
        fresh = self._load()
        with self._lock:
            old, self._caches = self._caches, fresh
        self.browse.close_all()
        old.close()

    def cache(self, name: str | None) -> BaseCache:
        """The configured cache ``name`` (a typed error names the configured ones)."""
        if not name:
            raise UnknownCacheError("no cache named in the request.", hint="pick a cache.")
        return self._caches.get(name)

    def close(self) -> None:
        """Close browse sessions and caches, and stop collecting statistics."""
        self.browse.close_all()
        if plugin_manager().is_registered(self.stats):
            unregister(self.stats)
        self._caches.close()


# ---------------------------------------------------------------------- formatting


def _ago(ts: Any) -> str:
    return "never" if ts is None else str(ts).replace("+00:00", " UTC")


def _p95(stats: OperationStats) -> float | None:
    """The upper bound of the histogram bucket holding the 95th percentile."""
    if not stats.calls:
        return None
    wanted = math.ceil(stats.calls * 0.95)
    for bound, count in stats.buckets:
        if count >= wanted:
            return stats.latency_max if math.isinf(bound) else bound
    return stats.latency_max


def _millis(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.2f} ms"


def _stats_rows(
    cache: BaseCache, collector: StatsCollector
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    summary = cache_stats(cache, collector)
    rows = []
    for op, stats in sorted(summary["operations"].items()):
        rows.append(
            {
                "op": op,
                "calls": stats.calls,
                "hits": stats.hits,
                "misses": stats.misses,
                "errors": stats.errors,
                "mean": _millis(stats.latency_mean),
                "p95": _millis(_p95(stats)),
                "max": _millis(stats.latency_max if stats.calls else None),
            }
        )
    ratio = summary["hit_ratio"]
    totals = {
        "calls": summary["calls"],
        "hits": summary["hits"],
        "misses": summary["misses"],
        "errors": summary["errors"],
        "hit_ratio": "-" if ratio is None else f"{ratio:.1%}",
    }
    return totals, rows


def key_label(key: str, limit: int = MAX_KEY_LABEL_CHARS) -> str:
    """``key`` as the key list shows it: :func:`~cachehub.display.visible`, cut after
    about ``limit`` characters (never inside an escape) and followed by an ellipsis and
    the key's length."""
    shown, cut = visible_prefix(key, limit)
    return f"{shown}… ({len(key):,} characters)" if cut else shown


def _quoted(key: str) -> str | None:
    """``key`` percent-encoded as Jinja2's ``urlencode`` writes it (today's links), or
    None when that is longer than :data:`MAX_KEY_LINK_CHARS` (or not encodable)."""
    if len(key) > MAX_KEY_LINK_CHARS:  # every character takes at least one
        return None
    try:
        quoted = quote(key, safe="/")
    except UnicodeEncodeError:  # the core refuses such keys; a position still works
        return None
    return quoted if len(quoted) <= MAX_KEY_LINK_CHARS else None


class _ListingExpired(CacheKeyError):
    """A link by position whose browse session, page or position is gone."""

    def __init__(self, cache: str) -> None:
        super().__init__(
            "that key listing has expired (or no longer holds this position).",
            hint="go back to the keys list and open the key from there.",
        )
        self.cache = cache


def form_safe(text: str) -> bool:
    """Whether a browser submits ``text`` unchanged from a form field it was written into.

    HTML parsing turns NUL into U+FFFD and CR into LF, a text input drops line breaks,
    and urlencoded submission writes every line break as CRLF: a key holding any of them
    must travel as :func:`json_literal` (``key_json``, ``filter_json`` fields).
    """
    return not any(c in text for c in "\r\n\x00")


def json_literal(text: str) -> str:
    """``text`` as an ASCII JSON string literal, which every browser submits unchanged."""
    return json.dumps(text, ensure_ascii=True)


def _bounded_json(value: Any, limit: int) -> tuple[str, bool]:
    """The indented JSON of ``value``, cut after about ``limit`` characters; and whether
    it was cut. Encoded piece by piece: a result of large items is never held whole."""
    encoder = json.JSONEncoder(indent=2, default=str, ensure_ascii=False)
    pieces: list[str] = []
    size = 0
    for piece in encoder.iterencode(value):
        pieces.append(piece)
        size += len(piece)
        if size > limit:
            return "".join(pieces)[:limit], True
    return "".join(pieces), False


def _shown(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, default=str)
    return str(value)


# ---------------------------------------------------------------------- the app


def create_app(
    config_path: str | os.PathLike[str],
    *,
    read_only: bool = False,
    token: str | None = None,
    environ: Mapping[str, str] | None = None,
    bind_host: str = "127.0.0.1",
    allow_any_host: bool = False,
) -> Starlette:
    """The console for the configuration file ``config_path`` (created by the editor if absent).

    ``token`` is the access token (random by default; read it back from
    ``app.state.console.token``). ``bind_host`` is accepted in ``Host`` headers besides the
    loopback names; ``allow_any_host`` accepts any (for ``--allow-remote`` binds).
    """
    console = Console(Path(config_path), read_only=read_only, token=token, environ=environ)
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every template, whatever its extension
        undefined=jinja2.StrictUndefined,
    )
    env.filters["visible"] = visible
    env.filters["json_literal"] = json_literal
    env.tests["form_safe"] = form_safe

    def render(
        request: Request, template_name: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        template = env.get_template(template_name)
        body = template.render(
            console=console,
            max_key=MAX_KEY_LENGTH,
            csrf=console.csrf,
            read_only=console.read_only,
            cache_names=console.caches.names(),
            request_path=request.url.path,
            **context,
        )
        return HTMLResponse(body, status_code=status)

    def error_page(request: Request, exc: Exception) -> HTMLResponse:
        back = None
        if isinstance(exc, CacheError):
            status = 400
            if isinstance(exc, _ListingExpired):
                status, back = 410, exc.cache
            elif isinstance(exc, ReadOnlyCacheError):
                status = 403
            elif isinstance(exc, (UnknownCacheError, CacheKeyError)):
                status = 404
            elif isinstance(exc, CacheUnavailableError):
                status = 503
            message = console.hide(str(exc))
        elif isinstance(exc, HTTPException):  # e.g. a form with too many fields
            status, message = exc.status_code, console.hide(str(exc.detail))
        else:
            status = 500
            message = f"unexpected {type(exc).__name__}; the console logged it."
            _log.error("console: %s on %s: %s", type(exc).__name__, request.url.path, exc)
        return render(
            request, "error.html", status=status, title="Error", message=message, back=back
        )

    def page(fn: Callable[[Request], Response]) -> Handler:
        """A GET page: runs in the thread pool (caches block); errors become pages."""

        @functools.wraps(fn)
        async def handler(request: Request) -> Response:
            try:
                return await run_in_threadpool(fn, request)
            except Exception as exc:
                return error_page(request, exc)

        return handler

    def action(
        *, write: bool = True
    ) -> Callable[[Callable[[Request, FormData], Response]], Handler]:
        """A POST action: CSRF-checked, refused in read-only consoles when it ``write``\\s."""

        def decorate(fn: Callable[[Request, FormData], Response]) -> Handler:
            @functools.wraps(fn)
            async def handler(request: Request) -> Response:
                try:
                    if write and console.read_only:
                        raise ReadOnlyCacheError(
                            "this console is read-only.",
                            hint="restart `cachehub console` without --read-only to change data.",
                        )
                    form = await request.form(max_files=0, max_fields=50)
                    origin = request.headers.get("origin")
                    expected = f"{request.url.scheme}://{request.url.netloc}"
                    if not csrf_ok(console.token, form.get("csrf")) or (
                        origin is not None and origin != expected
                    ):
                        return render(
                            request,
                            "error.html",
                            status=403,
                            title="Refused",
                            message="the form's CSRF token is missing or wrong: reload the "
                            "page and submit it again.",
                            back=None,
                        )
                    return await run_in_threadpool(fn, request, form)
                except ClientDisconnect:
                    return Response(status_code=400)
                except Exception as exc:
                    return error_page(request, exc)

            return handler

        return decorate

    def checked(value: str, name: str, limit: int, required: bool) -> str:
        """Form field ``name``'s text, refused when longer than ``limit`` or empty while
        ``required``."""
        if len(value) > limit:
            raise CacheValueError(
                f"form field '{name}' is {len(value):,} characters long; at most {limit:,}.",
                hint=f"shorten '{name}'.",
            )
        if required and not value:
            raise CacheValueError(f"form field '{name}' is empty.", hint=f"fill in '{name}'.")
        return value

    def text(form: FormData, name: str, limit: int = 4096, *, required: bool = False) -> str:
        value = form.get(name, "")
        if not isinstance(value, str):
            raise CacheValueError(f"form field '{name}' must be text.", hint="resend the form.")
        return checked(value, name, limit, required)

    def encoded_text(
        form: FormData, name: str, limit: int = MAX_KEY_LENGTH, *, required: bool = False
    ) -> str:
        """Form field ``name``, or its ``{name}_json`` twin (a JSON string literal, which
        survives the browser's line-break and NUL rewriting) when the form sends one."""
        raw_name = f"{name}_json"
        if raw_name not in form:
            return text(form, name, limit, required=required)
        raw = text(form, raw_name, _JSON_ESCAPE_CHARS * limit + 2).strip()
        # A string literal only: json.loads of '[[[[...' would recurse, of '1' give an int.
        value: Any = None
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            with contextlib.suppress(ValueError):
                value = json.loads(raw)
        if not isinstance(value, str):
            raise CacheValueError(
                f"form field '{raw_name}' is not a JSON string.", hint="reload the page and resend."
            )
        return checked(value, name, limit, required)

    def query(request: Request, name: str, limit: int = 4096) -> str:
        value = request.query_params.get(name, "")
        if len(value) > limit:
            raise CacheValueError(
                f"parameter '{name}' is {len(value):,} characters long; at most {limit:,}.",
                hint=f"shorten '{name}'.",
            )
        return value

    def number(request: Request, name: str) -> int:
        """Query parameter ``name`` as a non-negative whole number (400 otherwise)."""
        value = query(request, name, 12)
        if not (value.isascii() and value.isdigit()):
            raise CacheValueError(
                f"{name} must be a number, got {value!r:.20}.",
                hint="go back to the keys list and open the key from there.",
            )
        return int(value)

    def requested_key(request: Request, cache: BaseCache) -> tuple[str, dict[str, str] | None]:
        """The key a page is about: ``key=``, or the position ``session``, ``page`` and
        ``at`` of a key list's link to a long key (resolved from that listing); and that
        position, when given, for the page's own links."""
        params = request.query_params
        if "key" in params or not ({"session", "page", "at"} & params.keys()):
            return query(request, "key", MAX_KEY_LENGTH), None
        sid = query(request, "session", 64)
        position = {"session": sid, "page": str(number(request, "page"))}
        position["at"] = str(number(request, "at"))
        key = console.browse.key_at(sid, cache.name, int(position["page"]), int(position["at"]))
        if key is None:
            raise _ListingExpired(cache.name)
        return key, position

    def key_link(path: str, cache: str, key: str, position: dict[str, str] | None) -> str | None:
        """The link to page ``path`` (``/entry``, ``/put``) for ``key``: by name when that
        is short, else by ``position``; None for a long key without a position."""
        quoted = _quoted(key)
        if quoted is not None:
            return f"{path}?cache={quote(cache, safe='/')}&key={quoted}"
        if position is None:
            return None
        return f"{path}?cache={quote(cache, safe='/')}&" + "&".join(
            f"{name}={quote(value, safe='')}" for name, value in position.items()
        )

    # ------------------------------------------------------------------ caches

    @page
    def index(request: Request) -> Response:
        rows = []
        for entry in console.caches.entries():
            rows.append(
                {
                    "name": entry.name,
                    "class": entry.class_name,
                    "default": entry.name == console.caches.default_name,
                    "read_only": entry.read_only,
                    "storage": entry.storage,
                    "problem": None if entry.problem is None else console.hide(str(entry.problem)),
                }
            )
        return render(request, "index.html", rows=rows, title="Caches")

    def _cache_context(name: str) -> dict[str, Any]:
        from ..cli.admin import entry_config  # the CLI's masking of a configuration entry

        entry = console.caches.entry(name)
        settings = entry_config(entry)
        cache = console.cache(entry.name)
        try:
            info = {k: console.hide(_shown(v)) for k, v in cache.info().items()}
            info_error = None
        except CacheError as exc:
            info, info_error = {}, console.hide(str(exc))
        totals, stats = _stats_rows(cache, console.stats)
        return {
            "name": entry.name,
            "provider": f"{type(cache).__module__}:{type(cache).__qualname__}",
            "settings": console.hide(json.dumps(settings, indent=2, default=str)),
            "info": info,
            "info_error": info_error,
            "totals": totals,
            "stats": stats,
            "writable": not cache.read_only and not console.read_only,
            "has_command": callable(getattr(cache, "command", None)),
        }

    @page
    def cache_page(request: Request) -> Response:
        context = _cache_context(query(request, "name"))
        return render(
            request, "cache.html", title=f"Cache {context['name']}", diagnosis=None, **context
        )

    @action(write=False)
    def health(request: Request, form: FormData) -> Response:
        from ..cli.app import State
        from ..cli.doctor import diagnose

        name = console.caches.entry(text(form, "cache", required=True)).name
        diagnosis = diagnose(State(_caches=console.caches), name)
        diagnosis.checks = [
            dataclasses.replace(
                check,
                detail=console.hide(check.detail),
                advice=None if check.advice is None else console.hide(check.advice),
            )
            for check in diagnosis.checks
        ]
        context = _cache_context(name)
        return render(request, "cache.html", title=f"Cache {name}", diagnosis=diagnosis, **context)

    # ------------------------------------------------------------------ keys

    @page
    def keys_page(request: Request) -> Response:
        cache = console.cache(query(request, "cache"))
        flt = query(request, "filter", MAX_FILTER_CHARS) or None
        sid = query(request, "session", 64)
        number_text = query(request, "page", 12) or "0"
        if not (number_text.isascii() and number_text.isdigit()):
            raise CacheValueError(f"page must be a number, got {number_text!r:.20}.")
        number = int(number_text)
        result = console.browse.page(sid, cache.name, number, flt) if sid else None
        expired = bool(sid) and result is None
        if result is None:
            sid = console.browse.open(cache.name, flt, cache.keys(flt))
            result = console.browse.page(sid, cache.name, 0, flt)
            assert result is not None
        # Bounded whatever the keys: each label is cut, each link to a long key names
        # its position in this listing instead of the key.
        links = [
            {
                "href": key_link(
                    "/entry",
                    cache.name,
                    key,
                    {"session": result.session, "page": str(result.number), "at": str(i)},
                ),
                "label": key_label(key),
            }
            for i, key in enumerate(result.keys)
        ]
        return render(
            request,
            "keys.html",
            title=f"Keys of {cache.name}",
            cache=cache.name,
            filter=flt or "",
            page=result,
            links=links,
            expired=expired,
            writable=not cache.read_only and not console.read_only,
        )

    # ------------------------------------------------------------------ entries

    @page
    def entry_page(request: Request) -> Response:
        cache = console.cache(query(request, "cache"))
        key, position = requested_key(request, cache)
        entry = cache.peek(key)
        if entry is None:
            raise CacheKeyError(
                f"no live entry for key '{key_label(key, 200)}' in cache '{cache.name}'.",
                hint="it may have expired or been deleted; go back to the key list.",
            )
        meta = CacheMetadata.from_entry(entry, time.time())
        deadline = entry.deadline()
        idle = meta.idle_time
        return render(
            request,
            "entry.html",
            title=f"Entry {visible(key[:80])}",
            cache=cache.name,
            key=key,
            preview=preview(entry.value),
            meta={
                "hitCount": meta.hit_count,
                "created": _ago(meta.created),
                "lastModified": _ago(meta.last_modified),
                "lastAccessed": _ago(meta.last_accessed),
                "expires": _ago(meta.expires),
                "idleTime": "-" if idle is None else f"{idle.total_seconds():g} s",
            },
            ttl=None if meta.time_to_live is None else meta.time_to_live.total_seconds(),
            deadline=deadline,
            # Reached by name, a long key's URL already holds it: linking by name again
            # costs no more than the page's own address.
            edit=key_link("/put", cache.name, key, position)
            or f"/put?cache={quote(cache.name, safe='/')}&key={quote(key, safe='/')}",
            writable=not cache.read_only and not console.read_only,
        )

    @action()
    def delete(request: Request, form: FormData) -> Response:
        cache = console.cache(text(form, "cache", required=True))
        key = encoded_text(form, "key", required=True)
        removed = cache.delete(key)
        return render(
            request,
            "done.html",
            title="Deleted" if removed else "Nothing deleted",
            cache=cache.name,
            message=f"Deleted '{key_label(key, 200)}'."
            if removed
            else f"There was no entry '{key_label(key, 200)}'.",
        )

    @page
    def clear_page(request: Request) -> Response:
        cache = console.cache(query(request, "cache"))
        flt = query(request, "filter", MAX_FILTER_CHARS) or None
        count = cache.count(flt)
        return render(
            request,
            "clear.html",
            title=f"Clear {cache.name}",
            cache=cache.name,
            filter=flt or "",
            count=count,
            writable=not cache.read_only and not console.read_only,
        )

    @action()
    def clear(request: Request, form: FormData) -> Response:
        cache = console.cache(text(form, "cache", required=True))
        flt = encoded_text(form, "filter", MAX_FILTER_CHARS) or None
        if text(form, "confirm") != "yes":
            raise CacheValueError(
                "clearing needs the confirmation box ticked.",
                hint="tick the box that says how many entries will be deleted.",
            )
        # The box said how many: more matching now (written since the page counted) is
        # not what was confirmed. Counted again, then cleared: a narrow window remains.
        expected = text(form, "expected", 20)
        if not expected.isdigit() or not expected.isascii():
            raise CacheValueError(
                "the confirmation does not say how many entries it is for.",
                hint="count again on the clear page, then confirm.",
            )
        now = cache.count(flt)
        if now > int(expected):
            raise CacheValueError(
                f"{now:,} entries match now, not the {int(expected):,} that were confirmed; "
                "nothing was deleted.",
                hint="count again on the clear page, then confirm the new number.",
            )
        removed = cache.clear(flt)
        console.browse.close_all()  # their listings show deleted keys now
        what = f"matching '{key_label(flt, 200)}'" if flt else "of the cache"
        return render(
            request,
            "done.html",
            title="Cleared",
            cache=cache.name,
            message=f"Removed {removed:,} entries {what}.",
        )

    @page
    def put_page(request: Request) -> Response:
        cache = console.cache(query(request, "cache"))
        key, position = requested_key(request, cache)
        value_text = ""
        uneditable = False
        if key:
            entry = cache.peek(key)
            if entry is not None:
                json_text = preview(entry.value).json_text
                uneditable = json_text is None
                value_text = json_text or ""
        return render(
            request,
            "put.html",
            title=f"Put into {cache.name}",
            cache=cache.name,
            key=key,
            position=position or {},
            value_text=value_text,
            uneditable=uneditable,
            ttl="",
            writable=not cache.read_only and not console.read_only,
        )

    @action()
    def put(request: Request, form: FormData) -> Response:
        cache = console.cache(text(form, "cache", required=True))
        key = encoded_text(form, "key", required=True)
        raw = text(form, "value", MAX_JSON_CHARS)
        value = parse_json(
            raw, "the value", 'write JSON: "text" in quotes, 42, true, null, [...] or {...}.'
        )
        ttl_text = text(form, "ttl", 32).strip()
        ttl: float | None = None
        if ttl_text:
            # Plain decimal seconds: float() also reads Arabic-Indic digits, "1_000" and
            # exponents, so "1e-320" stored an entry gone before the page came back.
            if not _DECIMAL.fullmatch(ttl_text) or not float(ttl_text) > 0:
                raise CacheValueError(
                    f"TTL must be a number of seconds above 0 (digits, maybe a decimal "
                    f"point), got {visible(ttl_text)!r}.",
                    hint="e.g. 300 or 1.5; leave it empty for no expiry.",
                )
            ttl = float(ttl_text)
        cache.put(key, value, time_span=ttl)
        url = request.url_for("entry").include_query_params(cache=cache.name, key=key)
        if _quoted(key) is None:
            # A long key edited from a key list: back to it by its position, not by an
            # address holding the whole key (when the position still names this key).
            position = {name: text(form, name, 64) for name in ("session", "page", "at")}
            sid, page_text, at_text = position.values()
            if all(v.isascii() and v.isdigit() for v in (page_text, at_text)):
                shown = console.browse.key_at(sid, cache.name, int(page_text), int(at_text))
                if shown == key:
                    url = request.url_for("entry").include_query_params(
                        cache=cache.name, **position
                    )
        return RedirectResponse(str(url), status_code=303)

    # ------------------------------------------------------------------ dynamodb_command

    def _command_cache(name: str) -> BaseCache:
        cache = console.cache(name)
        if not callable(getattr(cache, "command", None)):
            raise ConfigError(
                f"cache '{cache.name}' is a {type(cache).__name__}, not a DynamoDB cache.",
                hint="the dynamodb_command runner works on caches whose class is 'dynamodb'.",
            )
        return cache

    @page
    def command_page(request: Request) -> Response:
        cache = _command_cache(query(request, "cache"))
        return render(
            request,
            "dynamodb.html",
            title=f"dynamodb_command on {cache.name}",
            cache=cache.name,
            action="getItem",
            data_text="{}",
            result=None,
            note=None,
        )

    @action(write=False)
    def command(request: Request, form: FormData) -> Response:
        cache = _command_cache(text(form, "cache", required=True))
        verb = text(form, "action", 64, required=True)
        data_text = text(form, "data", MAX_JSON_CHARS) or "{}"
        data = parse_json(data_text, "the data", 'write a JSON object, e.g. {"key": "user_1"}.')
        note = None
        given = (
            [v for k, v in data.items() if str(k).lower() == "limit"]
            if isinstance(data, dict)
            else []
        )
        if any(type(v) is int and v > MAX_COMMAND_LIMIT for v in given):
            # A Limit of millions read the whole table into this process before the page
            # cut what it shows.
            raise CacheValueError(
                f"the console runs a Limit of at most {MAX_COMMAND_LIMIT:,} items.",
                hint="page through with ExclusiveStartKey, or run larger reads with "
                "dynamodb_command from Python.",
            )
        if verb.lower() in ("scan", "query") and isinstance(data, dict) and not given:
            # dynamodb_command follows every page: without a Limit a scan would read the
            # whole table into this process and the page.
            data["Limit"] = COMMAND_LIMIT
            note = f"Limited to {COMMAND_LIMIT:,} items evaluated; pass a Limit to change it."
        result = cache.command(verb, data)  # type: ignore[attr-defined]
        shown, cut = _bounded_json(result, MAX_JSON_CHARS)
        if cut:
            shown += "\n… (cut: the result is longer)"
        return render(
            request,
            "dynamodb.html",
            title=f"dynamodb_command on {cache.name}",
            cache=cache.name,
            action=verb,
            data_text=data_text,
            result=shown,
            note=note,
        )

    # ------------------------------------------------------------------ configuration

    @page
    def config_page(request: Request) -> Response:
        entries = console.config_file.entries()
        saved = query(request, "saved", 200)
        return render(
            request,
            "config.html",
            title="Configuration",
            path=console.config_path.name,
            entries=entries,
            # Only a configured cache's name: any text in the link was shown as the
            # console's own "Saved ..." status (a page on another local port can send
            # the operator there).
            saved=saved if saved and any(e.name == saved for e in entries) else None,
        )

    @page
    def config_edit(request: Request) -> Response:
        name = query(request, "name", 200)
        entry = console.config_file.entry(name) if name else None
        if name and entry is None:
            raise UnknownCacheError(
                f"no cache '{name}' in {console.config_path.name}.",
                hint="pick one from the configuration page.",
            )
        return render(
            request,
            "config_edit.html",
            title=f"Edit {name}" if entry else "Add a cache",
            original=entry.name if entry else "",
            version=entry.version if entry else "",
            form={
                "name": entry.name if entry else "",
                "class": entry.class_name if entry else "memory",
                "package": entry.package if entry else "",
                "custom": entry.custom_text if entry else "{}",
                "readOnly": entry.read_only if entry else False,
                "default": entry.default if entry else False,
                "storage": entry.storage if entry else False,
            },
            problem=None,
            warnings=[],
        )

    @action()
    def config_save(request: Request, form: FormData) -> Response:
        fields = {
            "name": text(form, "name", 200),
            "class": text(form, "class", 500),
            "package": text(form, "package", 500),
            "custom": text(form, "custom", 64 * 1024),
            "readOnly": form.get("readOnly") == "on",
            "default": form.get("default") == "on",
            "storage": form.get("storage") == "on",
        }
        original = text(form, "original", 200) or None
        version = text(form, "version", 64) or None
        # The submitted definition is not in the file yet: mask what it references too.
        submitted = console.variable_values(
            [fields["name"], fields["class"], fields["custom"], fields["package"]]
        )
        try:
            warnings = console.config_file.save(
                original=original,
                name=str(fields["name"]),
                class_name=str(fields["class"]),
                custom_text=str(fields["custom"]),
                package=str(fields["package"]),
                read_only=bool(fields["readOnly"]),
                default=bool(fields["default"]),
                storage=bool(fields["storage"]),
                version=version,
            )
        except ConfigError as exc:
            # Shown with the form as submitted; the submitted text is the user's own.
            return render(
                request,
                "config_edit.html",
                status=400,
                title="Fix the cache definition",
                original=original or "",
                version=version or "",
                form=fields,
                problem=console.hide(str(exc), submitted),
                warnings=[],
            )
        console.reload()
        if warnings:
            written = console.config_file.entry(str(fields["name"]).strip())
            return render(
                request,
                "config_edit.html",
                title=f"Saved {fields['name']}",
                original=str(fields["name"]).strip(),
                version=written.version if written else "",
                form=fields,
                problem=None,
                warnings=[console.hide(w, submitted) for w in warnings],
            )
        url = request.url_for("config").include_query_params(saved=str(fields["name"]).strip())
        return RedirectResponse(str(url), status_code=303)

    routes = [
        Route("/", index, name="index"),
        Route("/cache", cache_page, name="cache"),
        Route("/cache/health", health, methods=["POST"], name="health"),
        Route("/keys", keys_page, name="keys"),
        Route("/entry", entry_page, name="entry"),
        Route("/entry/delete", delete, methods=["POST"], name="delete"),
        Route("/clear", clear_page, name="clear_page"),
        Route("/clear/run", clear, methods=["POST"], name="clear"),
        Route("/put", put_page, name="put_page"),
        Route("/put/run", put, methods=["POST"], name="put"),
        Route("/dynamodb", command_page, name="command_page"),
        Route("/dynamodb/run", command, methods=["POST"], name="command"),
        Route("/config", config_page, name="config"),
        Route("/config/edit", config_edit, name="config_edit"),
        Route("/config/save", config_save, methods=["POST"], name="config_save"),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        message = {404: "no such page.", 405: "this address only accepts a form (POST)."}
        return render(
            request,
            "error.html",
            status=status,
            title="Not found" if status == 404 else "Refused",
            message=message.get(status, "bad request."),
            back=None,
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        console.close()

    app = Starlette(
        routes=routes,
        exception_handlers={404: not_found, 405: not_found},
        lifespan=lifespan,
    )
    hosts = {*LOOPBACK_HOSTS, bind_host.lower()}
    app.state.console = console
    app.add_middleware(Guard, token=console.token, allowed_hosts=hosts, any_host=allow_any_host)
    return app
