"""Fixtures for the CLI tests: real servers, config files and a subprocess runner.

The end-to-end tests run the real entry point (``python -m cachehub.cli``) against
moto's DynamoDB server (LocalDynamoDB) and a real redis-server (RedisServer).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cachehub.testing import unavailable

ACCESS_KEY = "AKIACLITESTKEYID0001"
SECRET_KEY = "cli-Secret/Value+NeverShown42"
SECRETS = (ACCESS_KEY, SECRET_KEY)
"""Credentials put in every test config; moto accepts any, no output may contain them."""


@dataclass
class Result:
    """A finished CLI run."""

    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)


RunCli = Callable[..., Result]


@pytest.fixture(scope="session")
def dynamodb_endpoint() -> Iterator[str]:
    from cachehub_dynamodb.local import LocalDynamoDB

    with LocalDynamoDB() as local:
        yield local.endpoint


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    from cachehub_redis.server import INSTALL_HINT, RedisServer, redis_server_available

    if not redis_server_available():
        unavailable(f"no redis-server found: {INSTALL_HINT}.")
    with RedisServer() as server:
        yield server.url


def dynamo_entry(endpoint: str, table: str, **extra: Any) -> dict[str, Any]:
    """A DynamoDB cache entry in the spec's shape (Lucee class name included)."""
    return {
        "class": "org.lucee.extension.aws.dynamodb.DynamoDBCache",
        "maven": "org.lucee:dynamodb:1.0.0.7-RC",
        "custom": {
            "tableName": table,
            "host": endpoint,
            "accessKeyId": ACCESS_KEY,
            "secretkey": SECRET_KEY,
            "region": "us-east-1",
            "primaryKey": "pk",
            **extra,
        },
    }


@pytest.fixture
def namespace(request: pytest.FixtureRequest) -> str:
    """A namespace per test, so tests sharing a table or a Redis db never collide."""
    return f"t-{request.node.name[:40]}-{os.getpid()}:"


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[dict[str, Any]], Path]:
    """Write ``{"caches": ...}`` as a .CFConfig.json-style file and return its path."""

    def write(caches: dict[str, Any]) -> Path:
        path = tmp_path / ".CFConfig.json"
        path.write_text(json.dumps({"caches": caches}), encoding="utf-8")
        return path

    return write


@pytest.fixture
def run_cli(tmp_path: Path) -> RunCli:
    """Run ``python -m cachehub.cli ARGS`` in a subprocess; never leaks a secret."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Result:
        environ = {k: v for k, v in os.environ.items() if k != "CACHEHUB_CONFIG"}
        environ.update({"COLUMNS": "200", "NO_COLOR": "1", **(env or {})})
        done = subprocess.run(
            [sys.executable, "-m", "cachehub.cli", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=tmp_path,
            env=environ,
            check=False,
        )
        result = Result(done.returncode, done.stdout, done.stderr)
        for secret in SECRETS:
            assert secret not in result.output, f"secret leaked by cachehub {' '.join(args)}"
        assert "Traceback" not in result.stderr, result.stderr
        return result

    return run
