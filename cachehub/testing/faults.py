"""A fault-injecting TCP proxy for tests: lost replies, lost requests, slow replies.

:class:`FaultProxy` listens on a free loopback port and forwards every connection to a
target server (Redis, a DynamoDB endpoint, anything that speaks request/reply over
TCP). Point a cache at :attr:`FaultProxy.port` instead of the server, then arm faults:

* :meth:`~FaultProxy.drop_reply` - the next request that matches is forwarded and
  *applied* by the server, but once the server starts answering the proxy closes the
  client's connection instead of passing the answer on: the client sees a connection
  error for a write that did happen (the case a blind retry turns into a double write);
* :meth:`~FaultProxy.reset_reply` - as :meth:`~FaultProxy.drop_reply`, but the client's
  connection is *reset* (an RST, SO_LINGER 0) instead of closed: "connection reset by
  peer" after the server applied the request;
* :meth:`~FaultProxy.cut_reply` - the reply to the next request that matches is passed
  on only in part (its first N bytes, or everything before a marker), then the client's
  connection is closed: a reply cut short, the client reads a truncated answer;
* :meth:`~FaultProxy.replace_reply` - the next request that matches is forwarded and
  applied, but the client is sent a reply of the test's making instead of the server's
  (an HTTP 500 after an applied write, say), then its connection is closed;
* :meth:`~FaultProxy.drop_request` - the next request that matches is never forwarded:
  the connection is closed before the server sees it (a retry is then harmless);
* :meth:`~FaultProxy.delay_replies` - answers are held back before they are passed on;
* :meth:`~FaultProxy.hold_request` - the next request that matches is held back until
  :meth:`~FaultProxy.let_through`, then reaches the server *late*: after the client gave up
  on it, closed its connection and sent other requests on new ones (the order a server
  that handles connections in parallel, such as DynamoDB, may apply them in).

A *request* is everything a client sent on one connection since the server last
answered on it: request/reply protocols (RESP, HTTP/1.1) alternate, so this holds one
command or one HTTP request even when the client wrote it in several pieces. A matcher
is a ``bytes`` substring of the request or a predicate on its bytes. Every request is
counted (:meth:`~FaultProxy.count`), so tests assert on round trips, never on time, and so
is every reply byte (:attr:`~FaultProxy.replied`): what a client downloaded.

Bounded by construction: loopback only, at most :data:`MAX_CONNECTIONS` connections at
once, daemon threads, and :meth:`~FaultProxy.stop` closes every socket and joins each
thread with a timeout. Use it as a context manager::

    with FaultProxy("127.0.0.1", redis_port) as proxy:
        cache = RedisCache(host="127.0.0.1", port=proxy.port)
        proxy.drop_reply(b"EVALSHA")
        cache.incr("hits")  # applied once, answered after redis-py's retry
        assert proxy.dropped == 1
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeAlias

__all__ = ["FaultProxy", "Matcher", "MAX_CONNECTIONS"]

Matcher: TypeAlias = bytes | Callable[[bytes], bool]
"""What selects a request: a substring of its bytes, or a predicate on them."""

MAX_CONNECTIONS: Final = 128
"""Connections proxied at once; further ones are refused (closed on accept)."""
_CHUNK: Final = 65536
_HISTORY: Final = 10_000
"""Requests remembered for :meth:`FaultProxy.count` (the oldest are forgotten)."""
_REQUEST_KEEP: Final = 1 << 20
"""Bytes of one request kept for matching and history: a larger one is matched on its
first MiB (commands and HTTP headers come first)."""
_LOOPBACK: Final = ("127.0.0.1", "::1", "localhost")


def _matches(matcher: Matcher, request: bytes) -> bool:
    if isinstance(matcher, bytes):
        return matcher in request
    return bool(matcher(request))


@dataclass
class _Rule:
    """An armed fault: ``kind`` ('reply', 'reset', 'cut', 'replace', 'request' or 'hold')
    for the next ``left`` matches; ``at`` is where a 'cut' ends the reply, ``reply`` what
    a 'replace' sends instead of it."""

    kind: str
    matcher: Matcher
    left: int
    at: int | bytes = 0
    reply: bytes = b""


class FaultProxy:
    """A threaded TCP proxy on loopback that can lose replies or requests on demand."""

    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1") -> None:
        if host not in _LOOPBACK or target_host not in _LOOPBACK:
            raise ValueError(
                f"FaultProxy is for loopback only: got listen host {host!r} and target "
                f"host {target_host!r}; use 127.0.0.1, ::1 or localhost."
            )
        self.host = host
        self.target = (target_host, target_port)
        self._lock = threading.Lock()
        self._rules: list[_Rule] = []
        self._delay = 0.0
        self._history: deque[bytes] = deque(maxlen=_HISTORY)
        self._threads: set[threading.Thread] = set()
        self._sockets: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self.port = 0
        self.dropped = 0
        """Replies lost so far (the server applied the request, the client never heard,
        or heard only part, or another answer: :meth:`drop_reply`, :meth:`reset_reply`,
        :meth:`cut_reply`, :meth:`replace_reply`)."""
        self.refused = 0
        """Requests lost so far (never forwarded)."""
        self.connections = 0
        """Client connections accepted so far."""
        self.replied = 0
        """Reply bytes passed on to clients so far: what a client downloaded."""
        self.held = 0
        """Requests held back so far by :meth:`hold_request`."""
        self.late = 0
        """Held requests the server has answered since they were let through."""
        # Each let_through() releases the requests held before it, and only those: a
        # request held later waits for the next one (a count, not a flag left set).
        self._releases = 0
        self._released = threading.Condition(self._lock)
        self._late_answered = threading.Condition(self._lock)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FaultProxy:
        """Listen on a free port of ``host`` and start accepting; returns the proxy."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, 0))
        listener.listen(64)
        listener.settimeout(0.2)  # so the acceptor notices stop()
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._acceptor = threading.Thread(target=self._accept, name="fault-proxy", daemon=True)
        self._acceptor.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close every socket and join the threads (each for at most ``timeout`` seconds)."""
        self._stopping.set()
        with self._lock:
            sockets = list(self._sockets)
            threads = list(self._threads)
        for sock in sockets:
            _close(sock)
        if self._listener is not None:
            _close(self._listener)
        deadline = time.monotonic() + timeout
        for thread in [*threads, *([self._acceptor] if self._acceptor else [])]:
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://host:port`` of the proxy, for HTTP clients such as botocore."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # ------------------------------------------------------------------ faults

    def drop_reply(self, match: Matcher = b"", times: int = 1) -> None:
        """Lose the reply to the next ``times`` requests matching ``match``.

        Each such request is forwarded; when the server answers, the client connection
        is closed instead (the server has applied the request). ``b""`` matches all.
        """
        self._arm("reply", match, times)

    def reset_reply(self, match: Matcher = b"", times: int = 1) -> None:
        """Lose the reply to the next ``times`` requests matching ``match``, by a reset.

        As :meth:`drop_reply`, but the client's connection is aborted with an RST
        (SO_LINGER 0, no FIN) when the server starts answering: the client reads
        "connection reset by peer" for a request the server has applied.
        """
        self._arm("reset", match, times)

    def cut_reply(self, match: Matcher = b"", at: int | bytes = 20, times: int = 1) -> None:
        """Pass on only the start of the reply to the next ``times`` requests matching
        ``match``, then close the client's connection (FIN).

        ``at`` is where the reply is cut: an ``int`` passes its first ``at`` bytes,
        ``bytes`` everything before the first occurrence of that marker in it. The reply
        is held back until that much of it has come (one shorter than ``at``, or without
        the marker, is held until either side closes), so the cut falls at the same byte
        however the server's writes were split. The server has applied the request.
        """
        if isinstance(at, int) and at < 0:
            raise ValueError(f"at must be a byte count of 0 or more, got {at!r}.")
        if isinstance(at, bytes) and not at:
            raise ValueError("at must be a non-empty marker or a byte count.")
        self._arm("cut", match, times, at)

    def replace_reply(self, match: Matcher = b"", reply: bytes = b"", times: int = 1) -> None:
        """Answer the next ``times`` requests matching ``match`` with ``reply`` (whole
        bytes on the wire, e.g. an HTTP response), then close the client's connection.

        Each such request is forwarded, and the server has applied it by the time its
        answer starts; that answer is thrown away. Counted in :attr:`dropped`.
        """
        if not reply:
            raise ValueError("reply must be the bytes to send instead of the server's.")
        if len(reply) > _CHUNK:
            raise ValueError(f"reply must be at most {_CHUNK} bytes, got {len(reply)}.")
        self._arm("replace", match, times, reply=reply)

    def drop_request(self, match: Matcher = b"", times: int = 1) -> None:
        """Lose the next ``times`` requests matching ``match``: never forwarded.

        Matching sees the bytes received so far: a request that arrives in pieces and
        matches only once a later piece is in has had its earlier pieces forwarded (the
        server then sees a truncated request and a closed connection).
        """
        self._arm("request", match, times)

    def delay_replies(self, seconds: float) -> None:
        """Hold every answer back ``seconds`` before passing it on (0: no delay)."""
        if not 0 <= seconds <= 60:
            raise ValueError(f"delay must be between 0 and 60 seconds, got {seconds!r}.")
        self._delay = seconds

    def hold_request(self, match: Matcher = b"", times: int = 1) -> None:
        """Hold back the next ``times`` requests matching ``match`` until :meth:`let_through`.

        The client sees no answer and may give up on the request and close its
        connection; the proxy keeps its own connection to the server open, and once let
        through the request reaches the server (which applies it) after whatever the
        client sent since on other connections. Pieces of the request that arrived
        before it matched were forwarded at once, as for :meth:`drop_request`.
        """
        self._arm("hold", match, times)

    def let_through(self, timeout: float = 10.0) -> int:
        """Forward every held request and wait (up to ``timeout`` seconds) until the
        server has answered each; returns how many it answered. Answers are not passed on
        to a client that has closed its connection. A request held after this call waits
        for the next one."""
        with self._released:
            self._releases += 1
            self._released.notify_all()
        deadline = time.monotonic() + timeout
        with self._late_answered:
            while self.late < self.held and (left := deadline - time.monotonic()) > 0:
                self._late_answered.wait(left)
            return self.late

    def clear(self) -> None:
        """Disarm every fault and delay (counters are kept)."""
        with self._lock:
            self._rules.clear()
        self._delay = 0.0

    def armed(self) -> int:
        """How many faults are still waiting for a matching request."""
        with self._lock:
            return sum(rule.left for rule in self._rules)

    def _arm(
        self, kind: str, match: Matcher, times: int, at: int | bytes = 0, reply: bytes = b""
    ) -> None:
        if times < 1:
            raise ValueError(f"times must be at least 1, got {times!r}.")
        with self._lock:
            self._rules.append(_Rule(kind, match, times, at, reply))

    def _take(self, request: bytes) -> _Rule | None:
        """The fault for ``request`` (consuming one use of its rule), or None."""
        with self._lock:
            for rule in self._rules:
                if _matches(rule.matcher, request):
                    rule.left -= 1
                    if rule.left == 0:
                        self._rules.remove(rule)
                    return rule
        return None

    # ------------------------------------------------------------------ counters

    def requests(self) -> list[bytes]:
        """The requests seen so far, oldest first (at most the last 10,000)."""
        with self._lock:
            return list(self._history)

    def count(self, match: Matcher = b"") -> int:
        """How many requests seen so far match ``match`` (``b""``: all of them)."""
        return sum(1 for request in self.requests() if _matches(match, request))

    def reset_counts(self) -> None:
        """Forget the requests seen and zero the counters."""
        with self._lock:
            self._history.clear()
            self.dropped = self.refused = self.connections = self.replied = 0

    # ------------------------------------------------------------------ forwarding

    def _accept(self) -> None:
        listener = self._listener
        assert listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed by stop()
            with self._lock:
                full = len(self._threads) >= MAX_CONNECTIONS
                if not full:
                    self.connections += 1
            if full:
                _close(client)
                continue
            thread = threading.Thread(
                target=self._serve, args=(client,), name="fault-proxy-conn", daemon=True
            )
            with self._lock:
                self._threads.add(thread)
            thread.start()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        # Either side going away (OSError) simply ends the connection.
        with contextlib.suppress(OSError):
            try:
                upstream = socket.create_connection(self.target, timeout=5.0)
                with self._lock:
                    self._sockets.update((client, upstream))
                self._pump(client, upstream)
            finally:
                _close(client)
                if upstream is not None:
                    _close(upstream)
                with self._lock:
                    self._sockets.discard(client)
                    if upstream is not None:
                        self._sockets.discard(upstream)
                    self._threads.discard(threading.current_thread())

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        """Forward both ways until either side closes; apply the armed faults."""
        request = bytearray()
        doomed: _Rule | None = None  # a reply to lose, reset or cut (see _answer_doomed)
        answer = bytearray()  # what came of a doomed reply so far
        with selectors.DefaultSelector() as sel:
            sel.register(client, selectors.EVENT_READ, "client")
            sel.register(upstream, selectors.EVENT_READ, "server")
            while not self._stopping.is_set():
                for key, _ in sel.select(timeout=0.2):
                    data = key.fileobj.recv(_CHUNK)  # type: ignore[union-attr]
                    if not data:
                        self._record(request)
                        return
                    if key.data == "client":
                        if len(request) < _REQUEST_KEEP:
                            request += data[: _REQUEST_KEEP - len(request)]
                        rule = None if doomed else self._take(bytes(request))
                        fault = None if rule is None else rule.kind
                        if fault == "hold":
                            self._hold_then_forward(client, upstream, request, data)
                            return
                        if fault == "request":
                            with self._lock:
                                self.refused += 1
                            self._record(request)
                            return
                        if fault in ("reply", "reset", "cut", "replace"):
                            doomed = rule
                        upstream.sendall(data)
                        continue
                    if request:
                        self._record(request)
                        request = bytearray()
                    if doomed is not None:
                        answer += data
                        if self._answer_doomed(doomed, client, sel, answer):
                            return
                        continue
                    if self._delay:
                        self._stopping.wait(self._delay)
                    with self._lock:
                        self.replied += len(data)
                    client.sendall(data)

    def _answer_doomed(
        self,
        rule: _Rule,
        client: socket.socket,
        sel: selectors.BaseSelector,
        answer: bytearray,
    ) -> bool:
        """Apply a reply fault to ``answer`` (the reply so far); True once the client's
        connection is done with, False to wait for more of the reply."""
        if rule.kind == "cut":
            if isinstance(rule.at, bytes):
                end = answer.find(rule.at)
                if end < 0:
                    return False  # the marker is yet to come: hold what came
            elif len(answer) < rule.at:
                return False
            else:
                end = rule.at
            with self._lock:
                self.replied += end
            client.sendall(answer[:end])
        elif rule.kind == "replace":
            with self._lock:
                self.replied += len(rule.reply)
            client.sendall(rule.reply)
        elif rule.kind == "reset":
            # An RST instead of a FIN: no shutdown(), and a zero linger time on close.
            sel.unregister(client)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
        with self._lock:
            self.dropped += 1
        return True

    def _hold_then_forward(
        self, client: socket.socket, upstream: socket.socket, request: bytearray, data: bytes
    ) -> None:
        """:meth:`hold_request`'s fault: wait to be let through, then forward ``data`` and
        the rest the client sent, and wait for the server's answer (bounded)."""
        with self._lock:
            self.held += 1
            batch = self._releases
        self._record(request)  # received now, whenever it reaches the server
        with self._released:
            # Polled, so that stop() (an Event of its own) ends the wait too.
            while self._releases == batch and not self._stopping.is_set():
                self._released.wait(0.2)
        if self._stopping.is_set():
            return
        late = bytearray(data)
        client.setblocking(False)  # the rest of the request, if any: what is already in
        with contextlib.suppress(BlockingIOError, OSError):
            while chunk := client.recv(_CHUNK):
                late += chunk
        upstream.sendall(late)
        upstream.settimeout(5.0)  # a server that never answers ends the wait, not the run
        try:
            answer = upstream.recv(_CHUNK)
        except OSError:
            answer = b""
        if not answer:
            return  # let_through reports it: fewer answered than held
        with self._late_answered:
            self.late += 1
            self._late_answered.notify_all()
        with contextlib.suppress(OSError):
            client.sendall(answer)

    def _record(self, request: bytearray) -> None:
        if request:
            with self._lock:
                self._history.append(bytes(request))


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
