"""Smoke tests of the benchmark suite: quick mode runs and reports the expected rows.

No timing assertions: only the report's structure and exact request counts.
"""

from __future__ import annotations

import importlib.util
import statistics
from pathlib import Path
from typing import Any

import pytest

from benchmarks import SECTIONS, Config, Section, run_suite  # via pytest's pythonpath
from benchmarks import __main__ as cli
from benchmarks import codec as codec_section
from benchmarks import memory as memory_section
from benchmarks.harness import Case, Measurement, Row, Target, measure, quartiles
from benchmarks.report import render_section
from cachehub.testing import unavailable

QUICK = Config.quick_mode()
MEMORY_OPS = ["get hit", "get miss", "put", f"get_many({QUICK.batch})"]
SINGLE_OPS = ["get hit", "get miss", "put", "put ttl", f"get_many({QUICK.batch})"]
MEMORY_SINGLE = [f"{op} {shape}" for shape in memory_section.SHAPES for op in SINGLE_OPS]
THROUGHPUT = [
    f"{memory_section.THREADS} threads, 9:1 get:put",
    f"{memory_section.PROCESSES} processes, 9:1 get:put",
]


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
    # serialize=false is held to the locked LRUCache on the four single ops (200 B) and
    # on both throughput workloads; the default to both copying peers everywhere.
    fast = [
        r.op
        for r in memory.rows
        if r.impl == memory_section.CACHEHUB_FAST and r.target is memory_section.FAST_TARGET
    ]
    assert fast == [f"{op} 200 B" for op in ("get hit", "get miss", "put", "put ttl")] + THROUGHPUT
    for peer in memory_section.COPYING_PEERS:
        copying = [r.op for r in memory.rows if r.baseline == peer]
        assert copying == MEMORY_SINGLE + THROUGHPUT
    for impl in (
        memory_section.BASELINE,
        memory_section.CACHEHUB_FAST,
        memory_section.CACHEHUB_DEFAULT,
    ):
        assert [m.op for m in memory.measurements if m.impl == impl] == MEMORY_SINGLE + THROUGHPUT
    for row in memory.rows:
        assert QUICK.memory_rounds <= len(row.ratios) <= QUICK.settle_rounds
        if row.target is not None:
            assert row.verdict in ("met", "not met", "inconclusive")

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
        f"| get_many({QUICK.batch}) 10 KB | cachehub memory serialize=false |",
        "| ratio (median) | IQR | target | verdict |",
        "<!-- section: memory -->",
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
    # Without peers the peer rows vanish but the locked LRUCache targets remain.
    assert {r.baseline for r in section.rows} == {memory_section.BASELINE}
    assert any(r.target is memory_section.FAST_TARGET for r in section.rows)


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
    # Single operations are decided on client CPU (1.05x), their wall clock is reported
    # beside without a verdict; get_many's client CPU keeps its 1.10x.
    base = dynamodb_section.BASELINE
    rows = {(r.op, r.baseline): r for r in section.rows}
    for op in ("get hit", "get miss", "put"):
        assert rows[(op, base)].target is None
        assert rows[(f"{op}, client CPU", base)].target == dynamodb_section.SINGLE_TARGET
        assert rows[(f"{op}, client CPU", base)].ratios  # paired per round
    assert rows[(f"get_many({n}), client CPU", base)].target == dynamodb_section.BATCH_TARGET
    captions = [caption for caption, _, _ in section.extra_tables]
    assert any(c.startswith("Framework hot spots") for c in captions)


def _pair(mine: list[float], base: list[float], target: Target | None) -> Row:
    return Row.compare(
        "op",
        "mine",
        Measurement("op", "mine", statistics.median(mine), mine),
        "base",
        Measurement("op", "base", statistics.median(base), base),
        target,
    )


def test_quartiles_interpolate_between_observed_values() -> None:
    assert quartiles([2.0]) == (2.0, 2.0, 2.0)
    assert quartiles([1.0, 2.0, 3.0, 4.0, 5.0]) == (2.0, 3.0, 4.0)
    assert quartiles([1.0, 9.0]) == (3.0, 5.0, 7.0)
    with pytest.raises(ValueError, match="no values"):
        quartiles([])


