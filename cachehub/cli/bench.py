"""``cachehub bench``: the benchmark suite of a source checkout (same as ``nox -s bench``).

A development command: the suite is the repository's top-level ``benchmarks`` package,
which the wheels do not ship. It runs only from a checkout, found next to an editable
install of cachehub or at/above the current directory, and only the checkout's own
``benchmarks`` is imported, never some other package of that name on ``sys.path``.
"""

from __future__ import annotations

import importlib
import sys
import tomllib
from pathlib import Path

import click

__all__ = ["COMMANDS", "find_checkout"]

NOT_A_CHECKOUT = (
    "cachehub bench is a development command: it runs the benchmark suite of a cachehub "
    "source checkout (its benchmarks/ directory, which installed wheels do not ship). "
    "Clone the repository and run `python3 -m nox -s bench` there, or `cachehub bench` "
    "from its root with cachehub installed from that checkout."
)


def _is_checkout(root: Path) -> bool:
    """Whether ``root`` is a cachehub source checkout with its benchmark suite."""
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return False
    name = project.get("project", {}).get("name") if isinstance(project, dict) else None
    return name == "cachehub" and (root / "benchmarks" / "__main__.py").is_file()


def find_checkout(cwd: Path | None = None) -> Path | None:
    """The source checkout to benchmark: the one an editable cachehub lives in, else the
    current directory or its nearest parent that is a cachehub checkout; None if neither."""
    package = Path(__file__).resolve().parents[1]  # .../cachehub
    here = (cwd or Path.cwd()).resolve()
    for root in (package.parent, here, *here.parents):
        if _is_checkout(root):
            return root
    return None


@click.command("bench", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args: tuple[str, ...]) -> None:
    """Benchmark cachehub against raw clients and peers, like `nox -s bench`.

    ARGS go to the suite: --quick (small sizes, report in a temp dir),
    --only memory,codec,redis,dynamodb,scale, --out DIR. A development command: run it
    in a source checkout (the suite is the repository's `benchmarks` package).
    """
    root = find_checkout()
    if root is None:
        raise click.UsageError(NOT_A_CHECKOUT)
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    suite = importlib.import_module("benchmarks.__main__")
    origin = Path(str(suite.__file__)).resolve()
    if root / "benchmarks" not in origin.parents:
        # Another package named "benchmarks" was imported first: never run a stranger's code.
        raise click.UsageError(
            f"the 'benchmarks' package imported from {origin.parent} is not the suite of "
            f"the checkout at {root}; run `python3 -m nox -s bench` in that checkout."
        )
    raise SystemExit(suite.main(list(args)))


COMMANDS = [bench]
