"""Hostile secrets: no configured secret shows in any message, repr, CLI output or log.

Every case runs in a child process (:func:`~.sandbox.run_bounded`: capped memory, a
deadline, every log record at DEBUG with botocore/urllib3 included) and checks that it
ends in a value or a typed :class:`~cachehub.errors.CacheError`, and that no text anyone
could see - the error, its ``repr`` and traceback, ``repr(Caches)``, ``repr`` of each
entry and cache, ``cachehub caches``/``doctor`` (text and ``--json``), stdout, stderr and
every log record - contains the secret. Each secret carries :data:`~.conftest.SECRET_MARK`
*before* its special characters and a second marker after them, so a partial leak (a
password cut at ``#`` or ``@``) is caught too.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from cachehub_redis.server import RedisServer

from cachehub.errors import CacheError
from cachehub.scrub import SECRET_MASK

from .conftest import SECRET_MARK, SHARED_TABLE, fresh_namespace
from .sandbox import assert_contained, run_bounded

TAIL = "zq7Tail"
"""Second marker, after the special characters of each secret."""
FORBIDDEN = (SECRET_MARK, TAIL)
DOWN = "127.0.0.1:1"
"""A closed port: connections are refused at once."""
FAST_DYNAMO = {"region": "us-east-1", "maxAttempts": 1, "liveTimeout": 2000}


def pw(special: str) -> str:
    """A secret with ``special`` between the two markers."""
    return f"{SECRET_MARK}{special}{TAIL}"


def redis_entry(**custom: Any) -> dict[str, Any]:
    return {"class": "redis", "custom": {"socketTimeout": 1, "retries": 0, **custom}}


def dynamo_entry(**custom: Any) -> dict[str, Any]:
    return {"class": "dynamodb", "custom": {"tableName": "t", **FAST_DYNAMO, **custom}}


# ---------------------------------------------------------------------- child functions


def _cli(config_path: str, args: list[str]) -> list[str]:
    from click.testing import CliRunner

    from cachehub.cli.app import cli

    result = CliRunner().invoke(cli, ["--config", config_path, *args])
    texts = [result.output, f"exit {result.exit_code}"]
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        texts.append(repr(result.exception))
    return texts


def config_channels(config: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    """Load ``config`` and collect every text it can show: errors, reprs, CLI output.

    Runs in the child. Returns the texts (checked by the parent) and the error types.
    """
    from cachehub.registry import Caches

    os.environ.update(environ)
    texts: list[str] = []
    errors: list[str] = []
    error_texts: list[str] = []

    def record(exc: CacheError) -> None:
        errors.append(type(exc).__name__)
        error_texts.extend((str(exc), repr(exc), exc.hint or ""))

    try:
        caches = Caches(config)
    except CacheError as exc:
        record(exc)
    else:
        texts.append(repr(caches))
        for entry in caches.entries():
            texts.append(repr(entry))
        for name in caches.names():
            try:
                cache = caches.get(name)
                texts.append(repr(cache))
                texts.append(repr(cache.exists("probe")))
            except CacheError as exc:
                record(exc)
        caches.close()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "caches.json")
        Path(path).write_text(json.dumps(config), encoding="utf-8")
        for args in (["caches", "--json"], ["caches"], ["doctor", "--json"], ["doctor"]):
            texts.extend(_cli(path, args))
    return {"texts": texts, "errors": errors, "error_texts": error_texts}


class _Records(logging.Handler):
    """Counts the botocore/urllib3 records that reach a handler, and keeps their text."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.texts: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(("botocore", "urllib3")):
            self.texts.append(self.format(record))


