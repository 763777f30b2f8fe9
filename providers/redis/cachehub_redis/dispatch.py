"""Sending commands: scripts by ``EVALSHA``, batches split by hash slot and pipelined.

A multi-key command (``MGET``, ``MSET``, a batch script call) needs all its keys in one
hash slot in a Redis Cluster, so a batch is split into one command per slot (and per
:data:`MAX_KEYS` keys), and the commands are pipelined per node: one round trip per node,
sync and async alike (:func:`send`, :func:`asend`). On a single server a batch of up to
``MAX_KEYS`` keys is one command. Scripts are run by SHA; a call a server refuses for not
knowing the script (``NOSCRIPT``: restarted, or ``SCRIPT FLUSH``) is sent again as
``EVAL`` with the source (:func:`as_eval`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Final, TypeAlias, cast

from redis import Redis
from redis import exceptions as rx
from redis.asyncio import Redis as AsyncRedis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from .connection import WaitingCluster
from .scripts import LuaScript

__all__ = [
    "LOOP_CLUSTER_COMMANDS",
    "LOOP_MAX_KEYS",
    "LOOP_PIPELINE_ARGS",
    "MAX_KEYS",
    "RETRYABLE",
    "AsyncClient",
    "Call",
    "Client",
    "Command",
    "Key",
    "aevalsha",
    "as_eval",
    "asend",
    "evalsha",
    "first_key",
    "is_cluster",
    "pipelines",
    "send",
    "split",
]

MAX_KEYS: Final = 500
"""Most keys per command or script call, so one call never holds the server for long."""

LOOP_MAX_KEYS: Final = 100
"""Most keys per command, script call or SCAN page in the async shell (the provider's
``loop_batch_limit``): redis-py parses each reply in one callback of the event loop, with
its pure-Python parser unless hiredis is installed, 25-55 us of CPU per element under
load: a reply of 500 values took up to 19 ms (a SCAN page of 1,000 keys up to 33 ms), one
of 200 up to 11 ms. A batch is then more commands in the same pipeline, the same round
trips (:func:`asend` yields between replies); a scan is more pages, each a round trip
(ten for 1,000 keys, where the sync shell takes one)."""

LOOP_PIPELINE_ARGS: Final = 1_000
"""Most arguments (keys and values) of one async pipeline (:func:`asend`): redis-py packs
all of a pipeline's commands in one callback of the event loop, 1-2 us of CPU per
argument under load (30 MSETs of 100 keys, a 3,000-key put_many, took up to 9 ms). A
larger batch is sent as several pipelines, one after the other: one more round trip per
1,000 arguments (four MSETs or nine MGETs of :data:`LOOP_MAX_KEYS` keys)."""

LOOP_CLUSTER_COMMANDS: Final = 32
"""Most commands of one async cluster pipeline (:func:`asend`): redis-py routes all of a
pipeline's commands in one callback of the event loop and each node packs and reads all
of its own in one more, 60-200 us of CPU per command under load (a 250-key batch, one
command per hash slot, held the loop for 15-21 ms). A larger batch is sent as several
pipelines, one after the other: one round trip per node for each 32 commands."""

Client: TypeAlias = Redis | RedisCluster
AsyncClient: TypeAlias = AsyncRedis | AsyncRedisCluster
Key: TypeAlias = str | bytes
Call: TypeAlias = tuple[Sequence[Key], Sequence[Any]]
"""One script call: its KEYS and its ARGV."""
Command: TypeAlias = tuple[Any, ...]
"""One command as redis-py's ``execute_command`` takes it: ``("MGET", key, ...)``."""

_SINGLE: Final = frozenset((Redis, AsyncRedis))
"""The client classes of a single server (also what a Sentinel's ``master_for`` gives)."""

RETRYABLE: Final = (rx.NoScriptError, rx.AskError, rx.MovedError, rx.TryAgainError)
"""Replies worth one more try through the main client: a lost script cache, or a slot
that moved or is moving (the cluster client follows the redirect and refreshes)."""


def is_cluster(client: Client | AsyncClient) -> bool:
    """Whether ``client`` talks to a Redis Cluster (sync or async).

    redis-py's cluster classes are ``typing.Protocol`` subclasses, whose ``isinstance``
    runs the protocol machinery (about half a microsecond); a plain client, the usual
    one, is told by its exact type first.
    """
    return type(client) not in _SINGLE and isinstance(client, (RedisCluster, AsyncRedisCluster))


def as_eval(command: Command, script: LuaScript) -> Command:
    """An ``EVALSHA`` the server refused (``NOSCRIPT``) as ``EVAL`` with the source: it runs
    the call (which had not run) and leaves the script cached for the next ``EVALSHA``,
    in one round trip, and needs no ``SCRIPT LOAD``, which a shared Redis's ACL user
    often may not run."""
    return ("EVAL", script.source, *command[2:])


def evalsha(
    client: Client, script: LuaScript, keys: Sequence[Key], args: Sequence[Any], **options: Any
) -> Any:
    """Run ``script`` once: ``EVALSHA``, or ``EVAL`` when the server lacks it (:func:`as_eval`).
    ``options`` go to redis-py (``target_nodes``: a keyless script's node in a cluster)."""
    command: Command = ("EVALSHA", script.sha, len(keys), *keys, *args)
    try:
        return client.execute_command(*command, **options)  # type: ignore[no-untyped-call]
    except rx.NoScriptError:
        return client.execute_command(*as_eval(command, script), **options)  # type: ignore[no-untyped-call]


