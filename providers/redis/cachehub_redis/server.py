"""Throwaway real Redis servers for tests, demos and the CLI tour.

:class:`RedisServer` runs one ``redis-server`` on 127.0.0.1 on a free port in a temporary
directory; :class:`RedisClusterServers` runs three cluster-enabled nodes joined into one
cluster. Both are context managers and remove everything they created on exit::

    with RedisServer() as server:
        cache = RedisCache(url=server.url)
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Final

from redis import Redis
from redis import exceptions as rx
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ["RedisServer", "RedisClusterServers", "redis_server_available", "ServerError"]

_READY_TIMEOUT: Final = 15.0
_HOST: Final = "127.0.0.1"


class ServerError(RuntimeError):
    """A local test server could not be started."""


def redis_server_available() -> bool:
    """Whether ``redis-server`` and ``redis-cli`` are on PATH."""
    return shutil.which("redis-server") is not None and shutil.which("redis-cli") is not None


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


class RedisServer:
    """A real ``redis-server`` child process on 127.0.0.1.

    ``persistence=True`` turns on the append-only file (fsync on every write), so data
    survives :meth:`stop` and :meth:`start`, which reuse the same port and directory: a
    client built before the stop works again after the start. ``password`` sets
    ``requirepass`` (written to a config file, never on the command line).
    """

    def __init__(
        self,
        *,
        persistence: bool = False,
        password: str | None = None,
        cluster: bool = False,
        executable: str = "redis-server",
    ) -> None:
        self.persistence = persistence
        self.password = password
        self.cluster = cluster
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
        ]
        if self.password:
            lines.append(f"requirepass {self.password}")
        if self.cluster:
            lines += ["cluster-enabled yes", "cluster-config-file nodes.conf"]
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
        if shutil.which(self.executable) is None:
            raise ServerError(f"{self.executable} is not installed (apt-get install redis-server).")
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="cachehub-redis-"))
            self.port = _free_port(self.cluster)
        config = self._config(self._dir)
        # The executable is this object's own setting, the config file our own.
        self._proc = subprocess.Popen(  # noqa: S603
            [self.executable, str(config)],
            cwd=self._dir,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_ready()
        return self

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
                try:
                    if probe.ping():
                        return
                except (rx.ConnectionError, rx.BusyLoadingError, rx.TimeoutError):
                    pass
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

    def __enter__(self) -> RedisServer:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _cluster_state(client: Redis) -> str:
    info: dict[str, str] = client.execute_command("CLUSTER INFO")  # type: ignore[no-untyped-call]
    return info.get("cluster_state", "")


class RedisClusterServers:
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
                shutil.which("redis-cli") or "redis-cli",
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

    def __enter__(self) -> RedisClusterServers:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
