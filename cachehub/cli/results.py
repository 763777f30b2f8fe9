"""Tour results: steps aligned across providers, and whether they agree."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..api import MISSING
from .output import fingerprint
from .scenarios import Recorder

__all__ = ["Failure", "Row", "ScenarioResult", "compare", "same"]


class Failure:
    """A step that raised: shown in red, never equal to anything."""

    def __init__(self, exc: BaseException) -> None:
        self.text = f"{type(exc).__name__}: {exc}"

    def __repr__(self) -> str:
        return f"error: {self.text}"


@dataclass
class Row:
    """One step across providers."""

    label: str
    values: dict[str, Any]
    expected: Any
    agree: bool


@dataclass
class ScenarioResult:
    """The rows of one scenario (or of the DynamoDB command demo)."""

    title: str
    section: str
    rows: list[Row] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every row agrees."""
        return all(row.agree for row in self.rows)


def same(a: Any, b: Any) -> bool:
    """Equal values of the same types, nested types included (``1`` is not ``1.0``)."""
    if isinstance(a, Failure) or isinstance(b, Failure):
        return False
    return fingerprint(a) == fingerprint(b)


def compare(recorders: Mapping[str, Recorder]) -> list[Row]:
    """Align the providers' steps by label.

    A row agrees when every provider recorded it, all values are the same (see
    :func:`same`) and, when the step has an expected value, equal to it.
    """
    labels: list[str] = []
    expected: dict[str, Any] = {}
    by_provider: dict[str, dict[str, Any]] = {}
    for name, rec in recorders.items():
        by_provider[name] = {}
        for step in rec.steps:
            if step.label not in labels:
                labels.append(step.label)
            if step.expected is not MISSING:
                expected.setdefault(step.label, step.expected)
            by_provider[name][step.label] = step.value
    rows = []
    for label in labels:
        values = {name: steps.get(label, MISSING) for name, steps in by_provider.items()}
        present = [v for v in values.values() if v is not MISSING]
        agree = len(present) == len(values) and all(same(present[0], v) for v in present)
        want = expected.get(label, MISSING)
        if agree and want is not MISSING:
            agree = same(present[0], want)
        rows.append(Row(label, values, want, agree))
    return rows
