"""The console's pages and actions on memory, Redis and local DynamoDB (HTTP level)."""

from __future__ import annotations

import html
import json
import re
import time
import uuid

import pytest

from cachehub.console.app import MAX_JSON_CHARS

from .conftest import MakeConsole


def test_caches_page_shows_provider_masked_settings_info_and_stats(
    make_console: MakeConsole, provider: str
) -> None:
    # Stats are kept per cache name for the whole process: a name of its own.
    name = f"stats{provider}{uuid.uuid4().hex[:8]}"
    env = make_console(provider, name=name)
    env.cache.put("a", 1)
    env.cache.get("a")
    env.cache.get("missing")
    index = env.client.get("/")
    assert index.status_code == 200
    assert f'href="/cache?name={name}"' in index.text
    page = env.client.get(f"/cache?name={name}")
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert f"cachehub_{provider}" in text  # the provider class
    assert "*****" in text or provider == "memory"  # secrets masked
    assert "${" not in text  # settings are shown resolved-and-masked, never as raw text
    assert re.search(r'id="hit-ratio">50\.0%<', page.text), "1 hit and 1 miss"
    assert ">get<" in page.text  # the per-operation latency table
    assert "namespace" in text  # cache.info()
    health = env.post("/cache/health", cache=name)
    assert health.status_code == 200
    assert "All checks passed." in health.text, html.unescape(health.text)


def test_browse_view_delete(make_console: MakeConsole, provider: str) -> None:
    env = make_console(provider)
    env.cache.put_many({f"user:{i}": {"id": i} for i in range(5)})
    env.cache.put("other", "x")
    page = env.client.get("/keys?cache=main&filter=user:*")
    keys = re.findall(r"key=(user%3A\d)", page.text)
    assert sorted(keys) == [f"user%3A{i}" for i in range(5)]
    assert "other" not in page.text
    entry = env.client.get("/entry?cache=main&key=user%3A3")
    assert entry.status_code == 200
    assert 'id="type">dict<' in entry.text
    assert "1 items" in entry.text
    assert "{&#39;id&#39;: 3}" in entry.text
    deleted = env.post("/entry/delete", cache="main", key="user:3")
    assert deleted.status_code == 200
    assert "Deleted" in deleted.text
    assert env.cache.get("user:3") is None
    again = env.client.get("/entry?cache=main&key=user%3A3")
    assert again.status_code == 404
    assert env.post("/entry/delete", cache="main", key="user:3").status_code == 200


def test_clear_by_filter_previews_the_count_and_needs_confirmation(
    make_console: MakeConsole, provider: str
) -> None:
    env = make_console(provider)
    env.cache.put_many({f"tmp:{i}": i for i in range(7)})
    env.cache.put("keep", 1)
    preview = env.client.get("/clear?cache=main&filter=tmp:*")
    assert "<strong>7</strong> entries match" in preview.text
    assert 'data-confirm="Delete 7 entries?' in preview.text
    refused = env.post("/clear/run", cache="main", filter="tmp:*")
    assert refused.status_code == 400
    assert env.cache.count("tmp:*") == 7
    env.cache.put("tmp:late", 8)  # written after the page counted 7
    late = env.post("/clear/run", cache="main", filter="tmp:*", confirm="yes", expected="7")
    assert late.status_code == 400  # on main: "Removed 8 entries", 7 confirmed
    assert "8 entries match now" in late.text
    assert env.cache.count("tmp:*") == 8
    env.cache.delete("tmp:late")
    done = env.post("/clear/run", cache="main", filter="tmp:*", confirm="yes", expected="7")
    assert done.status_code == 200
    assert "Removed 7 entries" in done.text
    assert env.cache.count() == 1
    assert env.cache.get("keep") == 1


