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
``add``, ``incr`` and locks exact under concurrency.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from cachehub.errors import CacheUnavailableError, MissingPackageError

__all__ = ["LocalDynamoDB"]


class LocalDynamoDB:
    """Start moto's ThreadedMotoServer on ``host`` (a free port unless ``port`` is given)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, serialize: bool = True) -> None:
        self.host = host
        self.port = port
        self.serialize = serialize
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
        factory = _serialized_server_class() if self.serialize else None
        server = (factory or ThreadedMotoServer)(
            ip_address=self.host, port=self.port, verbose=False
        )
        try:
            server.start()
        except OSError as exc:
            raise CacheUnavailableError(
                f"LocalDynamoDB could not listen on {self.host}:{self.port}: {exc}.",
                hint="choose another port, or port=0 for a free one.",
            ) from None
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


def _serialized_server_class() -> Any:
    """ThreadedMotoServer whose WSGI app runs one request at a time (None if moto changed)."""
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
        protocol_version = "HTTP/1.1"

    class SerializedMotoServer(tms.ThreadedMotoServer):  # type: ignore[misc]  # Any base
        def _server_entry(self) -> None:
            app = tms.DomainDispatcherApplication(tms.create_backend_app)
            lock = threading.Lock()

            def serialized(
                environ: dict[str, Any], start_response: Callable[..., Any]
            ) -> Iterable[bytes]:
                with lock:  # the body is produced under the lock too
                    return list(app(environ, start_response))

            self._server = tms.make_server(
                self._ip_address,
                self._port,
                serialized,
                True,
                request_handler=_KeepAliveHandler,
            )
            self._server_ready_event.set()
            self._server.serve_forever()

    return SerializedMotoServer
