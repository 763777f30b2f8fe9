"""``cachehub doctor``: check each configured cache and explain every failure.

The generic checks (configuration, connection, a round trip in a scratch namespace) run
on every provider. Providers add their own through the plugin hooks: checks with
``cachehub_doctor_checks`` (DynamoDB: partition-key discovery, native TTL) and the advice
for a failure with ``cachehub_doctor_advice`` (the spec's Troubleshooting section, chosen
by error type and backend error code), so the report says what to change.
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
from ..hookspecs import DoctorAdvice, DoctorCheck
from ..plugins import plugin_manager
from .admin import PROBE_KEY
from .app import State, data_command
from .isolate import scratch

__all__ = ["COMMANDS", "Check", "advice_for", "diagnose"]

Check = DoctorCheck
"""One line of the report (``cachehub.hookspecs.DoctorCheck``)."""


@dataclass
class Diagnosis:
    """Everything doctor found out about one cache."""

    cache: str
    provider: str = "?"
    checks: list[DoctorCheck] = field(default_factory=list)
    missing_permissions: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No check failed."""
        return all(check.status != "fail" for check in self.checks)

    def add(self, check: DoctorCheck) -> None:
        """Record ``check`` and the permission it found missing, if any."""
        self.checks.append(check)
        if check.missing_permission:
            self.missing_permissions.append(check.missing_permission)


def advice_for(exc: CacheError) -> str:
    """Generic advice for ``exc``, by its type (providers refine it through the hook)."""
    if isinstance(exc, CacheThrottledError):
        return "Throttling: the backend keeps refusing requests; raise its capacity or slow down."
    if isinstance(exc, CachePermissionError):
        return "Access denied: check the credentials and permissions in the cache settings."
    if isinstance(exc, CacheUnavailableError):
        return "Connection error: check url/host/port and that the server is running."
    if isinstance(exc, ConfigError):
        return exc.hint or "fix the cache's configuration entry."
    return exc.hint or "see the error message above."


def provider_advice(cache: BaseCache, step: str, exc: CacheError) -> DoctorAdvice:
    """The provider's advice for ``exc`` (``cachehub_doctor_advice``), else the generic one."""
    advice = plugin_manager().hook.cachehub_doctor_advice(cache=cache, step=step, error=exc)
    if isinstance(advice, DoctorAdvice):
        return advice
    return DoctorAdvice(advice_for(exc))


class _Doctor:
    """Runs the checks of one cache, recording instead of raising."""

    def __init__(self, diagnosis: Diagnosis, cache: BaseCache) -> None:
        self.diagnosis = diagnosis
        self.cache = cache

    def step(self, name: str, fn: Callable[[], Any], show: Callable[[Any], str] = str) -> Any:
        """Run ``fn``; record ok with ``show(result)`` or fail with advice; MISSING on failure."""
        try:
            result = fn()
        except CacheError as exc:
            self.fail(name, exc)
            return MISSING
        self.diagnosis.add(DoctorCheck(name, "ok", show(result)))
        return result

    def fail(self, name: str, exc: CacheError) -> None:
        """Record a failed step with the provider's advice and the permission it lacked."""
        self.diagnosis.add(DoctorCheck.failed(name, exc, provider_advice(self.cache, name, exc)))

    def expect(self, name: str, ok: bool, detail: str) -> None:
        """Record a check that ran but returned the wrong thing."""
        self.diagnosis.add(DoctorCheck(name, "ok" if ok else "fail", detail))


def _round_trip(doctor: _Doctor, cache: BaseCache) -> None:
    if cache.read_only:
        doctor.diagnosis.add(DoctorCheck("round trip", "info", "skipped: the cache is read-only"))
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


def _provider_checks(doctor: _Doctor, cache: BaseCache) -> bool | None:
    """Run the providers' ``cachehub_doctor_checks``; None when no provider has any.

    Returns whether every one passed (a failed one stops the round trip).
    """
    try:
        answers = plugin_manager().hook.cachehub_doctor_checks(cache=cache)
    except Exception as exc:  # a plugin bug must not hide the rest of the report
        doctor.diagnosis.add(
            DoctorCheck("provider checks", "fail", f"a doctor plugin raised {type(exc).__name__}")
        )
        return False
    checks = [c for answer in answers if answer for c in answer if isinstance(c, DoctorCheck)]
    if not checks:
        return None
    for check in checks:
        doctor.diagnosis.add(check)
    return all(check.status != "fail" for check in checks)


def diagnose(state: State, name: str) -> Diagnosis:
    """All checks of the cache called ``name``."""
    diagnosis = Diagnosis(name)
    try:
        cache = state.caches().get(name)
    except CacheError as exc:
        diagnosis.add(DoctorCheck("config", "fail", str(exc), advice_for(exc)))
        return diagnosis
    diagnosis.provider = f"{type(cache).__module__}:{type(cache).__qualname__}"
    doctor = _Doctor(diagnosis, cache)
    diagnosis.add(DoctorCheck("config", "ok", "valid"))
    passed = _provider_checks(doctor, cache)
    if passed is False:
        return diagnosis
    if passed is None:
        connected = doctor.step("connect", lambda: cache.exists(PROBE_KEY), lambda _: "answers")
        if connected is MISSING:
            return diagnosis
    _round_trip(doctor, cache)
    return diagnosis


def _render(diagnoses: list[Diagnosis]) -> Callable[[Console], None]:
    colours = {"ok": "green", "info": "blue", "warn": "yellow", "fail": "red"}

    def render(console: Console) -> None:
        for diagnosis in diagnoses:
            mark = "[green]✓[/]" if diagnosis.ok else "[red]✗[/]"
            table = Table(
                title=f"{mark} cache '{escape(diagnosis.cache)}' ({escape(diagnosis.provider)})",
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
                table.add_row(escape(check.name), f"[{colour}]{escape(check.status)}[/]", detail)
            console.print(table, markup=True)
            if diagnosis.missing_permissions:
                console.print(
                    "missing permissions: " + ", ".join(sorted(set(diagnosis.missing_permissions)))
                )

    return render


def _check_json(check: DoctorCheck) -> dict[str, Any]:
    return {
        "name": check.name,
        "status": check.status,
        "detail": check.detail,
        "advice": check.advice,
    }


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
                "checks": [_check_json(c) for c in d.checks],
            }
            for d in diagnoses
        ],
        _render(diagnoses),
    )
    if not all(d.ok for d in diagnoses):
        raise click.exceptions.Exit(1)


COMMANDS = (doctor_command,)
