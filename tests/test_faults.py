"""The fault-injecting proxy itself (cachehub.testing.faults), against a loopback echo server."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from cachehub.testing import faults
from cachehub.testing.faults import FaultProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.settimeout(5.0)
        while data := self.request.recv(4096):
            self.server.seen.append(data)  # type: ignore[attr-defined]
            self.request.sendall(data.upper())


@pytest.fixture
def echo() -> Iterator[socketserver.ThreadingTCPServer]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    server.seen = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def proxy(echo: socketserver.ThreadingTCPServer) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", echo.server_address[1]) as p:
        yield p


def _client(proxy: FaultProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=5.0)
    sock.settimeout(5.0)
    return sock


def _ask(sock: socket.socket, data: bytes) -> bytes:
    """The answer to ``data``; b"" when the proxy closed the connection instead."""
    try:
        sock.sendall(data)
        return sock.recv(4096)
    except (ConnectionResetError, BrokenPipeError):
        return b""


def test_forwards_and_counts(proxy: FaultProxy) -> None:
    with _client(proxy) as sock:
        assert _ask(sock, b"one") == b"ONE"
        assert _ask(sock, b"two") == b"TWO"
    assert proxy.count() == 2
    assert proxy.count(b"tw") == 1
    assert proxy.count(lambda req: req.startswith(b"o")) == 1
    assert proxy.requests() == [b"one", b"two"]


def test_drop_reply_closes_after_the_server_answered(
    proxy: FaultProxy, echo: socketserver.ThreadingTCPServer
) -> None:
    proxy.drop_reply(b"lost")
    with _client(proxy) as sock:
        assert _ask(sock, b"kept") == b"KEPT"
        assert _ask(sock, b"lost") == b""  # closed, no answer
    assert b"lost" in echo.seen  # type: ignore[attr-defined]
    assert proxy.dropped == 1
    assert proxy.armed() == 0
    with _client(proxy) as sock:  # the fault was used up: the next one passes
        assert _ask(sock, b"lost") == b"LOST"


def test_replace_reply_sends_the_given_answer_after_the_server_applied(
    proxy: FaultProxy, echo: socketserver.ThreadingTCPServer
) -> None:
    proxy.replace_reply(b"write", reply=b"ERR made up")
    with _client(proxy) as sock:
        assert _ask(sock, b"write") == b"ERR made up"
        assert sock.recv(4096) == b""  # then closed: the server's answer never follows
    assert b"write" in echo.seen  # type: ignore[attr-defined]
    assert proxy.dropped == 1
    with _client(proxy) as sock:
        assert _ask(sock, b"write") == b"WRITE"


def test_drop_request_never_reaches_the_server(
    proxy: FaultProxy, echo: socketserver.ThreadingTCPServer
) -> None:
    proxy.drop_request(lambda req: b"secret" in req, times=2)
    for _ in range(2):
        with _client(proxy) as sock:
            assert _ask(sock, b"secret") == b""
    with _client(proxy) as sock:
        assert _ask(sock, b"secret") == b"SECRET"
    assert echo.seen.count(b"secret") == 1  # type: ignore[attr-defined]
    assert proxy.refused == 2


def test_hold_request_reaches_the_server_after_later_requests(
    proxy: FaultProxy, echo: socketserver.ThreadingTCPServer
) -> None:
    proxy.hold_request(b"first")
    early = _client(proxy)
    early.sendall(b"first")
    _wait_for(lambda: proxy.held == 1)
    early.sendall(b"-and-more")  # the rest of the request, sent while held
    early.close()  # the client gave up on it
    with _client(proxy) as sock:
        assert _ask(sock, b"second") == b"SECOND"
    assert echo.seen == [b"second"]  # type: ignore[attr-defined]
    assert proxy.let_through() == 1
    assert b"".join(echo.seen[1:]) == b"first-and-more"  # type: ignore[attr-defined]
    with _client(proxy) as sock:
        assert _ask(sock, b"first") == b"FIRST"  # held once only


def test_a_second_hold_waits_for_its_own_let_through(
    proxy: FaultProxy, echo: socketserver.ThreadingTCPServer
) -> None:
    # A let_through releases what was held before it, not every later hold too.
    for round_, word in enumerate([b"one", b"two"], start=1):
        proxy.hold_request(word)
        held = _client(proxy)
        held.sendall(word)
        _wait_for(lambda round_=round_: proxy.held == round_)
        with _client(proxy) as sock:  # a later request overtakes it: still held
            assert _ask(sock, b"probe") == b"PROBE"
        assert word not in echo.seen  # type: ignore[attr-defined]
        assert proxy.let_through() == round_  # answered: every held one so far
        assert echo.seen[-1] == word  # type: ignore[attr-defined]
        held.close()


def test_let_through_waits_a_bounded_time_for_a_silent_server() -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    try:
        with FaultProxy("127.0.0.1", silent.getsockname()[1]) as proxy:
            assert proxy.let_through(timeout=0.1) == 0  # nothing held: at once
            proxy.hold_request()
            with _client(proxy) as sock:
                sock.sendall(b"x")
                _wait_for(lambda: proxy.held == 1)
            assert proxy.let_through(timeout=0.2) == 0  # held, never answered
    finally:
        silent.close()
    assert not any(t.name.startswith("fault-proxy") and t.is_alive() for t in threading.enumerate())


def _wait_for(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` (bounded: 10 s) for what another thread does."""
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in 10 s"
        time.sleep(0.001)


def test_clear_disarms(proxy: FaultProxy) -> None:
    proxy.drop_reply(times=3)
    proxy.clear()
    with _client(proxy) as sock:
        assert _ask(sock, b"x") == b"X"
    assert proxy.dropped == 0


def test_connections_are_bounded(proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(faults, "MAX_CONNECTIONS", 1)
    with _client(proxy) as first:
        assert _ask(first, b"a") == b"A"
        with _client(proxy) as second:
            assert _ask(second, b"b") == b""  # refused while the first is open
    assert proxy.connections == 1


def test_stop_ends_every_connection(echo: socketserver.ThreadingTCPServer) -> None:
    proxy = FaultProxy("127.0.0.1", echo.server_address[1]).start()
    sock = _client(proxy)
    assert _ask(sock, b"a") == b"A"
    proxy.stop(timeout=5.0)
    assert _ask(sock, b"b") == b""
    sock.close()
    assert not any(t.name.startswith("fault-proxy") and t.is_alive() for t in threading.enumerate())
    with pytest.raises(OSError):
        _client(proxy)


@pytest.mark.parametrize(
    ("call", "problem"),
    [
        (lambda p: p.drop_reply(times=0), "times"),
        (lambda p: p.replace_reply(reply=b""), "reply"),
        (lambda p: p.replace_reply(reply=b"x" * 70_000), "reply"),
        (lambda p: p.delay_replies(-1), "delay"),
        (lambda p: p.delay_replies(3600), "delay"),
    ],
)
def test_bad_controls_are_refused(proxy: FaultProxy, call: object, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        call(proxy)  # type: ignore[operator]


@pytest.mark.parametrize("where", [("10.0.0.1", "127.0.0.1"), ("127.0.0.1", "192.168.1.1")])
def test_loopback_only(where: tuple[str, str]) -> None:
    target, listen = where
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy(target, 6379, host=listen)
