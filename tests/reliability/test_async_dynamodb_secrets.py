"""Hostile: credentials given as ``${VAR}`` never show on the async DynamoDB path.

The async client is aiobotocore's, which logs every signed request at DEBUG under its own
logger (``aiobotocore.endpoint``) and lets aiohttp log too. A child process loads a cache
from configuration whose credentials are environment references, turns every client
logger to DEBUG, runs requests through ``cache.aio()`` (and one that fails), and hands back
every text a person could see; none may hold the secret or the access key id. (aiobotocore
logs through botocore's ``botocore.endpoint`` logger; ``aiobotocore`` and ``aiohttp`` are
scrubbed as well, for what they log under their own names.)
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import pytest

from cachehub.errors import CacheError
from cachehub.scrub import SECRET_MASK

from .conftest import SECRET_MARK, SHARED_TABLE, fresh_namespace
from .sandbox import assert_contained, run_bounded
from .test_hostile_secrets import _Records

ACCESS_KEY_ID = "ASIA" + "ASYNCHOSTILE0001"
SECRET = f"{SECRET_MARK}/async+secret=="
TOKEN = f"{SECRET_MARK}/async+token=="
LOGGERS = ("botocore", "aiobotocore", "aiohttp", "urllib3", "cachehub")
"""Turned to DEBUG in the child (every record also reaches the sandbox's capture)."""


def async_dynamo_logs(endpoint: str, failing: bool) -> dict[str, Any]:
    """In the child: a configured cache with ``${VAR}`` credentials, used through aio()."""
    from cachehub.registry import Caches

    os.environ.update({"CH_AK": ACCESS_KEY_ID, "CH_SK": SECRET, "CH_TOKEN": TOKEN})
    handler = _Records()
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.DEBUG)
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    from cachehub.testing import closed_port

    # failing: nobody listens there, so the bootstrap's requests fail and are reported
    host = f"http://127.0.0.1:{closed_port()}" if failing else endpoint
    caches = Caches(
        {
            "d": {
                "class": "dynamodb",
                "custom": {
                    "tableName": SHARED_TABLE,
                    "host": host,
                    "maxAttempts": 1,
                    "accessKeyId": "${CH_AK}",
                    "secretkey": "${CH_SK}",
                    "sessionToken": "${CH_TOKEN}",
                    "namespace": fresh_namespace("aiosecret"),
                },
            }
        }
    )
    shell = caches.aio("d")

    async def main() -> Any:
        try:
            await shell.put("k", {"v": 1})
            return [await shell.get("k"), await shell.incr("n"), await shell.delete("k")]
        except CacheError as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            await shell.close()

    result = asyncio.run(main())
    caches.close()
    return {"result": result, "records": handler.texts}


@pytest.mark.parametrize("failing", [False, True], ids=["requests", "refused-request"])
def test_async_dynamodb_logs_and_errors_hide_env_credentials(
    local_dynamodb: Any, shared_table: str, failing: bool
) -> None:
    outcome = run_bounded(async_dynamo_logs, local_dynamodb.endpoint, failing, seconds=120)
    assert_contained(outcome, forbidden=(SECRET_MARK, ACCESS_KEY_ID, ACCESS_KEY_ID[4:]))
    assert outcome.kind == "value", outcome.describe()
    records = outcome.value["records"]
    if failing:
        assert isinstance(outcome.value["result"], str), outcome.value["result"]
    else:
        assert outcome.value["result"] == [{"v": 1}, 1, True]
        # The async client's signed requests (aiobotocore logs through botocore's endpoint
        # logger; only the async path sent a PutItem here) were logged at DEBUG - masked.
        signed = [r for r in records if "Authorization" in r and "PutItem" in r]
        assert signed, [r for r in records if "Authorization" in r][:3]
        assert all(SECRET_MASK in r for r in signed)
