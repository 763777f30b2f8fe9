"""The codec benchmark's verdicts (issue #17, item 6): median and IQR of the per-round
ratios, and a verdict only where the whole range is on one side of the target.

No timing: measurements are built by hand, so each verdict is known in advance.
"""

from __future__ import annotations

import pytest
from test_codec import assert_exact

from benchmarks import Config
from benchmarks import codec as codec_section
from cachehub.codec import make_codec


def test_spread_is_taken_over_the_per_round_ratios() -> None:
    base = [100.0, 200.0, 400.0, 100.0, 100.0]
    # per-round ratios 1.0, 1.1, 0.9, 1.3, 1.2: the medians alone (120 / 100) would say 1.2
    mine = [100.0, 220.0, 360.0, 130.0, 120.0]
    s = codec_section.spread(mine, base)
    assert s.median == pytest.approx(1.1)
    assert (s.q1, s.q3) == (pytest.approx(1.0), pytest.approx(1.2))


def test_one_round_gives_a_degenerate_range() -> None:
    s = codec_section.spread([150.0], [100.0])
    assert (s.median, s.q1, s.q3) == (1.5, 1.5, 1.5)


def test_the_shapes_are_the_issues_seven_and_round_trip_exactly() -> None:
    labels = [shape.label for shape in codec_section.SHAPES]
    assert labels == [
        "short str",
        "small dict",
        "100 KB nested",
        "1 MB bytes",
        "1 MB random bytes, compression on",
        "10k ints",
        "datetime records",
    ]
    safe = make_codec("safe", compress_threshold=4096)
    for shape in codec_section.SHAPES:
        value = shape.make()
        assert shape.make() == value  # deterministic: every run measures the same value
        assert_exact(safe.loads(safe.dumps(value)), value)
    ints = codec_section.SHAPES[5].make()
    assert len(set(ints)) > 9_000  # random ints, not one repeated
    assert len(safe.dumps(codec_section.SHAPES[4].make())) > 1 << 20  # stored plain


def test_quick_mode_runs_every_shape_and_gives_each_a_verdict() -> None:
    section = codec_section.run(Config.quick_mode())
    caption, header, rows = section.extra_tables[0]
    assert caption.startswith("Issue #17 targets")
    assert header[4:] == [
        "median ratio",
        "IQR",
        "wall-clock ratio (IQR)",
        "target",
        "verdict",
        "rounds",
    ]
    assert [row[0] for row in rows] == [shape.label for shape in codec_section.SHAPES]
    verdicts = {"met", "**not met**", "inconclusive"}
    assert all(row[7] == "<= 1.2x pickle" and row[8] in verdicts for row in rows)
    quick = Config.quick_mode()
    # the first batch of rounds, then at most up to the cap while a range straddles 1.2x
    assert all(quick.rounds <= int(row[9]) <= quick.settle_rounds for row in rows)
    compressed = [row for row in rows if row[1] == codec_section.CACHEHUB_COMPRESSED]
    assert [row[0] for row in compressed] == ["1 MB random bytes, compression on"]
    assert not [note for note in section.notes if "does not round-trip" in note]
