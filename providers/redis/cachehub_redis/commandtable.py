"""The Redis Cluster command table, read off the event loop.

A ``redis.asyncio`` cluster client learns where each command's keys are (to route it to
the right slot) from the server's ``COMMAND`` reply: about 240 commands, ~8,400 RESP
elements. Its first command reads and parses that reply, and with redis-py's pure-Python
parser the parse is 70-200 ms of CPU inside one event-loop callback, once per client -
that is, once per event loop - stalling every other task of the loop meanwhile.

Here the cluster client's commands parser is an :class:`OffLoopCommandsParser`: it reads
the table in a worker thread, through a short-lived sync connection to the same node, and
keeps it per server (node address, ``run_id`` and version, so a restarted or upgraded
server is read again), for the next client of the process. redis-py's own ``initialize``
then runs on the loop as usual, but its ``COMMAND`` request is answered with that table,
so only the cheap steps (indexing ~240 commands, compiling the key specs of the few
movable-keys commands) stay on the loop.

This reaches into redis-py internals (``redis._parsers.commands.AsyncCommandsParser``,
the cluster client's ``commands_parser`` attribute, and its ``initialize`` asking the
node for ``COMMAND``), tested on redis-py 5.0.0 and 8.2; pyproject.toml bounds redis-py
below 9. Whatever of it a redis-py version lacks, the client keeps redis-py's own parser
(:func:`offload_command_table` says whether it was installed), and a table that cannot be
read in the worker for any reason but a Redis error is read the plain way, on the loop.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
from collections.abc import Callable
from typing import Any, Final, cast

from redis import Redis
from redis.exceptions import RedisError

try:
    # Private module (redis-py 5.0 to 8.x, bounded <9 in pyproject.toml).
    from redis._parsers.commands import AsyncCommandsParser
except ImportError:  # pragma: no cover - a future redis-py: its own parser stays
    PARSER_CLASS: type[Any] | None = None
else:
    PARSER_CLASS = AsyncCommandsParser

__all__ = ["OffLoopCommandsParser", "clear_tables", "offload_command_table", "read_table"]

_log = logging.getLogger("cachehub.redis")

OpenNode = Callable[[str, int], Redis]
"""Opens a sync client to one node (``host``, ``port``) with the cache's connection settings."""

MAX_TABLES: Final = 32
"""Servers whose command table the process keeps (the oldest is dropped beyond)."""

_tables_lock = threading.Lock()
_tables: dict[tuple[str, int, str, str], dict[str, Any]] = {}


def clear_tables() -> None:
    """Forget every kept table (tests; the next client reads its server's again)."""
    with _tables_lock:
        _tables.clear()


def read_table(open_node: OpenNode, host: str, port: int, fresh: bool) -> dict[str, Any]:
    """The parsed ``COMMAND`` table of the node at ``host``:``port`` (blocking: call it in a
    worker thread). Kept per server: a later call for the same node, unless ``fresh``,
    costs one ``INFO server`` instead of the table. Each caller gets its own copy."""
    client = open_node(host, port)
    try:
        server = client.info("server")
        run_id, version = server.get("run_id"), server.get("redis_version")
        # A server that does not tell its run id (a proxy, a look-alike) is read every time.
        key = (host, port, run_id, str(version)) if isinstance(run_id, str) and run_id else None
        if key is not None and not fresh:
            with _tables_lock:
                kept = _tables.get(key)
            if kept is not None:
                return copy.deepcopy(kept)
        table: dict[str, Any] = client.execute_command("COMMAND")  # type: ignore[no-untyped-call]
        if key is not None:
            with _tables_lock:
                _tables.pop(key, None)
                _tables[key] = table
                while len(_tables) > MAX_TABLES:
                    del _tables[next(iter(_tables))]
        return copy.deepcopy(table)
    finally:
        client.close()


class _TableNode:
    """The parser's node during ``initialize``: answers ``COMMAND`` with the table read
    off the loop; anything else (``get_encoder()``, other commands) is the real node's."""

    def __init__(self, node: Any, table: dict[str, Any]) -> None:
        self._node = node
        self._table: dict[str, Any] | None = table

    def __getattr__(self, name: str) -> Any:
        return getattr(self._node, name)

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        if args == ("COMMAND",) and not kwargs and self._table is not None:
            table, self._table = self._table, None  # answered once, as the server would
            return table
        return await self._node.execute_command(*args, **kwargs)


if PARSER_CLASS is not None:

    class OffLoopCommandsParser(AsyncCommandsParser):
        """redis.asyncio's cluster commands parser, whose table is read in a worker thread
        (see the module docstring). Everything but ``initialize`` is redis-py's own."""

        def __init__(self, open_node: OpenNode) -> None:
            super().__init__()
            self._open_node = open_node

        async def initialize(self, node: Any = None) -> None:
            """Load the command table (from ``node``, or the current node), off the loop."""
            if node is not None:
                self.node = node
            real = self.node
            try:
                # No node given: redis-py met a command its table lacks (a module loaded
                # since?) and asks again, so the kept table is not good enough.
                table = await asyncio.to_thread(
                    read_table, self._open_node, real.host, int(real.port), node is None
                )
            except RedisError:
                raise  # the server's answer: the plain read would meet it too
            except Exception as exc:
                # A redis-py whose client options or replies differ: the plain way.
                _log.debug(
                    "command table not read off the loop (%s); reading it on the loop",
                    type(exc).__name__,
                )
                await super().initialize(node)
                return
            self.node = cast(Any, _TableNode(real, table))
            try:
                await super().initialize()
            finally:
                self.node = real


def offload_command_table(cluster: Any, open_node: OpenNode) -> bool:
    """Give ``cluster`` (a new ``redis.asyncio`` cluster client) an
    :class:`OffLoopCommandsParser`; False where this redis-py's parser is not the one
    known here (the client then keeps its own: the table is parsed on the loop)."""
    parser: Any = getattr(cluster, "commands_parser", None)
    if PARSER_CLASS is None or type(parser) is not PARSER_CLASS or parser.commands:
        return False
    cluster.commands_parser = OffLoopCommandsParser(open_node)
    return True
