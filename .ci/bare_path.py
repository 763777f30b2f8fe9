"""Run a command on a PATH where no system Redis can be found, as on a pip-only machine.

    python3 .ci/bare_path.py python3 -m nox -s tests

Each directory of PATH that holds a ``redis-*`` entry (``redis-server``, ``redis-cli``,
``redis-sentinel``...) is mirrored by a temporary directory of symlinks to everything in it
except those, and the command runs with PATH made of the mirrors and the other directories
as they are. Nothing on the system is changed or deleted; the mirrors are removed
afterwards. The command's exit code is returned.

Only those directories are mirrored because a virtualenv links to the interpreter by the
path it was found at: a venv that nox made through a mirror (pyenv puts its interpreter's
directory first on PATH) pointed into a deleted directory once the command ended, so CI's
next ``nox -R -s tests`` found it broken and installed everything again (about 3 minutes).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HIDDEN_PREFIX = "redis-"


def bare_path(path: str, root: Path) -> str:
    """A PATH like ``path`` whose directories holding ``redis-*`` are mirrored without them."""
    entries: list[str] = []
    for index, entry in enumerate(path.split(os.pathsep)):
        source = Path(entry)
        if not entry or not source.is_dir():
            continue
        if not any(item.name.startswith(HIDDEN_PREFIX) for item in source.iterdir()):
            entries.append(entry)  # nothing to hide: the directory itself (see above)
            continue
        mirror = root / str(index)
        mirror.mkdir()
        for item in source.iterdir():
            if not item.name.startswith(HIDDEN_PREFIX):
                (mirror / item.name).symlink_to(item)
        entries.append(str(mirror))
    return os.pathsep.join(entries)


def main(argv: list[str]) -> int:
    """Run ``argv`` with a Redis-free PATH; refuse when a Redis is still found."""
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="cachehub-bare-path-") as tmp:
        path = bare_path(os.environ.get("PATH", ""), Path(tmp))
        for name in ("redis-server", "redis-cli"):
            found = shutil.which(name, path=path)
            if found is not None:
                print(f"bare_path: {name} is still on PATH at {found}", file=sys.stderr)
                return 1
        print(f"bare_path: no redis-server or redis-cli on PATH; running {argv}", flush=True)
        return subprocess.run(argv, env={**os.environ, "PATH": path}, check=False).returncode  # noqa: S603


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
