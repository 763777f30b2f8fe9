"""Admin commands on a configured cache: caches, ls, get, put, delete, clear, count, meta."""

from __future__ import annotations

import json
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.pretty import Pretty
from rich.table import Table

from ..api import BASE_OPTIONS, MAX_TIME_SPAN, MISSING, BaseCache, CacheMetadata
from ..config import redact
from ..display import visible
from ..errors import CacheError, CacheValueError
from ..loader import CacheEntry, parse_json
from .app import State, data_command, fail
from .output import short

__all__ = ["COMMANDS", "entry_config", "metadata_dict", "probe"]

PROBE_KEY = "cachehub:probe"
"""Key read (never written) to check that a cache answers."""


def probe(cache: BaseCache) -> str:
    """``"ok"`` when the cache answers a read, else the error's one-line message."""
    try:
        cache.exists(PROBE_KEY)
    except CacheError as exc:
        return f"error: {exc}"
    return "ok"


def metadata_dict(meta: CacheMetadata) -> dict[str, Any]:
    """``cacheGetMetadata``'s fields with Lucee's names (durations in seconds)."""
    return {
        "hitCount": meta.hit_count,
        "timeToLive": None if meta.time_to_live is None else meta.time_to_live.total_seconds(),
        "idleTime": None if meta.idle_time is None else meta.idle_time.total_seconds(),
        "expires": meta.expires,
        "lastAccessed": meta.last_accessed,
        "lastModified": meta.last_modified,
        "created": meta.created,
    }


def _provider(class_name: str) -> type[BaseCache] | None:
    from ..resolve import resolve_provider

    try:
        return resolve_provider(class_name)
    except CacheError:
        return None


def entry_config(entry: CacheEntry) -> dict[str, Any]:
    """A configuration entry as it may be shown: secrets and URL passwords masked."""
    cls = _provider(entry.class_name)
    options = (*BASE_OPTIONS, *(cls.options if cls is not None else ()))
    shown: dict[str, Any] = {"class": entry.class_name}
    if entry.custom:
        shown["custom"] = redact(dict(entry.custom), options)
    for flag, on in (("default", entry.default), ("readOnly", entry.read_only)):
        if on:
            shown[flag] = True
    if entry.storage:
        shown["storage"] = True
    return shown


def _qualname(cls: type | None) -> str:
    return "?" if cls is None else f"{cls.__module__}:{cls.__qualname__}"


@click.command("caches")
@click.option("--no-probe", is_flag=True, help="Do not connect; only list the configuration.")
@data_command(cache_option=False)
def caches_command(state: State, no_probe: bool) -> None:
    """List the configured caches: provider class, flags and whether each answers."""
    registry = state.caches()
    rows: list[dict[str, Any]] = []
    for entry in registry.entries():
        status = "not checked"
        if not no_probe:
            try:
                status = probe(registry.get(entry.name))
            except CacheError as exc:
                status = f"error: {exc}"
        rows.append(
            {
                "name": entry.name,
                "class": entry.class_name,
                "provider": _qualname(_provider(entry.class_name)),
                "default": entry.default,
                "readOnly": entry.read_only,
                "storage": entry.storage,
                "custom": entry_config(entry).get("custom", {}),
                "status": status,
            }
        )

    def render(console: Console) -> None:
        table = Table(title="Configured caches")
        for column in ("name", "class", "provider", "flags", "status"):
            table.add_column(column, overflow="fold")
        for row in rows:
            flags = [f for f in ("default", "readOnly", "storage") if row[f]]
            ok = row["status"] == "ok"
            status = (
                f"[green]{escape(row['status'])}[/]" if ok else f"[red]{escape(row['status'])}[/]"
            )
            # Names and messages come from configuration and backends: never markup.
            table.add_row(
                escape(row["name"]),
                escape(row["class"]),
                escape(row["provider"]),
                " ".join(flags),
                status,
            )
        console.print(table)

    state.out.emit(rows, render)
    if any(row["status"].startswith("error") for row in rows):
        raise click.exceptions.Exit(1)


@click.command("ls")
@click.argument("filter", required=False)
@click.option("--limit", type=click.IntRange(min=1), help="Show at most this many keys.")
@data_command()
def ls_command(state: State, filter: str | None, limit: int | None) -> None:
    """List the keys matching FILTER (Lucee wildcards: * and ?), sorted."""
    keys = sorted(state.cache().keys(filter))
    shown = keys[:limit] if limit else keys

    def render(console: Console) -> None:
        for key in shown:
            console.print(visible(key), markup=False)
        if len(shown) < len(keys):
            state.out.note(f"({len(keys) - len(shown)} more keys not shown)")

    state.out.emit(shown, render, raw=True)  # stored keys: not scrubbed, but made printable


@click.command("get")
@click.argument("key")
@data_command()
def get_command(state: State, key: str) -> None:
    """Print the value stored under KEY (exit code 1 when there is none)."""
    cache = state.cache()
    value = cache.get(key, MISSING)
    if value is MISSING:
        if state.as_json:
            state.out.emit({"key": key, "found": False})
        fail(f"no entry for key {key!r} in cache '{cache.name}'.")
    state.out.emit(
        {"key": key, "found": True, "type": type(value).__name__, "value": value},
        lambda console: console.print(Pretty(value)),
        raw=True,  # the stored value, shown as it is
    )


