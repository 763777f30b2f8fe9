"""Output helpers: rich for people, JSON for machines, and value conversion for both.

Everything written goes through :func:`cachehub.scrub.scrub` (JSON strings one by one,
rich output as it is written), except the stored data that ``get``/``ls`` were asked to
print (``emit(..., raw=True)``): those show what the cache holds.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import sys
from collections.abc import Callable, Mapping
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.pretty import Pretty

from ..scrub import scrub

__all__ = [
    "Output",
    "fingerprint",
    "jsonable",
    "scrubbed",
    "short",
    "stderr_console",
    "stdout_console",
]


class _ScrubbingStream:
    """A text stream writing through :func:`scrub` to the *current* stdout/stderr.

    Resolved on every call, so click's CliRunner (which swaps ``sys.stdout``) and
    rich's terminal detection (``isatty``, ``encoding``...) see the real stream.
    """

    def __init__(self, stderr: bool) -> None:
        self._stderr = stderr

    @property
    def _target(self) -> Any:
        return sys.stderr if self._stderr else sys.stdout

    def write(self, text: str) -> int:
        self._target.write(scrub(text))
        return len(text)

    @property
    def rich_proxied_file(self) -> _ScrubbingStream:
        # rich unwraps its own stdout proxies through this name; stay in the chain.
        return self

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


def stdout_console(*, raw: bool = False) -> Console:
    """A console on stdout; no colour codes when stdout is not a terminal; scrubbed."""
    if raw:
        return Console(highlight=False, soft_wrap=False)
    return Console(file=_ScrubbingStream(stderr=False), highlight=False, soft_wrap=False)  # type: ignore[arg-type]


def stderr_console() -> Console:
    """A console on stderr, for progress bars and notes that must not pollute ``--json``."""
    return Console(file=_ScrubbingStream(stderr=True), highlight=False)  # type: ignore[arg-type]


def scrubbed(value: Any) -> Any:
    """JSON-compatible ``value`` with every string (keys too) passed through :func:`scrub`."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub(k): scrubbed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrubbed(v) for v in value]
    return value


def jsonable(value: Any) -> Any:
    """``value`` converted to JSON-compatible data (dates as ISO text, Decimal as text...)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return (
            value if value == value and value not in (float("inf"), float("-inf")) else str(value)
        )
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
        return [jsonable(v) for v in items]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    for method in ("to_dict", "as_dict"):
        convert = getattr(value, method, None)
        if callable(convert):
            return jsonable(convert())
    return repr(value)


def _canonical(value: Any) -> Any:
    """A type-tagged, order-independent form of ``value`` for :func:`fingerprint`."""
    if isinstance(value, Mapping):
        items = sorted(((_canonical(k), _canonical(v)) for k, v in value.items()), key=repr)
        return ["map", items]
    if isinstance(value, (list, tuple)):
        return ["seq", [_canonical(v) for v in value]]
    if isinstance(value, (set, frozenset)):
        return ["set", sorted((_canonical(v) for v in value), key=repr)]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return ["bytes", base64.b64encode(bytes(value)).decode("ascii")]
    if isinstance(value, datetime):
        return ["datetime", value.isoformat()]
    if isinstance(value, (str, int, float, bool, Decimal, date, time, timedelta)) or value is None:
        return [type(value).__name__, repr(value)]
    return [type(value).__name__, _canonical(jsonable(value))]


def fingerprint(value: Any) -> str:
    """A SHA-256 checksum of ``value`` that is equal for equal values of the same types."""
    text = json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def short(value: Any, limit: int = 60) -> str:
    """A one-line ``repr`` cut to ``limit`` characters, for table cells."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Output:
    """Writes one command's result either as rich renderables or as a JSON document."""

    def __init__(self, *, as_json: bool) -> None:
        self.as_json = as_json
        self.console = stdout_console()
        self.err = stderr_console()

    def emit(
        self, data: Any, render: Callable[[Console], None] | None = None, *, raw: bool = False
    ) -> None:
        """Print ``data`` as JSON with ``--json``, else call ``render`` (or pretty-print).

        The output is scrubbed of secrets unless ``raw`` (stored keys and values that the
        command was asked to show, unchanged).
        """
        console = stdout_console(raw=True) if raw else self.console
        if self.as_json:
            doc = jsonable(data)
            click_echo(json.dumps(doc if raw else scrubbed(doc), indent=2, sort_keys=False))
        elif render is not None:
            render(console)
        else:
            console.print(Pretty(data))

    def note(self, message: str) -> None:
        """A human-only remark on stderr (kept out of JSON output)."""
        self.err.print(message)


def click_echo(text: str) -> None:
    """Plain stdout write (no rich markup interpretation), used for JSON documents."""
    import click

    click.echo(text)