def test_put_and_edit_json_values(make_console: MakeConsole, provider: str) -> None:
    env = make_console(provider)
    stored = env.post("/put/run", cache="main", key="cfg", value='{"a": [1, 2.5, null]}', ttl="90")
    assert stored.status_code == 303
    assert stored.headers["location"].endswith("/entry?cache=main&key=cfg")
    assert env.cache.get("cfg") == {"a": [1, 2.5, None]}
    ttl = env.cache.metadata("cfg").time_to_live
    assert ttl is not None
    assert 0 < ttl.total_seconds() <= 90
    entry = env.client.get("/entry?cache=main&key=cfg")
    deadline = float(re.search(r'data-deadline="([0-9.]+)"', entry.text).group(1))
    assert 0 < deadline - time.time() <= 91  # what console.js counts down from
    edit = env.client.get("/put?cache=main&key=cfg")
    assert "&#34;a&#34;: [" in edit.text  # prefilled with the JSON
    for bad, message in (
        ("{nope", "not valid JSON"),
        ("[" * 100_000, "too deeply"),
        # json.loads raises a bare ValueError past 4,300 digits: it was a 500 page.
        ("[" + "7" * 5_000 + "]", "integer of thousands of digits"),
    ):
        response = env.post("/put/run", cache="main", key="cfg", value=bad)
        assert response.status_code == 400
        assert message in response.text
    # Plain decimal seconds only: float() also takes Arabic-Indic digits, underscores and
    # exponents (1e-320 seconds: an entry that is gone before the page reloads).
    for ttl_text in (
        "soon",
        "-5",
        "nan",
        "1e400",
        "\u0663",
        "1_000",
        "1e-320",
        "0",
        "0.0",
        "+5",
        ".5.",
    ):
        response = env.post("/put/run", cache="main", key="cfg", value="1", ttl=ttl_text)
        assert response.status_code == 400, ttl_text
        assert "TTL" in response.text
    assert env.post("/put/run", cache="main", key="half", value="1", ttl=" 0.5 ").status_code == 303
    assert env.cache.get("cfg") == {"a": [1, 2.5, None]}


def test_entry_preview_of_huge_values_is_bounded(make_console: MakeConsole) -> None:
    env = make_console()
    env.cache.put("text", "x" * 5_000_000)
    env.cache.put("list", list(range(1_000_000)))
    for key, size in (("text", "5,000,000 characters"), ("list", "1,000,000 items")):
        response = env.client.get(f"/entry?cache=main&key={key}")
        assert response.status_code == 200
        assert size in response.text
        assert "(preview, cut)" in response.text
        assert len(response.content) < 20_000
        # Not editable as JSON here: the form would hold megabytes.
        assert "Edit as JSON" not in response.text
        form = env.client.get(f"/put?cache=main&key={key}").text
        assert re.search(r'<textarea id="value"[^>]*></textarea>', form)
        assert "cannot be edited here" in form


def test_read_only_console_hides_and_refuses_every_write(
    make_console: MakeConsole, provider: str
) -> None:
    env = make_console(provider, read_only=True)
    assert env.cache.read_only  # the caches themselves refuse writes too
    pages = [
        env.client.get(url).text
        for url in ("/cache?name=main", "/keys?cache=main", "/config", "/config/edit?name=main")
    ]
    for text in pages:
        for form in ("/entry/delete", "/clear/run", "/put/run", "/config/save", "Put a value"):
            assert form not in text
    assert "read-only" in pages[0]
    before = env.path.read_text()
    for url, data in {
        "/entry/delete": {"cache": "main", "key": "k"},
        "/clear/run": {"cache": "main", "filter": "", "confirm": "yes"},
        "/put/run": {"cache": "main", "key": "k", "value": "1"},
        "/config/save": {"name": "x", "class": "memory", "custom": "{}"},
    }.items():
        response = env.post(url, **data)
        assert response.status_code == 403, url
        assert "read-only" in response.text
    assert env.path.read_text() == before
    # Reading still works, and so do the doctor's checks (no round trip on read-only).
    assert env.post("/cache/health", cache="main").status_code == 200


