"""Long keys on the key list: a page's size is bounded whatever the keys, and every key
stays openable, editable and deletable from the page's own links.

A page of 50 planted keys of 16,380 right-to-left overrides was 12 MB: each key was shown
escaped in full and percent-encoded (9 bytes a character) in its link. Labels are now cut
and long keys linked by their position in the browse session.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator

import pytest

from cachehub.api import MAX_KEY_LENGTH
from cachehub.console.app import MAX_KEY_LABEL_CHARS, MAX_KEY_LINK_CHARS, key_label, visible
from cachehub.console.browse import PAGE_SIZE, BrowseSessions

from .conftest import Env, MakeConsole
from .test_forms import browser_submits, hidden

PAGE_BYTES: int = 100_000
"""What a key list page may weigh at most, whatever its keys (see docs/console.md)."""
ENTRY_LINK = re.compile(r'<li><a href="(/entry\?[^"]+)">([^<]*)</a></li>')
NEXT = re.compile(r'rel="next" href="([^"]+)"')


def hostile_keys() -> list[str]:
    """50 maximal right-to-left-override keys, then other long hostile keys."""
    keys = ["\u202e" * 16_380 + f"{i:02d}" for i in range(PAGE_SIZE)]
    keys += [
        "\U0001f600" * MAX_KEY_LENGTH,  # 4 bytes in UTF-8, 12 percent-encoded
        "x" * MAX_KEY_LENGTH,  # plain ASCII at the limit
        "x" * (MAX_KEY_LINK_CHARS + 1),  # just past a link by name
        "a\r\nb\n" * (MAX_KEY_LENGTH // 5),  # line breaks: travel as key_json
        "\r" * 100 + "\x00" + "\n" * 100,
        '"' * MAX_KEY_LENGTH,  # 5 bytes a character once HTML-escaped
        '"' * 170 + "&<",  # a link by name (510 bytes) and a cut label
        "<script>alert(1)</script>" * 600,
    ]
    assert all(len(k) <= MAX_KEY_LENGTH for k in keys)
    assert len(set(keys)) == len(keys)
    return keys


def listing(env: Env) -> Iterator[tuple[int, list[tuple[str, str]]]]:
    """Each page of the key list (following Next): its size and its (href, label) pairs."""
    url: str | None = "/keys?cache=main"
    while url is not None:
        response = env.client.get(url)
        assert response.status_code == 200
        yield (
            len(response.content),
            [
                (html.unescape(href), html.unescape(label))
                for href, label in ENTRY_LINK.findall(response.text)
            ],
        )
        found = NEXT.search(response.text)
        url = None if found is None else html.unescape(found.group(1))


def edit_form(page: str) -> dict[str, str]:
    """What a browser posts from the put page's form (csrf included, value left out)."""
    form = re.search(r'<form method="post" action="/put/run".*?</form>', page, re.S)
    assert form is not None
    fields = re.findall(r'<input[^>]* name="([^"]+)" value="([^"]*)"', form.group(0))
    return {name: browser_submits(value) for name, value in fields if name != "ttl"}


