"""``cachehub tour``: the spec's scenarios on every provider, side by side.

Without a configuration it starts its own backends and stops them afterwards: each
installed provider contributes one through the ``cachehub_tour_backends`` hook (a local
DynamoDB endpoint, the in-memory cache, Redis when a server is available). With
``--config`` it runs on the configured caches, each in a private namespace that is
cleared at the end. Provider-specific steps (``DynamoDBCommand()``) come from the
``cachehub_tour_steps`` hook.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager, suppress
from typing import Any

import click
from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table

from ..api import MISSING, BaseCache
from ..errors import CacheError
from ..hookspecs import LocalBackend
from ..plugins import plugin_manager
from .admin import entry_config
from .app import State, data_command
from .isolate import clone, private_namespace
from .output import short
from .results import Failure, ScenarioResult, compare
from .scenarios import SCENARIOS, Recorder, Scenario, Step

__all__ = ["COMMANDS", "embedded_config", "run_scenario"]


def embedded_config(backends: Mapping[str, LocalBackend]) -> dict[str, Any]:
    """The tour's caches: the same application, one configuration per local backend."""
    config: dict[str, Any] = {}
    for name, backend in sorted(backends.items()):
        if backend.entry is not None:
            config[name] = {**backend.entry, "default": backend.default}
    if config and not any(entry["default"] for entry in config.values()):
        config[next(iter(config))]["default"] = True
    return config


def _guarded(action: Any, cache: BaseCache, rec: Recorder) -> None:
    try:
        action(cache, rec)
    except Exception as exc:  # one provider failing must not stop the comparison
        rec.steps.append(Step("error", Failure(exc)))


def run_scenario(
    scenario: Scenario, caches: Mapping[str, BaseCache], namespace: str
) -> ScenarioResult:
    """Run one scenario on every cache, each in its own fresh namespace."""
    isolated = {
        name: clone(cache, f"{namespace}{scenario.slug}:") for name, cache in caches.items()
    }
    recorders = {name: Recorder() for name in caches}
    try:
        if scenario.before is not None:
            for name, cache in isolated.items():
                _guarded(scenario.before, cache, recorders[name])
        if scenario.pause:
            time.sleep(scenario.pause)
        for name, cache in isolated.items():
            _guarded(scenario.run, cache, recorders[name])
    finally:
        for cache in isolated.values():
            with suppress(CacheError):
                cache.clear()
            with suppress(CacheError):
                cache.close()
    return ScenarioResult(scenario.title, scenario.section, compare(recorders))


def _cell(value: Any) -> str:
    if value is MISSING:
        return "[red]—[/]"
    if isinstance(value, Failure):
        return f"[red]{_escape(short(value, 50))}[/]"
    return _escape(short(value, 40))


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def render_result(console: Console, result: ScenarioResult, providers: list[str]) -> None:
    """One table: a column per provider and a check mark when they agree."""
    table = Table(title=f"{result.title}  [dim](spec: {result.section})[/]", title_justify="left")
    table.add_column("step", style="bold")
    for name in providers:
        table.add_column(name, overflow="fold")
    table.add_column("agree", justify="center")
    for row in result.rows:
        mark = "[green]✓[/]" if row.agree else "[red]✗[/]"
        table.add_row(
            _escape(row.label), *(_cell(row.values.get(p, MISSING)) for p in providers), mark
        )
    console.print(table)


def render_migration(console: Console, configs: Mapping[str, Any]) -> None:
    """The migration story: the same code ran on each of these configurations."""
    import json

    console.print(
        Panel.fit(
            "Every column above ran [bold]the same functions[/] (cachehub/cli/scenarios.py) - "
            "not one line knows which provider it talks to.\nMoving from memory or Redis to "
            "DynamoDB (the spec's 'Migration from other providers') is this config change only; "
            "copy existing entries with [bold]cachehub migrate SRC DST[/].",
            title="Migration story",
        )
    )
    for name, entry in configs.items():
        console.print(f"[bold]{name}[/]")
        console.print(Syntax(json.dumps(entry, indent=2, default=str), "json", theme="ansi_dark"))


