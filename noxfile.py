"""Developer and CI sessions. `python3 -m nox -s tests` is the README's test command."""

from __future__ import annotations

import nox

nox.options.default_venv_backend = "venv"
nox.options.sessions = ["tests", "lint", "typecheck", "docs"]

PROVIDERS = ["providers/memory", "providers/redis", "providers/dynamodb"]
EDITABLE = ["-e", ".", *[arg for p in PROVIDERS for arg in ("-e", p)]]
TEST_DEPS = [
    "pytest>=8",
    "pytest-timeout",
    "hypothesis>=6",
    "msgpack>=1.0",  # tests build hand-made payloads with it
    "moto[server]>=5",
    "fakeredis>=2",
    "django>=4.2",
    "flask>=3.0",
    "flask-caching>=2",
    "cachelib>=0.13",
    "dogpile.cache>=1.3",
]
PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite: core, conformance on every provider, real servers."""
    session.install(*EDITABLE, *TEST_DEPS)
    session.run("pytest", *(session.posargs or ["-q"]))


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff lint and format check."""
    session.install("ruff==0.17.6")  # pinned: new rules must not break CI unannounced
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the core and every provider."""
    session.install(*EDITABLE, *TEST_DEPS, "mypy==2.4.1", "types-cachetools")
    session.run("mypy")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation with warnings as errors."""
    session.install("mkdocs>=1.6")
    session.run("mkdocs", "build", "--strict", "--site-dir", session.create_tmp() + "/site")


@nox.session(python=PYTHON)
def tour(session: nox.Session) -> None:
    """The main job: `cachehub tour` on the embedded default (local DynamoDB + memory + Redis)."""
    session.install(*EDITABLE, "moto[server]>=5")
    session.run("cachehub", "tour", *session.posargs)


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks against raw clients and peer libraries; writes docs/benchmarks.md."""
    session.install(
        *EDITABLE, "moto[server]>=5", "cachelib", "dogpile.cache", "django", "matplotlib"
    )
    session.run("python", "-m", "benchmarks", *session.posargs)
