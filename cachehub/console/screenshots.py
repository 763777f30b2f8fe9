"""Screenshots of the console's pages for the docs.

Run ``python -m cachehub.console.screenshots docs/img/console``.

Starts the throw-away backends the providers offer ``cachehub tour`` (moto's DynamoDB,
a local redis-server when there is one) beside an in-memory cache, fills them with demo
data, serves the console and photographs each page with the system's chromium (by path,
``--chromium``; nothing is downloaded). Needs the ``console`` extra and ``playwright``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from ..errors import CacheError, MissingPackageError
from . import require_extra

__all__ = ["PAGES", "take", "main"]

DEFAULT_CHROMIUM: Final = "/usr/bin/chromium"
DEMO: Final = "demo"

PAGES: Final[tuple[tuple[str, str], ...]] = (
    ("caches", "/"),
    ("cache", f"/cache?name={DEMO}"),
    ("keys", f"/keys?cache={DEMO}&filter=user:*"),
    ("entry", f"/entry?cache={DEMO}&key=user:1"),
    ("clear", f"/clear?cache={DEMO}&filter=session:*"),
    ("put", f"/put?cache={DEMO}&key=user:2"),
    ("config", "/config"),
    ("config-edit", f"/config/edit?name={DEMO}"),
)
"""(file stem, path) of the pages photographed on a desktop-sized window."""


def _seed(console: Any) -> None:
    cache = console.cache(DEMO)
    cache.put_many(
        {
            f"user:{i}": {"id": i, "name": f"User {i}", "roles": ["reader"] + ["admin"] * (i == 1)}
            for i in range(1, 13)
        },
        time_span=3600,
    )
    cache.put_many({f"session:{i:04x}": {"user": i % 12} for i in range(40)}, time_span=900)
    cache.put("config:flags", {"newCheckout": True, "banner": "Welcome <b>back</b>"})
    for key in ("user:1", "user:2", "user:99"):  # some activity for the stats table
        cache.get(key)


def take(out: Path, chromium: str = DEFAULT_CHROMIUM) -> list[Path]:
    """Write one PNG per page (and phone-width and dynamodb_command ones) into ``out``."""
    require_extra()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise MissingPackageError(
            "the screenshots need the playwright package.", hint="pip install playwright"
        ) from None
    from ..plugins import plugin_manager
    from .app import create_app
    from .serve import serving

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with contextlib.ExitStack() as stack:
        entries: dict[str, Any] = {DEMO: {"class": "memory", "custom": {"namespace": "demo:"}}}
        for group in plugin_manager().hook.cachehub_tour_backends():
            for name, factory in (group or {}).items():
                backend = stack.enter_context(factory())
                if backend.entry is not None:
                    entries[name] = dict(backend.entry)
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        config = folder / "cachehub.json"
        config.write_text(json.dumps({"caches": entries}, indent=2), encoding="utf-8")
        app = create_app(config)
        console = app.state.console
        _seed(console)
        base = stack.enter_context(serving(app))
        playwright = stack.enter_context(sync_playwright())
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=["--no-sandbox"], timeout=20_000
        )
        stack.callback(browser.close)

        def shoot(name: str, page: Any, action: Callable[[Any], None] | None = None) -> None:
            if action is not None:
                action(page)
            path = out / f"{name}.png"
            page.screenshot(path=str(path), full_page=True)
            written.append(path)

        desktop = browser.new_page(viewport={"width": 1100, "height": 720})
        desktop.set_default_timeout(10_000)
        desktop.goto(f"{base}/?token={console.token}")
        for name, path in PAGES:
            desktop.goto(base + path)
            if name == "cache":
                desktop.get_by_role("button", name="Run the doctor checks").click()
                desktop.wait_for_selector("#checks")
            shoot(name, desktop)
        command_cache = next(
            (
                n
                for n in console.caches.names()
                if callable(getattr(console.cache(n), "command", None))
            ),
            None,
        )
        if command_cache is not None:
            desktop.goto(f"{base}/dynamodb?cache={command_cache}")
            desktop.get_by_label("Action").select_option("scan")
            desktop.get_by_label("Data (JSON object)").fill(json.dumps({"Limit": 3}))
            desktop.get_by_role("button", name="Run").click()
            desktop.wait_for_selector("#result")
            shoot("dynamodb", desktop)
        phone = browser.new_page(viewport={"width": 375, "height": 740}, is_mobile=True)
        phone.goto(f"{base}/?token={console.token}")
        phone.goto(f"{base}/entry?cache={DEMO}&key=user:1")
        shoot("phone-entry", phone)
        console.close()
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m cachehub.console.screenshots OUT_DIR [--chromium PATH]``."""
    parser = argparse.ArgumentParser(prog="python -m cachehub.console.screenshots")
    parser.add_argument("out", type=Path, help="folder for the PNG files (e.g. docs/img)")
    parser.add_argument("--chromium", default=DEFAULT_CHROMIUM, help="chromium executable")
    args = parser.parse_args(argv)
    try:
        for path in take(args.out, args.chromium):
            print(path)
    except CacheError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