@pytest.mark.parametrize("where", ["memory", "redis"])
def test_a_page_of_hostile_long_keys_is_bounded_and_every_key_opens(
    make_console: MakeConsole, where: str
) -> None:
    env = make_console(where)
    keys = hostile_keys()
    env.cache.put_many({key: i for i, key in enumerate(keys)})
    seen: dict[str, str] = {}
    pages = 0
    for size, links in listing(env):
        pages += 1
        assert size < PAGE_BYTES, size  # was 12,289,099 bytes for the first page
        for href, label in links:
            # Follow the page's own link: the entry page names exactly one planted key.
            entry = env.client.get(href)
            assert entry.status_code == 200, (href, entry.text[-300:])
            key = json.loads(browser_submits(hidden(entry.text, "key_json")))
            assert key in keys
            assert key not in seen
            seen[key] = href
            assert len(href) <= MAX_KEY_LINK_CHARS + 100
            if len(visible(key)) > MAX_KEY_LABEL_CHARS:
                assert label.endswith(f"… ({len(key):,} characters)")
                assert len(label) <= MAX_KEY_LABEL_CHARS + 30
            else:
                assert label == visible(key)
            for char in "\u202e\r\n\x00":
                assert char not in label
    assert pages >= 2
    assert set(seen) == set(keys)
    assert all("&session=" in href for key, href in seen.items() if key != '"' * 170 + "&<")
    # Delete each by its entry page's form: exactly that key goes.
    left = len(keys)
    for key, href in seen.items():
        entry = env.client.get(href)
        posted = browser_submits(hidden(entry.text, "key_json"))
        deleted = env.post("/entry/delete", cache="main", key_json=posted)
        assert deleted.status_code == 200
        assert "Deleted" in deleted.text
        assert env.cache.get(key) is None
        left -= 1
        assert env.cache.count() == left


def test_a_long_key_is_edited_from_its_position_link(make_console: MakeConsole) -> None:
    env = make_console()
    kinds = ["\u202e" * 16_380, "x" * MAX_KEY_LENGTH, "a\r\nb\n" * 3_000, "\U0001f600" * 9_000]
    env.cache.put_many({key: {"n": i} for i, key in enumerate(kinds)})
    env.cache.put("short", {"n": -1})
    (_, links), *_ = listing(env)
    assert len(links) == len(kinds) + 1
    for href, _label in links:
        entry = env.client.get(href)
        key = json.loads(browser_submits(hidden(entry.text, "key_json")))
        edit = re.search(r'<a class="button" href="([^"]+)">Edit as JSON</a>', entry.text)
        assert edit is not None
        edit_href = html.unescape(edit.group(1))
        assert len(edit_href) <= MAX_KEY_LINK_CHARS + 100  # never the whole key
        page = env.client.get(edit_href)
        assert page.status_code == 200
        form = edit_form(page.text)
        assert form.get("key") == key or json.loads(form["key_json"]) == key
        form["value"] = json.dumps({"edited": key[:3]})
        stored = env.client.post("/put/run", data=form, follow_redirects=False)
        assert stored.status_code == 303, stored.text[-300:]
        assert env.cache.get(key) == {"edited": key[:3]}
        # Back to the same entry, by a short address.
        location = stored.headers["location"]
        assert len(location) <= MAX_KEY_LINK_CHARS + 100
        again = env.client.get(location)
        assert json.loads(browser_submits(hidden(again.text, "key_json"))) == key
    assert env.cache.count() == len(kinds) + 1


def test_short_keys_keep_their_links_by_name(make_console: MakeConsole) -> None:
    env = make_console()
    border = "x" * MAX_KEY_LINK_CHARS
    env.cache.put_many({"user:3": 1, "admin\u200b": 2, border: 3, border + "y": 4})
    page = env.client.get("/keys?cache=main").text
    assert '<a href="/entry?cache=main&amp;key=user%3A3">user:3</a>' in page
    assert '<a href="/entry?cache=main&amp;key=admin%E2%80%8B">admin\\u200b</a>' in page
    assert f'<a href="/entry?cache=main&amp;key={border}">' in page
    position = re.search(r'href="(/entry\?cache=main&amp;session=[^"]+)"', page)
    assert position is not None  # the key one character longer
    entry = env.client.get(html.unescape(position.group(1)))
    assert json.loads(browser_submits(hidden(entry.text, "key_json"))) == border + "y"
    # Its Edit link names the key when it is short, as before.
    short = env.client.get("/entry?cache=main&key=user%3A3").text
    assert 'href="/put?cache=main&amp;key=user%3A3"' in short


