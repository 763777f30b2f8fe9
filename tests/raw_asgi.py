"""One raw ASGI request, shared by the console and the framework-adapter tests.

Raw (no HTTP client in between): a client would normalise or refuse the hostile headers
and scopes some tests send. Imported as ``from raw_asgi import asgi_exchange`` (``tests/``
is on ``sys.path``, as for ``spec_examples``).
"""

from __future__ import annotations

from typing import Any, Final

EMPTY_BODY: Final[dict[str, Any]] = {"type": "http.request", "body": b"", "more_body": False}
"""What ``receive`` answers by default: a request without a body."""


async def asgi_exchange(
    app: Any, scope: dict[str, Any], received: dict[str, Any] = EMPTY_BODY
) -> list[dict[str, Any]]:
    """The messages ``app`` sends for one connection ``scope``, in order; its ``receive``
    answers a copy of ``received`` every time it is awaited."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return dict(received)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent
