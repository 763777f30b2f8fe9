"""``LocalDynamoDB`` keeps client connections open (HTTP/1.1 keep-alive), and stays safe.

werkzeug's own request handler closes every connection after one reply, so each request
cost the client a TCP connect (and the server a thread): more client CPU than the request
itself, and the noisiest part of the benchmarks. The counts here are connections, not time.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from cachehub_dynamodb import DynamoDBCache, LocalDynamoDB
from cachehub_dynamodb import local as local_module

from cachehub.errors import CacheUnavailableError

from .conftest import CREDENTIALS

LIST_TABLES = {
    "X-Amz-Target": "DynamoDB_20120810.ListTables",
    "Content-Type": "application/x-amz-json-1.0",
    "Authorization": "AWS4-HMAC-SHA256 Credential=AKIADUMMYTESTKEY0001/20260101/us-east-1/"
    "dynamodb/aws4_request, SignedHeaders=host, Signature=0",
}


@pytest.fixture
def local() -> Iterator[LocalDynamoDB]:
    """A server of its own: these tests stop it and send it malformed requests."""
    with LocalDynamoDB() as server:
        yield server


def _raw_exchange(local: LocalDynamoDB, request: bytes) -> bytes:
    """Send ``request`` bytes on a fresh socket; everything the server answers until it closes."""
    with socket.create_connection((local.host, local.port), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
            if len(received) > 1 << 20:  # bounded: a reply is a few hundred bytes
                break
        return received


def test_one_connection_serves_many_requests(local: LocalDynamoDB) -> None:
    conn = http.client.HTTPConnection(local.host, local.port, timeout=10)
    try:
        sockets = set()
        for _ in range(5):
            conn.request("POST", "/", body=b"{}", headers=LIST_TABLES)
            reply = conn.getresponse()
            assert reply.status == 200
            assert reply.getheader("Connection") is None  # not "close"
            # moto's tables are per process: other tests' tables may be listed too
            assert isinstance(json.loads(reply.read())["TableNames"], list)
            assert conn.sock is not None  # http.client drops a socket the server closes
            sockets.add(id(conn.sock))
        assert len(sockets) == 1
    finally:
        conn.close()


def test_replies_are_not_held_back_by_nagle(local: LocalDynamoDB) -> None:
    """A reply is written in two parts: without TCP_NODELAY the body of every reply on a
    kept-alive connection waits for the client's delayed ACK (~40 ms a request)."""
    conn = http.client.HTTPConnection(local.host, local.port, timeout=10)
    try:
        conn.request("POST", "/", body=b"{}", headers=LIST_TABLES)
        conn.getresponse().read()
        (served,) = local._server._server.open_connections
        assert served.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        conn.close()


def test_a_cache_reuses_its_connection(local: LocalDynamoDB) -> None:
    accepted = len(local._server._server.open_connections)
    cache = DynamoDBCache(tableName="keepalive", host=local.endpoint, **CREDENTIALS)
    try:
        for i in range(20):
            cache.put(f"k{i}", i)
            assert cache.get(f"k{i}") == i
        # bootstrap + 40 requests, one thread: one pooled connection, kept open throughout
        assert len(local._server._server.open_connections) - accepted == 1
    finally:
        cache.close()


@pytest.mark.parametrize("length", ["+2", " 2", "2_0", "-1", "abc", str(64 << 20)])
def test_a_bad_content_length_is_answered_and_the_connection_closed(
    local: LocalDynamoDB, length: str
) -> None:
    request = (
        f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
        "X-Amz-Target: DynamoDB_20120810.ListTables\r\n\r\n{}"
    ).encode()
    reply = _raw_exchange(local, request)  # returns only because the server closed
    assert reply.startswith(b"HTTP/1.1 ")
    assert b"\r\nConnection: close\r\n" in reply


def test_a_chunked_request_is_served_then_closed(local: LocalDynamoDB) -> None:
    headers = "".join(f"{k}: {v}\r\n" for k, v in LIST_TABLES.items())
    request = (
        f"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n{headers}\r\n"
        "2\r\n{}\r\n0\r\n\r\n"
    ).encode()
    reply = _raw_exchange(local, request)
    assert reply.startswith(b"HTTP/1.1 200")
    assert b"TableNames" in reply


def test_a_truncated_body_closes_without_a_reply(local: LocalDynamoDB) -> None:
    with socket.create_connection((local.host, local.port), timeout=10) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{}")
        sock.shutdown(socket.SHUT_WR)  # the client goes away mid-body
        assert sock.recv(65536) == b""


def test_stop_closes_kept_alive_connections(local: LocalDynamoDB) -> None:
    conn = http.client.HTTPConnection(local.host, local.port, timeout=10)
    try:
        conn.request("POST", "/", body=b"{}", headers=LIST_TABLES)
        conn.getresponse().read()
        local.stop()
        # A stopped endpoint answers nothing, even on a connection opened before the stop.
        with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
            conn.request("POST", "/", body=b"{}", headers=LIST_TABLES)
            conn.getresponse().read()
    finally:
        conn.close()


def _list_tables(local: LocalDynamoDB) -> int:
    conn = http.client.HTTPConnection(local.host, local.port, timeout=10)
    try:
        conn.request("POST", "/", body=b"{}", headers=LIST_TABLES)
        reply = conn.getresponse()
        reply.read()
        return reply.status
    finally:
        conn.close()


