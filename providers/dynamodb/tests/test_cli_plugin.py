"""What the DynamoDB plugin contributes to the CLI: doctor advice by AWS error code."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, NoCredentialsError
from cachehub_dynamodb import DynamoDBCache
from cachehub_dynamodb.cli import (
    BAD_REQUEST_ADVICE,
    CONNECTION_ADVICE,
    DENIED_ADVICE,
    SIGNATURE_ADVICE,
    TABLE_ADVICE,
    THROTTLING_ADVICE,
    doctor_advice,
    doctor_checks,
)
from cachehub_memory import MemoryCache

from cachehub.errors import (
    CacheBackendError,
    CacheError,
    CachePermissionError,
    CacheThrottledError,
    CacheUnavailableError,
    CacheValueError,
)
from cachehub.hookspecs import DoctorAdvice
from cachehub.plugins import plugin_manager

from .conftest import CREDENTIALS


def _aws(error: CacheError, code: str, operation: str = "GetItem") -> CacheError:
    """``error`` raised from a botocore ClientError with ``code``, as the provider does."""
    cause = ClientError({"Error": {"Code": code, "Message": "m"}}, operation)
    try:
        raise error from cause
    except CacheError as raised:
        return raised


@pytest.fixture
def cache() -> DynamoDBCache:
    return DynamoDBCache(tableName="t", host="http://127.0.0.1:9", **CREDENTIALS)


@pytest.mark.parametrize(
    ("error", "advice", "permission"),
    [
        (_aws(CachePermissionError("x"), "UnrecognizedClientException"), SIGNATURE_ADVICE, None),
        (_aws(CachePermissionError("x"), "ExpiredTokenException"), SIGNATURE_ADVICE, None),
        (_aws(CacheBackendError("x"), "ResourceNotFoundException"), TABLE_ADVICE, None),
        (
            _aws(CachePermissionError("x"), "AccessDeniedException", "CreateTable"),
            TABLE_ADVICE,
            "dynamodb:CreateTable",
        ),
        (
            _aws(CachePermissionError("x"), "AccessDeniedException", "DescribeTable"),
            DENIED_ADVICE,
            "dynamodb:DescribeTable",
        ),
        (_aws(CacheThrottledError("x"), "ThrottlingException"), THROTTLING_ADVICE, None),
        (CacheThrottledError("x"), THROTTLING_ADVICE, None),
        (CacheUnavailableError("x"), CONNECTION_ADVICE, None),
        (_aws(CacheValueError("x"), "ValidationException"), BAD_REQUEST_ADVICE, None),
    ],
    ids=[
        "token",
        "expired",
        "no-table",
        "create-denied",
        "describe-denied",
        "throttled-code",
        "throttled-type",
        "unreachable",
        "bad-request",
    ],
)
def test_advice_by_type_and_code(
    cache: DynamoDBCache, error: CacheError, advice: str, permission: str | None
) -> None:
    assert doctor_advice(cache, "get", error) == DoctorAdvice(advice, permission)


def test_missing_credentials_get_the_token_advice(cache: DynamoDBCache) -> None:
    error = CachePermissionError("no AWS credentials")
    error.__cause__ = NoCredentialsError()
    assert doctor_advice(cache, "connect", error) == DoctorAdvice(SIGNATURE_ADVICE)


def test_message_text_alone_never_chooses_the_advice(cache: DynamoDBCache) -> None:
    # These words used to select advice; without a matching type or code they do nothing.
    for text in ("security token invalid", "table not found", "CreateTable", "key required"):
        assert doctor_advice(cache, "get", CacheBackendError(text)) is None


def test_other_providers_caches_are_left_alone() -> None:
    memory = MemoryCache()
    assert doctor_advice(memory, "get", CacheUnavailableError("x")) is None
    assert doctor_checks(memory) is None


def test_hooks_are_registered_through_the_entry_point(cache: DynamoDBCache) -> None:
    hook: Any = plugin_manager().hook
    assert hook.cachehub_doctor_advice(
        cache=cache, step="get", error=CacheUnavailableError("x")
    ) == DoctorAdvice(CONNECTION_ADVICE)
    commands = [c.name for group in hook.cachehub_cli_commands() for c in group]
    assert "local-dynamodb" in commands


def test_doctor_checks_on_an_unreachable_endpoint(cache: DynamoDBCache) -> None:
    cache.settings["maxAttempts"] = 1
    checks = doctor_checks(cache)
    assert checks is not None
    assert [(c.name, c.status, c.advice) for c in checks] == [
        ("connect", "fail", CONNECTION_ADVICE)
    ]


def test_the_listed_commands_load_the_real_ones_with_the_same_summary() -> None:
    # The hook lists stubs (so `cachehub --help` imports no botocore); each names a real
    # command of .cli whose own help starts with the summary the listing shows.
    from cachehub.cli.app import LazyCommand

    stubs = [c for group in plugin_manager().hook.cachehub_cli_commands() for c in group]
    assert [c.name for c in stubs] == ["local-dynamodb", "from-lucee"]
    for stub in stubs:
        assert isinstance(stub, LazyCommand)
        real = stub.load()
        assert real.name == stub.name
        assert stub.get_short_help_str(200) == real.get_short_help_str(200)