def dynamo_logs(
    endpoint: str, settings: dict[str, Any], environ: dict[str, str], failing: bool
) -> dict[str, Any]:
    """Real requests to moto with botocore DEBUG on; returns what reached a handler."""
    from cachehub_dynamodb import DynamoDBCache

    os.environ.update(environ)
    handler = _Records()
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.DEBUG)
    for name in ("botocore", "urllib3"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    cache = DynamoDBCache(
        {"tableName": SHARED_TABLE, "host": endpoint, **settings},
        namespace=fresh_namespace("log"),
    )
    result: Any
    try:
        cache.put("k", {"v": 1})
        result = [cache.get("k"), sorted(cache.keys()), cache.delete("k")]
        if failing:  # a ClientError whose message botocore logs and cachehub translates
            cache.command("GetItem", {"Key": {"nope": {"S": "x"}}})
    except CacheError as exc:
        result = f"{type(exc).__name__}: {exc}"
    finally:
        cache.close()
    return {"result": result, "records": handler.texts}


def redis_channels(host: str, port: int, settings: dict[str, Any]) -> dict[str, Any]:
    """A Redis cache with ``settings`` against the real server; every text it shows."""
    from cachehub_redis import RedisCache

    texts: list[str] = []
    try:
        cache = RedisCache({"host": host, "port": port, "retries": 0, **settings})
    except CacheError as exc:
        return {"error": type(exc).__name__, "texts": [str(exc), repr(exc)]}
    texts.append(repr(cache))
    texts.append(repr(cache._plan))
    try:
        cache.put("k", 1)
        texts.append(repr(cache.get("k")))
        error = ""
    except CacheError as exc:
        error = type(exc).__name__
        texts.extend((str(exc), repr(exc)))
    finally:
        cache.close()
    return {"error": error, "texts": texts}


# ---------------------------------------------------------------------- config cases


@dataclass(frozen=True)
class Case:
    """One hostile configuration: what is loaded, and what must come of it."""

    id: str
    config: dict[str, Any]
    errors: tuple[str, ...] = ()
    """Error class names one of which must be raised (building or using a cache)."""
    masked: bool = True
    """Whether the mask must appear somewhere (the secret reached an output path)."""
    errors_only: bool = False
    """Only the error must hide the value: a secret misplaced in a setting whose name and
    type say nothing of secrets (``maxAttempts``) is shown by ``repr`` as configured."""
    environ: dict[str, str] = field(default_factory=dict)


URL_CHARS = {
    "hash": "#frag",
    "question": "?x=1",
    "at": "@other",
    "space": " with space",
    "slash-colon": "/:x",
    "percent": "%2F%40",
    "unicode": "pässwörd",
}

CASES: list[Case] = [
    # Redis URL passwords with every character that breaks URL parsing.
    *(
        Case(
            f"redis-url-{name}",
            {"main": redis_entry(url=f"redis://user:{pw(chars)}@{DOWN}/0")},
            errors=("CacheUnavailableError", "ConfigError"),
        )
        for name, chars in URL_CHARS.items()
    ),
    Case(
        "redis-url-percent-encoded",
        {"main": redis_entry(url=f"redis://user:{quote(pw('/@#? '), safe='')}@{DOWN}/0")},
        errors=("CacheUnavailableError",),
    ),
    Case(
        "redis-url-token-only-userinfo",
        {"main": redis_entry(url=f"rediss://{pw('@')}@{DOWN}/0")},
        errors=("CacheUnavailableError",),
    ),
    Case(
        "redis-sentinel-password",
        {
            "main": redis_entry(
                sentinel="mymaster", sentinels=[DOWN], sentinelPassword=pw("!"), password=pw("$")
            )
        },
        errors=("CacheUnavailableError",),
    ),
    # DynamoDB host with credentials or tokens.
    Case(
        "dynamo-host-userinfo",
        {"main": dynamo_entry(host=f"http://admin:{pw('@:#')}@{DOWN}")},
        errors=("ConfigError",),  # botocore refuses it: the ConfigError names no secret
    ),
    Case(
        "dynamo-host-query-token",
        {"main": dynamo_entry(host=f"http://{DOWN}/?X-Amz-Security-Token={pw('')}&a=1")},
        errors=("CacheUnavailableError", "CachePermissionError"),
    ),
    Case(
        "dynamo-credentials-and-session-token",
        {
            "main": dynamo_entry(
                host=f"http://{DOWN}",
                accessKeyId="AKIA" + "HOSTILE0SECRETS1",
                secretkey=pw("/+="),
                sessionToken=pw("=="),
            )
        },
        errors=("CacheUnavailableError",),
    ),
    # A provider installed from a URL: token in userinfo, in the query, in a bad requirement.
    Case(
        "package-url-userinfo-token",
        {
            "main": {
                "class": "memory",
                "package": f"cachehub-absent @ git+https://{pw('')}@github.com/o/r.git",
            }
        },
        errors=("MissingPackageError",),
    ),
    Case(
        "package-url-user-password",
        {"main": {"class": "memory", "package": f"x @ https://u:{pw('#?')}@h.example/x.whl"}},
        errors=("MissingPackageError", "ConfigError"),
    ),
    Case(
        "package-url-query-token",
        {"main": {"class": "memory", "package": f"x @ https://h.example/x.whl?token={pw('')}"}},
        errors=("MissingPackageError",),
    ),
    Case(
        "package-invalid-requirement-with-token",
        {"main": {"class": "memory", "package": f"https://u:{pw('')}@h.example/x.whl ;;"}},
        errors=("ConfigError",),
    ),
    Case(
        "package-signed-url",
        {
            "main": {
                "class": "memory",
                "package": f"x @ https://b.s3.example/x.whl?X-Amz-Signature={pw('')}&sig={TAIL}",
            }
        },
        errors=("MissingPackageError",),
    ),
    # Misspelled or unknown secret settings: refused, and masked in repr/caches --json.
    *(
        Case(f"unknown-secret-name-{name}", {"main": {"class": "memory", "custom": {name: pw("")}}})
        for name in (
            "pwd",
            "auth",
            "requirepass",
            "sessionTokn",
            "apiKey",
            "api_key",
            "x-api-key",
            "passwrd",
            "Private_Key",
            "dbCreds",
            "masterAuth",
            "secretky",
        )
    ),
    Case(
        "nested-custom-secret",
        {"main": {"class": "memory", "custom": {"options": {"auth": {"password": pw("")}}}}},
    ),
    Case(
        "secret-in-list-setting",
        {"main": {"class": "memory", "custom": {"servers": [f"redis://:{pw('')}@h:1"]}}},
    ),
    # A URL (or a misplaced password) given to a setting of another type.
    Case(
        "url-to-int-setting",
        {"main": redis_entry(port=f"redis://u:{pw('#')}@h:1/0")},
        errors=("ConfigError",),
        masked=False,
    ),
    Case(
        "password-to-int-setting",
        {"main": dynamo_entry(maxAttempts=pw(""))},
        errors=("ConfigError",),
        masked=False,
        errors_only=True,
    ),
    Case(
        "password-to-choice-setting",
        {"main": dynamo_entry(retryMode=pw(""))},
        errors=("ConfigError",),
        masked=False,
        errors_only=True,
    ),
    Case(
        "password-to-bool-entry-flag",
        {"main": {"class": "memory", "readOnly": pw("")}},
        errors=("ConfigError",),
        masked=False,
    ),
    Case(
        "url-to-float-setting",
        {"main": {"class": "memory", "custom": {"compressThreshold": f"https://u:{pw('')}@h"}}},
        errors=("ConfigError",),
        masked=False,
    ),
    # Secrets that arrive through ${VAR} interpolation.
    Case(
        "env-interpolated-password",
        {"main": redis_entry(password="${HOSTILE_PW}", host="127.0.0.1", port=1)},
        errors=("CacheUnavailableError",),
        environ={"HOSTILE_PW": pw("'\"\\")},
    ),
    Case(
        "env-interpolated-url",
        {"main": redis_entry(url="${HOSTILE_URL}")},
        # An unencoded '#' then '@' in the password: the url's host part would end inside
        # the password, so the url is refused (it used to be tried as written).
        errors=("ConfigError",),
        environ={"HOSTILE_URL": f"redis://:{pw('@#')}@{DOWN}/0"},
    ),
    # Lucee deployment keys are logged at DEBUG (a maven URL may carry credentials).
    Case(
        "lucee-maven-key-with-credentials",
        {"main": {"class": "memory", "maven": f"https://u:{pw('')}@repo.example/m2"}},
        masked=False,
    ),
    # The signing key of the codec is a secret setting too.
    Case(
        "signing-key-in-repr",
        {"main": {"class": "memory", "custom": {"signingKey": pw("")}}},
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_config_secret_never_shown(case: Case) -> None:
    outcome = run_bounded(config_channels, case.config, case.environ, seconds=90)
    assert_contained(outcome, forbidden=() if case.errors_only else FORBIDDEN)
    assert outcome.kind == "value", outcome.describe()
    for text in outcome.value["error_texts"]:
        assert all(marker not in text for marker in FORBIDDEN), text
    errors = outcome.value["errors"]
    if case.errors:
        assert errors, "the case must fail with a typed error"
        assert all(e in case.errors for e in errors), errors
    if case.id.startswith(("unknown-secret-name", "nested", "secret-in")):
        assert errors == ["ConfigError"], errors  # an unknown setting is refused
    if case.masked:
        shown = (*outcome.texts, *outcome.value["error_texts"])
        assert any(SECRET_MASK in text for text in shown), outcome.describe()


def test_case_table_is_large_and_distinct() -> None:
    assert len({c.id for c in CASES}) == len(CASES) >= 40


# ---------------------------------------------------------------------- botocore DEBUG logs

SESSION_TOKEN = pw("/session+token==")
ACCESS_KEY_ID = "ASIA" + "HOSTILELOGS00001"


@pytest.mark.parametrize(
    ("settings", "environ", "failing"),
    [
        pytest.param(
            {"accessKeyId": ACCESS_KEY_ID, "secretkey": pw("/+"), "sessionToken": SESSION_TOKEN},
            {},
            False,
            id="settings-credentials",
        ),
        pytest.param(
            {"accessKeyId": ACCESS_KEY_ID, "secretkey": pw("/+"), "sessionToken": SESSION_TOKEN},
            {},
            True,
            id="settings-credentials-client-error",
        ),
        pytest.param(
            {},
            {
                "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
                "AWS_SECRET_ACCESS_KEY": pw("+/"),
                "AWS_SESSION_TOKEN": SESSION_TOKEN,
            },
            False,
            id="default-chain-environment",
        ),
    ],
)
def test_botocore_debug_logs_hide_credentials(
    local_dynamodb: Any,
    shared_table: str,
    settings: dict[str, Any],
    environ: dict[str, str],
    failing: bool,
) -> None:
    outcome = run_bounded(dynamo_logs, local_dynamodb.endpoint, settings, environ, failing)
    assert_contained(outcome, forbidden=(*FORBIDDEN, ACCESS_KEY_ID, ACCESS_KEY_ID[4:]))
    assert outcome.kind == "value", outcome.describe()
    records = outcome.value["records"]
    # The requests really were logged (signed headers included), and masked.
    assert any("Authorization" in r and SECRET_MASK in r for r in records), records[:5]
    if failing:
        assert str(outcome.value["result"]).startswith("CacheValueError"), outcome.value
    else:
        assert outcome.value["result"] == [{"v": 1}, ["k"], True]


# ---------------------------------------------------------------------- redis-py errors


@pytest.mark.parametrize(
    "password",
    [pw("#"), pw("@"), pw(" "), pw("?&="), pw("%40")],
    ids=["hash", "at", "space", "query", "percent"],
)
def test_wrong_redis_password_never_shown(redis_server: RedisServer, password: str) -> None:
    outcome = run_bounded(
        redis_channels, redis_server.host, redis_server.port, {"password": password}
    )
    assert_contained(outcome, forbidden=FORBIDDEN)
    assert outcome.value["error"] == "CachePermissionError", outcome.describe()


def test_redis_url_password_with_specials_is_masked_in_plan_and_errors(
    redis_server: RedisServer,
) -> None:
    url = f"redis://default:{quote(pw('#@ '), safe='')}@{redis_server.host}:{redis_server.port}/0"
    outcome = run_bounded(redis_channels, redis_server.host, redis_server.port, {"url": url})
    # url plus host/port is a ConfigError; its message must not quote the url's password.
    assert_contained(outcome, forbidden=FORBIDDEN)
    assert outcome.value["error"] == "ConfigError", outcome.describe()


# ---------------------------------------------------------------------- scrubber decisions


@pytest.mark.parametrize(
    "name",
    [
        "pwd",
        "auth",
        "requirepass",
        "sessionTokn",
        "apiKey",
        "x-api-key",
        "PASS",
        "dbPassword",
        "clientSecret",
        "bearerToken",
        "signingKey",
        "accessKeyId",
        "Passwort",
        "secert",
    ],
)
def test_secret_looking_names(name: str) -> None:
    from cachehub.scrub import looks_secret

    assert looks_secret(name)


@pytest.mark.parametrize(
    "name",
    [
        "authority",
        "author",
        "primaryKey",
        "keyPrefix",
        "tableName",
        "bypassCache",
        "passive",
        "sslKeyfile",
        "namespace",
        "sessionTimeout",
        "maxTotal",
        "host",
        "url",
        "compass",
    ],
)
def test_ordinary_names_are_not_masked(name: str) -> None:
    from cachehub.scrub import looks_secret

    assert not looks_secret(name)


def test_registered_values_are_masked_in_every_encoding_but_not_below_minimum() -> None:
    from cachehub.scrub import MIN_SECRET_LENGTH, register_secret, scrub

    secret = f"{SECRET_MARK}/@ #'\"é{TAIL}"
    register_secret(secret)
    register_secret("abc")  # too short to replace in free text: it would mask words
    assert len("abc") < MIN_SECRET_LENGTH
    for form in (secret, quote(secret, safe=""), quote(secret), json.dumps(secret), repr(secret)):
        shown = scrub(f"before {form} after")
        assert SECRET_MARK not in shown
        assert TAIL not in shown
        assert shown.startswith("before ")
    assert scrub("abc abcd") == "abc abcd"


def test_userinfo_masking_is_linear_on_hostile_text() -> None:
    from cachehub.scrub import scrub

    hostile = ("a" * 50 + "://" + "@" * 50) * 2000 + "x" * 100_000  # ~300 KB
    outcome = run_bounded(scrub, hostile, seconds=20, memory_mb=256)
    assert outcome.kind == "value", outcome.describe()
    assert outcome.value.count("://*****@") == 2000  # every userinfo masked, up to its last @


@pytest.mark.parametrize(
    ("edited", "expected"),
    [
        ("redis://*****@cache:6380/1", "redis://u:p@ss:w#rd@cache:6380/1"),
        ("redis://*****@cache", "redis://u:p@ss:w#rd@cache"),
        ("see redis://*****@cache:1 now", "see redis://u:p@ss:w#rd@cache:1 now"),
        ("no mask left", "no mask left"),
        ("redis://*****@evil:6379/0", None),
        ("redis://*****@cache.evil:6379/0", None),
        ("redis://*****@cache:6379@evil/0", None),
        ("redis://*****@cache:\u00b2/0", None),  # a port of non-ASCII digits is more host
        ("rediss://*****@cache:6379/0", None),
        ("redis://*****@cache:6379/0?password=*****", None),
        ("redis://cache:6379/0?password=*****", None),  # the mask moved into the query
        ("*****", None),
        # The URL moved inside another one, whose host would get the credentials.
        ("http://evil.example/?u=redis://*****@cache:6379/0", None),
        ("redis://evil.example:6379/0?client_name=redis://*****@cache:6379/0", None),
        ("http://evil.example/?q= redis://*****@cache:6379/0", None),
        ("xredis://*****@cache:6379/0", None),  # another scheme, ending like this one
        ('"redis://*****@cache"', '"redis://u:p@ss:w#rd@cache"'),
    ],
)
def test_unmask_gives_credentials_back_only_to_their_host(
    edited: str, expected: str | None
) -> None:
    from cachehub.scrub import unmask

    assert unmask(edited, "redis://u:p@ss:w#rd@cache:6379/0") == expected


def test_unmask_refuses_what_is_not_userinfo_and_stays_linear() -> None:
    from cachehub.scrub import scrub, unmask

    signed = "https://h/x?X-Amz-Signature=abcdef0123456789"
    assert SECRET_MASK in scrub(signed)
    assert unmask(scrub(signed), signed) is None  # a query token is not given back
    assert unmask("*****", "plain-secret-value") is None
    # Hostile sizes: a megabyte of host and port characters is one linear pass.
    huge = "redis://a:b@" + ":1" * 500_000
    assert unmask("redis://*****@" + "1" * 1_000_000, huge) is None
    assert unmask("a" * 1_000_000 + "=redis://*****@h", "redis://u:p@h") is None


def test_unmask_keeps_each_of_several_urls_out_of_the_others() -> None:
    from cachehub.scrub import unmask

    original = "redis://u:p@a:1 redis://v:q@b"
    assert unmask("redis://*****@a:2 redis://*****@b", original) == "redis://u:p@a:2 redis://v:q@b"
    # a URL put between them would carry the second credentials in its query
    assert unmask("redis://*****@a:1 http://evil/?q= redis://*****@b", original) is None
    assert unmask("redis://*****@a:1/?q=redis://*****@b", original) is None
    # Text before a URL that was there already stays acceptable, URLs included.
    noted = "docs at http://wiki/x then redis://u:p@h"
    assert unmask("docs at http://wiki/x then redis://*****@h:2", noted) == (
        "docs at http://wiki/x then redis://u:p@h:2"
    )
    assert unmask("docs at http://evil/?x= redis://*****@h", noted) is None
