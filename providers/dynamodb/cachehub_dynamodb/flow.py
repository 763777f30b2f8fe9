"""The steps a DynamoDB flow yields, on the core's flows (:class:`cachehub.provider.Call`).

Every primitive of the provider is a generator (a *flow*) that yields its requests and
decodes the replies; :meth:`RemoteCache._drive` runs it on the boto3 client and
:meth:`RemoteCache._adrive` awaits it on the running loop's aiobotocore client. So request
building, condition expressions, reply decoding, lost-reply handling, batch chunking and
retries, and hit write-back exist once, and both shells send exactly the same requests.
A flow yields only these steps:

* :func:`request` - one DynamoDB request, the one pair of I/O methods of
  ``DynamoDBCache`` (``_request`` / ``_arequest``); the reply dict comes back, or its
  typed :class:`~cachehub.errors.CacheError` is raised at the ``yield``. ``once`` marks a
  non-idempotent write never re-sent blind: ``None`` comes back when its reply was lost.
  ``checked`` validates user-given parameters first;
* the core's generic steps, answered by its drivers: :func:`cachehub.provider.pause` (batch
  retry backoff) and :func:`cachehub.provider.fanout` (independent requests sent
  concurrently, each answered by its reply or its CacheError as a value: hit-count
  write-back).
"""

from __future__ import annotations

from typing import Any

from cachehub.provider import Call, Flow

__all__ = ["Flow", "request"]


def request(
    operation: str, params: dict[str, Any], *, once: bool = False, checked: bool = False
) -> Call:
    """The step of one DynamoDB request (``operation`` such as ``"GetItem"``)."""
    return Call("request", operation, params, once, checked)
