"""``python -m framework_suites [--only SUITE ...] [--sdists DIR] [-- pytest args]``.

Downloads (once, into ``--sdists``) and extracts the frameworks' test files, starts the
servers, and runs each suite in a child process against the adapters; exits non-zero
if any suite fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from framework_suites.backends import EXCLUDED, servers
from framework_suites.fetch import DISTRIBUTIONS, extract

_HERE = Path(__file__).resolve().parent
_SUITE_TIMEOUT = 900  # seconds: a hung suite fails instead of holding CI


def _pytest(tests: Path, *args: str) -> list[str]:
    # An empty ini of our own: the frameworks' pytest settings live in their
    # pyproject.toml, which is not extracted, and this project's must not apply.
    ini = tests / "pytest-cachehub.ini"
    ini.write_text("[pytest]\n", encoding="utf-8")
    return [
        sys.executable,
        "-m",
        "pytest",
        "-c",
        str(ini),
        "--rootdir",
        str(tests),
        "-o",
        f"cache_dir={tests / '.pytest_cache'}",  # xprocess keeps its state there
        "-p",
        "no:randomly",
        "-q",
        *args,
    ]


def _command(suite: str, tests: Path, extra: list[str]) -> list[str]:
    if suite == "django":
        return [sys.executable, "-m", "framework_suites.django_run", str(tests)]
    if suite == "cachelib":
        shutil.copy(_HERE / "cachelib_cases.py", tests / "test_cachehub_adapter.py")
        return _pytest(tests, "test_cachehub_adapter.py", *extra)
    # Flask-Caching: the adapter becomes the cache type of the suite's `app` fixture.
    with (tests / "conftest.py").open("a", encoding="utf-8") as conftest:
        conftest.write(
            "\n\n# Added by cachehub's framework_suites: the app fixture uses the adapter.\n"
            "from framework_suites.flask_glue import app, _cachehub_provider  # noqa: E402,F401\n"
        )
    deselect = [f"--deselect={test}" for test in EXCLUDED["flask-caching"]]
    return _pytest(tests, *deselect, *extra)


def main(argv: list[str] | None = None) -> int:
    """Run the selected suites; 0 when all pass."""
    parser = argparse.ArgumentParser(prog="python -m framework_suites")
    parser.add_argument("--only", action="append", choices=sorted(DISTRIBUTIONS))
    parser.add_argument("--sdists", type=Path, default=Path(".nox/.cache/framework-sdists"))
    parser.add_argument("extra", nargs="*", help="arguments for the pytest-based suites")
    args = parser.parse_args(argv)
    suites = args.only or ["django", "flask-caching", "cachelib"]
    results: dict[str, tuple[int, float]] = {}
    with tempfile.TemporaryDirectory(prefix="cachehub-frameworks-") as work, servers() as env:
        child_env = {**os.environ, **env, "PYTHONPATH": str(_HERE.parent)}
        # Flask-Caching's and cachelib's fixtures fail (rather than skip) their own
        # Redis tests when CI=true and no server listens on their fixed port.
        child_env.pop("CI", None)
        # The suites run side by side (each in its own namespace on the shared servers):
        # they mostly wait on the servers, so CI pays for the longest one, not the sum.
        running: dict[str, tuple[subprocess.Popen[bytes], list[str], Path, float]] = {}
        for suite in suites:
            tests = extract(suite, args.sdists.resolve(), Path(work))
            command = _command(suite, tests, list(args.extra))
            log = Path(work) / f"{suite}.log"
            with log.open("wb") as out:
                child = subprocess.Popen(
                    command, cwd=tests, env=child_env, stdout=out, stderr=subprocess.STDOUT
                )
            running[suite] = (child, command, log, time.monotonic())
        deadline = time.monotonic() + _SUITE_TIMEOUT
        while len(results) < len(running):
            for suite, (child, _command_line, _log, start) in running.items():
                if suite in results:
                    continue
                code = child.poll()
                if code is None and time.monotonic() > deadline:
                    child.kill()  # a hung suite fails instead of holding CI
                    child.wait()
                    code = -1
                if code is not None:
                    results[suite] = (code, time.monotonic() - start)
            time.sleep(0.2)
        for suite, (_child, command_line, log, _start) in running.items():
            print(f"== {suite}: {' '.join(command_line[1:])}", flush=True)
            sys.stdout.write(log.read_text(encoding="utf-8", errors="replace"))
            sys.stdout.flush()
    for suite, (code, seconds) in results.items():
        print(f"{suite}: {'passed' if code == 0 else f'FAILED ({code})'} in {seconds:.0f} s")
    return 0 if all(code == 0 for code, _ in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
