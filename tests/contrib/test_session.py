"""SessionStore: lifecycle, sliding expiry, storage guard, concurrency, cookies."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from cachehub_memory import MemoryCache

from cachehub.errors import CacheValueError, InvalidKeyError, StorageNotEnabledError
from cachehub.session import SessionCookie, SessionStore, TrackedSession, session_ref
from cachehub.testing.clock import FakeClock


@pytest.fixture
def store(storage_cache: MemoryCache) -> SessionStore:
    return SessionStore(storage_cache, idle_time=timedelta(minutes=30))


def test_requires_storage_flag(make_cache: Callable[..., MemoryCache]) -> None:
    with pytest.raises(StorageNotEnabledError, match="set `storage: true` on the 'plain'"):
        SessionStore(make_cache(name="plain"))


def test_rejects_non_cache_and_bad_idle_time(storage_cache: MemoryCache) -> None:
    with pytest.raises(CacheValueError, match="needs a cachehub cache"):
        SessionStore({"not": "a cache"})  # type: ignore[arg-type]
    with pytest.raises(CacheValueError, match="positive duration"):
        SessionStore(storage_cache, idle_time=0)


@pytest.mark.parametrize("setting", ["idle_time", "absolute_time", "refresh", "lock_ttl"])
@pytest.mark.parametrize("seconds", [10**400, 10**300, 1e300])
def test_durations_beyond_a_cache_entrys_life_are_refused(
    storage_cache: MemoryCache, setting: str, seconds: float
) -> None:
    """Before: 10**400 raised a raw OverflowError (math.isfinite), 10**300 and 1e300 one
    from timedelta for idle_time and absolute_time."""
    with pytest.raises(CacheValueError, match=setting):
        SessionStore(storage_cache, **{setting: seconds})


def test_create_load_save_delete(store: SessionStore) -> None:
    sid = store.create({"user": 1})
    assert store.valid_id(sid)
    assert len(sid) == 43  # token_urlsafe(32)
    assert store.load(sid) == {"user": 1}
    store.save(sid, {"user": 2, "cart": [1, 2]})
    assert store.load(sid) == {"user": 2, "cart": [1, 2]}
    assert store.exists(sid)
    assert store.delete(sid) is True
    assert store.load(sid) is None
    assert store.delete(sid) is False


def test_ids_are_unique(store: SessionStore) -> None:
    assert len({store.create() for _ in range(50)}) == 50


def test_stored_under_prefix_and_hash_never_the_id(storage_cache: MemoryCache) -> None:
    store = SessionStore(storage_cache, prefix="s/")
    sid = store.create({"a": 1})
    [key] = storage_cache.keys()
    assert key == store.storage_key(sid) == "s/" + hashlib.sha256(sid.encode()).hexdigest()
    assert sid not in key
    assert key.startswith("s/" + session_ref(sid))
    assert storage_cache.get(key)["d"] == {"a": 1}


def test_malformed_ids_are_absent_not_errors(store: SessionStore) -> None:
    for bad in (None, "", "short", "x" * 300, "../../etc/passwd-aaaaaaaaaaaaaaaaaaaaa", 42):
        assert store.load(bad) is None  # type: ignore[arg-type]
        assert store.delete(bad) is False  # type: ignore[arg-type]
        assert store.touch(bad) is False  # type: ignore[arg-type]
    with pytest.raises(InvalidKeyError, match="not a valid session id") as err:
        store.save("bad id!", {})
    assert "bad id" not in str(err.value)  # ids are never echoed, not even malformed ones


def test_data_must_be_mapping_with_str_keys(store: SessionStore) -> None:
    sid = store.create()
    with pytest.raises(CacheValueError, match="must be a mapping"):
        store.save(sid, [1, 2])  # type: ignore[arg-type]
    with pytest.raises(CacheValueError, match="keys must be str"):
        store.save(sid, {1: "x"})  # type: ignore[dict-item]


def test_sliding_expiry(store: SessionStore, clock: FakeClock) -> None:
    sid = store.create({"n": 1})
    clock.advance(29 * 60)
    session = store.open(sid)  # a read-only request: the commit slides the deadline
    assert session == {"n": 1}
    assert store.commit(session) == sid
    assert session.extended
    clock.advance(29 * 60)
    assert store.touch(sid)
    clock.advance(29 * 60)
    store.save(sid, {"n": 2})
    clock.advance(29 * 60)
    assert store.load(sid) == {"n": 2}
    clock.advance(30 * 60 + 1)
    assert store.load(sid) is None
    assert store.touch(sid) is False


def test_regenerate_moves_data(store: SessionStore) -> None:
    old = store.create({"cart": ["apple"]})
    new = store.regenerate(old)
    assert new != old
    assert store.load(new) == {"cart": ["apple"]}
    assert store.load(old) is None
    fresh = store.regenerate("unknown-session-id-0000000000")
    assert store.load(fresh) == {}


def test_update_is_serialised(store: SessionStore) -> None:
    sid = store.create({"count": 0})
    workers = 8
    rounds = 10
    barrier = threading.Barrier(workers)

    def work(n: int) -> None:
        barrier.wait()
        for i in range(rounds):

            def bump(data: dict[str, object], n: int = n, i: int = i) -> None:
                data["count"] = int(data["count"]) + 1  # type: ignore[call-overload]
                data[f"w{n}.{i}"] = True

            store.update(sid, bump)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    data = store.load(sid)
    assert data is not None
    assert data["count"] == workers * rounds
    assert len(data) == workers * rounds + 1


def test_concurrent_requests_merge_their_keys(store: SessionStore) -> None:
    """Requests that opened the same session before any commit keep all their writes."""
    sid = store.create({"base": 1})
    workers = 10
    sessions = [store.open(sid) for _ in range(workers)]  # all read the same snapshot
    barrier = threading.Barrier(workers)

    def request(n: int) -> None:
        session = sessions[n]
        session[f"key{n}"] = n
        barrier.wait()
        assert store.commit(session) == sid

    threads = [threading.Thread(target=request, args=(n,)) for n in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.load(sid) == {"base": 1, **{f"key{n}": n for n in range(workers)}}


def test_plain_save_is_last_writer_wins(store: SessionStore) -> None:
    sid = store.create({})
    a = store.load(sid) or {}
    b = store.load(sid) or {}
    a["a"] = 1
    b["b"] = 2
    assert store.save(sid, a)
    assert store.save(sid, b)
    assert store.load(sid) == {"b": 2}  # documented: save() replaces, update() merges


def test_tracked_session_records_changes() -> None:
    s = TrackedSession({"a": 1, "b": 2, "c": 3}, sid="x" * 43)
    assert not s.modified
    assert not s.new
    s["d"] = 4
    del s["a"]
    s.pop("b")
    s.pop("zz", None)
    s.setdefault("e", 5)
    s.setdefault("c", 99)
    s.update(f=6)
    s |= {"g": 7}
    assert s.changed == {"d", "e", "f", "g"}
    assert s.removed == {"a", "b"}
    stored = {"a": 1, "b": 2, "c": 3, "other": "kept"}
    assert s.apply_to(stored) == {"c": 3, "d": 4, "e": 5, "f": 6, "g": 7, "other": "kept"}
    s.clear()
    assert s.cleared
    assert s.modified
    assert s.apply_to({"other": 1}) == {}


def test_tracked_session_modified_flag_writes_everything() -> None:
    s = TrackedSession({"cart": [1]}, sid="x" * 43)
    s["cart"].append(2)  # in-place change: invisible to tracking
    assert not s.modified
    s.modified = True
    assert s.apply_to({"cart": [1], "stale": 1}) == {"cart": [1, 2]}


def test_commit_lifecycle(store: SessionStore) -> None:
    anonymous = store.open(None)
    assert anonymous.new
    assert store.commit(anonymous) is None  # nothing stored for an empty new session
    session = store.open(None)
    session["user"] = "ann"
    sid = store.commit(session)
    assert sid is not None
    assert store.load(sid) == {"user": "ann"}
    again = store.open(sid)
    again.regenerate()
    new_sid = store.commit(again)
    assert new_sid not in (None, sid)
    assert store.load(sid) is None
    assert store.load(new_sid) == {"user": "ann"}
    last = store.open(new_sid)
    last.clear()
    assert store.commit(last) is None
    assert store.load(new_sid) is None


def test_cookie_read_and_render() -> None:
    cookie = SessionCookie()
    sid = "A" * 43
    assert cookie.read(f"theme=dark; session={sid}; other=1") == sid
    assert cookie.read('session="' + sid + '"') == sid
    assert cookie.read("session=not valid!") is None
    assert cookie.read(None) is None
    rendered = cookie.render(sid)
    assert rendered.startswith(f"session={sid}")
    for flag in ("Path=/", "Secure", "HttpOnly", "SameSite=Lax"):
        assert flag in rendered
    cleared = cookie.render(None)
    assert "Max-Age=0" in cleared
    assert "expires=Thu, 01 Jan 1970" in cleared


def test_cookie_validation() -> None:
    with pytest.raises(CacheValueError, match="not a valid cookie name"):
        SessionCookie(name="bad name;")
    with pytest.raises(CacheValueError, match="requires secure=True"):
        SessionCookie(samesite="None", secure=False)
    with pytest.raises(CacheValueError, match="samesite must be"):
        SessionCookie(samesite="lax-ish")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"path": "/\r\nSet-Cookie: admin=1"}, "cookie path"),
        ({"path": "/; SameSite=None"}, "cookie path"),
        ({"path": "app"}, "cookie path"),
        ({"domain": "example.com; Secure"}, "cookie domain"),
        ({"domain": "exa mple.com"}, "cookie domain"),
        ({"domain": "ex\u00e4mple.com"}, "cookie domain"),
        ({"name": "__Host-session", "secure": False}, "__Host-"),
        ({"name": "__Host-session", "domain": "example.com"}, "__Host-"),
        ({"name": "__Host-session", "path": "/app"}, "__Host-"),
        ({"name": "__Secure-session", "secure": False}, "__Secure-"),
        # Browsers match the prefixes in any letter case (RFC 6265bis, "Cookie Name
        # Prefixes"), so they drop these too.
        ({"name": "__HOST-session", "secure": False}, "__Host-"),
        ({"name": "__host-session", "domain": "example.com"}, "__Host-"),
        ({"name": "__Host-Session", "path": "/app"}, "__Host-"),
        ({"name": "__SECURE-session", "secure": False}, "__Secure-"),
        ({"name": "__secure-session", "secure": False}, "__Secure-"),
    ],
)
def test_cookie_attributes_cannot_inject_or_be_dropped(
    settings: dict[str, Any], message: str
) -> None:
    """Path and domain are written into Set-Cookie as they are: a ';' or a line break
    would add attributes or headers. Cookies with a name prefix the browser enforces
    (``__Host-``, ``__Secure-``) and attributes it would reject are dropped silently, so
    every request would start a new session: refused up front instead."""
    with pytest.raises(CacheValueError, match=message):
        SessionCookie(**settings)


def test_valid_cookie_attributes_render() -> None:
    sid = "A" * 43
    assert "Path=/app" in SessionCookie(path="/app").render(sid)
    assert "Domain=.example.com" in SessionCookie(domain=".example.com").render(sid)
    assert SessionCookie(name="__Host-session").render(sid).startswith("__Host-session=")


def test_stores_with_different_prefixes_on_one_cache_do_not_share_sessions(
    storage_cache: MemoryCache,
) -> None:
    """Two applications on one cache: app B must not accept app A's session id."""
    app_a = SessionStore(storage_cache, prefix="app-a:")
    app_b = SessionStore(storage_cache, prefix="app-b:")
    sid = app_a.create({"user_id": 1})
    assert app_b.load(sid) is None
    assert app_b.open(sid).sid is None
    assert not app_b.save(sid, {"user_id": 2})
    assert app_a.load(sid) == {"user_id": 1}
