"""``cachehub bench``: the benchmark suite of a source checkout (same as ``nox -s bench``)."""

from __future__ import annotations

import importlib

import click

__all__ = ["COMMANDS"]


@click.command("bench", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args: tuple[str, ...]) -> None:
    """Benchmark cachehub against raw clients and peers, like `nox -s bench`.

    ARGS go to the suite: --quick (small sizes, report in a temp dir),
    --only memory,codec,redis,dynamodb,scale, --out DIR. Run it from the root of a
    source checkout: the suite is the repository's `benchmarks` package.
    """
    try:
        suite = importlib.import_module("benchmarks.__main__")
    except ImportError:
        raise click.UsageError(
            "the benchmark suite is not importable: run `cachehub bench` from the root of a "
            "cachehub source checkout (or use `nox -s bench`)."
        ) from None
    raise SystemExit(suite.main(list(args)))


COMMANDS = [bench]
