"""The core never imports a web framework: adapters are optional extras."""

from __future__ import annotations

import subprocess
import sys

FRAMEWORKS = ("django", "flask", "dogpile", "cachelib", "flask_caching", "werkzeug")


def test_import_cachehub_loads_no_framework() -> None:
    code = (
        "import sys, cachehub, cachehub.session, cachehub.stats, cachehub.contrib;"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS!r}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