def test_a_page_of_the_heaviest_keys_linked_by_name_is_bounded(make_console: MakeConsole) -> None:
    """Just short of a link by position (510 bytes percent-encoded) and 5 bytes a shown
    character once HTML-escaped: the heaviest a row gets."""
    env = make_console()
    env.cache.put_many({'"' * 168 + f"{i:02d}": i for i in range(PAGE_SIZE)})
    (size, links), *_ = listing(env)
    assert size < PAGE_BYTES
    assert len(links) == PAGE_SIZE
    assert all("&key=" in href for href, _ in links)


def position_link(env: Env) -> str:
    env.cache.put("\u202e" * 1_000, 1)
    (_, links), *_ = listing(env)
    assert "&session=" in links[0][0]
    return links[0][0]


@pytest.mark.parametrize("path", ["/entry", "/put"])
def test_an_expired_listing_or_a_bad_position_is_a_clean_4xx(
    make_console: MakeConsole, path: str
) -> None:
    env = make_console(extra={"other": {"class": "memory", "custom": {"namespace": "o:"}}})
    link = position_link(env).replace("/entry?", f"{path}?")
    assert env.client.get(link).status_code == 200
    session = re.search(r"session=([^&]+)", link)
    assert session is not None
    sid = session.group(1)
    gone = [
        link.replace("&at=0", "&at=1"),  # past the page's keys
        link.replace("&page=0", "&page=1"),  # a page never shown
        link.replace(sid, "forged"),
        link.replace("cache=main", "cache=other"),  # a session of another cache
    ]
    bad = [
        link.replace("&at=0", "&at=x"),
        link.replace("&at=0", "&at=-1"),
        link.replace("&at=0", "&at=1.5"),
        link.replace("&at=0", "&at=\u0663"),  # a digit, not an ASCII one
        link.replace("&at=0", "&at=" + "9" * 13),
        link.replace("&at=0", ""),
        link.replace("&page=0", "&page=x"),
        link.replace(sid, "s" * 65),
    ]
    for url in gone:
        response = env.client.get(url)
        assert response.status_code == 410, url
        assert "listing has expired" in response.text
        assert "Traceback" not in response.text
    for url in bad:
        response = env.client.get(url)
        assert response.status_code == 400, url
        assert "Traceback" not in response.text
    # The listing idled out, or was closed: 410 naming the way back.
    env.console.browse.idle_seconds = -1.0
    expired = env.client.get(link)
    assert expired.status_code == 410
    assert "go back to the keys list" in html.unescape(expired.text)
    assert '<a href="/keys?cache=main">' in expired.text
    env.console.browse.idle_seconds = 600.0
    link = position_link(env).replace("/entry?", f"{path}?")
    env.console.browse.close_all()
    assert env.client.get(link).status_code == 410


def test_key_label_cuts_between_escapes() -> None:
    assert key_label("user:3") == "user:3"
    assert key_label("admin\u200b") == "admin\\u200b"
    key = "\u202e" * 16_380
    label = key_label(key)
    assert label == "\\u202e" * 33 + "… (16,380 characters)"  # 198 characters, not 200
    assert key_label("a" * 200) == "a" * 200
    assert key_label("a" * 201) == "a" * 200 + "… (201 characters)"
    assert key_label("\U0001f600" * 300).startswith("\U0001f600" * 200 + "…")


def test_key_at_reads_only_pages_already_shown() -> None:
    pulled: list[int] = []

    def keys() -> Iterator[str]:
        for i in range(10):
            pulled.append(i)
            yield f"k{i}"

    sessions = BrowseSessions(page_size=3)
    sid = sessions.open("c", None, keys())
    assert sessions.key_at(sid, "c", 0, 0) is None  # page 0 not shown yet
    assert pulled == []
    assert sessions.page(sid, "c", 0) is not None
    assert sessions.key_at(sid, "c", 0, 2) == "k2"
    assert sessions.key_at(sid, "c", 0, 3) is None
    assert sessions.key_at(sid, "c", 1, 0) is None
    assert sessions.key_at(sid, "c", 0, -1) is None
    assert sessions.key_at(sid, "other", 0, 0) is None
    assert sessions.key_at("forged", "c", 0, 0) is None
    assert len(pulled) <= 4
