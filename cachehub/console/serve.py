"""Serving a console app on a free loopback port in a background thread.

For the screenshot script, the browser tests and the page-render benchmark: they need a
real HTTP server for a real browser, started and stopped within a bounded time.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any, Final

__all__ = ["serving", "START_SECONDS"]

START_SECONDS: Final = 10.0
"""How long the server may take to start (or stop) before it is an error."""


@contextlib.contextmanager
def serving(app: Any, host: str = "127.0.0.1") -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free port of ``host``; yields the base URL."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=0, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="cachehub-console", daemon=True)
    thread.start()
    ready = threading.Event()
    for _ in range(int(START_SECONDS / 0.05)):
        if server.started or not thread.is_alive():
            break
        ready.wait(0.05)
    if not server.started:
        server.should_exit = True
        thread.join(START_SECONDS)
        raise RuntimeError(f"the console did not start within {START_SECONDS:g} s")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(START_SECONDS)