async def aevalsha(
    client: AsyncClient,
    script: LuaScript,
    keys: Sequence[Key],
    args: Sequence[Any],
    **options: Any,
) -> Any:
    """:func:`evalsha` on a ``redis.asyncio`` client."""
    command: Command = ("EVALSHA", script.sha, len(keys), *keys, *args)
    try:
        return await client.execute_command(*command, **options)
    except rx.NoScriptError:
        return await client.execute_command(*as_eval(command, script), **options)


def split(
    client: Client | AsyncClient, keys: Sequence[Key], size: int = MAX_KEYS
) -> list[list[Key]]:
    """``keys`` cut into groups one script call may take (same slot, at most ``size``)."""
    if not is_cluster(client):
        return [list(keys[i : i + size]) for i in range(0, len(keys), size)]
    slots: dict[int, list[Key]] = {}
    for key in keys:
        slot: int = cast(Any, client).keyslot(key)  # one typed, one untyped across versions
        slots.setdefault(slot, []).append(key)
    return [group[i : i + size] for group in slots.values() for i in range(0, len(group), size)]


def first_key(command: Command) -> Key:
    """The key a command is routed by: the first of its keys (``EVALSHA sha n key...``)."""
    return cast(Key, command[3] if command[0] in ("EVALSHA", "EVAL") else command[1])


def send(client: Client, commands: Sequence[Command]) -> list[Any]:
    """Every command's reply, in order: one round trip, one per node in a cluster.

    Error replies come back in place (as exceptions) for the caller to judge; a lost
    connection raises. A single command is sent as it is, several are pipelined. In a
    cluster each node's commands go through that node's own client (redis-py's sync
    cluster pipeline refuses ``EVALSHA``), so every command's keys must share a slot.
    """
    if len(commands) == 1:
        try:
            return [client.execute_command(*commands[0])]  # type: ignore[no-untyped-call]
        except rx.ResponseError as exc:
            return [exc]
    if not is_cluster(client):
        return _pipeline(cast(Redis, client), commands)
    cluster = cast(RedisCluster, client)
    nodes: dict[str, tuple[Redis, list[int]]] = {}
    for i, command in enumerate(commands):
        node = cluster.get_node_from_key(first_key(command))  # type: ignore[no-untyped-call]
        nodes.setdefault(node.name, (node.redis_connection, []))[1].append(i)
    results: list[Any] = [None] * len(commands)
    for node_client, indices in nodes.values():
        replies = _pipeline(node_client, [commands[i] for i in indices])
        for i, reply in zip(indices, replies, strict=True):
            results[i] = reply
    return results


def _pipeline(client: Redis, commands: Sequence[Command]) -> list[Any]:
    pipe = client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)  # type: ignore[no-untyped-call]
    return pipe.execute(raise_on_error=False)


async def asend(client: AsyncClient, commands: Sequence[Command]) -> list[Any]:
    """:func:`send` on a ``redis.asyncio`` client. The async cluster pipeline routes each
    command by its slot and sends one pipeline per node, concurrently. A batch larger than
    one pipeline should be on the event loop is several, one after the other
    (:func:`pipelines`)."""
    parts = pipelines(commands, isinstance(client, AsyncRedisCluster))
    if len(parts) > 1:
        replies: list[Any] = []
        for part in parts:
            replies += await asend(client, commands[part.start : part.stop])
        return replies
    if len(commands) == 1:
        try:
            return [await client.execute_command(*commands[0])]
        except rx.ResponseError as exc:
            return [exc]
    pipe = client.pipeline(transaction=False)
    for command in commands:
        pipe.execute_command(*command)
    if not isinstance(client, AsyncRedisCluster):
        _yield_between_replies(pipe)
    if isinstance(client, WaitingCluster):  # one request: at most one connection per node
        return list(await client.request(lambda: pipe.execute(raise_on_error=False)))
    return list(await pipe.execute(raise_on_error=False))


def pipelines(commands: Sequence[Command], cluster: bool) -> list[range]:
    """The consecutive ranges of ``commands`` :func:`asend` sends as one pipeline each: at
    most :data:`LOOP_PIPELINE_ARGS` arguments (a larger command alone) and, in a cluster,
    :data:`LOOP_CLUSTER_COMMANDS` commands."""
    most = LOOP_CLUSTER_COMMANDS if cluster else len(commands)
    parts: list[range] = []
    start = size = 0
    for i, command in enumerate(commands):
        if i > start and (i - start >= most or size + len(command) > LOOP_PIPELINE_ARGS):
            parts.append(range(start, i))
            start, size = i, 0
        size += len(command)
    parts.append(range(start, len(commands)))
    return parts


def _yield_between_replies(pipe: Any) -> None:
    """Make ``pipe`` (a ``redis.asyncio`` pipeline) hand the event loop back after each reply.

    redis-py parses every reply of a pipeline in one callback once the bytes are in (it
    yields only every 1,000 commands): a batch of 2,600 values is ~30 ms of the loop on a
    loaded machine. On the loop a batch is commands of up to :data:`LOOP_MAX_KEYS` keys,
    so a yield after each reply bounds a callback by one command's reply, in the same
    round trip.
    The pipeline holds its connection throughout, so no other task reads from it; a task
    cancelled at the yield drops the connection, whose unread replies would otherwise
    answer the next request that borrows it.
    """
    parse = pipe.parse_response

    async def parse_response(connection: Any, command_name: Any, **options: Any) -> Any:
        reply = await parse(connection, command_name, **options)
        try:
            await asyncio.sleep(0)
        except BaseException:
            # Cancelled with the batch's other replies still on the socket: drop the
            # connection, as redis-py does when cancelled in a read (redis-py 5.0's pipeline
            # would hand it back to the pool as it is).
            await connection.disconnect(nowait=True)
            raise
        return reply

    pipe.parse_response = parse_response
