"""Exactly once when a write's reply is lost by a reset or arrives cut short.

A :class:`~cachehub.testing.faults.FaultProxy` sits between the cache and moto (in a
process of its own) and, once moto has applied a write, either resets the client's
connection (an RST: aiobotocore reports it as an ``EndpointConnectionError``, the error it
also uses for a failed connect) or passes on only the start of the reply (http.client then
reads a 200 with no headers or no body, which botocore answered with ``{}`` or re-sent
after its checksum failed). Both shells, for ``incr``, ``add`` and ``delete``: each write
is applied once, and the call answers what it did or raises
:class:`~cachehub.errors.CacheOutcomeUnknownError` - never a wrong answer.

Counted, not timed: the proxy counts the requests that reached moto.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

import pytest
from botocore.exceptions import (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from cachehub_dynamodb import DynamoDBCache
from cachehub_dynamodb.cache import _ONCE, _no_blind_resend, _ReplyLost
from urllib3.exceptions import NewConnectionError

from cachehub.errors import CacheOutcomeUnknownError, CacheUnavailableError
from cachehub.testing.faults import FaultProxy

UPDATE = b"DynamoDB_20120810.UpdateItem"
PUT = b"DynamoDB_20120810.PutItem"
DELETE = b"DynamoDB_20120810.DeleteItem"

FAULTS = ["reset", "cut-in-status", "cut-before-length"]
"""reset: RST once moto answered; cut-in-status: the first 20 bytes of the reply (its
status line and a piece of a header); cut-before-length: the headers up to
``Content-Length``, which moto (as DynamoDB) writes after ``x-amz-crc32``."""
SHELLS = ["sync", "async"]
UNKNOWN = "CacheOutcomeUnknownError"


@pytest.fixture
def endpoint(process_endpoint: str) -> str:
    """moto in its own process: the async shell's loop never waits on this one's GIL."""
    return process_endpoint


@pytest.fixture
def proxy(endpoint: str) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", int(endpoint.rsplit(":", 1)[1])) as faults:
        yield faults


@pytest.fixture
def cache(make: Callable[..., DynamoDBCache], proxy: FaultProxy) -> DynamoDBCache:
    """A bootstrapped cache talking to moto through the proxy; a read timeout bounds
    any wait (a fault that left the client waiting would end in seconds, not hang)."""
    made = make(settings={"host": proxy.url, "liveTimeout": 10_000, "maxAttempts": 3})
    made.connect()
    return made


def arm(proxy: FaultProxy, fault: str, match: bytes) -> None:
    if fault == "reset":
        proxy.reset_reply(match)
    elif fault == "replace":
        proxy.replace_reply(match, reply=HTTP_500)
    elif fault == "cut-in-status":
        proxy.cut_reply(match, at=20)
    else:
        proxy.cut_reply(match, at=b"Content-Length")


def run(
    cache: DynamoDBCache, shell: str, op: str, *args: Any, fault: tuple[FaultProxy, str, bytes]
) -> Any:
    """``op(*args)`` on ``cache`` in ``shell`` with ``fault`` armed just before it: its
    answer, or the name of the cachehub error it raised."""
    proxy, kind, match = fault
    if shell == "sync":
        arm(proxy, kind, match)
        try:
            return getattr(cache, op)(*args)
        except CacheOutcomeUnknownError as exc:
            return type(exc).__name__

    async def main() -> Any:
        aio = cache.aio()
        try:
            await aio.exists("warm")  # this loop's client and connection, before the fault
            proxy.reset_counts()  # what the test counts is the call's own requests
            arm(proxy, kind, match)
            try:
                return await getattr(aio, op)(*args)
            except CacheOutcomeUnknownError as exc:
                return type(exc).__name__
        finally:
            await aio.close()

    return _bounded(main)


def _bounded(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    async def guarded() -> Any:
        return await asyncio.wait_for(main(), 60)

    return asyncio.run(guarded())


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("shell", SHELLS)
def test_incr_applies_once_and_answers_the_count(
    cache: DynamoDBCache, proxy: FaultProxy, shell: str, fault: str
) -> None:
    cache.put("n", 10)
    proxy.reset_counts()
    answer = run(cache, shell, "incr", "n", 1, fault=(proxy, fault, UPDATE))
    assert proxy.dropped == 1
    assert proxy.count(UPDATE) == 1  # never re-sent: the item's requestId told it landed
    assert cache.get("n") == 11
    assert answer == 11


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("shell", SHELLS)
def test_add_of_an_absent_key_applies_once_and_answers_true(
    cache: DynamoDBCache, proxy: FaultProxy, shell: str, fault: str
) -> None:
    proxy.reset_counts()
    answer = run(cache, shell, "add", "k", "mine", fault=(proxy, fault, PUT))
    assert proxy.dropped == 1
    assert proxy.count(PUT) == 1
    assert cache.get("k") == "mine"
    assert answer is True


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("shell", SHELLS)
def test_add_of_a_present_key_never_replaces_it(
    cache: DynamoDBCache, proxy: FaultProxy, shell: str, fault: str
) -> None:
    """moto refused the add (the key is live); the refusal's reply is lost or cut. A cut
    refusal (a 4xx status) applied nothing and is sent again for its reason; a lost one
    cannot tell "refused" from "applied, then overwritten": a typed error."""
    cache.put("k", "theirs")
    proxy.reset_counts()
    answer = run(cache, shell, "add", "k", "mine", fault=(proxy, fault, PUT))
    assert proxy.dropped == 1
    assert cache.get("k") == "theirs"
    assert answer is False or answer == UNKNOWN


@pytest.mark.parametrize("fault", FAULTS)
@pytest.mark.parametrize("shell", SHELLS)
def test_delete_of_a_live_entry_never_answers_false(
    cache: DynamoDBCache, proxy: FaultProxy, shell: str, fault: str
) -> None:
    """The first DeleteItem removed the entry and its reply was lost: the check that
    follows finds nothing, so whether this call removed it cannot be known - a typed
    error, never False for the entry it did remove."""
    cache.put("d", "v")
    proxy.reset_counts()
    answer = run(cache, shell, "delete", "d", fault=(proxy, fault, DELETE))
    assert proxy.dropped == 1
    assert proxy.count(DELETE) <= 2
    assert not cache.exists("d")
    assert answer is True or answer == UNKNOWN


def _verdict(exc: Exception) -> str:
    """What the once hook makes of ``exc`` for a guarded write: 'retry' or 'lost'."""
    token = _ONCE.set(True)
    try:
        _no_blind_resend(caught_exception=exc, attempts=1)
    except _ReplyLost:
        return "lost"
    finally:
        _ONCE.reset(token)
    return "retry"


def test_only_a_failed_connect_is_retried_for_a_guarded_write() -> None:
    """aiobotocore wraps every aiohttp connection error in EndpointConnectionError; only
    the one raised by connecting (ClientConnectorError) proves the write never left."""
    import aiohttp
    from aiohttp.client_reqrep import ConnectionKey

    url = "http://127.0.0.1:9"  # only named in the messages: nothing is sent
    key = ConnectionKey("127.0.0.1", 1, False, True, None, None, None, None)
    refused = aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))
    reset = aiohttp.ClientOSError(104, "Connection reset by peer")
    new_conn = NewConnectionError(None, "refused")  # type: ignore[arg-type]
    assert _verdict(EndpointConnectionError(endpoint_url=url, error=refused)) == "retry"
    assert _verdict(EndpointConnectionError(endpoint_url=url, error=new_conn)) == "retry"
    assert _verdict(EndpointConnectionError(endpoint_url=url, error=socket.gaierror())) == "retry"
    assert _verdict(ConnectTimeoutError(endpoint_url=url, error="connect")) == "retry"
    assert _verdict(EndpointConnectionError(endpoint_url=url, error=reset)) == "lost"
    assert _verdict(EndpointConnectionError(endpoint_url=url)) == "lost"
    assert _verdict(ConnectionClosedError(endpoint_url=url)) == "lost"
    assert _verdict(ReadTimeoutError(endpoint_url=url, error="read")) == "lost"


GET = b"DynamoDB_20120810.GetItem"
BATCH_GET = b"DynamoDB_20120810.BatchGetItem"
CUTS = ["cut-in-status", "cut-before-length"]


@pytest.mark.parametrize("fault", CUTS)
@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    ("op", "args", "match", "expected"),
    [
        ("get", ("r",), GET, "stored"),
        ("exists", ("r",), GET, True),
        ("get_many", (["r", "s"],), BATCH_GET, {"r": "stored", "s": "too"}),
    ],
)
def test_a_read_whose_reply_is_cut_is_sent_again_never_read_as_a_miss(
    cache: DynamoDBCache,
    proxy: FaultProxy,
    shell: str,
    fault: str,
    op: str,
    args: tuple[Any, ...],
    match: bytes,
    expected: Any,
) -> None:
    """A 200 cut in its headers reads as an empty body, which botocore parsed as ``{}``:
    a GetItem with no Item, so ``get`` answered the default for a present key. A read is
    safe to send again: it is, once."""
    cache.put_many({"r": "stored", "s": "too"})
    proxy.reset_counts()
    answer = run(cache, shell, op, *args, fault=(proxy, fault, match))
    assert proxy.dropped == 1
    assert answer == expected
    assert proxy.count(match) == 2


@pytest.mark.parametrize("shell", SHELLS)
def test_a_read_cut_on_every_send_is_a_typed_error_not_a_miss(
    cache: DynamoDBCache, proxy: FaultProxy, shell: str
) -> None:
    """maxAttempts (3) sends, each reply cut in its status line: the cache says so."""
    cache.put("r", "stored")
    proxy.reset_counts()
    proxy.cut_reply(GET, at=20, times=10)
    if shell == "sync":
        with pytest.raises(CacheUnavailableError, match="cut short") as caught:
            cache.get("r")
    else:

        async def main() -> None:
            aio = cache.aio()
            try:
                await aio.get("r")
            finally:
                await aio.close()

        with pytest.raises(CacheUnavailableError, match="cut short") as caught:
            _bounded(main)
    assert "proxy" in (caught.value.hint or "")
    assert proxy.count(GET) == 3
    proxy.clear()
    assert cache.get("r") == "stored"


_ERROR_BODY = (
    b'{"__type":"com.amazonaws.dynamodb.v20120810#InternalServerError",'
    b'"message":"Internal server error"}'
)
HTTP_500 = (
    b"HTTP/1.1 500 Internal Server Error\r\n"
    b"Content-Type: application/x-amz-json-1.0\r\n"
    b"x-amzn-RequestId: 0000INTERNAL\r\n"
    b"Content-Length: %d\r\n"
    b"Connection: close\r\n\r\n%s" % (len(_ERROR_BODY), _ERROR_BODY)
)
"""What DynamoDB answers when it fails inside: the write may or may not have landed."""


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    ("op", "match", "prepare", "args", "expected", "after"),
    [
        ("incr", UPDATE, {"n": 10}, ("n", 1), 11, ("n", 11)),
        ("add", PUT, {}, ("k", "mine"), True, ("k", "mine")),
        ("delete", DELETE, {"d": "v"}, ("d",), True, ("d", None)),
    ],
)
def test_an_internal_error_after_a_write_landed_never_applies_it_twice(
    cache: DynamoDBCache,
    proxy: FaultProxy,
    shell: str,
    op: str,
    match: bytes,
    prepare: dict[str, Any],
    args: tuple[Any, ...],
    expected: Any,
    after: tuple[str, Any],
) -> None:
    """moto applied the write; the client is told 500 InternalServerError, which
    botocore re-sends: ``incr`` counted twice. A 5xx to a once-only write is a lost
    reply: the item says what happened, or the outcome is reported unknown."""
    if prepare:
        cache.put_many(prepare)
    proxy.reset_counts()
    answer = run(cache, shell, op, *args, fault=(proxy, "replace", match))
    assert proxy.dropped == 1
    # delete checks a lost reply with a second, conditional DeleteItem (see the test above)
    assert proxy.count(match) == (2 if op == "delete" else 1) or proxy.count(match) == 1
    key, value = after
    assert cache.get(key) == value
    assert answer == expected or (op == "delete" and answer == UNKNOWN)


@pytest.mark.parametrize("fault", [*FAULTS, "replace"])
def test_a_lock_whose_replies_are_lost_is_taken_and_given_back_once(
    cache: DynamoDBCache, proxy: FaultProxy, fault: str
) -> None:
    """Lock writes are re-sent (botocore's retry, or this provider's after a cut reply),
    and a re-send is recognised by its token: the holder gets its lock and its fence, not
    a timeout on its own lock or a second fence; a re-sent release answers True."""
    first = cache.lock("job", ttl=30, timeout=0)
    arm(proxy, fault, UPDATE)
    assert first.acquire(blocking=False)
    assert proxy.dropped == 1
    assert isinstance(first.fence, int)
    assert first.held
    rival = cache.lock("job", ttl=30, timeout=0)
    assert not rival.acquire(blocking=False)
    arm(proxy, fault, UPDATE)
    assert first.release()
    assert proxy.dropped == 2
    assert rival.acquire(blocking=False)
    assert rival.fence == first.fence + 1
    rival.release()