def _parse_json(ctx: click.Context, param: click.Parameter, text: str) -> Any:
    if not ctx.params.get("json_value"):
        return text
    try:
        return parse_json(text, "VALUE", 'write JSON: "text" in quotes, 42, true, null, [...].')
    except CacheValueError as exc:
        raise click.BadParameter(f"{exc.message} {exc.hint}") from None


def _finite_ttl(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and value != value:  # nan: FloatRange's comparisons all pass it
        raise click.BadParameter("nan is not a number of seconds.")
    return value


@click.command("put")
@click.option(
    "--json-value", "json_value", is_flag=True, is_eager=True, help="Parse VALUE as JSON."
)
@click.argument("key")
@click.argument("value", callback=_parse_json)
@click.option(
    "--ttl",
    # max: the core's MAX_TIME_SPAN; with the nan check, every bad --ttl is a usage error
    # (exit 2), not a command the cache then fails (exit 1).
    type=click.FloatRange(min=0, min_open=True, max=MAX_TIME_SPAN.total_seconds()),
    callback=_finite_ttl,
    help="Expire the entry after this many seconds (at most 1,000 years).",
)
@data_command()
def put_command(state: State, key: str, value: Any, ttl: float | None, json_value: bool) -> None:
    """Store VALUE under KEY (a string, or any JSON value with --json-value)."""
    cache = state.cache()
    cache.put(key, value, time_span=ttl)
    state.out.emit(
        {"key": key, "stored": True, "ttl": ttl},
        lambda console: console.print(
            f"stored {short(key)} in cache '{cache.name}'"
            + (f" (expires in {ttl:g} s)" if ttl else ""),
            markup=False,
        ),
    )


@click.command("delete")
@click.argument("key")
@data_command()
def delete_command(state: State, key: str) -> None:
    """Delete KEY (exit code 1 when there was no entry)."""
    cache = state.cache()
    removed = cache.delete(key)
    state.out.emit(
        {"key": key, "deleted": removed},
        lambda console: console.print(
            f"deleted {short(key)}" if removed else f"no entry for {short(key)}", markup=False
        ),
    )
    if not removed:
        raise click.exceptions.Exit(1)


@click.command("clear")
@click.argument("filter", required=False)
@click.option("--yes", is_flag=True, help="Confirm the deletion (required).")
@data_command()
def clear_command(state: State, filter: str | None, yes: bool) -> None:
    """Delete every entry matching FILTER (all entries of the cache without one)."""
    if not yes:
        what = f"entries matching {filter!r}" if filter else "EVERY entry"
        raise click.UsageError(f"clear deletes {what}; add --yes to confirm.")
    cache = state.cache()
    removed = cache.clear(filter)
    state.out.emit(
        {"filter": filter, "removed": removed},
        lambda console: console.print(
            f"removed {removed} entries from cache '{cache.name}'", markup=False
        ),
    )


@click.command("count")
@click.argument("filter", required=False)
@data_command()
def count_command(state: State, filter: str | None) -> None:
    """Count the entries matching FILTER (all entries without one)."""
    total = state.cache().count(filter)
    state.out.emit({"filter": filter, "count": total}, lambda console: console.print(total))


@click.command("meta")
@click.argument("key")
@data_command()
def meta_command(state: State, key: str) -> None:
    """Show KEY's metadata: hit count, remaining TTL and timestamps."""
    data = metadata_dict(state.cache().metadata(key))

    def render(console: Console) -> None:
        table = Table(title=f"metadata of {escape(short(key))}", show_header=False)
        table.add_column("field", style="bold")
        table.add_column("value")
        for field, value in data.items():
            if value is None:
                shown = "never"
            elif field in ("timeToLive", "idleTime"):
                shown = f"{value:.1f} s"
            else:
                shown = str(value)
            table.add_row(field, shown)
        console.print(table)

    state.out.emit({"key": key, **data}, render)


@click.command("info")
@click.argument("name", required=False)
@data_command()
def info_command(state: State, name: str | None) -> None:
    """Show cache-level properties of cache NAME (default: --cache, else the default cache).

    Lucee's cacheGetProperties: entry count, size, and the backend's facts (DynamoDB:
    table status, key schema, billing mode, TTL, indexes; Redis: version, mode, memory).
    """
    facts = state.cache(name).info()

    def render(console: Console) -> None:
        table = Table(title=f"cache '{escape(str(facts['name']))}'", show_header=False)
        table.add_column("property", style="bold")
        table.add_column("value", overflow="fold")
        for field, value in facts.items():
            shown = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
            table.add_row(escape(str(field)), escape(shown))
        console.print(table)

    state.out.emit(facts, render)


COMMANDS = (
    caches_command,
    info_command,
    ls_command,
    get_command,
    put_command,
    delete_command,
    clear_command,
    count_command,
    meta_command,
)
