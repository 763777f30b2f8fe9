"""The tour's scenarios: the spec's examples, written once against the cache API.

Each scenario records named steps on a :class:`Recorder`; the tour runs the *same*
function on every provider and compares the recorded values. Nothing here knows which
provider it talks to: that is the point of the migration story.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from ..api import MISSING, BaseCache
from ..errors import LockTimeoutError

__all__ = [
    "SCENARIOS",
    "Recorder",
    "Scenario",
    "Step",
    "check_rate_limit",
    "sample_values",
]

TTL_PAUSE = 1.1
"""Seconds the TTL scenario really sleeps: one short sleep shared by every provider."""


@dataclass(frozen=True)
class Step:
    """One observed result: ``expected`` (when known) is what every provider must return."""

    label: str
    value: Any
    expected: Any = MISSING


@dataclass
class Recorder:
    """Collects the steps of one scenario run on one provider."""

    steps: list[Step] = field(default_factory=list)

    def step(self, label: str, value: Any, expected: Any = MISSING) -> Any:
        """Record ``value`` under ``label`` and return it."""
        self.steps.append(Step(label, value, expected))
        return value


Action = Callable[[BaseCache, Recorder], None]


@dataclass(frozen=True)
class Scenario:
    """A titled group of steps. ``before`` runs on every provider, then one shared
    ``pause``, then ``run`` (so a TTL demo sleeps once, not once per provider)."""

    slug: str
    title: str
    section: str
    """The spec section it reproduces."""
    run: Action
    before: Action | None = None
    pause: float = 0.0


def sample_values() -> dict[str, Any]:
    """The spec's "Data Type Support" values, one per Lucee type (plus Decimal)."""
    from ..query import query_new

    return {
        "str": "Simple string",
        "int": 12345,
        "float": 12345.67,
        "Decimal": Decimal("99.99"),
        "bool": True,
        "datetime": datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
        "list": [1, "two", 3.0, True],
        "dict": {"name": "Product", "price": 99.99, "inStock": True, "tags": ["featured", "sale"]},
        "query": query_new("id,name", "integer,varchar", [[1, "Alice"], [2, "Bob"]]),
        "None": None,
    }


def _data_types(cache: BaseCache, rec: Recorder) -> None:
    for label, value in sample_values().items():
        key = f"key_{label}"
        cache.put(key, value)
        rec.step(f"put/get {label}", cache.get(key, MISSING), value)


def _ttl_before(cache: BaseCache, rec: Recorder) -> None:
    cache.put("temporary_token", "abc123xyz", time_span=1)
    cache.put("session_token", "xyz789", time_span=timedelta(hours=1))
    cache.put("extended", "touched", time_span=1)
    rec.step("1 s entry alive right after put", cache.exists("temporary_token"), True)
    ttl = cache.metadata("temporary_token").time_to_live
    rec.step(
        "its timeToLive is in (0, 1] s", ttl is not None and 0 < ttl.total_seconds() <= 1, True
    )
    rec.step("touch() extends a 1 s entry to 60 s", cache.touch("extended", time_span=60), True)


def _ttl_after(cache: BaseCache, rec: Recorder) -> None:
    rec.step(f"after {TTL_PAUSE} s: get 1 s entry", cache.get("temporary_token"), None)
    rec.step("exists() on it", cache.exists("temporary_token"), False)
    rec.step("1 h entry still there", cache.get("session_token"), "xyz789")
    rec.step("touched entry still there", cache.get("extended"), "touched")
    rec.step("count() ignores the expired entry", cache.count(), 2)


def _filters(cache: BaseCache, rec: Recorder) -> None:
    cache.put_many({"user_session_123": "active", "user_profile_456": {"name": "John Doe"}})
    cache.put("user_session_789", "idle")
    cache.put("admin_1", "root")
    rec.step(
        'keys("user_session_*")',
        sorted(cache.keys("user_session_*")),
        ["user_session_123", "user_session_789"],
    )
    rec.step('count("user_*")', cache.count("user_*"), 3)
    rec.step('get_all("user_*")', dict(sorted(cache.get_all("user_*").items())))
    rec.step('clear("user_session_*")', cache.clear("user_session_*"), 2)
    rec.step("count() afterwards", cache.count(), 2)
    rec.step('delete("admin_1")', cache.delete("admin_1"), True)
    rec.step("keys() left", sorted(cache.keys()), ["user_profile_456"])


