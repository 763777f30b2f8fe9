"""``cachehub migrate SRC DST``: copy entries between caches, TTL included.

The tool for the spec's "Migration from other providers": the application code stays,
the configuration changes, and this copies the warm data over. Keys are copied in
sorted batches (``get_many`` / ``put_many``); each entry keeps its remaining lifetime,
rounded *down* to the second so a copy never outlives its original. A checkpoint file
records the copied keys after every batch, so an interrupted run resumes where it
stopped, and re-running is harmless (puts are idempotent).
"""

from __future__ import annotations

import json
import math
import os
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..api import MAX_TIME_SPAN, MISSING, BaseCache
from ..errors import CacheKeyError, CacheValueError, ConfigError
from .app import State, data_command
from .output import fingerprint, stderr_console

__all__ = ["COMMANDS", "Checkpoint", "MigrationReport", "plan_batch"]

SAMPLE_SIZE = 50
"""How many copied values the final verification compares by checksum."""


@dataclass
class Checkpoint:
    """The keys already copied from ``source`` to ``target`` (for ``--resume-file``)."""

    path: Path | None
    source: str
    target: str
    filter: str | None
    done: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, path: Path | None, source: str, target: str, flt: str | None) -> Checkpoint:
        """Read the checkpoint at ``path`` (a new one when the file does not exist)."""
        fresh = cls(path, source, target, flt)
        if path is None or not path.exists():
            return fresh
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            recorded = (doc["source"], doc["target"], doc.get("filter"))
            done = doc["done"]
        except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
            raise ConfigError(
                f"resume file {path} is not a cachehub migrate checkpoint ({type(exc).__name__}).",
                hint="pass another --resume-file, or delete this one to start over.",
            ) from None
        if recorded != (source, target, flt) or not isinstance(done, list):
            raise ConfigError(
                f"resume file {path} belongs to another migration "
                f"({recorded[0]} -> {recorded[1]}, filter {recorded[2]!r}).",
                hint="use the same SRC, DST and --filter as the interrupted run, "
                "or another --resume-file.",
            )
        fresh.done = {str(k) for k in done}
        return fresh

    def save(self) -> None:
        """Write atomically (temp file + rename), so a crash never leaves half a file."""
        if self.path is None:
            return
        doc = {
            "source": self.source,
            "target": self.target,
            "filter": self.filter,
            "done": sorted(self.done),
        }
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        os.replace(tmp, self.path)


