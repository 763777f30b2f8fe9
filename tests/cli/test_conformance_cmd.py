"""``cachehub conformance NAME``: the shared suite on a configured (remote) cache."""

from __future__ import annotations

from typing import Any

from cachehub.registry import Caches

from .conftest import RunCli


def test_conformance_on_configured_redis(
    run_cli: RunCli, write_config: Any, redis_url: str, namespace: str
) -> None:
    config = write_config(
        {"redis": {"class": "redis", "custom": {"url": redis_url, "namespace": namespace}}}
    )
    # A slice of the suite keeps this test short; the exit code is pytest's.
    result = run_cli("--config", str(config), "conformance", "redis", "-q", "-k", "put_then_get")
    assert result.code == 0, result.output
    assert "passed" in result.stdout
    assert Caches(server_config=config)["redis"].count() == 0  # its namespace was removed

    nothing = run_cli("--config", str(config), "conformance", "redis", "-k", "no_such_test_xyz")
    assert nothing.code == 5  # pytest's "no tests collected"
