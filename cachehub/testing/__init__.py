"""Test support for cachehub providers: the conformance suite and a fake clock.

``CacheConformance`` is the shared suite that proves a provider behaves like every other;
``FakeClock`` drives expiry without sleeping. The pytest plugin
(:mod:`cachehub.testing.plugin`, loaded automatically) offers them as fixtures too.
``FaultProxy`` loses replies on demand, and ``LostReplyTests`` (opt-in, for providers
that talk to a server) checks that writes stay exact when it does.
"""

from .clock import FakeClock
from .conformance import CacheConformance
from .faults import FaultProxy
from .lostreplies import LostReplyTests
from .servers import closed_port, unavailable
from .support import CacheFactory, Timeline, assert_same

__all__ = [
    "CacheConformance",
    "CacheFactory",
    "FakeClock",
    "FaultProxy",
    "LostReplyTests",
    "Timeline",
    "assert_same",
    "closed_port",
    "unavailable",
]
