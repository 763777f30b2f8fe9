"""``cachehub migrate SRC DST``: copy entries between caches, TTL included.

A thin command over :func:`cachehub.migration.migrate` (the one implementation, also
the in-process ``cachehub.migrate`` API): it adds the progress bars, the report, the
refusal of an in-process (memory) source or target, and what to do after an interruption.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..display import visible
from ..errors import ConfigError
from ..migration import Checkpoint, MigrationReport, migrate
from .app import State, data_command
from .output import stderr_console

__all__ = ["COMMANDS", "Checkpoint", "MigrationReport"]


def _render(report: MigrationReport) -> Any:
    def render(console: Console) -> None:
        table = Table(title=f"migrate {report.source} -> {report.target}", show_header=False)
        table.add_column("what", style="bold")
        table.add_column("value")
        rows: list[tuple[str, Any]] = [("filter", report.filter or "(all keys)")]
        if report.dry_run:
            rows += [
                ("would copy", report.would_copy_count),
                ("of which with TTL / idle", f"{report.with_ttl} / {report.idle}"),
                ("expired or expiring, not copied", report.skipped_expired),
                ("unchanged since copied", report.unchanged),
                ("newer in the target, kept", report.kept_newer),
                ("unreadable at the source", report.unreadable),
                ("refused by the target", report.unwritable),
                ("colliding in the target, not copied", report.colliding),
            ]
        else:
            rows += [
                ("keys in source", report.total),
                ("unchanged since copied", report.unchanged),
                ("copied now", report.copied),
                ("of which changed since an earlier copy", report.recopied),
                ("of which with TTL / idle", f"{report.with_ttl} / {report.idle}"),
                ("expired before copy", report.skipped_expired),
                ("newer in the target, kept", report.kept_newer),
                ("unreadable at the source, not copied", report.unreadable),
                ("refused by the target, not copied", report.unwritable),
                ("colliding in the target, not copied", report.colliding),
                ("batches", report.batches),
            ]
            if report.verified is not None:
                rows += [
                    ("keys checked in target", report.checked),
                    ("missing in target", report.missing),
                    (f"values compared (sample of {report.sample})", report.sample),
                    ("values different", report.different),
                ]
        for what, value in rows:
            table.add_row(what, str(value))
        console.print(table, markup=False)
        _print_colliding(console, report)
        if report.dry_run:
            for item in report.would_copy:
                ttl = "no expiry" if item["ttl"] is None else f"ttl {item['ttl']} s"
                key = visible(item["key"])
                console.print(f"  {key}  ({ttl})", markup=False, highlight=False)
            if report.would_copy_count > len(report.would_copy):
                console.print(f"  … and {report.would_copy_count - len(report.would_copy)} more")
            _print_failed(
                console,
                "refused",
                report.first_unwritable,
                report.unwritable,
                f"[red]✗ {report.unwritable} entries would be refused by the target[/] (see "
                "above).",
            )
            console.print("dry run: nothing was copied.")
            return
        for title, keys, count in (
            ("missing in target", report.first_missing, report.missing),
            ("different in target", report.first_different, report.different),
        ):
            if keys:
                more = f" (and {count - len(keys)} more)" if count > len(keys) else ""
                shown = ", ".join(map(visible, keys))
                console.print(f"{title}: {shown}{more}", markup=False, highlight=False)
        for item in report.first_unreadable_copies:
            console.print(
                f"unreadable in target: {item['key']!r:.200} ({item['error']:.300})",
                markup=False,
                highlight=False,
            )
        _print_failed(
            console,
            "unreadable",
            report.first_unreadable,
            report.unreadable,
            f"[red]✗ {report.unreadable} source entries could not be read and were not "
            "copied[/] (see above); fix or delete them at the source, then run again with "
            "the same --resume-file.",
        )
        _print_failed(
            console,
            "refused",
            report.first_unwritable,
            report.unwritable,
            f"[red]✗ {report.unwritable} entries were refused by the target and not "
            "copied[/] (see above); rename or convert them at the source, then run again "
            "with the same --resume-file.",
        )
        if not report.complete:
            console.print("stopped early: run again with the same --resume-file to continue.")
        elif report.verified and not (report.unreadable or report.unwritable or report.colliding):
            console.print("[green]✓ migration verified[/]")
        elif report.verified:
            console.print(
                "[yellow]copies verified; the unreadable, refused or colliding entries above are "
                "missing[/]"
            )
        elif report.verified is None:
            console.print("copied; not verified (--no-verify).")
        else:
            console.print("[red]✗ verification failed[/]")

    return render


def _print_colliding(console: Console, report: MigrationReport) -> None:
    """The source keys that are one entry in the target, group by group."""
    for group in report.first_colliding:
        shown = ", ".join(repr(key)[:200] for key in group)
        console.print(f"colliding: {shown}", markup=False, highlight=False)
    if report.colliding:
        console.print(
            f"[red]✗ {report.colliding} source keys are one entry in the target (e.g. "
            "'user' and 'USER' in Lucee's layout, which upper-cases keys) and were not "
            "copied[/]; rename them at the source so that each is unique, then run again.",
        )


def _print_failed(
    console: Console, label: str, shown: list[dict[str, str]], count: int, summary: str
) -> None:
    """The entries a run could not copy: the first ones by key and error, then ``summary``."""
    for item in shown:
        console.print(f"{label}: {item['key']!r:.200} ({item['error']:.300})", markup=False)
    if count > len(shown):
        console.print(f"  … and {count - len(shown)} more")
    if count:
        console.print(summary)


def _resume_advice(argv: list[str], resume_file: Path | None) -> str:
    if resume_file is None:
        return (
            "no --resume-file was given, so nothing records what was copied: run again "
            "with --resume-file FILE to make the run resumable (copying again is harmless)."
        )
    return f"to continue where it stopped, run again: cachehub {shlex.join(argv)}"


@click.command("migrate")
@click.argument("source")
@click.argument("target")
@click.option("--filter", "flt", help="Only keys matching this Lucee wildcard filter.")
@click.option("--dry-run", is_flag=True, help="Report what would be copied; copy nothing.")
@click.option("--batch", type=click.IntRange(min=1), default=100, show_default=True)
@click.option(
    "--resume-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Checkpoint of copied keys: created if missing, resumed from if present; a "
    "rerun after completion copies again what changed at the source.",
)
@click.option(
    "--max-batches",
    type=click.IntRange(min=1),
    help="Stop after this many batches (resume later with the same --resume-file).",
)
@click.option("--no-verify", is_flag=True, help="Skip the verification after the copy.")
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
    no_verify: bool,
) -> None:
    """Copy entries from cache SOURCE to cache TARGET, values and remaining TTL preserved.

    The source is only read (no hit counts, no last-access updates); entries keep their
    remaining lifetime and idle time. After a complete run the copy is verified.
    """
    caches = state.caches()
    src, dst = caches.get(source), caches.get(target)
    if src is dst:
        raise click.UsageError("SOURCE and TARGET are the same cache.")
    if not type(src).distributed:
        raise ConfigError(
            f"cache '{src.name}' ({type(src).__name__}) lives inside each process: this "
            "command would see only its own, empty copy and copy nothing.",
            hint="migrate from inside the application that holds the data: "
            f"cachehub.migrate(caches['{src.name}'], caches['{dst.name}']).",
        )
    if not type(dst).distributed:
        # The copies would live in this process alone and end with it, after a report
        # of a verified migration (and a resume file listing them as copied).
        raise ConfigError(
            f"cache '{dst.name}' ({type(dst).__name__}) lives inside each process: this "
            "command would fill only its own copy, gone when it exits.",
            hint="migrate from inside the application that uses the data: "
            f"cachehub.migrate(caches['{src.name}'], caches['{dst.name}']).",
        )
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr_console(),
        disable=state.as_json or dry_run,
    )
    tasks: dict[str, Any] = {}

    def tick(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = progress.add_task("copying" if phase == "copy" else "verifying")
        progress.update(tasks[phase], completed=done, total=total)

    argv = _argv_of(click.get_current_context(), state)
    try:
        with progress:
            report = migrate(
                src,
                dst,
                filter=flt,
                batch=batch,
                resume_file=resume_file,
                max_batches=max_batches,
                dry_run=dry_run,
                verify=not no_verify,
                progress=tick,
            )
    except KeyboardInterrupt:
        advice = _resume_advice(argv, resume_file)
        state.out.err.print(
            f"interrupted: the batches finished so far are copied. {advice}",
            markup=False,
            highlight=False,
            soft_wrap=True,  # the command stays on one line, to copy and paste
        )
        raise click.exceptions.Exit(130) from None
    state.out.emit(report, _render(report))
    if report.verified is False or report.unreadable or report.unwritable or report.colliding:
        raise click.exceptions.Exit(1)


def _argv_of(ctx: click.Context, state: State) -> list[str]:
    """The migrate command line after ``cachehub``, for the resume advice."""
    words = [] if state.config_option is None else ["--config", str(state.config_option)]
    words += ["migrate", ctx.params["source"], ctx.params["target"]]
    if ctx.params.get("flt"):
        words += ["--filter", ctx.params["flt"]]
    if ctx.params.get("resume_file") is not None:
        words += ["--resume-file", str(ctx.params["resume_file"])]
    return words


COMMANDS = (migrate_command,)
