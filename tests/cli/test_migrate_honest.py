"""``cachehub migrate`` never claims what it did not check: hostile and edge cases."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import cachehub
from cachehub.api import BaseCache, Entry
from cachehub.cli import cli
from cachehub.cli.app import State
from cachehub.errors import ConfigError
from cachehub.migration import SHOWN_DIFFERENCES, Checkpoint
from cachehub.registry import Caches

from .conftest import dynamo_entry


class Clock:
    """A settable clock shared by a source and a target (no sleeping in tests)."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_source_is_not_touched_and_idle_entries_keep_their_remaining_time() -> None:
    clock = Clock()
    caches = Caches({"src": {"class": "memory"}, "dst": {"class": "memory"}}, clock=clock)
    src, dst = caches["src"], caches["dst"]
    src.put("idle", "v", idle_time=60)
    src.put("plain", "p")
    assert src.get("plain") == "p"  # one hit
    clock.now += 50  # "idle" has 10 s left at the source
    before = {k: src.metadata(k) for k in ("idle", "plain")}
    report = cachehub.migrate(src, dst)
    assert report.verified is True
    assert report.idle == 1
    assert {k: src.metadata(k) for k in ("idle", "plain")} == before  # no hit, no access
    copy = dst.peek("idle")
    assert copy is not None
    assert copy.deadline() is not None
    # It dies when the original would (rounded down), not 60 s from the copy.
    assert clock.now + 9 <= copy.deadline() <= clock.now + 10
    clock.now += 10.5
    assert dst.get("idle", None) is None
    assert src.get("idle", None) is None


def test_a_read_copy_slides_by_its_full_idle_time() -> None:
    clock = Clock()
    caches = Caches({"src": {"class": "memory"}, "dst": {"class": "memory"}}, clock=clock)
    caches["src"].put("idle", "v", idle_time=60)
    clock.now += 30
    cachehub.migrate(caches["src"], caches["dst"])
    assert caches["dst"].get("idle") == "v"
    clock.now += 59
    assert caches["dst"].get("idle") == "v"


def test_a_resume_file_in_a_missing_folder_is_refused_before_copying(tmp_path: Path) -> None:
    caches = Caches({"src": {"class": "memory"}, "dst": {"class": "memory"}})
    caches["src"].put("k", 1)
    missing = tmp_path / "no" / "such" / "dir" / "resume.json"
    with pytest.raises(ConfigError, match="folder of resume file") as info:
        cachehub.migrate(caches["src"], caches["dst"], resume_file=missing)
    assert "mkdir -p" in (info.value.hint or "")
    assert caches["dst"].count() == 0


def test_a_planted_temp_name_is_never_followed(tmp_path: Path) -> None:
    # On main the checkpoint went to the fixed name "<resume file>.tmp" with write_text,
    # which follows a symlink: another user planting it in a shared folder had a migrate
    # overwrite any file the migrating user may write.
    caches = Caches({"src": {"class": "memory"}, "dst": {"class": "memory"}})
    caches["src"].put("k", 1)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    resume = tmp_path / "resume.json"
    (tmp_path / "resume.json.tmp").symlink_to(victim)
    report = cachehub.migrate(caches["src"], caches["dst"], resume_file=resume)
    assert report.verified is True
    assert victim.read_text() == "precious"
    assert json.loads(resume.read_text())["complete"] is True
    assert resume.stat().st_mode & 0o077 == 0  # keys are listed in it: the user's alone
    leftovers = sorted(p.name for p in tmp_path.iterdir())
    assert leftovers == ["resume.json", "resume.json.tmp", "victim.txt"]


def test_a_symlinked_resume_file_is_replaced_not_written_through(tmp_path: Path) -> None:
    caches = Caches({"src": {"class": "memory"}, "dst": {"class": "memory"}})
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    resume = tmp_path / "resume.json"
    resume.symlink_to(victim)
    with pytest.raises(ConfigError, match="not a cachehub migrate checkpoint"):
        cachehub.migrate(caches["src"], caches["dst"], resume_file=resume)
    assert victim.read_text() == "precious"


def test_a_folder_as_resume_file_is_named_as_such(tmp_path: Path) -> None:
    caches = Caches({"src": {"class": "memory"}, "dst": {"class": "memory"}})
    with pytest.raises(ConfigError, match="is a folder") as info:
        cachehub.migrate(caches["src"], caches["dst"], resume_file=tmp_path)
    assert "delete" not in str(info.value)  # never advice to delete the folder


@pytest.mark.parametrize(
    "doc",
    [
        {"source": "src", "target": "dst", "done": {"k": "yesterday"}},
        {"source": "src", "target": "dst", "done": {"k": True}},
        # A time beyond a float's range: loading raised a raw OverflowError.
        {"source": "src", "target": "dst", "done": {"k": 10**400}},
        {"source": "src", "target": "dst", "done": [1, 2]},
        {"source": "src", "target": "dst", "done": "everything"},
        ["not", "an", "object"],
    ],
)
def test_a_tampered_resume_file_is_a_config_error(tmp_path: Path, doc: Any) -> None:
    path = tmp_path / "resume.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match="not a cachehub migrate checkpoint"):
        Checkpoint.load(path, "src", "dst", None)


