"""``cachehub doctor``: check each configured cache and explain every failure.

Each failure is mapped to the matching entry of the spec's Troubleshooting section
(connection errors, table not found, invalid security token, throttling, 400 Bad
Request) so the report says what to change, not only what broke.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..api import MISSING, BaseCache
from ..errors import (
    CacheError,
    CachePermissionError,
    CacheThrottledError,
    CacheUnavailableError,
    ConfigError,
)
from .admin import PROBE_KEY
from .app import State, data_command
from .dynamo import is_dynamodb, partition_key
from .isolate import scratch

__all__ = ["COMMANDS", "Check", "advice_for", "diagnose"]

IAM_ACTIONS = {
    "connect": "DescribeTable",
    "put": "PutItem",
    "get": "GetItem",
    "metadata": "GetItem",
    "count": "Scan",
    "delete": "DeleteItem",
    "ttl": "DescribeTimeToLive",
}
"""The DynamoDB permission each doctor step needs (the spec's Recommended IAM Policy)."""


@dataclass
class Check:
    """One line of the report: ``status`` is ok, info, warn or fail."""

    name: str
    status: str
    detail: str
    advice: str | None = None


@dataclass
class Diagnosis:
    """Everything doctor found out about one cache."""

    cache: str
    provider: str = "?"
    checks: list[Check] = field(default_factory=list)
    missing_permissions: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No check failed."""
        return all(check.status != "fail" for check in self.checks)


def advice_for(exc: CacheError, *, dynamodb: bool) -> str:
    """The spec's troubleshooting advice for ``exc``."""
    text = str(exc).lower()
    bad_credentials = "credentials" in text and isinstance(exc, CachePermissionError)
    if "security token" in text or bad_credentials:
        return (
            "Invalid Security Token: for AWS, verify accessKeyId/secretkey are correct and "
            "not expired; for DynamoDB Local, set host to its URL (e.g. http://localhost:8000)."
        )
    if "not found" in text or "createtable" in text or "non-existent table" in text:
        return (
            "Table Not Found: the cache creates its table automatically; verify the IAM policy "
            "includes dynamodb:CreateTable (or create the table), and check region and host."
        )
    if isinstance(exc, CacheThrottledError):
        return (
            "Throttling: switch the table to on-demand billing (PAY_PER_REQUEST) or raise its "
            "provisioned capacity."
        )
    if isinstance(exc, CachePermissionError):
        return (
            "Access denied: grant the missing actions listed below (see the Recommended IAM "
            "Policy in the spec / docs/dynamodb.md)."
            if dynamodb
            else "Authentication failed: check the password/ACL user in the cache settings."
        )
    if isinstance(exc, CacheUnavailableError):
        if dynamodb:
            return (
                "Connection Errors (Unable to connect to DynamoDB): verify your credentials and "
                "region settings, and that host is set correctly for DynamoDB Local "
                "(e.g. http://localhost:8000; `cachehub local-dynamodb` runs one)."
            )
        return "Connection error: check url/host/port and that the server is running."
    if "key" in text and "required" in text:
        return (
            "400 Bad Request (required keys missing): pass the partition key with exactly the "
            "table's attribute name and case."
        )
    if isinstance(exc, ConfigError):
        return exc.hint or "fix the cache's configuration entry."
    return exc.hint or "see the error message above."


class _Doctor:
    """Runs the checks of one cache, recording instead of raising."""

    def __init__(self, diagnosis: Diagnosis, dynamodb: bool) -> None:
        self.diagnosis = diagnosis
        self.dynamodb = dynamodb

    def step(self, name: str, fn: Callable[[], Any], show: Callable[[Any], str] = str) -> Any:
        """Run ``fn``; record ok with ``show(result)`` or fail with advice; MISSING on failure."""
        try:
            result = fn()
        except CacheError as exc:
            self.fail(name, exc)
            return MISSING
        self.diagnosis.checks.append(Check(name, "ok", show(result)))
        return result

    def fail(self, name: str, exc: CacheError) -> None:
        """Record a failed step, and the permission it lacked when access was denied."""
        self.diagnosis.checks.append(
            Check(name, "fail", str(exc), advice_for(exc, dynamodb=self.dynamodb))
        )
        denied = isinstance(exc, CachePermissionError) and "denied" in str(exc).lower()
        if self.dynamodb and denied and name in IAM_ACTIONS:
            self.diagnosis.missing_permissions.append(f"dynamodb:{IAM_ACTIONS[name]}")

    def expect(self, name: str, ok: bool, detail: str) -> None:
        """Record a check that ran but returned the wrong thing."""
        self.diagnosis.checks.append(Check(name, "ok" if ok else "fail", detail))


def _ttl_status(cache: BaseCache) -> str:
    """DynamoDB's native TTL status of the cache's table, as DescribeTimeToLive reports it."""
    client: Any = getattr(cache, "client")  # noqa: B009 - DynamoDBCache's boto3 client
    try:
        described = client.describe_time_to_live(TableName=getattr(cache, "table_name"))  # noqa: B009
    except Exception as exc:  # botocore errors: report, the cache still enforces expiry
        code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
        return f"unknown (DescribeTimeToLive failed: {code})"
    ttl = described.get("TimeToLiveDescription", {})
    status = ttl.get("TimeToLiveStatus", "DISABLED")
    attribute = ttl.get("AttributeName")
    return f"{status}" + (f" on attribute '{attribute}'" if attribute else "")


def _round_trip(doctor: _Doctor, cache: BaseCache) -> None:
    if cache.read_only:
        doctor.diagnosis.checks.append(
            Check("round trip", "info", "skipped: the cache is read-only")
        )
        return
    with scratch(cache, "doctor") as tmp:
        token = secrets.token_hex(8)
        stored = doctor.step("put", lambda: tmp.put("doctor", token, time_span=60), lambda _: "ok")
        if stored is MISSING:
            return
        got = doctor.step("get", lambda: tmp.get("doctor", MISSING), lambda _: "read back")
        if got is not MISSING and got != token:
            doctor.expect("get", False, "read back a different value than was written")
        meta = doctor.step(
            "metadata",
            lambda: tmp.metadata("doctor"),
            lambda m: (
                f"timeToLive {m.time_to_live.total_seconds():.0f} s"
                if m.time_to_live
                else "no timeToLive"
            ),
        )
        if meta is not MISSING:
            ttl = meta.time_to_live
            doctor.expect(
                "ttl honoured",
                ttl is not None and 0 < ttl.total_seconds() <= 60,
                "entries expire as configured"
                if ttl is not None
                else "a 60 s entry reported no expiry",
            )
        doctor.step("count", lambda: tmp.count(), lambda n: f"{n} entry in the scratch namespace")
        doctor.step("delete", lambda: tmp.delete("doctor"), lambda gone: f"deleted: {gone}")


def diagnose(state: State, name: str) -> Diagnosis:
    """All checks of the cache called ``name``."""
    diagnosis = Diagnosis(name)
    try:
        cache = state.caches().get(name)
    except CacheError as exc:
        diagnosis.checks.append(Check("config", "fail", str(exc), advice_for(exc, dynamodb=False)))
        return diagnosis
    dynamodb = is_dynamodb(cache)
    diagnosis.provider = f"{type(cache).__module__}:{type(cache).__qualname__}"
    doctor = _Doctor(diagnosis, dynamodb)
    diagnosis.checks.append(Check("config", "ok", "valid"))
    if dynamodb:
        key = doctor.step(
            "connect",
            lambda: partition_key(cache),
            lambda k: (
                f"table '{getattr(cache, 'table_name', '?')}', discovered partition key '{k}'"
            ),
        )
        if key is MISSING:
            return diagnosis
        ttl = _ttl_status(cache)
        ok = ttl.startswith(("ENABLED", "ENABLING"))
        diagnosis.checks.append(
            Check(
                "ttl",
                "ok" if ok else "warn",
                f"native TTL {ttl}",
                None
                if ok
                else "expired entries are never returned, but DynamoDB will not delete them: "
                "enable TTL on attribute 'timeToLive' (needs dynamodb:UpdateTimeToLive).",
            )
        )
        if "AccessDenied" in ttl:
            diagnosis.missing_permissions.append("dynamodb:DescribeTimeToLive")
    elif doctor.step("connect", lambda: cache.exists(PROBE_KEY), lambda _: "answers") is MISSING:
        return diagnosis
    _round_trip(doctor, cache)
    return diagnosis


def _render(diagnoses: list[Diagnosis]) -> Callable[[Console], None]:
    colours = {"ok": "green", "info": "blue", "warn": "yellow", "fail": "red"}

    def render(console: Console) -> None:
        for diagnosis in diagnoses:
            mark = "[green]✓[/]" if diagnosis.ok else "[red]✗[/]"
            table = Table(
                title=f"{mark} cache '{diagnosis.cache}' ({diagnosis.provider})",
                title_justify="left",
            )
            table.add_column("check", style="bold")
            table.add_column("status")
            table.add_column("detail", overflow="fold")
            for check in diagnosis.checks:
                colour = colours.get(check.status, "white")
                detail = escape(check.detail)
                if check.advice:
                    detail += f"\n[yellow]→ {escape(check.advice)}[/]"
                table.add_row(check.name, f"[{colour}]{check.status}[/]", detail)
            console.print(table, markup=True)
            if diagnosis.missing_permissions:
                console.print(
                    "missing permissions: " + ", ".join(sorted(set(diagnosis.missing_permissions)))
                )

    return render


@click.command("doctor")
@click.argument("name", required=False)
@data_command(cache_option=False)
def doctor_command(state: State, name: str | None) -> None:
    """Check the configuration and every cache (or NAME): connection, key, TTL, round trip.

    Failures come with the spec's troubleshooting advice. Exit code 1 on any problem.
    """
    registry = state.caches()
    names = [registry.entry(name).name] if name else registry.names()
    diagnoses = [diagnose(state, cache_name) for cache_name in names]
    state.out.emit(
        [
            {
                "cache": d.cache,
                "provider": d.provider,
                "ok": d.ok,
                "missingPermissions": sorted(set(d.missing_permissions)),
                "checks": [c.__dict__ for c in d.checks],
            }
            for d in diagnoses
        ],
        _render(diagnoses),
    )
    if not all(d.ok for d in diagnoses):
        raise click.exceptions.Exit(1)


COMMANDS = (doctor_command,)
