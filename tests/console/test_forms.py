"""Keys in forms: every key the core accepts can be opened, edited and deleted from the
browser, including keys of the core's maximum length and keys holding CR, LF or NUL
(which a browser rewrites in a plain form field)."""

from __future__ import annotations

import html
import json
import re

import pytest

from cachehub.api import MAX_KEY_LENGTH
from cachehub.console.app import form_safe, json_literal

from .conftest import MakeConsole


def browser_submits(attribute: str) -> str:
    """What a browser posts for a hidden field written as ``value="attribute"``.

    HTML parsing turns CR and CRLF into LF (input stream preprocessing) and NUL into
    U+FFFD; urlencoded submission writes every line break as CRLF (WHATWG HTML,
    "Converting an entry list to a list of name-value pairs").
    """
    parsed = html.unescape(re.sub(r"\r\n?", "\n", attribute)).replace("\x00", "\ufffd")
    return re.sub(r"\r\n|\r|\n", "\r\n", parsed)


def hidden(page: str, name: str) -> str:
    """The raw (still escaped) value of the hidden field ``name`` of ``page``."""
    found = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)"', page)
    assert found is not None, f"no hidden field {name}"
    return found.group(1)


BROKEN_KEYS = [
    "user\nadmin",
    "user\r\nadmin",
    "user\radmin",
    "user\x00admin",
    "user\ufffdadmin",  # what NUL became
    "\n",
    "trailing\r",
    "\n\r\x00mixed\r\r\n\n",
]


def test_plain_fields_would_change_these_keys() -> None:
    """The premise: a plain hidden field gives back another key for all but the CRLF and
    U+FFFD ones; a text input (which drops line breaks) changes all those with CR or LF."""
    changed = [k for k in BROKEN_KEYS if browser_submits(html.escape(k)) != k]
    assert changed == [k for k in BROKEN_KEYS if k not in ("user\r\nadmin", "user\ufffdadmin")]
    assert [k for k in BROKEN_KEYS if form_safe(k)] == ["user\ufffdadmin"]


def test_delete_names_exactly_the_key_with_line_breaks_or_nul(make_console: MakeConsole) -> None:
    """Delete on ``user\\nadmin`` deleted ``user\\r\\nadmin`` (the browser's rewrite of the
    hidden field): the key now travels as a JSON string literal the browser keeps."""
    env = make_console()
    everything = {key: i for i, key in enumerate(BROKEN_KEYS)}
    everything["useradmin"] = -1
    for key in BROKEN_KEYS:
        env.cache.put_many(everything)
        page = env.client.get("/entry", params={"cache": "main", "key": key})
        assert page.status_code == 200, repr(key)
        posted = browser_submits(hidden(page.text, "key_json"))
        assert json.loads(posted) == key
        deleted = env.post("/entry/delete", cache="main", key_json=posted)
        assert deleted.status_code == 200, repr(key)
        assert "Deleted" in deleted.text
        left = {k for k in everything if env.cache.get(k) is not None}
        assert left == set(everything) - {key}, repr(key)


def test_clear_uses_exactly_the_filter_with_a_line_break(make_console: MakeConsole) -> None:
    env = make_console()
    env.cache.put_many({"a\nb1": 1, "a\nb2": 2, "a\r\nb1": 3, "a\rb1": 4, "ab1": 5})
    page = env.client.get("/clear", params={"cache": "main", "filter": "a\nb*"})
    assert "<strong>2</strong>" in page.text
    posted = browser_submits(hidden(page.text, "filter_json"))
    done = env.post(
        "/clear/run",
        cache="main",
        filter_json=posted,
        confirm="yes",
        expected=hidden(page.text, "expected"),
    )
    assert done.status_code == 200
    assert "Removed 2 entries" in done.text
    assert sorted(env.cache.keys()) == sorted(["a\r\nb1", "a\rb1", "ab1"])


def test_put_keeps_a_key_a_text_input_would_change(make_console: MakeConsole) -> None:
    """A text input drops line breaks: *Edit as JSON* of ``user\\nadmin`` stored the value
    under ``useradmin``. The key is shown and carried as JSON, not in an input."""
    env = make_console()
    env.cache.put("user\nadmin", {"role": "user"})
    page = env.client.get("/put", params={"cache": "main", "key": "user\nadmin"})
    assert page.status_code == 200
    assert 'name="key"' not in page.text
    assert "user\\nadmin" in page.text  # shown escaped
    posted = browser_submits(hidden(page.text, "key_json"))
    stored = env.post("/put/run", cache="main", key_json=posted, value='{"role": "admin"}')
    assert stored.status_code == 303
    assert env.cache.get("user\nadmin") == {"role": "admin"}
    assert sorted(env.cache.keys()) == ["user\nadmin"]
    # A key an input keeps is still editable, up to the core's length.
    plain = env.client.get("/put", params={"cache": "main", "key": "plain"}).text
    assert (
        f'<input id="key" name="key" value="plain" required maxlength="{MAX_KEY_LENGTH}">' in plain
    )
    assert "key_json" not in plain


