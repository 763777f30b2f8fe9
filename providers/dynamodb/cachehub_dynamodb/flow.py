"""Each DynamoDB primitive written once, as a generator of requests (sans-I/O).

A *flow* is a generator that yields what it needs from the outside world and receives
the answer at the ``yield``:

* :class:`Call` - one DynamoDB request; the reply dict comes back, or the request's
  typed :class:`~cachehub.errors.CacheError` is raised at the ``yield`` (so a flow
  handles ``ConditionFailedError`` with an ordinary ``try``). A call marked ``once`` is
  a write that must never be re-sent blind: ``None`` comes back when its reply was lost
  (see ``DynamoDBCache._write_once``);
* :class:`Sleep` - a pause (batch retry backoff);
* :class:`Fanout` - independent requests sent concurrently (hit-count write-back);

and returns the primitive's result. :func:`run` drives a flow on the boto3 client, in
the calling thread; :func:`arun` drives the very same flow on the aiobotocore client,
awaiting each request. Request building, condition expressions, reply decoding,
lost-reply handling, batch chunking and retries therefore exist once, and the sync and
async paths send exactly the same requests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from cachehub.errors import CacheError

__all__ = [
    "Call",
    "Sleep",
    "Fanout",
    "Step",
    "Flow",
    "run",
    "arun",
    "fan_out",
    "afan_out",
    "stepper",
    "astepper",
]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call:
    """One DynamoDB request: the operation (``"GetItem"``) and its parameters."""

    operation: str
    params: dict[str, Any] = field(default_factory=dict)
    once: bool = False
    """A non-idempotent write: never re-sent blind; the flow receives None if its reply
    was lost and reads the item to learn the outcome."""


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait ``seconds`` before the next request (``time.sleep`` / ``asyncio.sleep``)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Fanout:
    """Independent requests sent concurrently, up to ``workers`` at a time (threads on the
    sync path, tasks on the event loop). The flow receives one result per call, in order:
    its reply, or its :class:`~cachehub.errors.CacheError` as a value (every call is
    attempted whatever the others do)."""

    calls: tuple[Call, ...]
    workers: int


Step = Call | Sleep | Fanout
Flow = Generator[Step, Any, T]
"""A primitive's logic: yields :data:`Step`\\ s, receives replies, returns the result."""


def _settled(send: Callable[[Call], Any], call: Call) -> Any:
    try:
        return send(call)
    except CacheError as exc:
        return exc


def fan_out(fanout: Fanout, send: Callable[[Call], Any]) -> list[Any]:
    """Answer a :class:`Fanout` with ``send`` on a small thread pool (blocking)."""
    calls = fanout.calls
    if fanout.workers <= 1 or len(calls) <= 1:
        return [_settled(send, call) for call in calls]
    workers = min(fanout.workers, len(calls))
    with ThreadPoolExecutor(workers, thread_name_prefix="cachehub-dynamodb-fanout") as pool:
        return list(pool.map(lambda call: _settled(send, call), calls))


async def afan_out(fanout: Fanout, send: Callable[[Call], Awaitable[Any]]) -> list[Any]:
    """Answer a :class:`Fanout` with ``send`` as tasks, at most ``workers`` in flight."""
    gate = asyncio.Semaphore(max(1, fanout.workers))

    async def settled(call: Call) -> Any:
        async with gate:
            try:
                return await send(call)
            except CacheError as exc:
                return exc

    return list(await asyncio.gather(*(settled(call) for call in fanout.calls)))


def stepper(
    send: Callable[[Call], Any], sleep: Callable[[float], None] = time.sleep
) -> Callable[[Step], Any]:
    """The step function of :func:`run` that sends each :class:`Call` with ``send``."""

    def step(wanted: Step) -> Any:
        if type(wanted) is Call:
            return send(wanted)
        if isinstance(wanted, Sleep):
            sleep(wanted.seconds)
            return None
        assert isinstance(wanted, Fanout)
        return fan_out(wanted, send)

    return step


def astepper(send: Callable[[Call], Awaitable[Any]]) -> Callable[[Step], Awaitable[Any]]:
    """The step function of :func:`arun` that sends each :class:`Call` with ``send``."""

    async def step(wanted: Step) -> Any:
        if type(wanted) is Call:
            return await send(wanted)
        if isinstance(wanted, Sleep):
            await asyncio.sleep(wanted.seconds)
            return None
        assert isinstance(wanted, Fanout)
        return await afan_out(wanted, send)

    return step


def _resume(flow: Flow[T], reply: Any, error: CacheError | None) -> tuple[bool, Any]:
    """Hand ``reply`` (or raise ``error``) at the flow's yield: ``(done, next step or result)``."""
    try:
        return False, flow.send(reply) if error is None else flow.throw(error)
    except StopIteration as stop:
        return True, stop.value


def run(flow: Flow[T], step: Callable[[Step], Any]) -> T:
    """Drive ``flow`` to its result, answering each step with ``step(s)`` (blocking)."""
    reply: Any = None
    error: CacheError | None = None
    try:
        while True:
            done, wanted = _resume(flow, reply, error)
            if done:
                return wanted  # type: ignore[no-any-return]
            try:
                reply, error = step(wanted), None
            except CacheError as exc:  # raised at the flow's yield, where it can handle it
                reply, error = None, exc
    finally:
        flow.close()  # an interrupted flow runs its finally blocks now, not at GC


async def arun(flow: Flow[T], step: Callable[[Step], Awaitable[Any]]) -> T:
    """:func:`run` on the event loop: each step awaited; cancellation closes the flow."""
    reply: Any = None
    error: CacheError | None = None
    try:
        while True:
            done, wanted = _resume(flow, reply, error)
            if done:
                return wanted  # type: ignore[no-any-return]
            try:
                reply, error = await step(wanted), None
            except CacheError as exc:
                reply, error = None, exc
    finally:
        flow.close()