@pytest.mark.parametrize(
    ("mine", "verdict"),
    [
        # per-round ratios 0.8 .. 1.2: the IQR 0.9-1.15 straddles the 1.1 target
        ([80.0, 90.0, 100.0, 115.0, 120.0], "inconclusive"),
        ([80.0, 85.0, 90.0, 95.0, 130.0], "met"),  # IQR 0.85-0.95, one outlier ignored
        ([100.0, 115.0, 120.0, 125.0, 130.0], "not met"),  # IQR 1.15-1.25
        ([110.0, 110.0, 110.0, 110.0, 110.0], "met"),  # exactly on the target
    ],
)
def test_verdict_needs_the_whole_iqr_on_one_side(mine: list[float], verdict: str) -> None:
    row = _pair(mine, [100.0] * 5, Target("<= 1.1x", 1.1))
    assert row.ratios == [m / 100.0 for m in mine]
    assert row.ratio == statistics.median(row.ratios)
    assert row.verdict == verdict
    assert row.met == {"met": True, "not met": False, "inconclusive": None}[verdict]


def test_rows_without_pairing_or_target_claim_nothing() -> None:
    target = Target("<= 1.0x", 1.0)
    # Rounds that do not line up (or a zero baseline round) cannot be paired.
    unpaired = _pair([50.0, 50.0], [100.0, 100.0, 100.0], target)
    assert unpaired.iqr is None
    assert unpaired.verdict == "inconclusive"
    assert unpaired.ratio == 0.5  # still reported, from the medians
    zero = _pair([50.0, 50.0], [0.0, 100.0], target)
    assert zero.ratios == []
    assert zero.verdict == "inconclusive"
    assert _pair([50.0], [100.0], None).verdict is None
    trips = Row("op", "mine", 1.0, "base", 1.0, Target("1 trip", float("inf"), max_round_trips=1))
    assert trips.verdict == "not met"  # no count measured
    trips.round_trips_per_op = 1.0
    assert trips.verdict == "met"  # a count is exact: no range needed
    # Both goals: the count must hold, then the ratio decides as any ratio target does.
    both = Target("<= 1.1x, 1 trip", 1.1, max_round_trips=1)
    fast = _pair([80.0, 85.0, 90.0, 95.0, 100.0], [100.0] * 5, both)
    fast.round_trips_per_op = 2.0
    assert fast.verdict == "not met"  # fast, but one round trip too many
    fast.round_trips_per_op = 1.0
    assert fast.verdict == "met"
    slow = _pair([120.0, 125.0, 130.0, 135.0, 140.0], [100.0] * 5, both)
    slow.round_trips_per_op = 1.0
    assert slow.verdict == "not met"  # one round trip, but 1.3x: the ratio is a goal too


def test_report_shows_median_iqr_and_verdict() -> None:
    section = Section("memory", "Memory provider", "base")
    section.rows.append(_pair([80.0, 85.0, 90.0, 95.0, 130.0], [100.0] * 5, Target("t", 1.1)))
    section.rows.append(_pair([80.0, 90.0, 100.0, 115.0, 120.0], [100.0] * 5, Target("t", 1.1)))
    text = "\n".join(render_section(section))
    assert "| 0.90x | 0.85-0.95x | t | met |" in text
    assert "| 1.00x | 0.90-1.15x | t | inconclusive |" in text


def test_case_timer_times_the_rounds() -> None:
    ticks = iter(range(0, 10_000, 7))
    result = measure(Case("op", "impl", lambda: None, 1, timer=lambda: next(ticks)), 4)
    assert result.rounds_ns == [7.0] * 4  # each round reads the timer twice