HOSTILE_JSON = [
    '"unterminated',
    "unquoted",
    "'single'",
    "[1]",
    "1",
    "null",
    "true",
    '{"a": 1}',
    '"a" "b"',
    '"a"]',
    '"\\x41"',
    '"a\\"',
    "[" * 100_000,  # json.loads recursion, were it parsed as any JSON
    '"' + "[" * 100_000,
    "",
    '""',  # an empty key
    json_literal("k" * (MAX_KEY_LENGTH + 1)),
    json_literal("\U0001f600" * (MAX_KEY_LENGTH + 1)),
    '"' + "x" * (12 * MAX_KEY_LENGTH + 1) + '"',
]


@pytest.mark.parametrize("bad", HOSTILE_JSON, ids=lambda v: repr(v[:20]))
def test_a_key_json_that_is_not_a_key_is_refused(make_console: MakeConsole, bad: str) -> None:
    env = make_console()
    env.cache.put_many({"k": 1, "a": 3})
    for url, extra in (("/entry/delete", {}), ("/put/run", {"value": "5"})):
        response = env.post(url, cache="main", key_json=bad, key="k", **extra)
        assert response.status_code == 400, (url, response.text[-300:])
        assert "Traceback" not in response.text
    assert sorted(env.cache.keys()) == ["a", "k"]
    assert env.cache.get("k") == 1


@pytest.mark.parametrize("bad", ['"unterminated', "[1]", "[" * 100_000, json_literal("*" * 513)])
def test_a_filter_json_that_is_not_a_filter_is_refused(make_console: MakeConsole, bad: str) -> None:
    env = make_console()
    env.cache.put_many({"k": 1, "a": 3})
    response = env.post("/clear/run", cache="main", filter_json=bad, confirm="yes", expected="9")
    assert response.status_code == 400
    assert sorted(env.cache.keys()) == ["a", "k"]


@pytest.mark.parametrize(
    # Non-ASCII keys are shorter: the test client refuses URLs over 64K characters (the
    # percent-encoding of U+1F600 takes 12); browsers take megabytes.
    ("char", "length"),
    [("x", MAX_KEY_LENGTH), ("\u00e9", 8_000), ("\u202e", 5_000), ("\U0001f600", 5_000)],
)
def test_keys_over_4096_characters_can_be_opened_edited_and_deleted(
    make_console: MakeConsole, char: str, length: int
) -> None:
    """The console capped keys at 4,096 characters while the core takes 16,384: longer keys
    were listed but every page and form on them answered 400."""
    env = make_console()
    key = char * length
    env.cache.put(key, {"a": 1})
    listing = env.client.get("/keys?cache=main")
    link = html.unescape(re.findall(r'href="(/entry\?[^"]+)"', listing.text)[0])
    entry = env.client.get(link)
    assert entry.status_code == 200
    assert json.loads(browser_submits(hidden(entry.text, "key_json"))) == key
    edit = env.client.get("/put", params={"cache": "main", "key": key})
    assert edit.status_code == 200
    assert "&#34;a&#34;: 1" in edit.text  # the value to edit
    stored = env.post("/put/run", cache="main", key=key, value="2")
    assert stored.status_code == 303
    assert env.cache.get(key) == 2
    posted = browser_submits(hidden(entry.text, "key_json"))
    assert env.post("/entry/delete", cache="main", key_json=posted).status_code == 200
    assert env.cache.get(key) is None


def test_keys_over_the_core_limit_are_refused(make_console: MakeConsole) -> None:
    """One character more than the core accepts: a 400 naming the limit, on every route."""
    env = make_console()
    key = "\u00e9" * (MAX_KEY_LENGTH + 1)
    for response in (
        env.client.get("/entry", params={"cache": "main", "key": "x" * (MAX_KEY_LENGTH + 1)}),
        env.client.get("/put", params={"cache": "main", "key": "x" * (MAX_KEY_LENGTH + 1)}),
        env.post("/entry/delete", cache="main", key=key),
        env.post("/entry/delete", cache="main", key_json=json_literal(key)),
        env.post("/put/run", cache="main", key=key, value="1"),
    ):
        assert response.status_code == 400
        assert f"at most {MAX_KEY_LENGTH:,}" in response.text
