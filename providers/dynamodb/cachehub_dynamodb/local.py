"""A local DynamoDB endpoint for development and tests: moto's server in a thread.

::

    with LocalDynamoDB() as local:
        cache = DynamoDBCache(tableName="dev_cache", host=local.endpoint,
                              accessKeyId="dummy", secretkey="dummy")

Data lives in this process's memory and is gone when it exits. Needs the ``local``
extra (``pip install cachehub-dynamodb[local]``, i.e. ``moto[server]``).

moto handles concurrent requests without locking, so two conditional writes racing on one
item could both succeed - unlike DynamoDB, where each item write is atomic. The server
therefore handles one request at a time (``serialize=True``, the default), which keeps
``add``, ``incr`` and locks exact under concurrency. That server also keeps client
connections open between requests (HTTP/1.1 keep-alive), as DynamoDB does: werkzeug's own
handler closes each one after a reply, which made every request a new TCP connection.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import inspect
import io
import logging
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any

from cachehub.errors import CacheUnavailableError, ConfigError, MissingPackageError

__all__ = ["LocalDynamoDB"]

_IDLE_SECONDS = 60
"""How long the server keeps an idle client connection open (clients close theirs sooner)."""
MAX_CONNECTIONS = 256
"""Client connections the server keeps open at once, one thread each: beyond them a new
connection is closed at once (and logged), so idle or abandoned connections cannot make
the process start a thread for each (10,000 of them were 10,000 threads)."""
_log = logging.getLogger(__name__)
_FRAMING = frozenset({"content-length", "connection", "transfer-encoding"})
"""Response headers the keep-alive handler writes itself."""
_MAX_BODY = 32 << 20
"""The largest request body read into memory (DynamoDB's own limit is 16 MB)."""


def _content_length(text: str | None) -> int | None:
    """A request's body length, or None when it is not a plain decimal number."""
    if text is None:
        return 0
    if not (text.isascii() and text.isdigit()) or len(text) > 20:  # int() takes "+1", "1_0"
        return None
    return int(text)


class LocalDynamoDB:
    """Start moto's ThreadedMotoServer on ``host`` (a free port unless ``port`` is given).

    ``max_connections`` caps the connections the (default, ``serialize=True``) server
    keeps open at once, one thread each; ``serialize=False`` runs moto's own server,
    which closes every connection after one reply.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        serialize: bool = True,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        if isinstance(max_connections, bool) or not isinstance(max_connections, int):
            raise ConfigError(
                "LocalDynamoDB max_connections must be an int, got "
                f"{type(max_connections).__name__}.",
                hint=f"pass a whole number of connections, e.g. {MAX_CONNECTIONS}.",
            )
        if max_connections < 1:
            raise ConfigError(
                f"LocalDynamoDB max_connections must be at least 1, got {max_connections}.",
                hint=f"pass a whole number of connections, e.g. {MAX_CONNECTIONS}.",
            )
        self.host = host
        self.port = port
        self.serialize = serialize
        self.max_connections = max_connections
        self._server: Any = None

    @property
    def endpoint(self) -> str:
        """The URL to use as the cache's ``host`` setting."""
        if self._server is None:
            raise CacheUnavailableError(
                "LocalDynamoDB is not running.", hint="call start() or use it as a context manager."
            )
        return f"http://{self.host}:{self.port}"

    def start(self) -> LocalDynamoDB:
        """Start the server (idempotent) and return self."""
        if self._server is not None:
            return self
        try:
            from moto.server import ThreadedMotoServer
        except ImportError:
            raise MissingPackageError(
                "LocalDynamoDB needs moto's server, which is not installed.",
                hint="pip install 'cachehub-dynamodb[local]' (or 'moto[server]').",
            ) from None
        # werkzeug logs every request at INFO; keep it quiet unless someone configured it.
        access_log = logging.getLogger("werkzeug")
        if access_log.level == logging.NOTSET:
            access_log.setLevel(logging.WARNING)
        # Bind here, where a failure is an exception: inside moto's server thread, werkzeug
        # prints it and exits that thread, and moto's start() waited for ever.
        listener = _listen(self.host, self.port)
        try:
            factory = _serialized_server_class(self.max_connections) if self.serialize else None
            # Any: start() below reaches into moto's internals (each one checked).
            server: Any = (factory or ThreadedMotoServer)(
                ip_address=self.host, port=self.port, verbose=False
            )
            if factory is not None and factory.takes_listener:
                server.listen_fd = listener.fileno()  # serves this very socket: no race
            else:
                # moto binds the address itself: free it; losing it to another program
                # in between is caught below, as a failure of the server thread.
                listener.close()
            try:
                failure = _start_observed(server)
            except OSError as exc:  # e.g. no thread could be started
                failure = exc
        finally:
            listener.close()  # the server serves a duplicate of it (werkzeug's fromfd)
        if failure is not None:
            raise _listen_error(self.host, self.port, failure) from None
        self.port = int(server.get_host_and_port()[1])
        self._server = server
        return self

    def stop(self) -> None:
        """Stop the server; its data is discarded."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def __enter__(self) -> LocalDynamoDB:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running at {self.endpoint}" if self._server is not None else "stopped"
        return f"<LocalDynamoDB {state}>"


def _listen(host: str, port: int) -> socket.socket:
    """A socket listening on ``host``:``port`` (0: a free port), or the typed error.

    The address is resolved as werkzeug does (IPv6 only for a host with a colon), so the
    socket can be handed to its server; the socket options match socketserver's.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        address = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock = socket.socket(family, socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:  # gaierror: a name that does not resolve
        raise _listen_error(host, port, exc) from None
    try:
        if hasattr(socket, "SO_EXCLUSIVEADDRUSE"):  # Windows: SO_REUSEADDR shares a busy port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
        else:  # a port left in TIME_WAIT by an earlier server is free to listen on again
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address[0][4])
        sock.listen(128)  # werkzeug's LISTEN_QUEUE
    except (OSError, OverflowError) as exc:  # OverflowError: a port over 65535
        sock.close()
        raise _listen_error(host, port, exc) from None
    return sock