def test_a_subset_run_replaces_only_its_sections(tmp_path: Path) -> None:
    from benchmarks.report import MARKER, SECTION_CLOSE, SECTION_OPEN, write_markdown

    def block(key: str, text: str) -> str:
        return (
            f"{SECTION_OPEN.format(key=key)}\n## {key}\n\n{text}\n{SECTION_CLOSE.format(key=key)}\n"
        )

    page = tmp_path / "benchmarks.md"
    old = f"# Intro\n\n{MARKER}\n\n## Machine\n\nold\n\n" + "\n".join(
        block(k, f"old {k}") for k in ("memory", "codec", "redis")
    )
    page.write_text(old, encoding="utf-8")
    new = f"{MARKER}\n\n## Machine\n\nnew\n\n" + block("codec", "new codec")
    write_markdown(page, new, order=SECTIONS)
    text = page.read_text(encoding="utf-8")
    assert text.startswith("# Intro\n")
    for kept in ("old memory", "old redis", "new codec"):
        assert kept in text
    for gone in ("old codec", "\nold\n"):
        assert gone not in text
    assert text.index("old memory") < text.index("new codec") < text.index("old redis")
    assert text.count(MARKER) == 1
    # A run of the instruction counts alone keeps the page's machine table (its mode
    # describes the timed sections), and adds its own section in report order.
    page.write_text(old, encoding="utf-8")
    only = f"{MARKER}\n\n## Machine\n\ninstr mode\n\n" + block("instructions", "counts")
    write_markdown(page, only, order=SECTIONS, keep_head=True)
    text = page.read_text(encoding="utf-8")
    assert "\nold\n" in text
    assert "instr mode" not in text
    assert text.index("old redis") < text.index("counts")
    for kept in ("old memory", "old codec", "old redis"):
        assert text.count(kept) == 1


def test_a_subset_run_keeps_sections_of_an_undelimited_page(tmp_path: Path) -> None:
    from benchmarks.report import MARKER, write_markdown

    page = tmp_path / "benchmarks.md"
    page.write_text(
        f"# Intro\n\n{MARKER}\n\n## Machine\n\nold\n\n## Memory provider\n\nold memory\n\n"
        "## Codec\n\nold codec\n\n## Scale: peak memory\n\nold scale\n",
        encoding="utf-8",
    )
    write_markdown(page, f"{MARKER}\n\n## Machine\n\nnew\n", order=SECTIONS)
    text = page.read_text(encoding="utf-8")
    for kept in ("old memory", "old codec", "old scale", "## Scale: peak memory"):
        assert kept in text
    assert "\nold\n" not in text


