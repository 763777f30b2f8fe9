"""``LocalDynamoDB`` keeps client connections open (HTTP/1.1 keep-alive), and stays safe.

werkzeug's own request handler closes every connection after one reply, so each request
cost the client a TCP connect (and the server a thread): more client CPU than the request
itself, and the noisiest part of the benchmarks. The counts here are connections, not time.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import time
from collections.abc import Iterator

import pytest
from cachehub_dynamodb import DynamoDBCache, LocalDynamoDB

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
