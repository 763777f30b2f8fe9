"""Run one hostile case in a child process, bounded in memory and time, and report what it did.

A planted entry that crashes the interpreter (SIGSEGV), allocates gigabytes or spins for
minutes must fail *its* test, not take the whole pytest run down with it. :func:`run_bounded`
runs a module-level function in a child forked from a clean fork server, its address
space capped (``RLIMIT_AS``: the child's size after start-up plus ``memory_mb``), under a wall-clock
deadline, with stdout, stderr and every log record (botocore and urllib3 DEBUG included)
captured, and returns an :class:`Outcome` the test asserts on.

The target must be importable by name (a module-level function), and its arguments and
result picklable; it runs with nothing of the parent but those arguments.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import os
import pickle
import resource
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

DEFAULT_MEMORY_MB: Final = 384
"""Address space a case may add to a started child; far below a gigabyte bomb."""
DEFAULT_SECONDS: Final = 30.0
"""Wall-clock bound of a case, start-up included (a spawn child imports in ~1 s)."""

Kind = Literal["value", "error", "crash", "timeout"]


@dataclass(frozen=True)
class Outcome:
    """What a bounded run did."""

    kind: Kind
    """``value`` (returned), ``error`` (raised), ``crash`` (killed by a signal or exited
    without reporting) or ``timeout`` (still running at the deadline, then killed)."""
    value: Any = None
    """The returned value (``kind == "value"``)."""
    error_type: str = ""
    """Qualified name of the raised exception's class (``kind == "error"``)."""
    is_cache_error: bool = False
    """Whether the raised exception is a :class:`cachehub.errors.CacheError`."""
    message: str = ""
    """``str()`` of the exception, or what killed the child."""
    texts: tuple[str, ...] = field(default=(), repr=False)
    """Everything a person could see: message, repr, traceback with causes, stdout,
    stderr and every log record - checked for secrets and session ids."""
    seconds: float = 0.0
    """Time the target ran (not counting the child's start-up)."""
    peak_rss_mb: float = 0.0
    """The child's peak resident memory."""

    def describe(self) -> str:
        """One line for assertion messages."""
        if self.kind == "error":
            return f"raised {self.error_type}: {self.message[:300]}"
        if self.kind == "value":
            return f"returned {self.value!r:.300}"
        return f"{self.kind}: {self.message}"


_PRELOAD: Final = (
    "cachehub",
    "cachehub.errors",
    "cachehub_memory",
    "cachehub_redis",
    "cachehub_dynamodb",
    "boto3",
    "botocore.session",
    "redis",
    "msgpack",
    "ormsgpack",
)
"""Imported once by the fork server, so each case starts in milliseconds, not a second."""
_contexts: list[Any] = []


def _context() -> Any:
    """A ``forkserver`` context: children fork from a clean, single-threaded server process
    (never from pytest, whose threads make ``fork`` unsafe) that preloaded :data:`_PRELOAD`."""
    if not _contexts:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(_PRELOAD))
        _contexts.append(context)
    return _contexts[0]


def _vm_size_bytes() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception as exc:  # a record that cannot format is itself worth seeing
            self.lines.append(f"unformattable record from {record.name}: {exc!r}")


def _child_main(
    target: Callable[..., Any], args: tuple[Any, ...], memory_mb: int, report_path: str
) -> None:
    """Entry point of the child: run the job under the cap, pickle the report to a file."""
    collect = _Collect()
    root = logging.getLogger()
    root.addHandler(collect)
    root.setLevel(logging.DEBUG)
    for noisy in ("botocore", "boto3", "urllib3", "redis", "cachehub"):
        logging.getLogger(noisy).setLevel(logging.DEBUG)
    out = io.StringIO()
    sys.stdout = sys.stderr = out
    from cachehub.errors import CacheError  # before the cap: reporting needs it

    # Only the soft limit: the hard one stays, so the cap can be lifted for reporting.
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (_vm_size_bytes() + memory_mb * 1024 * 1024, hard))
    started = time.perf_counter()
    report: dict[str, Any]
    try:
        value = target(*args)
    except BaseException as exc:
        seconds = time.perf_counter() - started
        report = {
            "kind": "error",
            "error_type": f"{type(exc).__module__}.{type(exc).__qualname__}",
            "is_cache_error": isinstance(exc, CacheError),
            "message": str(exc),
            "texts": [str(exc), repr(exc), "".join(traceback.format_exception(exc))],
            "seconds": seconds,
        }
    else:
        seconds = time.perf_counter() - started
        report = {"kind": "value", "value": value, "texts": [repr(value)], "seconds": seconds}
    # Lift the cap again: reporting must not fail because the case used the budget.
    resource.setrlimit(resource.RLIMIT_AS, (hard, hard))
    report["texts"] = (*report["texts"], out.getvalue(), *collect.lines)
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        data = pickle.dumps(report)
    except Exception as exc:  # e.g. an unpicklable return value
        report.update(kind="error", error_type="unpicklable", message=repr(exc), value=None)
        data = pickle.dumps(report)
    with open(report_path, "wb") as file:
        file.write(data)


def run_bounded(
    target: Callable[..., Any],
    *args: Any,
    memory_mb: int = DEFAULT_MEMORY_MB,
    seconds: float = DEFAULT_SECONDS,
) -> Outcome:
    """Run ``target(*args)`` in a child process capped at ``memory_mb`` more memory and
    ``seconds`` of wall time; never raises for what the target does."""
    context = _context()
    with tempfile.TemporaryDirectory(prefix="cachehub-sandbox-") as folder:
        report_path = os.path.join(folder, "report.pickle")
        child = context.Process(
            target=_child_main, args=(target, args, memory_mb, report_path), daemon=True
        )
        child.start()
        child.join(seconds)
        if child.exitcode is None:
            child.kill()
            child.join(5)
            return Outcome("timeout", message=f"still running after {seconds:.0f} s")
        if not os.path.exists(report_path):
            code = child.exitcode
            why = (
                f"killed by {signal.Signals(-code).name}"
                if code < 0
                else f"exited with {code} without reporting"
            )
            return Outcome("crash", message=why)
        with open(report_path, "rb") as file:
            report = pickle.load(file)
    return Outcome(
        kind=report["kind"],
        value=report.get("value"),
        error_type=report.get("error_type", ""),
        is_cache_error=report.get("is_cache_error", False),
        message=report.get("message", ""),
        texts=tuple(report["texts"]),
        seconds=report["seconds"],
        peak_rss_mb=report["peak_rss_mb"],
    )


def assert_contained(
    outcome: Outcome,
    *,
    errors: tuple[str, ...] = (),
    forbidden: tuple[str, ...] = (),
) -> None:
    """The promise every hostile case checks: the child neither crashed nor timed out, an
    exception (if any) is a CacheError (of one of ``errors``, by class name, when given),
    and no ``forbidden`` text (secrets, session ids) appears in anything it showed."""
    assert outcome.kind in ("value", "error"), outcome.describe()
    if outcome.kind == "error":
        assert outcome.is_cache_error, outcome.describe()
        if errors:
            assert outcome.error_type.rsplit(".", 1)[-1] in errors, outcome.describe()
    for secret in forbidden:
        leaked = [text for text in outcome.texts if secret in text]
        assert not leaked, f"{secret!r} leaked: {leaked[0][:300]!r}"


__all__ = ["Outcome", "assert_contained", "run_bounded"]