def _listen_error(host: str, port: int, failure: BaseException) -> CacheUnavailableError:
    """The typed error for a server that cannot listen on ``host``:``port``."""
    # werkzeug reports a bind error by printing it and sys.exit(1) in the server thread:
    # the OSError is that SystemExit's context.
    cause: BaseException | None = failure
    for _ in range(5):  # a short chain; never a cycle
        if cause is None or isinstance(cause, OSError):
            break
        cause = cause.__context__
    if isinstance(cause, OSError):
        reason = cause.strerror or str(cause)
    else:
        reason = f"{type(failure).__name__}: {failure}"
    code = cause.errno if isinstance(cause, OSError) else None
    if isinstance(cause, socket.gaierror):
        hint = (
            f"host {host!r} is not a name this machine resolves; use an IP address, e.g. 127.0.0.1."
        )
    elif code == errno.EADDRINUSE:
        hint = (
            f"port {port} is in use by another program: stop it, or choose another port "
            "(0 picks a free one)."
        )
    elif code == errno.EADDRNOTAVAIL:
        hint = (
            f"{host} is not an address of this machine; use 127.0.0.1 (loopback), "
            "or 0.0.0.0 for every interface."
        )
    elif code == errno.EACCES:
        hint = "ports below 1024 need privileges: choose a higher port, or 0 for a free one."
    else:
        hint = "check host and port (port 0 picks a free one)."
    return CacheUnavailableError(
        f"LocalDynamoDB could not listen on {host}:{port}: {reason}.", hint=hint
    )


def _start_observed(server: Any) -> BaseException | None:
    """``server.start()``, returning the exception that ended its thread before it was ready.

    moto's start() waits for its server thread to say it is ready, which it never does
    when the bind fails there: the thread ends and start() waits for ever. The thread's
    entry point is wrapped so that a failure wakes start() too; moto has used an Event
    (``_server_ready_event``) since 5.0.4 and a polled flag (``_server_ready``) before.
    """
    entry = getattr(server, "_server_entry", None)
    ready = getattr(server, "_server_ready_event", None)
    if not callable(entry) or not (
        isinstance(ready, threading.Event) or hasattr(server, "_server_ready")
    ):
        server.start()  # moto changed: _listen above has checked the address
        return None
    failures: list[BaseException] = []

    def is_ready() -> bool:
        return ready.is_set() if isinstance(ready, threading.Event) else bool(server._server_ready)

    def observed_entry() -> None:
        try:
            entry()
        except BaseException as exc:
            if is_ready():
                raise  # failed while serving: the thread's own report (threading.excepthook)
            failures.append(exc)
            if isinstance(ready, threading.Event):
                ready.set()
            else:
                server._server_ready = True

    server._server_entry = observed_entry
    server.start()
    if not failures:
        return None
    thread = getattr(server, "_thread", None)
    if isinstance(thread, threading.Thread):
        thread.join(timeout=10)  # it is returning already: no thread left behind
    leftover, server._server = getattr(server, "_server", None), None
    if leftover is not None:  # failed after its socket was made: no socket left behind
        with contextlib.suppress(Exception):
            leftover.server_close()
    return failures[0]


