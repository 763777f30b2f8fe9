"""Streamed key browsing: each page pulls only its own keys, counted at the backend."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from cachehub.console.browse import PAGE_SIZE, BrowseSessions

from .conftest import Env, MakeConsole

KEY_LINK = re.compile(r'href="/entry\?cache=main&amp;key=([^"]+)"')
NEXT = re.compile(r'rel="next" href="([^"]+)"')


class Counted:
    """Wraps ``cache.keys`` to count the keys the console pulls from the stream."""

    def __init__(self, env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pulled = 0
        real = env.cache.keys

        def keys(filter: str | None = None) -> Iterator[str]:
            for key in real(filter):
                self.pulled += 1
                yield key

        monkeypatch.setattr(env.cache, "keys", keys)


def _pages(env: Env, count: int, url: str = "/keys?cache=main") -> list[list[str]]:
    """Follow the Next links ``count`` times; the keys of each page."""
    pages = []
    for _ in range(count):
        response = env.client.get(url.replace("&amp;", "&"))
        assert response.status_code == 200
        pages.append(KEY_LINK.findall(response.text))
        found = NEXT.search(response.text)
        if found is None:
            break
        url = found.group(1)
    return pages


def test_memory_50k_keys_page_by_page(
    make_console: MakeConsole, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = make_console()
    env.cache.put_many({f"k{i:05d}": i for i in range(50_000)})
    counted = Counted(env, monkeypatch)
    pages = _pages(env, 3)
    assert [len(p) for p in pages] == [PAGE_SIZE] * 3
    assert len({k for p in pages for k in p}) == 3 * PAGE_SIZE  # no key twice
    # Three pages pulled three pages' worth of keys, not 50,000.
    assert counted.pulled == 3 * PAGE_SIZE
    # "Previous" is served from the session: nothing more is pulled.
    last = env.client.get("/keys?cache=main").text  # a new listing pulls its first page
    assert counted.pulled == 4 * PAGE_SIZE
    prev = re.search(r'rel="next" href="([^"]+)"', last)
    assert prev is not None
    second = env.client.get(prev.group(1).replace("&amp;", "&")).text
    back = re.search(r'rel="prev" href="([^"]+)"', second)
    assert back is not None
    assert counted.pulled == 5 * PAGE_SIZE
    first_again = env.client.get(back.group(1).replace("&amp;", "&")).text
    assert counted.pulled == 5 * PAGE_SIZE
    assert KEY_LINK.findall(first_again) == KEY_LINK.findall(last)


def test_redis_50k_keys_cost_few_scans_per_page(make_console: MakeConsole) -> None:
    env = make_console("redis")
    cache: Any = env.cache
    for start in range(0, 50_000, 10_000):
        cache.put_many({f"k{i:05d}": i for i in range(start, start + 10_000)})
    from redis import Redis

    server = env.console.caches.entry("main").custom
    plain = Redis(host=server["host"], port=server["port"], password=server["password"])

    def scans() -> int:
        stats: dict[str, Any] = plain.info("commandstats")
        return int(stats.get("cmdstat_scan", {}).get("calls", 0))

    before = scans()
    pages = _pages(env, 3)
    used = scans() - before
    plain.close()
    assert [len(p) for p in pages] == [PAGE_SIZE] * 3
    # A full listing needs at least 50 SCANs of 1,000; three pages need one batch.
    assert 1 <= used <= 5, used


def test_dynamodb_keys_cost_one_scan_request_for_many_pages(
    make_console: MakeConsole,
) -> None:
    env = make_console("dynamodb")
    cache: Any = env.cache
    cache.put_many({f"k{i:04d}": i for i in range(1_200)})
    sent: list[str] = []
    cache.client.meta.events.register(
        "before-call.dynamodb", lambda model, **_: sent.append(model.name)
    )
    pages = _pages(env, 5)
    assert [len(p) for p in pages] == [PAGE_SIZE] * 5
    # One Scan page (1,000 items) serves the first 20 pages of 50 keys.
    assert sent.count("Scan") == 1, sent


def test_filter_and_the_end_of_the_listing(make_console: MakeConsole) -> None:
    env = make_console()
    env.cache.put_many({f"a{i}": i for i in range(60)})
    env.cache.put_many({f"b{i}": i for i in range(5)})
    pages = _pages(env, 5, "/keys?cache=main&filter=a*")
    assert [len(p) for p in pages] == [50, 10]  # no Next link after the last page
    assert all(k.startswith("a") for p in pages for k in p)
    empty = env.client.get("/keys?cache=main&filter=zzz*")
    assert 'id="no-keys"' in empty.text
    assert 'rel="next"' not in empty.text


def test_an_unknown_or_foreign_session_starts_a_new_listing(make_console: MakeConsole) -> None:
    env = make_console(extra={"other": {"class": "memory", "custom": {"namespace": "o:"}}})
    env.cache.put("x", 1)
    response = env.client.get("/keys?cache=main&session=forged&page=7")
    assert response.status_code == 200
    assert "had expired" in response.text
    # A session id of another cache is not used for this one.
    env.console.cache("other").put_many({f"o{i}": i for i in range(60)})
    first = env.client.get("/keys?cache=other").text
    sid = re.search(r"session=([^&\"]+)", first)
    assert sid is not None
    response = env.client.get(f"/keys?cache=main&session={sid.group(1)}&page=1")
    assert "had expired" in response.text
    assert "o1" not in response.text


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_sessions_are_capped_and_expire() -> None:
    clock = FakeClock()
    closed: list[int] = []

    def stream(n: int) -> Iterator[str]:
        try:
            yield from (f"{n}:{i}" for i in range(1000))
        finally:
            closed.append(n)

    sessions = BrowseSessions(max_sessions=4, idle_seconds=60, max_pages=3, clock=clock)
    ids = []
    for n in range(6):
        sid = sessions.open("c", None, stream(n))
        page = sessions.page(sid, "c", 0)  # starts the generator, so closing it runs finally
        assert page is not None
        ids.append(sid)
    assert len(sessions) == 4
    assert sorted(closed) == [0, 1]  # the least recently used were closed
    assert sessions.page(ids[0], "c", 1) is None
    # Pages beyond max_pages drop the oldest; asking for one dropped is a typed error.
    for number in range(1, 6):
        assert sessions.page(ids[5], "c", number) is not None
    from cachehub.errors import CacheValueError

    with pytest.raises(CacheValueError, match="no longer kept"):
        sessions.page(ids[5], "c", 0)
    clock.now += 61
    assert sessions.page(ids[5], "c", 6) is None  # idle too long
    assert len(sessions) == 0
    assert sorted(closed) == [0, 1, 2, 3, 4, 5]
    with pytest.raises(CacheValueError):
        sessions.page("x", "c", -1)


def test_a_session_of_another_filter_is_not_reused(make_console: MakeConsole) -> None:
    env = make_console()
    env.cache.put_many({f"a{i}": i for i in range(60)})
    env.cache.put_many({f"b{i}": i for i in range(60)})
    first = env.client.get("/keys?cache=main&filter=a*").text
    sid = re.search(r"session=([^&\"]+)", first)
    assert sid is not None
    other = env.client.get(f"/keys?cache=main&filter=b*&session={sid.group(1)}&page=1").text
    keys = KEY_LINK.findall(other)
    assert keys
    assert all(k.startswith("b") for k in keys)


def test_a_page_number_far_ahead_pulls_one_page_not_the_whole_cache(
    make_console: MakeConsole, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``page`` is a URL parameter: ``page=99999999999`` must not make one request read
    every key of the backend (the Next links only ever ask for the following page)."""
    env = make_console()
    env.cache.put_many({f"k{i:05d}": i for i in range(5_000)})
    counted = Counted(env, monkeypatch)
    first = env.client.get("/keys?cache=main").text
    sid = re.search(r"session=([^&\"]+)", first)
    assert sid is not None
    assert counted.pulled == PAGE_SIZE
    jump = env.client.get(f"/keys?cache=main&session={sid.group(1)}&page=99999999999")
    assert jump.status_code == 200
    assert counted.pulled == 2 * PAGE_SIZE  # only the page after the last one shown
    assert len(KEY_LINK.findall(jump.text)) == PAGE_SIZE
    assert "Page 2 " in jump.text
    # Its Next link goes on from there, one page at a time.
    onward = NEXT.search(jump.text)
    assert onward is not None and "page=2" in onward.group(1)  # noqa: PT018


def test_browse_sessions_clamp_a_jump_to_the_next_page() -> None:
    sessions = BrowseSessions(page_size=2)
    pulled: list[int] = []

    def keys() -> Iterator[str]:
        for i in range(1_000):
            pulled.append(i)
            yield f"k{i}"

    sid = sessions.open("c", None, keys())
    page = sessions.page(sid, "c", 10**9)
    assert page is not None
    assert (page.number, page.keys) == (0, ("k0", "k1"))
    page = sessions.page(sid, "c", 10**9)
    assert page is not None
    assert (page.number, page.keys) == (1, ("k2", "k3"))
    assert len(pulled) <= 5  # a generator runs one item ahead at most
