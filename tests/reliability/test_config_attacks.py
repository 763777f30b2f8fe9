"""Hostile configuration sources: files and ``class`` names an attacker controls.

Configuration comes from files and environment variables other people write. Reading one
must never block (a FIFO), exhaust memory (``/dev/zero``, a sparse file of gigabytes) or
run a program named in ``class`` before checking that it names a provider.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reliability.config_attacks import (
    load_checkpoint,
    load_class_from_env,
    load_file_config,
    module_was_imported_after_refusal,
)
from reliability.sandbox import assert_contained, run_bounded

_CONFIG = ("ConfigError",)


def _refused(outcome_message: str, *words: str) -> None:
    for word in words:
        assert word in outcome_message, outcome_message


def test_dev_zero_as_the_configuration_is_refused_unread() -> None:
    outcome = run_bounded(load_file_config, "/dev/zero", memory_mb=128, seconds=30)
    assert_contained(outcome, errors=_CONFIG)
    assert outcome.kind == "error"
    _refused(outcome.message, "/dev/zero", "not a regular file")


def test_a_fifo_as_the_configuration_does_not_block(tmp_path: Path) -> None:
    fifo = tmp_path / "caches.json"
    os.mkfifo(fifo)  # nobody ever writes to it: opening it for reading would block
    outcome = run_bounded(load_file_config, str(fifo), memory_mb=128, seconds=20)
    assert_contained(outcome, errors=_CONFIG)
    assert outcome.kind == "error"
    _refused(outcome.message, "not a regular file")


def test_a_sparse_file_of_gigabytes_is_refused_before_reading(tmp_path: Path) -> None:
    huge = tmp_path / "caches.json"
    with open(huge, "wb") as file:
        file.truncate(4 * 1024**3)  # sparse: costs no disk, reads as 4 GiB of zeros
    outcome = run_bounded(load_file_config, str(huge), memory_mb=128, seconds=30)
    assert_contained(outcome, errors=_CONFIG)
    assert outcome.kind == "error"
    _refused(outcome.message, "larger than 32 MiB")


@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
def test_a_resume_file_that_is_not_a_file_is_refused_unread(tmp_path: Path, kind: str) -> None:
    # `cachehub migrate --resume-file`: read_text() filled the memory from /dev/zero and
    # blocked for ever opening a FIFO nobody writes to.
    path = Path("/dev/zero") if kind == "dev-zero" else tmp_path / "checkpoint.json"
    if kind == "fifo":
        os.mkfifo(path)
    outcome = run_bounded(load_checkpoint, str(path), memory_mb=128, seconds=20)
    assert_contained(outcome, errors=_CONFIG)
    assert outcome.kind == "error"
    _refused(outcome.message, "resume file", "not a regular file")


@pytest.mark.parametrize(
    "class_name",
    [
        "venv.__main__:X",  # runs venv's command line: argparse, then SystemExit
        "this:X",  # prints the Zen of Python on import
        "antigravity:X",  # opens a web browser on import
    ],
)
def test_a_class_from_the_environment_never_imports_a_program(class_name: str) -> None:
    outcome = run_bounded(load_class_from_env, class_name, memory_mb=128, seconds=30)
    assert_contained(outcome, errors=_CONFIG)
    assert outcome.kind == "error"
    _refused(outcome.message, "cache 'c'", "not a cachehub provider")
    imported = run_bounded(module_was_imported_after_refusal, class_name, seconds=30)
    assert imported.kind == "value", imported.describe()
    assert imported.value is False, imported.describe()
    printed = "".join(outcome.texts)
    assert "Beautiful is better than ugly" not in printed  # `this` ran
    assert "usage: venv" not in printed  # venv's main ran