def _metadata(cache: BaseCache, rec: Recorder) -> None:
    cache.put("popular_item", {"id": 1}, time_span=60)
    cache.get("popular_item")
    cache.get("popular_item")
    meta = cache.metadata("popular_item")
    # 0 on a remote cache by default: its reads write nothing, so nothing counts them.
    counted = 2 if cache.counts_hits else 0
    rec.step("hitCount after 2 gets: 2 (0 if hitCounts off)", meta.hit_count == counted, True)
    ttl = meta.time_to_live
    rec.step("timeToLive in (0, 60] s", ttl is not None and 0 < ttl.total_seconds() <= 60, True)
    rec.step("created <= lastModified", meta.created <= meta.last_modified, True)
    cache.put("forever", 1)
    rec.step("timeToLive of an entry without expiry", cache.metadata("forever").time_to_live, None)


def _counters(cache: BaseCache, rec: Recorder) -> None:
    rec.step('incr("pageviews_home")', cache.incr("pageviews_home"), 1)
    cache.incr("pageviews_home")
    rec.step("incr twice more, by 1 and 10", cache.incr("pageviews_home", 10), 12)
    rec.step("decr by 2", cache.decr("pageviews_home", 2), 10)
    rec.step("get() sees the counter", cache.get("pageviews_home"), 10)


def _lock(cache: BaseCache, rec: Recorder) -> None:
    # The spec's acquireLock/releaseLock, made safe with add() (an atomic put-if-absent).
    token = str(uuid.uuid4())
    rec.step("acquire: add(lock_report)", cache.add("lock_report", token, time_span=30), True)
    rival = str(uuid.uuid4())
    rec.step("rival acquire fails", cache.add("lock_report", rival, time_span=30), False)
    released = cache.get("lock_report") == token and cache.delete("lock_report")
    rec.step("release by the owner", released, True)
    rec.step("rival acquires now", cache.add("lock_report", rival, time_span=30), True)
    with cache.lock("nightly", ttl=10, timeout=1):
        other = cache.lock("nightly", ttl=10)
        rec.step("cache.lock(): second holder blocked", other.acquire(blocking=False), False)
    try:
        with cache.lock("nightly", ttl=10, timeout=1):
            reacquired = True
    except LockTimeoutError:
        reacquired = False
    rec.step("cache.lock(): free again after release", reacquired, True)


def check_rate_limit(
    cache: BaseCache, api_key: str, max_requests: int = 100, time_window: int = 3600
) -> bool:
    """The spec's ``checkRateLimit`` use case, line for line."""
    cache_key = "ratelimit_" + hashlib.sha256(api_key.encode()).hexdigest()
    requests = cache.get(cache_key)
    if requests is None:
        cache.put(cache_key, 1, time_span=time_window)
        return True
    if requests >= max_requests:
        return False
    cache.put(cache_key, requests + 1, time_span=time_window)
    return True


def _rate_limit(cache: BaseCache, rec: Recorder) -> None:
    answers = [check_rate_limit(cache, "api-key-42", max_requests=3) for _ in range(5)]
    rec.step("5 calls, max 3 per window", answers, [True, True, True, False, False])
    rec.step("other key unaffected", check_rate_limit(cache, "api-key-7", 3), True)


def _query_caching(cache: BaseCache, rec: Recorder) -> None:
    from ..query import query_new

    calls: list[str] = []

    def run_query() -> Any:
        calls.append("SELECT id, name FROM users")
        return query_new("id,name", "integer,varchar", [[1, "Alice"], [2, "Bob"]])

    first = cache.get_or_set("query_users", run_query, time_span=timedelta(minutes=15))
    second = cache.get_or_set("query_users", run_query, time_span=timedelta(minutes=15))
    rec.step("get_or_set twice: query ran", len(calls), 1)
    rec.step("both results equal", first == second, True)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("types", "Data types round trip", "Data Type Support", _data_types),
    Scenario("ttl", "Expiry (timeSpan, touch)", "Time-To-Live", _ttl_after, _ttl_before, TTL_PAUSE),
    Scenario("filters", "Filters: keys / count / clear", "Working with Multiple Items", _filters),
    Scenario("metadata", "Metadata", "Cache Metadata", _metadata),
    Scenario("counters", "Atomic counters", "Atomic Counters", _counters),
    Scenario("lock", "Distributed lock", "Distributed Lock Implementation", _lock),
    Scenario("ratelimit", "API rate limiting", "API Rate Limiting", _rate_limit),
    Scenario("query", "Query result caching", "Query Result Caching", _query_caching),
)
