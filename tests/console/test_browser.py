"""Real-browser tests: Playwright drives Debian's chromium (by path; nothing is downloaded).

A live console (uvicorn in a thread, on a free loopback port) per test. The clicks go
browse -> view -> delete -> clear -> config edit on memory, Redis and local DynamoDB, plus
a phone-width window and keyboard-only navigation. Without chromium (or the playwright
package) the tests skip with the reason, except under CI, where they fail.
Every wait is bounded by Playwright timeouts of a few seconds and pytest-timeout.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest

from cachehub.console.app import Console, create_app
from cachehub.console.serve import serving
from cachehub.testing import unavailable

from .conftest import TOKEN, entry_for

pytestmark = pytest.mark.timeout(120)

CHROMIUM: Final = os.environ.get("CACHEHUB_CHROMIUM", "/usr/bin/chromium")
STEP_MS: Final = 5_000
"""Playwright's timeout for any one action or expectation."""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless chromium from the system, launched by path."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed (pip install playwright)")
    if not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM)):
        unavailable(f"no chromium at {CHROMIUM}: apt-get install chromium")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox"], timeout=20_000
        )
        yield chromium
        chromium.close()


@dataclass
class Live:
    """A console served over HTTP for the browser."""

    url: str
    console: Console
    path: Path

    @property
    def login(self) -> str:
        return f"{self.url}/?token={TOKEN}"


@pytest.fixture
def live(
    tmp_path: Path, request: pytest.FixtureRequest, console_env: None
) -> Iterator[Callable[..., Live]]:
    with contextlib.ExitStack() as stack:

        def start(provider: str = "memory", **kwargs: Any) -> Live:
            path = tmp_path / f"live-{uuid.uuid4().hex[:6]}.json"
            entry = entry_for(provider, request, f"web{uuid.uuid4().hex[:10]}:")
            path.write_text(json.dumps({"caches": {"main": entry}}, indent=2))
            app = create_app(path, token=TOKEN, **kwargs)
            url = stack.enter_context(serving(app))
            return Live(url, app.state.console, path)

        yield start


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context()
    tab = context.new_page()
    tab.set_default_timeout(STEP_MS)
    problems: list[str] = []
    # Error statuses are part of the flows (a 400 for a typo); scripts and CSP are not.
    tab.on(
        "console",
        lambda m: (
            problems.append(m.text)
            if m.type == "error" and "Failed to load resource" not in m.text
            else None
        ),
    )
    tab.on("pageerror", lambda e: problems.append(str(e)))
    tab.problems = problems
    yield tab
    context.close()
    # No script error and no Content-Security-Policy violation on any page.
    assert problems == []


def _accept_dialogs(page: Any) -> list[str]:
    asked: list[str] = []

    def accept(dialog: Any) -> None:
        asked.append(dialog.message)
        dialog.accept()

    page.on("dialog", accept)
    return asked


@pytest.mark.parametrize("provider", ["memory", "redis", "dynamodb"])
def test_browse_view_delete_clear_and_config_edit(
    live: Callable[..., Live], page: Any, provider: str
) -> None:
    from playwright.sync_api import expect

    server = live(provider)
    cache = server.console.cache("main")
    cache.put_many({f"user:{i}": {"id": i, "name": f"<b>user {i}</b>"} for i in range(3)})
    cache.put_many({f"tmp:{i}": i for i in range(4)}, time_span=300)
    asked = _accept_dialogs(page)

    page.goto(server.login)
    assert "token" not in page.url  # traded for the cookie
    page.get_by_role("link", name="main", exact=True).click()
    expect(page.locator("h1")).to_have_text("Cache main")
    page.get_by_role("link", name="Browse keys").click()
    page.get_by_label("Filter (wildcards").fill("user:*")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("#keys li")).to_have_count(3)

    # view
    page.get_by_role("link", name="user:1", exact=True).click()
    expect(page.locator("#type")).to_have_text("dict")
    expect(page.locator("#value")).to_contain_text("<b>user 1</b>")  # shown as text
    expect(page.locator("#ttl")).to_have_text("never expires")

    # delete (the confirmation dialog is answered)
    page.get_by_role("button", name="Delete entry").click()
    expect(page.locator("#message")).to_contain_text("Deleted 'user:1'")
    assert asked == ["Delete this entry?"]
    assert cache.get("user:1") is None

    # an entry with a TTL counts down
    page.goto(f"{server.url}/keys?cache=main&filter=tmp:*")
    page.get_by_role("link", name="tmp:0", exact=True).click()
    ttl = page.locator("#ttl")
    expect(ttl).to_have_text(re.compile(r"^\d+ s$"))
    first = ttl.text_content()
    page.wait_for_function(
        "first => document.querySelector('#ttl').textContent !== first", arg=first
    )

    # clear by filter: count preview, checkbox, confirmation
    page.goto(f"{server.url}/keys?cache=main&filter=tmp:*")
    page.get_by_role("link", name="Clear matching…").click()
    expect(page.locator("#count")).to_contain_text("4 entries match")
    page.get_by_label("Yes, delete these 4 entries").check()
    page.get_by_role("button", name="Clear").click()
    expect(page.locator("#message")).to_contain_text("Removed 4 entries")
    assert asked[-1] == "Delete 4 entries? This cannot be undone."
    assert cache.count("tmp:*") == 0
    assert cache.count("user:*") == 2

    # config edit: a typo is explained, then a new cache is saved and served
    page.get_by_role("link", name="Configuration").click()
    page.get_by_role("link", name="Add a cache").click()
    page.get_by_label("Name").fill("added")
    page.get_by_label("Class (").fill("memory")
    page.get_by_label("Settings (JSON").fill('{"namespace": "added:", "maxsise": 5}')
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#problem")).to_contain_text("Did you mean 'maxsize'?")
    page.get_by_label("Settings (JSON").fill('{"namespace": "added:", "maxsize": 5}')
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#saved")).to_have_text("Saved cache added.")
    assert "added" in json.loads(server.path.read_text())["caches"]
    page.get_by_role("link", name="Caches", exact=True).click()
    expect(page.get_by_role("link", name="added", exact=True)).to_be_visible()