def test_errors_are_pages_not_tracebacks(make_console: MakeConsole) -> None:
    env = make_console()
    cases = {
        "/cache?name=nope": (404, "nope"),
        "/keys?cache=": (404, "no cache named"),
        "/entry?cache=main&key=": (400, "key"),
        "/entry?cache=main&key=" + "k" * 300: (404, "no live entry"),
        "/keys?cache=main&page=x&session=abc": (400, "page must be a number"),
        "/keys?cache=main&filter=" + "*" * 600: (400, "at most 512"),
    }
    for url, (status, text) in cases.items():
        response = env.client.get(url)
        assert response.status_code == status, (url, response.text[-300:])
        assert text in html.unescape(response.text), url
        assert "Traceback" not in response.text


def test_unexpected_errors_show_a_generic_page(
    make_console: MakeConsole, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = make_console()

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("internal detail /etc/secret-path")

    monkeypatch.setattr(type(env.cache), "peek", broken)
    response = env.client.get("/entry?cache=main&key=k")
    assert response.status_code == 500
    assert "unexpected RuntimeError" in response.text
    assert "secret-path" not in response.text
    assert "Traceback" not in response.text


def test_dynamodb_command_runner(make_console: MakeConsole) -> None:
    env = make_console("dynamodb")
    page = env.client.get("/dynamodb?cache=main")
    assert page.status_code == 200
    assert 'id="run"' in page.text
    key = env.cache.key_name
    item = f'{{"{key}": "console-item", "payload": "hello", "n": 3}}'
    assert env.post("/dynamodb/run", cache="main", action="putItem", data=item).status_code == 200
    got = env.post(
        "/dynamodb/run", cache="main", action="getItem", data=f'{{"{key}": "console-item"}}'
    )
    assert got.status_code == 200
    assert "&#34;payload&#34;: &#34;hello&#34;" in got.text
    typo = env.post("/dynamodb/run", cache="main", action="getItm", data="{}")
    assert typo.status_code == 400
    assert "Did you mean" in html.unescape(typo.text)
    bad = env.post("/dynamodb/run", cache="main", action="getItem", data="[1,")
    assert bad.status_code == 400
    assert "not valid JSON" in bad.text
    # A Limit of millions read the whole table into the console before the page was cut.
    for limit in ('"Limit": 10001', '"limit": 1000000000'):
        huge = env.post("/dynamodb/run", cache="main", action="scan", data=f"{{{limit}}}")
        assert huge.status_code == 400, limit
        assert "at most 10,000" in html.unescape(huge.text)
    assert (
        env.post("/dynamodb/run", cache="main", action="scan", data='{"Limit": 10000}').status_code
        == 200
    )
    digits = env.post("/dynamodb/run", cache="main", action="getItem", data="7" * 5_000)
    assert digits.status_code == 400  # was a 500: json.loads' bare ValueError
    assert "integer of thousands of digits" in digits.text
    env.cache.command("deleteItem", {key: "console-item"})


def test_dynamodb_command_runner_read_only_refuses_writes(make_console: MakeConsole) -> None:
    env = make_console("dynamodb", read_only=True)
    key = env.cache.key_name
    item = f'{{"{key}": "ro-item", "payload": "x"}}'
    refused = env.post("/dynamodb/run", cache="main", action="putItem", data=item)
    assert refused.status_code == 403
    read = env.post("/dynamodb/run", cache="main", action="getItem", data=f'{{"{key}": "ro-item"}}')
    assert read.status_code == 200
    assert "null" in read.text


def test_dynamodb_command_runner_only_for_dynamodb_caches(make_console: MakeConsole) -> None:
    env = make_console("memory")
    assert "dynamodb_command" not in env.client.get("/cache?name=main").text
    response = env.client.get("/dynamodb?cache=main")
    assert response.status_code == 400
    assert "not a DynamoDB cache" in response.text


def test_dynamodb_command_scan_is_bounded_by_default(make_console: MakeConsole) -> None:
    env = make_console("dynamodb")
    sent: list[dict[str, object]] = []
    env.cache.client.meta.events.register(
        "provide-client-params.dynamodb.Scan", lambda params, **_: sent.append(dict(params))
    )
    response = env.post("/dynamodb/run", cache="main", action="scan", data="{}")
    assert response.status_code == 200
    assert "Limited to 1,000 items evaluated" in response.text
    assert sent
    assert all(p.get("Limit", 0) <= 1000 for p in sent)
    explicit = env.post("/dynamodb/run", cache="main", action="scan", data='{"Limit": 2}')
    assert "Limited to" not in explicit.text


def test_huge_values_render_within_a_memory_cap() -> None:
    # 100 MB values in a child capped at 384 MB more than its start: a repr() of the
    # bytes (400 MB) or a JSON encoding of the string would not fit.
    from reliability.sandbox import assert_contained, run_bounded

    from .hostile_values import render_huge_entries

    outcome = run_bounded(render_huge_entries, 100_000_000, memory_mb=384, seconds=60)
    assert_contained(outcome)
    assert outcome.kind == "value", outcome.describe()
    for page, (status, length) in outcome.value.items():
        assert status == 200, page
        assert length < 20_000, page


class _Compared:
    """A set member / dict key that counts how often it is compared for ordering."""

    compared = 0

    def __init__(self, number: int) -> None:
        self.number = number

    def __lt__(self, other: _Compared) -> bool:
        _Compared.compared += 1
        return self.number < other.number

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Compared) and other.number == self.number

    def __hash__(self) -> int:
        return self.number

    def __repr__(self) -> str:
        return f"c{self.number}"


