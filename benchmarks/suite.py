"""Run the selected sections and write the report: the entry point behind ``__main__``."""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from .harness import Config, Section, machine_info
from .report import render, write_chart, write_markdown

__all__ = ["ON_REQUEST", "SECTIONS", "SuiteResult", "run_suite"]

SECTIONS: tuple[str, ...] = (
    "memory",
    "codec",
    "redis",
    "dynamodb",
    "async",
    "scale",
    "console",
    "instructions",
)
"""Every section, in report order; each is a module of this package with ``run(cfg)``."""
ON_REQUEST: tuple[str, ...] = ("instructions",)
"""Sections a run without section names leaves out: ``instructions`` runs its cases under
valgrind for about ten minutes, and needs no quiet machine, so it is run on its own
(``nox -s bench -- instructions``)."""
_MODULES = {"async": "aio"}
"""Sections whose module has another name (``async`` is a keyword)."""


@dataclass(frozen=True, slots=True)
class SuiteResult:
    """What a run produced: the sections, and the files written."""

    sections: list[Section]
    markdown: Path
    chart: Path | None
    """The first chart written (one per section with targets), if any."""


def run_suite(
    only: Sequence[str],
    cfg: Config,
    out_dir: Path,
    *,
    progress: Callable[[str], object] = print,
) -> SuiteResult:
    """Run the sections named in ``only`` (in report order) and write ``benchmarks.md``."""
    sections: list[Section] = []
    for name in SECTIONS:
        if name not in only:
            continue
        progress(f"[bench] {name} ...")
        module = importlib.import_module(f"{__package__}.{_MODULES.get(name, name)}")
        runner = cast(Callable[[Config], Section], module.run)
        started = time.perf_counter()
        section = runner(cfg)
        took = time.perf_counter() - started
        done = section.skipped or f"{len(section.measurements)} cases in {took:.1f} s"
        progress(f"[bench] {name}: {done}")
        sections.append(section)
    timed = [s for s in sections if s.key not in ON_REQUEST]
    mode = (
        "quick"
        if cfg.quick
        else (
            f"full (rounds: memory {cfg.memory_rounds}, codec and Redis {cfg.rounds}, "
            f"DynamoDB {cfg.aws_rounds}; medians of interleaved rounds)"
            if timed
            else "full (instruction counts; rounds as the section states)"
        )
    )
    # One chart per section, so a run of some sections leaves the others' charts alone.
    charts: dict[str, str] = {}
    for section in sections:
        png = out_dir / f"benchmarks-{section.key}.png"
        if write_chart(png, [section]):
            charts[section.key] = png.name
    chart = out_dir / next(iter(charts.values())) if charts else None
    markdown = out_dir / "benchmarks.md"
    page = render(sections, machine_info(), mode, charts=charts)
    write_markdown(markdown, page, order=SECTIONS, keep_head=not timed)
    if chart is None and any(s.rows for s in sections):
        progress("[bench] matplotlib not installed: no chart written")
    return SuiteResult(sections, markdown, chart)
