"""A new Redis Cluster client's topology discovery, run off the event loop.

A ``redis.asyncio`` cluster client learns the cluster's topology on its first command:
``NodesManager.initialize`` asks a startup node for ``CLUSTER SLOTS`` and turns the reply
into a table of all 16,384 hash slots, a pure-Python loop over every slot (more than once:
redis-py checks the coverage and, from 7.x, rebuilds the table with the nodes it keeps).
That step runs between two awaits, so it is one event-loop callback of 5-16 ms of CPU,
once per client - that is, once per event loop - stalling every other task of the loop.

Here the first discovery of each client runs redis-py's own ``NodesManager.initialize``,
unchanged, on that client's manager, in a worker thread with an event loop of its own:
the table is built there, and the client's loop keeps running (the worker holds the GIL
only for the interpreter's switch interval at a time). Nothing of the worker's loop is
left behind: the tasks redis-py starts there (a replaced node's disconnect) are awaited,
every connection it opened is closed there, and every node object that holds such a
connection is replaced by a new one of the same address and role, so no connection is
ever used on two loops. The nodes in the table were made from the reply and never
connected: the client's loop opens their connections on its first commands, as usual.

Only the first discovery goes to the worker: a refresh (after ``MOVED`` beyond
``reinitialize_steps``, a connection error, a failover) runs on the loop, redis-py's
own way, because by then the table's nodes hold the loop's connections and redis-py
keeps them across the refresh. A refresh follows a topology change, which is rare; a new
client comes with every event loop. While the worker runs, the client's other commands
wait for it (redis-py's own initialize lock of the client); a caller cancelled meanwhile
gets its ``CancelledError`` once the worker is done (bounded by the connection timeouts),
so the client is never torn down while the worker still changes it.

This reaches into redis-py internals (the manager's class, its attributes, a node's
``_connections``), tested on redis-py 5.0.0 and 8.2; pyproject.toml bounds redis-py below
9. On a redis-py whose manager differs from the one known here, or a client whose
connections carry a credential provider (its re-authentication listener registers the
manager's nodes, which must be the loop's), the client keeps redis-py's own discovery
(:func:`offload_topology` says whether it was installed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final

from redis.asyncio.cluster import ClusterNode, NodesManager
from redis.exceptions import RedisError

__all__ = ["OffLoopNodesManager", "offload_topology"]

_log = logging.getLogger("cachehub.redis")

KNOWN_STATE: Final = frozenset(
    {
        # redis-py 5.0 - 8.x: plain data, or (the lock, the dispatcher, the task set)
        # objects that the first discovery uses without binding them to its loop
        "_moved_exception",
        "connection_kwargs",
        "default_node",
        "nodes_cache",
        "read_load_balancer",
        "require_full_coverage",
        "slots_cache",
        "startup_nodes",
        "address_remap",
        "_dynamic_startup_nodes",
        "_event_dispatcher",
        "_background_tasks",
        "_epoch",
        "_initialize_lock",
        "_topology_refresh_min_interval",
        "_last_refresh_at",
        "_failed_refreshes",
        "_refresh_due_at",
        "_last_refresh_unreachable_args",
        "_refresh_requested_at_epoch",
        "_requested_last_failed_node_name",
        "_requested_additional_startup_nodes",
    }
)
"""The manager attributes (``__slots__``) of the redis-py versions this module knows. A
manager with any other is a redis-py this was not checked against: plain behaviour."""


def _slots(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in cls.__mro__:
        declared = vars(klass).get("__slots__", ())
        names.update((declared,) if isinstance(declared, str) else declared)
    return names


def _nodes(manager: NodesManager) -> list[ClusterNode]:
    """Every node object the manager holds (startup nodes and the table's)."""
    seen: dict[int, ClusterNode] = {}
    for node in (*manager.startup_nodes.values(), *manager.nodes_cache.values()):
        seen[id(node)] = node
    return list(seen.values())


def _connected(node: ClusterNode) -> bool:
    """Whether ``node`` holds connection objects (made on the worker's loop)."""
    return bool(getattr(node, "_connections", ()))


class OffLoopNodesManager(NodesManager):
    """redis.asyncio's cluster nodes manager whose first discovery runs in a worker
    thread (see the module docstring). Everything else is redis-py's own."""

    __slots__ = ()  # the same layout: a manager's class is swapped in place

    async def initialize(self, *args: Any, **kwargs: Any) -> None:
        """Discover the topology: the first time in a worker thread, else on the loop."""
        if self.nodes_cache:
            # A refresh: the table's nodes hold this loop's connections.
            await super().initialize(*args, **kwargs)
            return
        worker = asyncio.ensure_future(asyncio.to_thread(self._discover, args, kwargs))
        cancelled = False
        while not worker.done():
            try:
                await asyncio.shield(worker)
            except asyncio.CancelledError:
                # The worker changes this manager until it ends: the caller's cancel
                # (and redis-py's teardown of a client whose first discovery failed)
                # waits for it.
                cancelled = True
            except Exception:  # noqa: S110 - read below, once the worker is done
                pass
        usable = self._renew_connected_nodes()
        if cancelled:
            raise asyncio.CancelledError
        error = worker.exception()
        if isinstance(error, RedisError):
            raise error  # redis-py's own (no node reachable, slots not covered)
        if error is not None or not usable:
            # A redis-py whose internals differ after all: the plain way, on the loop.
            _log.debug(
                "topology not discovered off the loop (%s); discovering it on the loop",
                type(error).__name__ if error is not None else "a node of the table asked",
            )
            self.nodes_cache.clear()
            self.slots_cache = {}
            await super().initialize(*args, **kwargs)

    def _discover(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """redis-py's initialize on this manager, on a loop of the worker thread's own."""

        async def run() -> None:
            try:
                await NodesManager.initialize(self, *args, **kwargs)
            finally:
                # Close there what was opened there: the tasks redis-py started (the
                # disconnect of a startup node the table replaced) and every connection.
                current = asyncio.current_task()
                pending = [task for task in asyncio.all_tasks() if task is not current]
                await asyncio.gather(*pending, return_exceptions=True)
                await asyncio.gather(
                    *(node.disconnect() for node in _nodes(self) if _connected(node)),
                    return_exceptions=True,
                )

        asyncio.run(run())

    def _renew_connected_nodes(self) -> bool:
        """Replace each node object that holds a (closed) connection of the worker's loop
        by a new one of the same address and role: no connection object is used on two
        loops. Only startup nodes are asked (the table's nodes are made from the reply),
        so the table keeps its node objects; False if one of them was asked after all."""
        for name, node in list(self.startup_nodes.items()):
            if _connected(node):
                self.startup_nodes[name] = ClusterNode(
                    node.host, node.port, node.server_type, **self.connection_kwargs
                )
        return not any(_connected(node) for node in self.nodes_cache.values())


def offload_topology(cluster: Any) -> bool:
    """Give ``cluster`` (a new ``redis.asyncio`` cluster client) an
    :class:`OffLoopNodesManager`; False where this redis-py's manager is not the one
    known here (the client then keeps its own: the table is built on the loop)."""
    manager: Any = getattr(cluster, "nodes_manager", None)
    if type(manager) is not NodesManager or manager.nodes_cache:
        return False
    if not _slots(NodesManager) <= KNOWN_STATE or "__dict__" in _slots(NodesManager):
        return False
    if manager.connection_kwargs.get("credential_provider") is not None:
        return False
    with contextlib.suppress(TypeError):  # a layout that differs after all
        manager.__class__ = OffLoopNodesManager
        return True
    return False
