"""The frameworks' test files, from their source distributions at the installed versions."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import tarfile
from pathlib import Path, PurePosixPath

DISTRIBUTIONS = {"django": "django", "flask-caching": "flask-caching", "cachelib": "cachelib"}
"""Suite name -> the distribution whose sdist holds its tests."""
_TEST_DIRS = {"django": "tests/cache", "flask-caching": "tests", "cachelib": "tests"}


def _sdist(distribution: str, version: str, cache_dir: Path) -> Path:
    """The sdist of ``distribution==version`` in ``cache_dir``, downloaded if missing."""
    stems = {f"{distribution}-{version}", f"{distribution.replace('-', '_')}-{version}"}
    for path in sorted(cache_dir.glob("*.tar.gz")):
        if path.name.lower().removesuffix(".tar.gz") in stems:
            return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--dest",
            str(cache_dir),
            f"{distribution}=={version}",
        ],
        check=True,
        timeout=600,
    )
    return _sdist(distribution, version, cache_dir)


def extract(suite: str, cache_dir: Path, dest: Path) -> Path:
    """Extract only the suite's test directory; returns the extracted ``tests`` folder.

    Django's ``tests/cache`` lands as ``<dest>/django/tests/cache`` (importable as the
    ``cache`` app from ``<dest>/django/tests``); the others as ``<dest>/<suite>/tests``.
    """
    distribution = DISTRIBUTIONS[suite]
    version = importlib.metadata.version(distribution)
    sdist = _sdist(distribution, version, cache_dir)
    wanted = PurePosixPath(_TEST_DIRS[suite])
    root = dest / suite
    with tarfile.open(sdist) as archive:
        members = []
        for member in archive.getmembers():
            path = PurePosixPath(member.name)
            inner = PurePosixPath(*path.parts[1:])  # strip "<name>-<version>/"
            if member.isfile() and inner.is_relative_to(wanted):
                member.name = str(inner)
                members.append(member)
        if not members:
            raise RuntimeError(f"{sdist.name} has no {wanted}/: cannot run the {suite} suite")
        archive.extractall(root, members=members, filter="data")
    print(f"{suite}: {len(members)} test files from {sdist.name}", flush=True)
    return root / "tests"
