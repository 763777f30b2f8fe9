"""Conformance, opt-in: non-idempotent writes stay exact when a reply or request is lost.

For providers that talk to a server over TCP. The provider's test class puts a
:class:`~cachehub.testing.faults.FaultProxy` in front of its server, builds its caches on
the proxy, and says what each write looks like on the wire::

    class TestMyLostReplies(LostReplyTests):
        lost_reply_requests = {"incr": b"INCRSCRIPT", "add": b"ADDSCRIPT"}

        @pytest.fixture
        def fault_proxy(self, my_server):
            with FaultProxy("127.0.0.1", my_server.port) as proxy:
                yield proxy

        @pytest.fixture
        def cache_factory(self, fault_proxy):
            return lambda **kw: MyCache({"port": fault_proxy.port}, **kw)

Each test loses the reply to (or the request of) exactly one such write. The rule every
provider must keep: a write is applied at most once, and its result is either right or
:class:`~cachehub.errors.CacheOutcomeUnknownError` - never a wrong answer, never a double
write. Only the operations named in ``lost_reply_requests`` are tested.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import pytest

from cachehub.api import BaseCache
from cachehub.errors import CacheOutcomeUnknownError

from .faults import FaultProxy, Matcher
from .support import ConformanceBase

__all__ = ["LostReplyTests"]

_OPS = ("incr", "decr", "add", "delete", "delete_if_equal")


def _outcome(call: Callable[[], Any]) -> Any:
    """The call's result, or the exception class when it raised CacheOutcomeUnknownError."""
    try:
        return call()
    except CacheOutcomeUnknownError:
        return CacheOutcomeUnknownError


class LostReplyTests(ConformanceBase):
    """Lost replies and lost requests for incr, decr, add, delete and delete_if_equal."""

    lost_reply_requests: ClassVar[dict[str, Matcher]] = {}
    """Operation name -> what its write request contains (``decr`` uses ``incr``'s)."""

    @pytest.fixture
    def fault_proxy(self) -> FaultProxy:
        """Override: a started FaultProxy in front of the server ``cache_factory`` uses."""
        pytest.fail(
            f"{type(self).__name__} must define a fault_proxy fixture (a started "
            "cachehub.testing.faults.FaultProxy); see docs/conformance.md.",
            pytrace=False,
        )

    @pytest.fixture
    def warm_cache(
        self, make_cache: Callable[..., BaseCache], fault_proxy: FaultProxy
    ) -> BaseCache:
        """A cache on the proxy that has sent each write once (scripts, tables ready)."""
        cache = make_cache()
        cache.incr("warm")
        cache.add("warm-add", 1)
        cache.delete("warm-add")
        cache.put("warm-lock", "t")
        cache._delete_if_equal(cache._sk("warm-lock"), "t", cache._clock())
        fault_proxy.reset_counts()
        return cache

    def _matcher(self, op: str) -> Matcher:
        found = self.lost_reply_requests.get("incr" if op == "decr" else op)
        if found is None:
            pytest.skip(f"{type(self).__name__} does not guard {op} against lost replies")
        return found

    def _setup(self, cache: BaseCache, op: str) -> Callable[[], Any]:
        """Prepare the key and return the call under test."""
        if op == "incr":
            cache.put("k", 10)
            return lambda: cache.incr("k", 5)
        if op == "decr":
            cache.put("k", 10)
            return lambda: cache.decr("k", 3)
        if op == "add":
            return lambda: cache.add("k", "mine")
        cache.put("k", "token")
        if op == "delete":
            return lambda: cache.delete("k")
        return lambda: cache._delete_if_equal(cache._sk("k"), "token", cache._clock())

    @staticmethod
    def _state(cache: BaseCache) -> Any:
        return cache.get("k", "<absent>")

    # Applied once: the value each write leaves, and what it answers.
    _APPLIED: ClassVar[dict[str, tuple[Any, Any]]] = {
        "incr": (15, 15),
        "decr": (7, 7),
        "add": ("mine", True),
        "delete": ("<absent>", True),
        "delete_if_equal": ("<absent>", True),
    }
    _UNTOUCHED: ClassVar[dict[str, Any]] = {
        "incr": 10,
        "decr": 10,
        "add": "<absent>",
        "delete": "token",
        "delete_if_equal": "token",
    }

    @pytest.mark.parametrize("op", _OPS)
    def test_lost_reply_applies_once(
        self, warm_cache: BaseCache, fault_proxy: FaultProxy, op: str
    ) -> None:
        cache = warm_cache
        matcher = self._matcher(op)
        call = self._setup(cache, op)
        fault_proxy.drop_reply(matcher)
        result = _outcome(call)
        assert fault_proxy.dropped == 1, "the proxy lost no reply: check lost_reply_requests"
        state, answer = self._APPLIED[op]
        assert self._state(cache) == state  # the server applied it: exactly once
        assert result in (answer, CacheOutcomeUnknownError)

    @pytest.mark.parametrize("op", _OPS)
    def test_lost_request_applies_at_most_once(
        self, warm_cache: BaseCache, fault_proxy: FaultProxy, op: str
    ) -> None:
        cache = warm_cache
        matcher = self._matcher(op)
        call = self._setup(cache, op)
        fault_proxy.drop_request(matcher)
        result = _outcome(call)
        assert fault_proxy.refused == 1
        state = self._state(cache)
        applied, answer = self._APPLIED[op]
        if state == applied:  # sent again after the loss: applied by that one send
            assert result in (answer, CacheOutcomeUnknownError)
        else:
            assert state == self._UNTOUCHED[op]
            assert result is CacheOutcomeUnknownError or result == (not answer)

    def test_later_writes_are_not_taken_for_replays(
        self, warm_cache: BaseCache, fault_proxy: FaultProxy
    ) -> None:
        cache = warm_cache
        self._matcher("incr")
        fault_proxy.drop_reply(self.lost_reply_requests["incr"])
        first = _outcome(lambda: cache.incr("n"))
        assert first in (1, CacheOutcomeUnknownError)
        assert [cache.incr("n") for _ in range(5)] == [2, 3, 4, 5, 6]