def test_cli_takes_sections_as_arguments(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: list[list[str]] = []

    def fake(only: list[str], cfg: Config, out: Path) -> Any:
        seen.append(list(only))
        return run_suite([], cfg, out, progress=_quiet)

    monkeypatch.setattr(cli, "run_suite", fake)
    assert cli.main(["--quick", "--out", str(tmp_path), "codec", "memory"]) == 0
    assert seen == [["codec", "memory"]]
    with pytest.raises(SystemExit) as exc:
        cli.main(["--quick", "--out", str(tmp_path), "memroy"])
    assert exc.value.code == 2
    # The instruction counts (minutes under valgrind) run only when named.
    assert cli.main(["--quick", "--out", str(tmp_path)]) == 0
    assert seen[-1] == [s for s in SECTIONS if s != "instructions"]
    assert cli.main(["--quick", "--out", str(tmp_path), "instructions"]) == 0
    assert seen[-1] == ["instructions"]


@pytest.mark.dynamodb
def test_quick_async_section_compares_against_raw_async_clients() -> None:
    """Tiny sizes (20 tasks, 2 rounds): the rows exist, the Redis rows are measured only
    where RedisCache has native async primitives, and a missing peer is a skip row.
    Rounds are timed by the loop thread's CPU, with the wall clock of each kept beside."""
    _need("cachehub_dynamodb")
    from benchmarks import aio as aio_section

    section = aio_section.run(QUICK)
    measured = {(m.op, m.impl) for m in section.measurements if m.skipped is None}
    for op in ("DynamoDB: 20 tasks get", "DynamoDB: 20 tasks put"):
        assert (op, aio_section.DYNAMO_BASELINE) in measured
        assert (op, aio_section.CACHEHUB) in measured
    for m in section.measurements:
        if m.skipped is None:  # both clocks, every round (the settled ones too)
            assert len(m.wall_rounds_ns) == len(m.rounds_ns) >= QUICK.aws_rounds
    captions = [caption for caption, _, _ in section.extra_tables]
    assert any("CPU and wall-clock ratios" in c for c in captions)
    assert any(c.startswith("DynamoDB: 20 tasks get: where the time goes") for c in captions)
    targets = {
        (r.op, r.impl): r.target for r in section.rows if r.baseline == aio_section.DYNAMO_BASELINE
    }
    assert {t.max_ratio for t in targets.values() if t is not None} == {1.10}
    for op in ("DynamoDB: 20 tasks get", "DynamoDB: 20 tasks put"):
        assert targets[(op, aio_section.CACHEHUB)] is not None
        # the A/A control: the baseline's code again, a row without a target
        assert (op, aio_section.DYNAMO_AGAIN) in measured
        assert targets[(op, aio_section.DYNAMO_AGAIN)] is None
    from cachehub_redis import RedisCache

    if aio_section.native_async(RedisCache(host="localhost")):
        assert ("Redis: 20 tasks x 2 get", aio_section.CACHEHUB) in measured
        redis_targets = {r.target.max_ratio for r in section.rows if r.op.startswith("Redis")}
        assert 1.15 in redis_targets
    else:
        assert any(
            m.impl == aio_section.CACHEHUB and (m.skipped or "").startswith("not available")
            for m in section.measurements
        )


def _dump(path: Path, label: str | None, instructions: int) -> None:
    """A callgrind dump as the worker's client request writes it (only what is parsed)."""
    trigger = "Program termination" if label is None else f"Client Request: {label}"
    path.write_text(
        f"# callgrind format\nversion: 1\ndesc: Trigger: {trigger}\n"
        f"events: Ir\nsummary: {instructions}\ntotals: {instructions}\n",
        encoding="utf-8",
    )


def test_instruction_dumps_add_threads_and_ignore_the_rest(tmp_path: Path) -> None:
    """A region's per-thread files add up; the termination dump (imports, client
    construction) and a label-less file never reach a count."""
    from benchmarks import instructions

    _dump(tmp_path / "cg.7.1-01", "0\tget hit\traw\t10", 1_000_000)
    _dump(tmp_path / "cg.7.1-02", "0\tget hit\traw\t10", 50_000)
    _dump(tmp_path / "cg.7.2-01", "0\tget hit\tcachehub\t10", 1_100_000)
    _dump(tmp_path / "cg.7-02", None, 1_745_119_751)
    (tmp_path / "cg.7.3-01").write_text("garbage\n", encoding="utf-8")
    counts = instructions.parse_dumps(sorted(tmp_path.glob("cg.*")))
    assert counts == {(0, "get hit", "raw"): 105_000.0, (0, "get hit", "cachehub"): 110_000.0}


def test_instruction_rows_pair_rounds_with_an_aa_control() -> None:
    from benchmarks import dynamodb as dynamodb_section
    from benchmarks import instructions

    base = dynamodb_section.BASELINE
    counts = {
        ("get hit", base): [100.0, 102.0, 98.0],
        ("get hit", dynamodb_section.CACHEHUB): [103.0, 105.0, 100.0],
        ("get hit", base + instructions.AGAIN): [100.0, 101.0, 99.0],
    }
    found = {r.impl: r for r in instructions.rows(counts)}
    mine, control = found[dynamodb_section.CACHEHUB], found[base + instructions.AGAIN]
    assert mine.target is dynamodb_section.SINGLE_TARGET
    assert mine.verdict == "met"
    assert mine.ratios == [1.03, 105.0 / 102.0, 100.0 / 98.0]
    assert control.target is None
    assert control.verdict is None
    _caption, header, body = instructions._table(list(found.values()))
    assert "instructions/op" in header
    assert body[0][-2:] == ["met", "3"]


@pytest.mark.timeout(600)
def test_quick_instruction_counts_under_callgrind() -> None:
    """One worker under valgrind (the memory rows: no server, ~1 min under callgrind):
    the counts are per key read, the A/A control's ratio is exactly what the method
    adds, and every row has a ratio per round."""
    import shutil

    from benchmarks import instructions

    if shutil.which("valgrind") is None:
        unavailable("valgrind is not installed (the instruction counts run under callgrind)")
    section = instructions.run(QUICK, groups=("memory",))
    assert section.skipped is None, section.skipped
    caption, _, body = section.extra_tables[0]
    assert caption.startswith("Client instructions per operation")
    by_impl = {row[1]: row for row in body}
    assert set(by_impl) == {"cachehub memory (default)", "cachelib SimpleCache (again)"}
    for row in body:
        assert row[0] == "get_many(100) 10 KB"
        assert row[-1] == "2"
        # a 10 KB value is copied per key read: thousands of instructions, not millions
        assert 1_000 < float(row[2].replace(",", "")) < 10_000_000
    low, high = (float(x) for x in by_impl["cachelib SimpleCache (again)"][6][:-1].split("-"))
    assert 0.9 < low <= high < 1.1  # the A/A control: same code, near-equal counts
