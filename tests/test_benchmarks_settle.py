"""The benchmark harness's verdict rule and its extra rounds (issue #17, item 6).

No timing: every case runs on a scripted clock, so each round's figure, each verdict and
the number of rounds are known in advance.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest

from benchmarks.dynamodb import BATCH_TARGET, SINGLE_TARGET, _cpu_row
from benchmarks.harness import (
    Case,
    Measurement,
    Row,
    Settle,
    Target,
    measure_interleaved,
    verdict_of,
)

TARGET = 1.1


def _scripted(impl: str, per_round: Iterable[float]) -> tuple[Case, list[int]]:
    """A case whose round r takes ``per_round[r]`` ns on its own clock; and its call count."""
    values = iter(per_round)
    clock = [0.0]
    calls = [0]

    def run() -> None:
        calls[0] += 1
        clock[0] += next(values)  # StopIteration: more rounds than scripted

    return Case("op", impl, run, 1, timer=lambda: int(clock[0])), calls


def _measure(mine: list[float], cap: int, rounds: int = 5) -> tuple[int, str]:
    """Rounds run and the verdict, for ``mine`` against a steady baseline of 100 ns."""
    base, _ = _scripted("base", [100.0] * cap)
    case, calls = _scripted("mine", mine)
    settle = Settle((("mine", "base", TARGET),), cap)
    measured = measure_interleaved([base, case], rounds, warmup=False, settle=settle)
    assert len(measured[0].rounds_ns) == len(measured[1].rounds_ns) == calls[0]
    row = Row.compare("op", "mine", measured[1], "base", measured[0], Target("t", TARGET))
    return calls[0], str(row.verdict)


@pytest.mark.parametrize(
    ("ratios", "verdict"),
    [
        ([1.0, 1.05, 1.1, 1.1], "met"),  # the third quartile exactly on the target
        ([1.1, 1.1, 1.1], "met"),
        ([1.0, 1.1, 1.2, 1.3], "inconclusive"),  # the range straddles the target
        ([1.1, 1.1, 1.3, 1.4], "inconclusive"),  # the first quartile on it: not all above
        ([1.11, 1.2, 1.3, 1.4], "not met"),
        ([0.5, 0.5, 0.5, 0.5, 9.0], "met"),  # one wild round moves no quartile past the target
        ([], "inconclusive"),
    ],
)
def test_verdict_of_needs_the_whole_range_on_one_side(ratios: list[float], verdict: str) -> None:
    assert verdict_of(ratios, TARGET) == verdict


def test_a_decided_operation_runs_its_rounds_only() -> None:
    assert _measure([90.0] * 5, cap=20) == (5, "met")
    assert _measure([150.0] * 5, cap=20) == (5, "not met")


def test_an_undecided_operation_runs_to_the_cap_and_is_decided_on_all_rounds() -> None:
    # Ratios 0.8 .. 1.2 straddle 1.1 (IQR 0.9-1.15): it runs on to the cap, not to the
    # first look that clears the target (after 10 rounds here), and the verdict rests on
    # all 20 rounds.
    assert _measure([80.0, 90.0, 100.0, 115.0, 120.0] + [90.0] * 15, cap=20) == (20, "met")
    late = [80.0, 90.0, 100.0, 115.0, 120.0] + [90.0] * 5 + [130.0] * 10
    assert _measure(late, cap=20) == (20, "inconclusive")


def test_an_operation_that_never_settles_stops_at_the_cap_inconclusive() -> None:
    straddling = [80.0, 90.0, 100.0, 115.0, 120.0] * 4
    assert _measure(straddling, cap=20) == (20, "inconclusive")
    # a cap that is not a multiple of the first batch
    assert _measure(straddling, cap=12) == (12, "inconclusive")


def test_without_settle_or_a_measurable_target_nothing_is_added() -> None:
    straddling = [80.0, 90.0, 100.0, 115.0, 120.0]
    base, _ = _scripted("base", [100.0] * 5)
    mine, calls = _scripted("mine", straddling)
    measure_interleaved([base, mine], 5, warmup=False)
    assert calls[0] == 5
    # a target naming an implementation that was not measured (a missing peer) is skipped
    base, _ = _scripted("base", [100.0] * 5)
    mine, calls = _scripted("mine", straddling)
    absent = Settle((("mine", "absent peer", TARGET),), 20)
    measure_interleaved([base, mine], 5, warmup=False, settle=absent)
    assert calls[0] == 5


def test_a_zero_baseline_round_cannot_be_settled() -> None:
    # Row.compare pairs no rounds when a baseline round is 0: nothing to settle either.
    settle = Settle((("mine", "base", TARGET),), 20)
    cases = [_scripted("base", [])[0], _scripted("mine", [])[0]]
    assert not settle.undecided(cases, [[0.0, 100.0], [80.0, 130.0]])
    assert settle.undecided(cases, [[100.0, 100.0], [80.0, 130.0]])


def test_the_client_cpu_row_is_judged_on_its_per_round_cpu_ratios() -> None:
    """#17 item 5 (DynamoDB get_many client CPU) pairs round r of both, like time rows."""
    base = Measurement("get_many", "raw", 1.0, [1.0] * 4, cpu_us_per_op=100.0)
    base.rounds_cpu_ns = [100_000.0, 200_000.0, 100_000.0, 200_000.0]
    near = Measurement("get_many", "mine", 1.0, [1.0] * 4, cpu_us_per_op=105.0)
    near.rounds_cpu_ns = [105_000.0, 210_000.0, 104_000.0, 208_000.0]  # 1.04-1.05x each round
    far = Measurement("get_many", "mine", 1.0, [1.0] * 4, cpu_us_per_op=150.0)
    far.rounds_cpu_ns = [100_000.0, 300_000.0, 160_000.0, 250_000.0]  # 1.0, 1.5, 1.6, 1.25
    assert _cpu_row("get_many", near, base, BATCH_TARGET).verdict == "met"
    assert _cpu_row("get_many", far, base, BATCH_TARGET).verdict == "not met"
    assert _cpu_row("get_many", far, base, BATCH_TARGET).ratios == [1.0, 1.5, 1.6, 1.25]
    # single operations are judged the same way, against 1.05x: 1.04-1.05x is met,
    # a round at 1.06x in the upper quartile is not decided
    assert _cpu_row("get", near, base, SINGLE_TARGET).verdict == "met"
    edge = Measurement("get", "mine", 1.0, [1.0] * 4, cpu_us_per_op=105.0)
    edge.rounds_cpu_ns = [100_000.0, 212_000.0, 104_000.0, 212_000.0]  # 1.0, 1.06, 1.04, 1.06
    assert _cpu_row("get", edge, base, SINGLE_TARGET).verdict == "inconclusive"
    assert _cpu_row("get", edge, base, BATCH_TARGET).verdict == "met"
