"""The mutation runner's own machinery: subsets, annotation mutants, stages, fork server.

What decides which cosmic-ray mutants run and how their tests are started; a mistake
here would silently skip mutants or count a runner failure as a kill.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mutation import runner, stages  # via pytest's pythonpath
from mutation.forkserver import request

ROOT = Path(__file__).resolve().parent.parent

MODULE = textwrap.dedent(
    """
    from __future__ import annotations

    import functools

    LIMIT: int | None = 3


    @functools.lru_cache
    def first(x: int | None = None) -> int | None:
        return x


    class Box:
        size: float | None = None

        def grow(self, by: int) -> float:
            return (self.size or 0.0) + by


    def last() -> int:
        return 1 | 2
    """
)


def test_function_lines_cover_decorators_and_bodies() -> None:
    lines = runner.function_lines(MODULE, ["first", "Box"])
    source = MODULE.splitlines()
    assert {source[n - 1].strip() for n in lines} >= {"@functools.lru_cache", "return x"}
    assert "return 1 | 2" not in {source[n - 1].strip() for n in lines}
    assert "LIMIT: int | None = 3" not in {source[n - 1].strip() for n in lines}


def test_a_subset_naming_a_missing_function_is_refused() -> None:
    with pytest.raises(runner.MutantFileError, match="'gone'"):
        runner.function_lines(MODULE, ["first", "gone"], "cosmic-ray.toml m.py")


def _span_of(text: str, needle: str, nth: int = 0) -> tuple[tuple[int, int], tuple[int, int]]:
    """The (row, col) start and end of the ``nth`` ``needle`` in ``text``."""
    at = -1
    for _ in range(nth + 1):
        at = text.index(needle, at + 1)
    row = text.count("\n", 0, at) + 1
    col = at - (text.rfind("\n", 0, at) + 1)
    return (row, col), (row, col + len(needle))


def test_only_operators_inside_annotations_are_static() -> None:
    spans = runner.annotation_spans(MODULE)
    inside = [
        _span_of(MODULE, "|", 0),  # LIMIT: int | None
        _span_of(MODULE, "|", 1),  # x: int | None
        _span_of(MODULE, "|", 2),  # -> int | None
        _span_of(MODULE, "|", 3),  # size: float | None
    ]
    for start, end in inside:
        assert runner._inside_annotation(spans, start, end)
    outside = [_span_of(MODULE, "|", 4), _span_of(MODULE, "+"), _span_of(MODULE, "3")]
    for start, end in outside:
        assert not runner._inside_annotation(spans, start, end)


def test_annotations_of_a_module_that_evaluates_them_are_not_static() -> None:
    assert runner.annotation_spans(MODULE.replace("from __future__ import annotations", "")) == []


def test_stages_stop_at_the_first_failure_and_return_its_status(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    commands = [
        [sys.executable, "-c", "pass"],
        [sys.executable, "-c", "raise SystemExit(3)"],
        [sys.executable, "-c", f"open({str(marker)!r}, 'w')"],
    ]
    assert stages.main([runner.json.dumps(commands)]) == 3
    assert not marker.exists()
    assert stages.main([runner.json.dumps(commands[:1])]) == 0
    assert stages.main(["not json either way", "two"]) == 4
    assert stages.main(['[["ok"], "not a command"]']) == 4


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A fork server working in ``tmp_path`` (nothing of it preloaded)."""
    (tmp_path / "test_ok.py").write_text("def test_ok():\n    pass\n")
    (tmp_path / "test_fails.py").write_text("def test_fails():\n    assert False\n")
    (tmp_path / "test_hangs.py").write_text(
        "import os, subprocess, sys, time\n"
        "def test_hangs():\n"
        "    child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
        "    open('pids', 'w').write(f'{os.getpid()} {child.pid}')\n"
        "    time.sleep(120)\n"
    )
    path = str(tmp_path / "socket")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mutation.forkserver", path],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    yield path, tmp_path
    proc.terminate()
    proc.wait(timeout=30)
    proc.stdout.close()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its parent to reap it does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_the_fork_server_runs_pytest_and_reports_its_status(
    server: tuple[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, where = server
    monkeypatch.chdir(where)
    assert request(path, ["-q", "-p", "no:randomly", "-p", "no:cacheprovider", "test_ok.py"]) == 0
    assert (
        request(path, ["-q", "-p", "no:randomly", "-p", "no:cacheprovider", "test_fails.py"]) == 1
    )
    assert request(str(where / "no-socket"), ["test_ok.py"]) is None


def test_a_run_whose_client_is_killed_is_killed_with_what_it_started(
    server: tuple[str, Path],
) -> None:
    path, where = server
    client = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from mutation.forkserver import request; "
            f"request({path!r}, ['-q', '-p', 'no:randomly', '-p', 'no:cacheprovider', "
            "'-p', 'no:timeout', 'test_hangs.py'])",
        ],
        cwd=where,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    pids_file = where / "pids"
    for _ in range(600):  # bounded: at most 60 s for the forked pytest to start its test
        if pids_file.exists() and pids_file.read_text().count(" ") == 1:
            break
        time.sleep(0.1)
    pids = [int(p) for p in pids_file.read_text().split()]
    assert all(_alive(pid) for pid in pids)
    client.send_signal(signal.SIGKILL)
    client.wait(timeout=30)
    for _ in range(300):  # bounded: the server notices the closed socket at once
        if not any(_alive(pid) for pid in pids):
            break
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids)