def test_huge_difference_sets_are_summarised() -> None:
    # A target that keeps only 10 entries: 290 of the 300 copies are evicted.
    caches = Caches(
        {"src": {"class": "memory"}, "dst": {"class": "memory", "custom": {"maxsize": 10}}}
    )
    caches["src"].put_many({f"k{i:03}": i for i in range(300)})
    report = cachehub.migrate(caches["src"], caches["dst"], batch=50)
    assert report.verified is False
    assert report.missing == 290
    assert report.checked == 300
    assert len(report.first_missing) == SHOWN_DIFFERENCES


class _Interrupting:
    """Wraps a source's peek: the Nth read raises KeyboardInterrupt (a simulated Ctrl-C)."""

    def __init__(self, cache: BaseCache, after: int) -> None:
        self.peek = cache.peek
        self.left = after

    def __call__(self, key: str) -> Entry | None:
        self.left -= 1
        if self.left < 0:
            raise KeyboardInterrupt
        return self.peek(key)


def test_ctrl_c_says_how_to_resume_and_the_rerun_finishes(
    tmp_path: Path, redis_url: str, dynamodb_endpoint: str, namespace: str
) -> None:
    config = {
        "redis": {"class": "redis", "custom": {"url": redis_url, "namespace": namespace}},
        "dynamo": dynamo_entry(dynamodb_endpoint, "cli_migrate_honest", namespace=namespace),
    }
    caches = Caches(config)
    source, target = caches["redis"], caches["dynamo"]
    source.put_many({f"k{i:03}": {"n": i} for i in range(120)}, time_span=600)
    checkpoint = tmp_path / "resume.json"
    args = ["migrate", "redis", "dynamo", "--batch", "25", "--resume-file", str(checkpoint)]
    state = State()
    state._caches = caches
    source.peek = _Interrupting(source, after=60)  # type: ignore[method-assign]
    stopped = CliRunner().invoke(cli, args, obj=state)
    assert stopped.exit_code == 130
    assert "interrupted" in stopped.output
    assert f"--resume-file {checkpoint}" in stopped.output
    assert "Error: interrupted." not in stopped.output
    done = json.loads(checkpoint.read_text())
    assert len(done["done"]) == 50  # two whole batches, recorded
    assert done["complete"] is False
    del source.peek  # type: ignore[method-assign]

    state = State()
    state._caches = caches
    resumed = CliRunner().invoke(cli, [*args, "--json"], obj=state)
    assert resumed.exit_code == 0, resumed.output
    report = json.loads(resumed.stdout)
    assert (report["unchanged"], report["copied"], report["verified"]) == (50, 70, True)
    assert target.count() == 120
    # Hit counts at the source are untouched by the whole migration.
    assert source.metadata("k000").hit_count == 0


def test_the_api_propagates_ctrl_c_after_recording_whole_batches(tmp_path: Path) -> None:
    caches = Caches({"src": {"class": "memory"}, "dst": {"class": "memory"}})
    caches["src"].put_many({f"k{i}": i for i in range(10)})
    caches["src"].peek = _Interrupting(caches["src"], after=3)  # type: ignore[method-assign]
    path = tmp_path / "resume.json"
    with pytest.raises(KeyboardInterrupt):
        cachehub.migrate(caches["src"], caches["dst"], batch=2, resume_file=path)
    assert caches["dst"].count() == 2  # the first whole batch
    assert len(json.loads(path.read_text())["done"]) == 2


def test_ctrl_c_without_resume_file_says_how_to_make_it_resumable(
    redis_url: str, namespace: str
) -> None:
    config = {
        "a": {"class": "redis", "custom": {"url": redis_url, "namespace": namespace + "a:"}},
        "b": {"class": "redis", "custom": {"url": redis_url, "namespace": namespace + "b:"}},
    }
    caches = Caches(config)
    caches["a"].put_many({f"k{i}": i for i in range(5)})
    caches["a"].peek = _Interrupting(caches["a"], after=2)  # type: ignore[method-assign]
    state = State()
    state._caches = caches
    stopped = CliRunner().invoke(cli, ["migrate", "a", "b", "--batch", "2"], obj=state)
    assert stopped.exit_code == 130
    assert "run again with --resume-file FILE" in stopped.output


def test_same_cache_and_bad_batch_are_config_errors() -> None:
    caches = Caches({"a": {"class": "memory"}, "b": {"class": "memory"}})
    with pytest.raises(ConfigError, match="same cache"):
        cachehub.migrate(caches["a"], caches["a"])
    with pytest.raises(ConfigError, match="batch"):
        cachehub.migrate(caches["a"], caches["b"], batch=0)