@dataclass
class Planned:
    """Entries of one batch grouped by how they must be written."""

    forever: dict[str, Any] = field(default_factory=dict)
    """Entries without expiry: one ``put_many``."""
    by_deadline: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Epoch second -> entries expiring then: one ``put_many(until=...)`` each."""
    idle: list[tuple[str, Any, float]] = field(default_factory=list)
    """Sliding-expiry entries, written one by one with their idle time."""
    vanished: list[str] = field(default_factory=list)
    """Keys that expired or were deleted while the batch was read."""

    @property
    def keys(self) -> list[str]:
        """The keys this batch will write."""
        timed = [k for group in self.by_deadline.values() for k in group]
        return [*self.forever, *timed, *(k for k, _, _ in self.idle)]


def plan_batch(source: BaseCache, keys: list[str], now: float) -> Planned:
    """Read ``keys`` from ``source`` with their expiry and group them for writing."""
    plan = Planned()
    values = source.get_many(keys)
    for key in keys:
        value = values.get(key, MISSING)
        if value is MISSING:
            plan.vanished.append(key)
            continue
        try:
            meta = source.metadata(key)
        except CacheKeyError:
            plan.vanished.append(key)
            continue
        # Entries written before expiries were capped may outlive MAX_TIME_SPAN, which
        # the target refuses: a span that long is "never" in practice, so keep the value.
        if meta.idle_time is not None:
            idle = min(meta.idle_time, MAX_TIME_SPAN).total_seconds()
            plan.idle.append((key, value, idle))
        elif (
            meta.time_to_live is None or meta.expires is None or meta.time_to_live >= MAX_TIME_SPAN
        ):
            plan.forever[key] = value
        else:
            deadline = math.floor(meta.expires.timestamp())
            if deadline <= now:
                plan.vanished.append(key)  # less than a second left: not worth copying
            else:
                plan.by_deadline.setdefault(deadline, {})[key] = value
    return plan


def write_batch(target: BaseCache, plan: Planned) -> list[str]:
    """Write a planned batch; returns the keys that expired before they could be written."""
    late: list[str] = []
    if plan.forever:
        target.put_many(plan.forever)
    for deadline, items in sorted(plan.by_deadline.items()):
        try:
            target.put_many(items, until=datetime.fromtimestamp(deadline, UTC))
        except CacheValueError:
            late.extend(items)  # the deadline passed while we were copying
    for key, value, idle in plan.idle:
        target.put(key, value, idle_time=idle)
    return late


@dataclass
class MigrationReport:
    """What a run did, for the summary table and ``--json``."""

    source: str
    target: str
    filter: str | None
    dry_run: bool
    total: int = 0
    already_done: int = 0
    copied: int = 0
    with_ttl: int = 0
    skipped_expired: int = 0
    batches: int = 0
    complete: bool = False
    verified: bool | None = None
    source_count: int | None = None
    present_in_target: int | None = None
    sample: int = 0
    mismatched: list[str] = field(default_factory=list)
    would_copy: list[dict[str, Any]] = field(default_factory=list)


def _batches(keys: list[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(keys), size):
        yield keys[start : start + size]


def _dry_run(source: BaseCache, keys: list[str], report: MigrationReport) -> None:
    for chunk in _batches(keys, 100):
        for key in chunk:
            try:
                ttl = source.metadata(key).time_to_live
            except CacheKeyError:
                report.skipped_expired += 1
                continue
            report.would_copy.append(
                {"key": key, "ttl": None if ttl is None else round(ttl.total_seconds(), 3)}
            )
    report.with_ttl = sum(1 for item in report.would_copy if item["ttl"] is not None)


def verify(source: BaseCache, target: BaseCache, keys: list[str], report: MigrationReport) -> None:
    """Compare counts and a sample of values (by checksum) between source and target."""
    alive = [key for key in keys if source.exists(key)]  # exists() counts no hit
    report.source_count = len(alive)
    present: set[str] = set()
    for chunk in _batches(alive, 100):
        present.update(target.get_many(chunk))
    report.present_in_target = len(present)
    report.mismatched.extend(key for key in alive if key not in present)
    sample = sorted(random.sample(keys, min(SAMPLE_SIZE, len(keys))))
    report.sample = len(sample)
    src_values = source.get_many(sample)
    dst_values = target.get_many(sample)
    for key in sample:
        if key not in src_values:
            continue  # expired meanwhile in the source: nothing to compare
        if key in dst_values and fingerprint(src_values[key]) != fingerprint(dst_values[key]):
            report.mismatched.append(key)
    report.verified = not report.mismatched


def _render(report: MigrationReport) -> Any:
    def render(console: Console) -> None:
        table = Table(title=f"migrate {report.source} -> {report.target}", show_header=False)
        table.add_column("what", style="bold")
        table.add_column("value")
        rows: list[tuple[str, Any]] = [("filter", report.filter or "(all keys)")]
        if report.dry_run:
            rows += [
                ("would copy", len(report.would_copy)),
                ("of which with TTL", report.with_ttl),
                ("already copied (resume file)", report.already_done),
            ]
        else:
            rows += [
                ("keys in source", report.total),
                ("already copied (resume file)", report.already_done),
                ("copied now", report.copied),
                ("of which with TTL", report.with_ttl),
                ("expired before copy", report.skipped_expired),
                ("batches", report.batches),
            ]
            if report.verified is not None:
                rows += [
                    ("source entries", report.source_count),
                    ("present in target", report.present_in_target),
                    (f"checksums compared (sample of {report.sample})", report.sample),
                    ("missing or different", ", ".join(report.mismatched) or "none"),
                ]
        for what, value in rows:
            table.add_row(what, str(value))
        console.print(table, markup=False)
        if report.dry_run:
            for item in report.would_copy[:20]:
                ttl = "no expiry" if item["ttl"] is None else f"ttl {item['ttl']} s"
                console.print(f"  {item['key']}  ({ttl})", markup=False, highlight=False)
            if len(report.would_copy) > 20:
                console.print(f"  … and {len(report.would_copy) - 20} more")
            console.print("dry run: nothing was copied.")
        elif not report.complete:
            console.print("stopped early: run again with the same --resume-file to continue.")
        elif report.verified:
            console.print("[green]✓ migration verified[/]")
        else:
            console.print("[red]✗ verification failed[/]")

    return render


@click.command("migrate")
@click.argument("source")
@click.argument("target")
@click.option("--filter", "flt", help="Only keys matching this Lucee wildcard filter.")
@click.option("--dry-run", is_flag=True, help="Report what would be copied; copy nothing.")
@click.option("--batch", type=click.IntRange(min=1), default=100, show_default=True)
@click.option(
    "--resume-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Checkpoint of copied keys: created if missing, resumed from if present.",
)
@click.option(
    "--max-batches",
    type=click.IntRange(min=1),
    help="Stop after this many batches (resume later with the same --resume-file).",
)
@data_command(cache_option=False)
def migrate_command(
    state: State,
    source: str,
    target: str,
    flt: str | None,
    dry_run: bool,
    batch: int,
    resume_file: Path | None,
    max_batches: int | None,
) -> None:
    """Copy entries from cache SOURCE to cache TARGET, values and remaining TTL preserved."""
    caches = state.caches()
    src, dst = caches.get(source), caches.get(target)
    if src is dst:
        raise click.UsageError("SOURCE and TARGET are the same cache.")
    if dst.read_only and not dry_run:
        raise ConfigError(
            f"cache '{target}' is read-only; migrate cannot write to it.",
            hint="set readOnly to false on the target cache.",
        )
    checkpoint = Checkpoint.load(resume_file, src.name, dst.name, flt)
    keys = sorted(src.keys(flt))
    report = MigrationReport(src.name, dst.name, flt, dry_run, total=len(keys))
    pending = [k for k in keys if k not in checkpoint.done]
    report.already_done = len(keys) - len(pending)
    if dry_run:
        _dry_run(src, pending, report)
        state.out.emit(report, _render(report))
        return
    progress = Progress(
        TextColumn("[bold]copying"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr_console(),
        disable=state.as_json,
    )
    with progress:
        task = progress.add_task("copy", total=len(pending))
        for chunk in _batches(pending, batch):
            if max_batches is not None and report.batches >= max_batches:
                break
            now = datetime.now(UTC).timestamp()
            plan = plan_batch(src, chunk, now)
            late = write_batch(dst, plan)
            written = [k for k in plan.keys if k not in set(late)]
            report.copied += len(written)
            report.with_ttl += sum(len(g) for g in plan.by_deadline.values()) + len(plan.idle)
            report.skipped_expired += len(plan.vanished) + len(late)
            report.batches += 1
            # Expired keys count as done too: there is nothing left to copy for them.
            checkpoint.done.update(chunk)
            checkpoint.save()
            progress.advance(task, len(chunk))
    report.complete = len(checkpoint.done.intersection(keys)) == len(keys)
    if report.complete:
        copied = [k for k in keys if k in checkpoint.done]
        verify(src, dst, copied, report)
    state.out.emit(report, _render(report))
    if report.verified is False:
        raise click.exceptions.Exit(1)


COMMANDS = (migrate_command,)
