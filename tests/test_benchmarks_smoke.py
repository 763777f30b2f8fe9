"""Smoke tests of the benchmark suite: quick mode runs and reports the expected rows.

No timing assertions: only the report's structure and exact request counts.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from benchmarks import Config, Section, run_suite  # importable via pytest's pythonpath
from benchmarks import __main__ as cli
from benchmarks import codec as codec_section
from benchmarks import memory as memory_section
from benchmarks.harness import Case, measure
from cachehub.testing import unavailable

QUICK = Config.quick_mode()
MEMORY_OPS = ["get hit", "get miss", "put", f"get_many({QUICK.batch})"]


def _quiet(_message: str) -> None:
    """Progress sink: keep pytest output clean."""


def _need(module: str) -> None:
    """Skip when a provider is absent, except on CI where the suite must run it."""
    if importlib.util.find_spec(module) is None:
        unavailable(f"{module} is not installed")


def _by_key(sections: list[Section]) -> dict[str, Section]:
    return {s.key: s for s in sections}


def test_quick_memory_and_codec_report(tmp_path: Path) -> None:
    result = run_suite(["memory", "codec"], QUICK, tmp_path, progress=_quiet)
    sections = _by_key(result.sections)
    assert list(sections) == ["memory", "codec"]

    memory = sections["memory"]
    assert memory.skipped is None
    two_x = [r for r in memory.rows if r.target and r.target.label == "<= 2.0x raw cachetools"]
    assert [r.op for r in two_x] == MEMORY_OPS
    assert all(r.impl == memory_section.CACHEHUB_FAST for r in two_x)
    for impl in (
        memory_section.BASELINE,
        memory_section.CACHEHUB_FAST,
        memory_section.CACHEHUB_DEFAULT,
    ):
        assert [m.op for m in memory.measurements if m.impl == impl] == MEMORY_OPS

    codec = sections["codec"]  # per-shape verdicts: see tests/test_benchmarks_codec.py
    assert codec.extra_tables[0][0].startswith("Issue #17 targets")
    assert [row[0] for row in codec.extra_tables[0][2]] == [s.label for s in codec_section.SHAPES]

    text = result.markdown.read_text(encoding="utf-8")
    assert result.markdown == tmp_path / "benchmarks.md"
    assert text.startswith("# Benchmarks")
    for needle in (
        "## Machine",
        "| python |",
        "## Memory provider",
        "## Codec",
        f"| get_many({QUICK.batch}) | cachehub memory serialize=false |",
        "| encode+decode: short str | cachehub codec 'safe' |",
        "<= 1.2x pickle",
    ):
        assert needle in text


def test_missing_peers_are_reported_not_fatal(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(memory_section, "optional", lambda _name: None)
    monkeypatch.setattr(memory_section, "configure_django", lambda: False)
    section = memory_section.run(QUICK)
    skipped = {m.impl: m.skipped for m in section.measurements if m.skipped}
    assert skipped == {
        "cachelib SimpleCache": "skipped: cachelib not installed",
        "dogpile.cache memory": "skipped: dogpile.cache not installed",
        "Django LocMemCache": "skipped: django not installed",
    }
    # Without peers the peer rows vanish but the cachetools targets remain.
    assert {r.baseline for r in section.rows} == {memory_section.BASELINE}


def test_measure_counts_requests_per_op() -> None:
    sent = [0]

    def three_requests_per_op() -> None:
        for _ in range(4):
            sent[0] += 3

    result = measure(Case("op", "impl", three_requests_per_op, 4, counter=lambda: sent[0]), 3)
    assert result.requests_per_op == 3.0
    assert len(result.rounds_ns) == 3


def test_quick_cli_never_writes_docs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    monkeypatch.setattr(cli, "DOCS", docs)
    monkeypatch.setattr(
        cli, "run_suite", lambda only, cfg, out: run_suite(only, cfg, out, progress=_quiet)
    )
    assert cli.main(["--quick", "--only", "codec"]) == 0
    assert not docs.exists()
    out = tmp_path / "out"
    assert cli.main(["--quick", "--only", "codec", "--out", str(out)]) == 0
    assert (out / "benchmarks.md").is_file()


def test_cli_rejects_unknown_section() -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["--quick", "--only", "memory,nope"])
    assert exc.value.code == 2


def test_report_keeps_hand_written_intro(tmp_path: Path) -> None:
    from benchmarks.report import MARKER, write_markdown

    page = tmp_path / "benchmarks.md"
    page.write_text(f"# Mine\n\nKeep me.\n\n{MARKER}\nold numbers\n", encoding="utf-8")
    write_markdown(page, f"{MARKER}\nnew numbers\n")
    assert page.read_text(encoding="utf-8") == f"# Mine\n\nKeep me.\n\n{MARKER}\nnew numbers\n"


@pytest.mark.redis
def test_quick_redis_counts_commands(tmp_path: Path) -> None:
    _need("cachehub_redis")
    from benchmarks import redis as redis_section

    section = redis_section.run(QUICK)
    assert section.skipped is None
    raw = {
        m.op: m
        for m in section.measurements
        if m.impl == redis_section.BASELINE and m.skipped is None
    }
    mine = {
        m.op: m
        for m in section.measurements
        if m.impl == redis_section.CACHEHUB and m.skipped is None
    }
    assert set(MEMORY_OPS) <= set(mine)
    # Raw redis-py sends exactly one command per get/put and one MGET per batch.
    assert [raw[op].requests_per_op for op in MEMORY_OPS] == [1.0, 1.0, 1.0, 1.0]
    assert all((mine[op].requests_per_op or 0) >= 1 for op in MEMORY_OPS)
    assert any(op.startswith("clear(filter)") for op in mine)


@pytest.mark.dynamodb
def test_quick_dynamodb_counts_requests(tmp_path: Path) -> None:
    _need("cachehub_dynamodb")
    from benchmarks import dynamodb as dynamodb_section

    section = dynamodb_section.run(QUICK)
    assert section.skipped is None
    mine = {
        m.op: m.requests_per_op
        for m in section.measurements
        if m.impl == dynamodb_section.CACHEHUB and m.skipped is None
    }
    raw = {
        m.op: m.requests_per_op
        for m in section.measurements
        if m.impl == dynamodb_section.BASELINE and m.skipped is None
    }
    # One request per key operation; BatchGetItem takes 100 keys, BatchWriteItem 25 items.
    n = QUICK.batch
    expected = {
        "get hit": 1,
        "get miss": 1,
        "put": 1,
        f"get_many({n})": -(-n // 100),
        f"put_many({n})": -(-n // 25),
    }
    assert {op: raw[op] for op in expected} == expected
    assert {op: mine[op] for op in expected} == expected
    captions = [caption for caption, _, _ in section.extra_tables]
    assert any(c.startswith("Framework hot spots") for c in captions)