def test_put_json_from_the_browser(live: Callable[..., Live], page: Any) -> None:
    from playwright.sync_api import expect

    server = live()
    page.goto(f"{server.login}")
    page.goto(f"{server.url}/put?cache=main")
    page.get_by_label("Key").fill("settings")
    page.get_by_label("Value (JSON)").fill('{"theme": "dark", "size": 3}')
    page.get_by_label("Expire after").fill("60")
    page.get_by_role("button", name="Store").click()
    expect(page.locator("#type")).to_have_text("dict")
    assert server.console.cache("main").get("settings") == {"theme": "dark", "size": 3}


def test_phone_width_has_no_horizontal_scrolling(live: Callable[..., Live], browser: Any) -> None:
    server = live()
    cache = server.console.cache("main")
    long_key = "customer:" + "x" * 180
    cache.put(long_key, {"text": "y" * 5000}, time_span=600)
    context = browser.new_context(viewport={"width": 360, "height": 740}, is_mobile=True)
    try:
        tab = context.new_page()
        tab.set_default_timeout(STEP_MS)
        tab.goto(server.login)
        pages = [
            "/",
            "/cache?name=main",
            "/keys?cache=main",
            f"/entry?cache=main&key={long_key}",
            "/clear?cache=main",
            "/put?cache=main",
            "/config",
            "/config/edit?name=main",
        ]
        for path in pages:
            tab.goto(server.url + path)
            overflow = tab.evaluate(
                "() => document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 0, (path, overflow)
    finally:
        context.close()


def test_keyboard_only_navigation(live: Callable[..., Live], page: Any) -> None:
    from playwright.sync_api import expect

    server = live()
    server.console.cache("main").put("only-key", "value")
    asked = _accept_dialogs(page)
    page.goto(server.login)

    def tab_to(selector: str) -> None:
        """Press Tab until ``selector`` has the focus (at most 30 presses)."""
        for _ in range(30):
            page.keyboard.press("Tab")
            if page.evaluate(f"() => document.activeElement.matches({selector!r})"):
                outline = page.evaluate(
                    "() => getComputedStyle(document.activeElement).outlineStyle"
                )
                assert outline != "none", f"{selector} has no visible focus"
                return
        raise AssertionError(f"Tab never reached {selector}")

    def enter() -> None:
        """Press Enter on the focused link or button and wait for the next page."""
        with page.expect_navigation():
            page.keyboard.press("Enter")

    tab_to("a.skip")  # the first stop skips the navigation
    tab_to('a[href="/cache?name=main"]')
    enter()
    expect(page.locator("h1")).to_have_text("Cache main")
    tab_to('a[href="/keys?cache=main"]')
    enter()
    tab_to('a[href*="key=only-key"]')
    enter()
    expect(page.locator("#key")).to_have_text("only-key")
    tab_to("#delete")
    enter()
    expect(page.locator("#message")).to_contain_text("Deleted")
    assert asked == ["Delete this entry?"]
    assert server.console.cache("main").get("only-key") is None