@pytest.mark.parametrize("kind", [set, frozenset, dict])
def test_previews_of_sets_and_dicts_do_not_sort_them(kind: type) -> None:
    """reprlib sorts a set or dict before showing its first items: every item is
    copied and compared. The preview shows the first items in iteration order."""
    from cachehub.console.preview import preview

    items = [_Compared(n) for n in range(20_000, 0, -1)]
    value = dict.fromkeys(items, 0) if kind is dict else kind(items)
    _Compared.compared = 0
    shown = preview(value)
    assert _Compared.compared == 0
    assert shown.truncated
    first = next(iter(value))
    assert repr(first) in shown.text
    assert shown.text.count("c") <= 60  # about 50 items, not 20,000


class _Large:
    """An attribute value JSON cannot encode (as boto3's Binary): ``default=str`` turns it
    into 1,000 characters, and counts how often it had to."""

    encoded = 0

    def __str__(self) -> str:
        _Large.encoded += 1
        return "x" * 1000


def test_dynamodb_command_result_is_encoded_only_up_to_the_cut(
    make_console: MakeConsole, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The page JSON-encoded the whole result before cutting it to 512K characters: a
    result of 10,000 items of 400 KB held gigabytes. Now encoding stops at the cut."""
    env = make_console()
    items = 50_000  # 50 MB of JSON, were it encoded whole
    calls: list[tuple[str, object]] = []

    def command(action: str, data: object) -> object:
        calls.append((action, data))
        return {"Items": [{"k": {"B": _Large()}}] * items, "Count": items}

    monkeypatch.setattr(env.cache, "command", command, raising=False)
    _Large.encoded = 0
    response = env.post("/dynamodb/run", cache="main", action="scan", data='{"Limit": 10}')
    assert response.status_code == 200
    assert calls == [("scan", {"Limit": 10})]
    assert "(cut: the result is longer)" in response.text
    assert _Large.encoded <= MAX_JSON_CHARS // 1000 + 2  # about 520 items, not 50,000
    assert len(response.text) < 2 * MAX_JSON_CHARS


@pytest.mark.parametrize(
    "value",
    [None, {}, [], "é\u202e<b>", {"a": [1, 2.5, None, True], "b": {"c": "d"}}, list(range(300))],
)
def test_bounded_json_is_json_dumps_until_the_cut(value: object) -> None:
    from cachehub.console.app import _bounded_json

    full = json.dumps(value, indent=2, default=str, ensure_ascii=False)
    assert _bounded_json(value, len(full)) == (full, False)
    assert _bounded_json(value, MAX_JSON_CHARS) == (full, False)
    if len(full) > 1:
        assert _bounded_json(value, len(full) - 1) == (full[:-1], True)