def _serialized_server_class(max_connections: int = MAX_CONNECTIONS) -> Any:
    """ThreadedMotoServer whose WSGI app runs one request at a time and which serves at most
    ``max_connections`` connections at once (None if moto changed)."""
    # Typed as Any: these are moto internals (checked below), not its public API.
    tms: Any = importlib.import_module("moto.moto_server.threaded_moto_server")

    needed = (
        "DomainDispatcherApplication",
        "MotoRequestHandler",
        "create_backend_app",
        "make_server",
    )
    if not hasattr(tms.ThreadedMotoServer, "_server_entry") or not all(
        hasattr(tms, n) for n in needed
    ):
        return None

    class _KeepAliveHandler(tms.MotoRequestHandler):  # type: ignore[misc]  # Any base
        # HTTP/1.1 keeps the client's connections open: no connect + thread per request.
        # werkzeug's own run_wsgi cannot: it answers every request with "Connection: close"
        # (it drains the socket after a reply, which would eat a kept-alive connection's
        # next request). Without this every request cost the client a TCP connect - more
        # client CPU than the request itself, and the noisiest part of it.
        protocol_version = "HTTP/1.1"
        timeout = _IDLE_SECONDS  # an idle kept-alive connection ends; its thread with it

        def setup(self) -> None:
            super().setup()
            # A reply is two writes (headers, body): with Nagle's algorithm the second
            # waits for the client's delayed ACK of the first, ~40 ms, on every request of
            # a kept-alive connection.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.server.open_connections.add(self.connection)

        def finish(self) -> None:
            self.server.open_connections.discard(self.connection)
            super().finish()

        def run_wsgi(self) -> None:
            framing = self.headers.get("Transfer-Encoding") or self.headers.get("Expect")
            length = _content_length(self.headers.get("Content-Length"))
            if length is not None and length > _MAX_BODY:
                self.close_connection = True  # not read into memory, nor waited for
                self.send_error(413, f"request body over {_MAX_BODY} bytes")
                return
            if framing or length is None:
                # chunked, 100-continue or a bad length: werkzeug's own handling, and close
                self.close_connection = True
                super().run_wsgi()
                return
            # The whole body is read here, so the next request line is where it should be.
            body = self.rfile.read(length)
            if len(body) < length:  # the client went away mid-body
                self.close_connection = True
                return
            environ = self.make_environ()
            environ["wsgi.input"] = io.BytesIO(body)
            reply: list[Any] = []
            written: list[bytes] = []  # WSGI's legacy write(); moto returns its bodies

            def start_response(
                status: str, headers: list[tuple[str, str]], exc_info: Any = None
            ) -> Callable[[bytes], None]:
                reply[:] = [status, headers]
                return written.append

            try:
                chunks = list(self.server.app(environ, start_response))
                content = b"".join([*written, *chunks])
            except Exception:  # moto failed: a 500 and a fresh connection, as werkzeug would
                self.close_connection = True
                self.send_error(500)
                return
            status, headers = reply
            code, _, message = status.partition(" ")
            self.send_response(int(code), message)
            for name, value in headers:
                if name.lower() not in _FRAMING:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(content)
            self.wfile.flush()

    class SerializedMotoServer(tms.ThreadedMotoServer):  # type: ignore[misc]  # Any base
        # werkzeug serves an already listening socket given as fd (LocalDynamoDB's own).
        takes_listener = "fd" in inspect.signature(tms.make_server).parameters
        listen_fd: int | None = None

        def _server_entry(self) -> None:
            app = tms.DomainDispatcherApplication(tms.create_backend_app)
            lock = threading.Lock()

            def serialized(
                environ: dict[str, Any], start_response: Callable[..., Any]
            ) -> Iterable[bytes]:
                with lock:  # the body is produced under the lock too
                    return list(app(environ, start_response))

            server = tms.make_server(
                self._ip_address,
                self._port,
                serialized,
                True,
                request_handler=_KeepAliveHandler,
                **({} if self.listen_fd is None else {"fd": self.listen_fd}),
            )
            server.open_connections = set()
            _cap_connections(server, max_connections)
            self._server = server
            self._server_ready_event.set()
            server.serve_forever()

        def stop(self) -> None:
            super().stop()
            # A stopped endpoint answers nothing, on kept-alive connections either.
            for connection in list(getattr(self._server, "open_connections", ())):
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)

    return SerializedMotoServer


def _cap_connections(server: Any, limit: int) -> None:
    """Serve at most ``limit`` connections of a threading ``server`` at once.

    socketserver's ThreadingMixIn starts a thread per accepted connection, and a kept-alive
    one lives until it has been idle for ``_IDLE_SECONDS``: without a cap, every idle
    connection held a thread. A connection beyond the limit is closed at once - the
    client sees it dropped and may retry - and one warning is logged until a slot frees.
    """
    slots = threading.BoundedSemaphore(limit)
    warned = threading.Event()
    start, serve = server.process_request, server.process_request_thread

    def process_request(request: Any, client_address: Any) -> None:
        if not slots.acquire(blocking=False):
            if not warned.is_set():
                warned.set()
                _log.warning(
                    "LocalDynamoDB refuses new connections: %d are open, the limit "
                    "(max_connections); close idle clients or raise the limit.",
                    limit,
                )
            server.shutdown_request(request)
            return
        try:
            start(request, client_address)
        except BaseException:  # no thread started (e.g. none left): the slot is free again
            slots.release()
            raise

    def process_request_thread(request: Any, client_address: Any) -> None:
        try:
            serve(request, client_address)
        finally:
            slots.release()
            warned.clear()

    server.process_request = process_request
    server.process_request_thread = process_request_thread