@contextmanager
def _embedded(notes: list[str]) -> Iterator[tuple[dict[str, BaseCache], dict[str, Any]]]:
    from ..registry import Caches

    with ExitStack() as stack:
        backends: dict[str, LocalBackend] = {}
        for contributed in plugin_manager().hook.cachehub_tour_backends():
            for name, factory in (contributed or {}).items():
                backend = stack.enter_context(factory())
                backends[name] = backend
                notes.append(backend.note)
        config = embedded_config(backends)
        if not config:
            raise CacheError(
                "the tour found no provider able to start a local backend.",
                hint="pip install cachehub-memory (or cachehub-dynamodb[local]), "
                "or pass --config with your own caches.",
            )
        registry = stack.enter_context(Caches(config))
        caches = {name: registry.get(name) for name in registry.names()}
        yield caches, config


def _configured(state: State, notes: list[str]) -> tuple[dict[str, BaseCache], dict[str, Any]]:
    registry = state.caches()
    caches: dict[str, BaseCache] = {}
    configs: dict[str, Any] = {}
    for entry in registry.entries():
        if entry.read_only:
            notes.append(f"cache '{entry.name}' skipped: it is read-only")
            continue
        cache = registry.get(entry.name)
        caches[entry.name] = cache
        configs[entry.name] = entry_config(entry)
    return caches, configs


def _tour(
    state: State, caches: Mapping[str, BaseCache], configs: Mapping[str, Any], notes: list[str]
) -> bool:
    out = state.out
    providers = list(caches)
    namespace = private_namespace("tour")
    for note in notes:
        out.note(f"[dim]{note}[/]")
    results: list[ScenarioResult] = []
    for scenario in SCENARIOS:
        out.note(f"[dim]running: {scenario.title}[/]")
        result = run_scenario(scenario, caches, namespace)
        results.append(result)
        if not out.as_json:
            render_result(out.console, result, providers)
    steps = plugin_manager().hook.cachehub_tour_steps
    for name, cache in caches.items():
        for result in steps(cache=cache, name=name, namespace=namespace):
            if not isinstance(result, ScenarioResult):
                continue  # not a result this command can show; a plugin bug, not the user's
            results.append(result)
            if not out.as_json:
                render_result(out.console, result, [name, "expected"])
    ok = all(result.ok for result in results)
    if out.as_json:
        out.emit(
            {
                "ok": ok,
                "providers": providers,
                "configs": configs,
                "scenarios": [
                    {
                        "title": r.title,
                        "section": r.section,
                        "ok": r.ok,
                        "rows": [
                            {
                                "step": row.label,
                                "values": {
                                    k: repr(v) if isinstance(v, Failure) else v
                                    for k, v in row.values.items()
                                },
                                "agree": row.agree,
                            }
                            for row in r.rows
                        ],
                    }
                    for r in results
                ],
            }
        )
    else:
        render_migration(out.console, configs)
        total = sum(len(r.rows) for r in results)
        bad = sum(not row.agree for r in results for row in r.rows)
        if ok:
            out.console.print(f"[green]✓ all {total} steps agree across {', '.join(providers)}[/]")
        else:
            out.console.print(f"[red]✗ {bad} of {total} steps disagree[/]")
    return ok


@click.command("tour")
@data_command(cache_option=False)
def tour_command(state: State) -> None:
    """Walk through the spec's scenarios on every provider, side by side.

    With no configuration it starts a local DynamoDB endpoint, an in-memory cache and
    Redis (a private redis-server: the system's, else the one the cachehub-redis[local]
    extra ships; failing both, one answering on localhost:6379). Exit code 0
    when every step agrees across providers.
    """
    notes: list[str] = []
    if state.config_path(required=False) is None:
        with _embedded(notes) as (caches, configs):
            ok = _tour(state, caches, configs, notes)
    else:
        caches, configs = _configured(state, notes)
        ok = _tour(state, caches, configs, notes)
    if not ok:
        raise click.exceptions.Exit(1)


COMMANDS = (tour_command,)
