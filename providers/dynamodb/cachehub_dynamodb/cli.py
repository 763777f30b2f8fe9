"""What the DynamoDB provider adds to the ``cachehub`` command line (through its plugin).

* ``cachehub local-dynamodb``: moto's DynamoDB in server mode, the Python answer to
  ``docker run -p 8000:8000 amazon/dynamodb-local``;
* ``doctor`` checks (partition-key discovery, native TTL) and the spec's Troubleshooting
  advice, chosen by error type and AWS error code;
* the ``tour``'s local endpoint and its ``DynamoDBCommand()`` examples.

Imported only when the CLI asks, so using the cache never loads click or rich.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from botocore.exceptions import ClientError, NoCredentialsError, PartialCredentialsError

from cachehub.api import BaseCache
from cachehub.cli.app import State, data_command, wait_until_stopped
from cachehub.cli.output import stderr_console, stdout_console
from cachehub.cli.results import Failure, Row, ScenarioResult, same
from cachehub.cli.scenarios import Recorder, Step
from cachehub.errors import (
    CacheError,
    CachePermissionError,
    CacheThrottledError,
    CacheUnavailableError,
    CacheValueError,
    ConfigError,
)
from cachehub.hookspecs import DoctorAdvice, DoctorCheck, LocalBackend
from cachehub.provider import causes

from .cache import DynamoDBCache
from .errors import THROTTLING_CODES, TOKEN_CODES, error_code
from .local import LocalDynamoDB
from .lucee import ConversionReport, LuceeDynamoDBCache, convert_from_lucee

__all__ = [
    "conversion_document",
    "DUMMY_REGION",
    "doctor_advice",
    "doctor_checks",
    "dynamodb_entry",
    "local_dynamodb",
    "tour_backend",
    "tour_steps",
]

DUMMY_REGION = "us-east-1"
DUMMY_KEY = "dummy"
"""DynamoDB Local (and moto) accept any credentials; the spec suggests ``dummy``."""
TOUR_TABLE = "cachehub_tour"


def dynamodb_entry(endpoint: str, table: str = "local_cache") -> dict[str, Any]:
    """A cache entry for a local endpoint, as the spec's "Local Configuration" shows it."""
    return {
        "class": "dynamodb",
        "custom": {
            "tableName": table,
            "accessKeyId": DUMMY_KEY,
            "secretkey": DUMMY_KEY,
            "region": DUMMY_REGION,
            "host": endpoint,
        },
    }