def test_idle_connections_beyond_the_cap_are_closed_not_given_threads(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Every accepted connection got a thread that idled for 60 s: 10,000 idle sockets were
    # 10,000 threads. 4 are served; the 5th to 8th are closed at once, with one warning.
    import threading

    with LocalDynamoDB(max_connections=4) as local:
        before = threading.active_count()
        held = [socket.create_connection((local.host, local.port), timeout=10) for _ in range(4)]
        extra = [socket.create_connection((local.host, local.port), timeout=10) for _ in range(4)]
        try:
            for sock in extra:
                assert sock.recv(1) == b""  # closed by the server, no thread waiting on it
            assert threading.active_count() <= before + 4
            assert [r.getMessage() for r in caplog.records].count(
                "LocalDynamoDB refuses new connections: 4 are open, the limit "
                "(max_connections); close idle clients or raise the limit."
            ) == 1
            held[0].close()  # a freed slot serves again
            for _ in range(100):  # bounded: the freed thread ends on its own, soon
                with contextlib.suppress(ConnectionError, http.client.HTTPException):
                    if _list_tables(local) == 200:
                        break
                time.sleep(0.05)
            else:
                pytest.fail("no connection was served after one was freed")
        finally:
            for sock in held + extra:
                sock.close()


@pytest.mark.parametrize("bad", [0, -1, True, 2.5, "8"])
def test_max_connections_must_be_a_positive_int(bad: object) -> None:
    from cachehub.errors import ConfigError

    with pytest.raises(ConfigError, match="max_connections"):
        LocalDynamoDB(max_connections=bad)  # type: ignore[arg-type]


# ------------------------------------------------- an address the server cannot listen on
# The bind failed inside moto's server thread, and moto's start() waited for ever for that
# thread to say it was ready. These fail promptly now; a hang is caught by the timeout.


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port another socket listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _open_fds() -> set[str] | None:
    """This process's open file descriptors, where the system lists them."""
    try:
        return set(os.listdir("/proc/self/fd"))
    except OSError:
        return None


def _assert_fails_and_leaves_nothing(server: LocalDynamoDB, match: str) -> None:
    threads, fds = set(threading.enumerate()), _open_fds()
    with pytest.raises(CacheUnavailableError, match=match):
        server.start()
    assert set(threading.enumerate()) <= threads  # no server thread left running
    after = _open_fds()
    if fds is not None and after is not None:
        assert after <= fds  # no socket left open
    assert "stopped" in repr(server)
    server.stop()  # nothing to stop: a no-op


@pytest.mark.timeout(60)
@pytest.mark.parametrize("serialize", [True, False])
def test_a_busy_port_is_an_error_not_a_hang(busy_port: int, serialize: bool) -> None:
    server = LocalDynamoDB(port=busy_port, serialize=serialize)
    _assert_fails_and_leaves_nothing(
        server, rf"could not listen on 127\.0\.0\.1:{busy_port}: .*in use.*choose another port"
    )


@pytest.mark.timeout(60)
def test_an_address_of_another_machine_is_an_error_not_a_hang() -> None:
    # 192.0.2.1 (TEST-NET-1, documentation only) is no address of this machine.
    server = LocalDynamoDB(host="192.0.2.1")
    _assert_fails_and_leaves_nothing(
        server, r"could not listen on 192\.0\.2\.1:0: .*not an address of this machine"
    )


@pytest.mark.timeout(60)
def test_a_host_that_does_not_resolve_is_an_error_not_a_hang() -> None:
    server = LocalDynamoDB(host="nonexistent.invalid")  # .invalid never resolves (RFC 2606)
    _assert_fails_and_leaves_nothing(
        server, r"could not listen on nonexistent\.invalid:0: .*not a name this machine resolves"
    )


@pytest.mark.timeout(60)
def test_a_port_taken_after_the_check_fails_in_moto_and_is_still_an_error(
    busy_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # moto's own server (serialize=False) binds the address itself, after LocalDynamoDB has
    # checked it: another program may take the port in between. Here the check passes on
    # a port of its own, so the bind fails in moto's thread, where it used to hang start().
    listen = local_module._listen

    def check_passes(host: str, port: int) -> socket.socket:
        return listen(host, 0)

    monkeypatch.setattr(local_module, "_listen", check_passes)
    server = LocalDynamoDB(port=busy_port, serialize=False)
    _assert_fails_and_leaves_nothing(server, rf"could not listen on 127\.0\.0\.1:{busy_port}: ")
    with LocalDynamoDB(serialize=False) as running:  # and a free port still serves
        assert _list_tables(running) == 200


@pytest.mark.timeout(60)
def test_a_server_serves_the_socket_it_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    # The default server is handed the listening socket itself: no window in which
    # another program could take the port between the check and the server's bind.
    listened: list[tuple[socket.socket, int]] = []
    real_listen = local_module._listen

    def listen(host: str, port: int) -> socket.socket:
        sock = real_listen(host, port)
        listened.append((sock, sock.getsockname()[1]))
        return sock

    monkeypatch.setattr(local_module, "_listen", listen)
    with LocalDynamoDB() as server:
        ((sock, port),) = listened
        assert server.port == port
        assert sock.fileno() == -1  # closed once started: the server has its own duplicate
        assert _list_tables(server) == 200


@pytest.mark.timeout(120)
def test_cli_on_a_busy_port_prints_one_error_line_and_exits_1(busy_port: int) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cachehub", "local-dynamodb", "--port", str(busy_port)],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 1, result
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"Error: LocalDynamoDB could not listen on 127.0.0.1:{busy_port}: ")
    assert "Fix: " in line
