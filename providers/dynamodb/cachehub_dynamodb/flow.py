"""The steps a DynamoDB flow yields, on the core's flows (:class:`cachehub.provider.Call`).

Every primitive of the provider is a generator (a *flow*) that yields its requests and
decodes the replies; :meth:`RemoteCache._drive` runs it on the boto3 client and
:meth:`RemoteCache._adrive` awaits it on the running loop's aiobotocore client. So request
building, condition expressions, reply decoding, lost-reply handling, batch chunking and
retries, and hit write-back exist once, and both shells send exactly the same requests.
A flow yields only these steps, each a pair of I/O methods of ``DynamoDBCache``:

* :func:`request` - one DynamoDB request (``_request`` / ``_arequest``); the reply dict
  comes back, or its typed :class:`~cachehub.errors.CacheError` is raised at the
  ``yield``. ``once`` marks a non-idempotent write never re-sent blind: ``None`` comes
  back when its reply was lost. ``checked`` validates user-given parameters first;
* :func:`pause` - a wait (batch retry backoff: ``time.sleep`` / ``asyncio.sleep``);
* :func:`fanout` - independent requests sent concurrently (threads / tasks), each
  answered by its reply or its CacheError as a value (hit-count write-back, parallel
  Scan segments); the core answers it (:meth:`cachehub.provider.RemoteCache._fanout`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cachehub.provider import Call, Flow

__all__ = ["Flow", "request", "pause", "fanout"]


def request(
    operation: str, params: dict[str, Any], *, once: bool = False, checked: bool = False
) -> Call:
    """The step of one DynamoDB request (``operation`` such as ``"GetItem"``)."""
    return Call("request", operation, params, once, checked)


def pause(seconds: float) -> Call:
    """The step of waiting ``seconds`` before the next request."""
    return Call("pause", seconds)


def fanout(requests: Sequence[Call], workers: int) -> Call:
    """The step of sending independent :func:`request` steps, ``workers`` at a time."""
    return Call("fanout", tuple(requests), workers)