@contextmanager
def local_dynamodb(host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Run a local DynamoDB endpoint (moto) in a thread; yields its URL (``port=0``: any)."""
    with LocalDynamoDB(host, port) as local:
        yield local.endpoint


# ---------------------------------------------------------------------- local-dynamodb


@click.command("local-dynamodb")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to listen on (keep loopback unless you mean to share it).",
)
@click.option("--table", default="local_cache", show_default=True, help="Table name to suggest.")
def local_dynamodb_command(port: int, host: str, table: str) -> None:
    """Run a DynamoDB-compatible endpoint (moto) until Ctrl-C.

    The replacement for `docker run -p 8000:8000 amazon/dynamodb-local`: it prints the
    endpoint and a cache entry to paste into cachehub.json or .CFConfig.json.
    """
    out = stdout_console()
    with local_dynamodb(host, port) as endpoint:
        config = {"caches": {"dynamo": {**dynamodb_entry(endpoint, table), "default": True}}}
        out.print(f"DynamoDB-compatible endpoint (moto) listening on [bold]{endpoint}[/]")
        out.print("Paste this into cachehub.json (or the caches block of .CFConfig.json):")
        out.print(json.dumps(config, indent=2), markup=False, highlight=False)
        out.print(
            "Data lives in memory and is gone when this stops. Press Ctrl-C to stop.",
            style="dim",
        )
        sys.stdout.flush()  # the endpoint line must reach a pipe (scripts wait for it)
        wait_until_stopped()
        stderr_console().print("stopping local DynamoDB endpoint")


# ---------------------------------------------------------------------- from-lucee


def conversion_document(report: ConversionReport, source: str, target: str) -> dict[str, Any]:
    """The ``from-lucee`` result as a JSON-ready dict."""
    return {
        "source": source,
        "target": target,
        "dry_run": report.dry_run,
        "copied": report.copied,
        "unchanged": report.unchanged,
        "expired": report.expired,
        "kept_newer": report.kept_newer,
        "skipped": report.skipped_count,
        "unreadable": [
            {"key": e.key, "found": e.found, "error": e.message} for e in report.skipped
        ],
        "unwritable_count": report.unwritable_count,
        "unwritable": list(report.unwritable),
    }


@click.command("from-lucee")
@click.argument("source")
@click.argument("target")
@click.option("--filter", "flt", help="Only keys matching this Lucee wildcard filter.")
@click.option("--dry-run", is_flag=True, help="Read and report everything; write nothing.")
@data_command(cache_option=False)
def from_lucee_command(
    state: State, source: str, target: str, flt: str | None, dry_run: bool
) -> None:
    """Convert a Lucee-written DynamoDB table (cache SOURCE) into cache TARGET.

    SOURCE is a DynamoDB cache configured with itemFormat "lucee" on the Lucee table.
    Every live entry it can read is put into TARGET under the key Lucee stored
    (uppercased), dying when the Lucee entry dies; entries that cannot be read (Lucee
    queries, components) are listed, never copied. The table is streamed.
    """
    caches = state.caches()
    src, dst = caches.get(source), caches.get(target)
    if not isinstance(src, LuceeDynamoDBCache):
        raise ConfigError(
            f"cache '{source}' does not read the Lucee item layout.",
            hint='configure it as a DynamoDB cache with "itemFormat": "lucee" on the table '
            "the Lucee application writes.",
        )
    if src is dst:
        raise click.UsageError("SOURCE and TARGET are the same cache.")
    if dst.read_only and not dry_run:
        raise ConfigError(
            f"cache '{target}' is read-only; from-lucee cannot write to it.",
            hint="set readOnly to false on the target cache.",
        )
    report = convert_from_lucee(src, dst, filter=flt, dry_run=dry_run)
    doc = conversion_document(report, src.name, dst.name)

    def render(console: Any) -> None:
        verb = "would copy" if dry_run else "copied"
        console.print(
            f"{verb} {report.copied} entries from '{src.name}' to '{dst.name}'; "
            f"{report.unchanged} already copied, {report.expired} expired, "
            f"{report.kept_newer} newer in the target (kept), {report.skipped_count} "
            f"unreadable, {report.unwritable_count} refused by the target."
        )
        for entry in doc["unreadable"]:
            console.print(f"  unreadable {entry['key']!r}: {entry['error']}", markup=False)
        for entry in doc["unwritable"]:
            console.print(f"  refused {entry['key']!r}: {entry['error']}", markup=False)

    state.out.emit(doc, render)
    if report.unwritable_count:
        # Values read but not stored: a script must see it, as with `cachehub migrate`.
        # (Unreadable entries - Lucee queries, components - are expected, and listed.)
        raise click.exceptions.Exit(1)


# ---------------------------------------------------------------------- doctor


def _aws_error(exc: BaseException) -> tuple[str, str]:
    """``(AWS error code, API operation)`` of the ClientError behind ``exc``, or ``("", "")``.

    The provider keeps botocore's exception as its typed error's ``__context__`` (raised
    ``from None``: see ``errors.backend_error``), so the code is in the chain.
    """
    for current in causes(exc):
        if isinstance(current, ClientError):
            return error_code(current), str(current.operation_name or "")
    return "", ""


def _in_chain(exc: BaseException, types: tuple[type[BaseException], ...]) -> bool:
    return any(isinstance(current, types) for current in causes(exc))


SIGNATURE_ADVICE = (
    "Invalid Security Token: for AWS, verify accessKeyId/secretkey are correct and not "
    "expired; for DynamoDB Local, set host to its URL (e.g. http://localhost:8000)."
)
TABLE_ADVICE = (
    "Table Not Found: the cache creates its table automatically; verify the IAM policy "
    "includes dynamodb:CreateTable (or create the table), and check region and host."
)
THROTTLING_ADVICE = (
    "Throttling: switch the table to on-demand billing (PAY_PER_REQUEST) or raise its "
    "provisioned capacity."
)
DENIED_ADVICE = (
    "Access denied: grant the missing actions listed below (see the Recommended IAM Policy "
    "in the spec / docs/dynamodb.md)."
)
CONNECTION_ADVICE = (
    "Connection Errors (Unable to connect to DynamoDB): verify your credentials and region "
    "settings, and that host is set correctly for DynamoDB Local (e.g. http://localhost:8000; "
    "`cachehub local-dynamodb` runs one)."
)
BAD_REQUEST_ADVICE = (
    "400 Bad Request (required keys missing): pass the partition key with exactly the "
    "table's attribute name and case."
)


def doctor_advice(cache: BaseCache, step: str, error: CacheError) -> DoctorAdvice | None:
    """The spec's Troubleshooting advice for ``error``; None when ``cache`` is not ours."""
    if not isinstance(cache, DynamoDBCache):
        return None
    code, operation = _aws_error(error)
    if code in TOKEN_CODES or _in_chain(error, (NoCredentialsError, PartialCredentialsError)):
        return DoctorAdvice(SIGNATURE_ADVICE)
    if code == "ResourceNotFoundException" or (
        operation == "CreateTable" and isinstance(error, CachePermissionError)
    ):
        missing = "dynamodb:CreateTable" if operation == "CreateTable" else None
        return DoctorAdvice(TABLE_ADVICE, missing)
    if isinstance(error, CacheThrottledError) or code in THROTTLING_CODES:
        return DoctorAdvice(THROTTLING_ADVICE)
    if code == "AccessDeniedException":
        return DoctorAdvice(DENIED_ADVICE, f"dynamodb:{operation}" if operation else None)
    if isinstance(error, CacheUnavailableError):
        return DoctorAdvice(CONNECTION_ADVICE)
    if code == "ValidationException" and isinstance(error, CacheValueError):
        return DoctorAdvice(BAD_REQUEST_ADVICE)
    return None


def _ttl_check(cache: DynamoDBCache) -> DoctorCheck:
    """DynamoDB's native TTL on the table, as DescribeTimeToLive reports it."""
    try:
        described = cache.client.describe_time_to_live(TableName=cache.table_name)
    except Exception as exc:  # botocore errors: reported; the cache still enforces expiry
        code, _ = _aws_error(exc)
        return DoctorCheck(
            "ttl",
            "warn",
            f"native TTL unknown (DescribeTimeToLive failed: {code or type(exc).__name__})",
            "expired entries are never returned, but whether DynamoDB deletes them is "
            "unknown: allow dynamodb:DescribeTimeToLive to check.",
            "dynamodb:DescribeTimeToLive" if code == "AccessDeniedException" else None,
        )
    ttl = described.get("TimeToLiveDescription", {})
    status = str(ttl.get("TimeToLiveStatus", "DISABLED"))
    attribute = ttl.get("AttributeName")
    detail = f"native TTL {status}" + (f" on attribute '{attribute}'" if attribute else "")
    if status in ("ENABLED", "ENABLING"):
        return DoctorCheck("ttl", "ok", detail)
    return DoctorCheck(
        "ttl",
        "warn",
        detail,
        "expired entries are never returned, but DynamoDB will not delete them: enable TTL "
        "on attribute 'timeToLive' (needs dynamodb:UpdateTimeToLive).",
    )


def doctor_checks(cache: BaseCache) -> list[DoctorCheck] | None:
    """Partition-key discovery and native TTL of ``cache``'s table; None if not ours."""
    if not isinstance(cache, DynamoDBCache):
        return None
    try:
        key = cache.key_name
    except CacheError as exc:
        return [DoctorCheck.failed("connect", exc, doctor_advice(cache, "connect", exc))]
    connect = DoctorCheck(
        "connect", "ok", f"table '{cache.table_name}', discovered partition key '{key}'"
    )
    return [connect, _ttl_check(cache)]


# ---------------------------------------------------------------------- tour


@contextmanager
def tour_backend() -> Iterator[LocalBackend]:
    """A local endpoint for ``cachehub tour``; the tour's default cache uses it."""
    with local_dynamodb() as endpoint:
        entry = dynamodb_entry(endpoint, TOUR_TABLE)
        entry["custom"]["primaryKey"] = "pk"  # the key name the spec's examples use
        yield LocalBackend(entry, f"local DynamoDB endpoint (moto) on {endpoint}", default=True)


def tour_steps(cache: BaseCache, name: str, prefix: str) -> ScenarioResult | None:
    """The spec's ``DynamoDBCommand()`` examples on ``cache``'s table; None if not ours.

    Items are keyed under ``prefix`` and deleted afterwards, so even a production table
    given with ``--config`` is left as it was.
    """
    if not isinstance(cache, DynamoDBCache):
        return None
    rec = Recorder()
    user = f"{prefix}user_001"
    page = f"{prefix}pageviews_home"
    try:
        pk = cache.key_name
        command = cache.command
        rec.step("discovered partition key", pk, pk)
        command("putItem", {pk: user, "name": "Urs", "age": 30, "active": True})
        item = command("getItem", {pk: user})
        rec.step(
            "putItem, then getItem",
            item,
            {pk: user, "name": "Urs", "age": 30, "active": True},
        )
        updated = command(
            "updateItem",
            {
                "key": {pk: user},
                "UpdateExpression": "SET age = age + :inc",
                "ExpressionAttributeValues": {":inc": 1},
                "ReturnValues": "UPDATED_NEW",
            },
        )
        rec.step("updateItem: SET age = age + :inc", updated, {"age": 31})
        for _ in range(2):
            hits = command(
                "updateItem",
                {
                    "key": {pk: page},
                    "UpdateExpression": "SET hits = if_not_exists(hits, :zero) + :inc",
                    "ExpressionAttributeValues": {":inc": 1, ":zero": 0},
                    "ReturnValues": "UPDATED_NEW",
                },
            )
        rec.step("atomic page-view counter, called twice", hits, {"hits": 2})
        found = command(
            "query",
            {
                "KeyConditionExpression": f"{pk} = :userId",
                "FilterExpression": "age > :minAge",
                "ExpressionAttributeValues": {":userId": user, ":minAge": 18},
            },
        )
        rec.step("query by key with FilterExpression", [i.get("name") for i in found], ["Urs"])
        command("deleteItem", {pk: page})
        deleted = command("deleteItem", {pk: user, "ReturnValues": "ALL_OLD"})
        rec.step("deleteItem with ReturnValues ALL_OLD", (deleted or {}).get("age"), 31)
        rec.step("getItem after delete", command("getItem", {pk: user}), None)
    except Exception as exc:  # shown as a failed row, like a failing scenario step
        rec.steps.append(Step("error", Failure(exc), None))
    rows = [
        Row(s.label, {name: s.value, "expected": s.expected}, s.expected, same(s.value, s.expected))
        for s in rec.steps
    ]
    return ScenarioResult(f"DynamoDBCommand() on '{name}'", "DynamoDBCommand() Reference", rows)
