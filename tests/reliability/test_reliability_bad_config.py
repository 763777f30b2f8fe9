"""Bad-input corpus, part 1: configuration files, entries, providers and their settings.

Secrets (Redis password, AWS secret key, signing key) are written into many of these
configurations on purpose; :func:`~.corpus.check` asserts they never leak.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cachehub.errors import (
    ConfigError,
    MissingEnvVarError,
    MissingPackageError,
    UnknownCacheError,
    UnknownProviderError,
)

from .conftest import AWS_SECRET_KEY, REDIS_PASSWORD, SIGNING_KEY
from .corpus import Case, Env, Run, check, params

SECRETS = {"password": REDIS_PASSWORD, "signingKey": SIGNING_KEY}


def _file(text: str | bytes) -> Run:
    """A case body: load ``text`` as a server configuration file."""
    return lambda env: env.registry(env.file(text))


def _entry(entry: object) -> Run:
    """A case body: load ``{"main": entry}`` as application configuration."""
    return lambda env: env.registry({"main": entry})


def _custom(cls: str, **custom: object) -> Run:
    """A case body: a ``cls`` cache whose ``custom`` block is ``custom``."""
    return lambda env: env.registry({"main": {"class": cls, "custom": custom}})


def _dynamo(**custom: object) -> dict[str, object]:
    return {"tableName": "t", "region": "us-east-1", **custom}


def _hidden(distribution: str, package: str, cls: str) -> Run:
    def run(env: Env) -> None:
        env.hide(distribution, package)
        env.registry({"main": {"class": cls, "custom": dict(SECRETS)}})

    return run


def _missing_file(env: Env) -> None:
    env.registry(env.tmp / "nowhere" / "caches.json")


def _directory(env: Env) -> None:
    env.registry(env.tmp)


def _unknown_name(env: Env) -> None:
    env.registry({"main": {"class": "memory"}})["mian"]


def _not_a_config(env: Env) -> None:
    env.registry(42)


PASSWORD_JSON = f'"password": "{REDIS_PASSWORD}"'

CASES = [
    # ---- malformed files: the error names the file, line and column, never the content
    Case(
        "json-trailing-comma",
        ConfigError,
        ("not valid JSON", "line 4", "column"),
        _file(
            '{"caches": {\n  "main": {"class": "redis",\n    "custom": {'
            + PASSWORD_JSON
            + "},\n  },\n}}\n"
        ),
    ),
    Case(
        "json-unclosed-object",
        ConfigError,
        ("not valid JSON", "line 3", "column"),
        _file('{\n  "main": {"class": "memory", "custom": {' + PASSWORD_JSON + "}\n"),
    ),
    Case(
        "json-comment",
        ConfigError,
        ("not valid JSON", "line 1, column 1"),
        _file('// caches\n{"main": {"class": "memory"}}'),
    ),
    Case("json-empty-file", ConfigError, ("not valid JSON", "line 1"), _file("")),
    Case(
        "json-single-quotes",
        ConfigError,
        ("not valid JSON", "line 1, column 2"),
        _file("{'main': {'class': 'memory'}}"),
    ),
    Case(
        "json-secret-in-bad-token",
        ConfigError,
        ("not valid JSON", "line 1"),
        _file('{"main": {"custom": {"password": ' + REDIS_PASSWORD + "}}}"),
    ),
    Case(
        "top-level-list",
        ConfigError,
        ("must contain a JSON object, got list",),
        _file('[{"class": "memory"}]'),
    ),
    Case(
        "top-level-string", ConfigError, ("must contain a JSON object, got str",), _file('"memory"')
    ),
    Case("top-level-number", ConfigError, ("must contain a JSON object, got int",), _file("42")),
    Case(
        "top-level-null", ConfigError, ("must contain a JSON object, got NoneType",), _file("null")
    ),
    Case("file-missing", ConfigError, ("does not exist",), _missing_file),
    Case(
        "file-not-utf8",
        ConfigError,
        ("cannot read configuration file", "not UTF-8"),
        _file(b'{"main": {"class": "\xff\xfe"}}'),
    ),
    Case("file-is-a-directory", ConfigError, ("cannot read configuration file",), _directory),
    Case(
        "config-not-a-mapping",
        ConfigError,
        ("must be a mapping or a file path", "int"),
        _not_a_config,
    ),
    # ---- entries
    Case(
        "entry-is-a-list",
        ConfigError,
        ("'main'", "must be an object", "got list"),
        _entry(["memory"]),
    ),
    Case(
        "entry-is-a-string",
        ConfigError,
        ("'main'", "must be an object", "got str"),
        _entry("memory"),
    ),
    Case(
        "entry-without-class", ConfigError, ("has no 'class'",), _entry({"custom": dict(SECRETS)})
    ),
    Case(
        "class-not-a-string",
        ConfigError,
        ("'class' must be a non-empty string, got int",),
        _entry({"class": 42}),
    ),
    Case(
        "class-blank", ConfigError, ("'class' must be a non-empty string",), _entry({"class": "  "})
    ),
    Case(
        "unknown-entry-key-clas",
        ConfigError,
        ("unknown key 'clas'", "Did you mean 'class'?"),
        _entry({"clas": "memory"}),
    ),
    Case(
        "unknown-entry-key-raedonly",
        ConfigError,
        ("unknown key 'raedOnly'", "Did you mean 'readOnly'?"),
        _entry({"class": "memory", "raedOnly": True}),
    ),
    Case(
        "unknown-entry-key-costum",
        ConfigError,
        ("unknown key 'costum'", "Did you mean 'custom'?"),
        _entry({"class": "redis", "costum": dict(SECRETS)}),
    ),
    Case(
        "custom-not-an-object",
        ConfigError,
        ("'custom' must be an object", "got list"),
        _entry({"class": "memory", "custom": [REDIS_PASSWORD]}),
    ),
    Case(
        "read-only-not-a-bool",
        ConfigError,
        ("'readOnly' must be true or false",),
        _entry({"class": "memory", "readOnly": "maybe"}),
    ),
    Case(
        "storage-a-number",
        ConfigError,
        ("'storage' must be true or false", "int"),
        _entry({"class": "memory", "storage": 5}),
    ),
    Case(
        "default-a-list",
        ConfigError,
        ("'default' must be a bool or a string", "list"),
        _entry({"class": "memory", "default": [1]}),
    ),
    Case(
        "names-differ-only-in-case",
        ConfigError,
        ("differ only in case",),
        lambda env: env.registry({"Main": {"class": "memory"}, "main": {"class": "memory"}}),
    ),
    Case(
        "name-empty",
        ConfigError,
        ("cache names must be non-empty strings",),
        lambda env: env.registry({"": {"class": "memory"}}),
    ),
    Case(
        "several-defaults",
        ConfigError,
        ("several caches are marked default: a, b",),
        lambda env: env.registry(
            {"a": {"class": "memory", "default": True}, "b": {"class": "memory", "default": True}}
        ),
    ),
    Case(
        "unknown-cache-name",
        UnknownCacheError,
        ("no cache named 'mian'", "Did you mean 'main'?"),
        _unknown_name,
    ),
    # ---- environment variables
    Case(
        "missing-env-var",
        MissingEnvVarError,
        ("'CACHEHUB_REL_UNSET_PASSWORD' is not set", "cache 'main'", "custom.password"),
        _custom("redis", password="${CACHEHUB_REL_UNSET_PASSWORD}", signingKey=SIGNING_KEY),
    ),
    Case(
        "missing-env-var-in-class",
        MissingEnvVarError,
        ("'CACHEHUB_REL_UNSET_CLASS' is not set", "setting 'class'"),
        _entry({"class": "${CACHEHUB_REL_UNSET_CLASS}"}),
    ),
    Case(
        "unterminated-env-reference",
        ConfigError,
        ("unterminated '${' reference",),
        _custom("redis", password="${REDIS_PASSWORD", signingKey=SIGNING_KEY),
    ),
    Case(
        "invalid-env-reference",
        ConfigError,
        ("'${1BAD}' is not a valid environment variable reference",),
        _custom("memory", namespace="${1BAD}"),
    ),
    # ---- providers
    Case(
        "unknown-alias",
        UnknownProviderError,
        ("'memroy'", "Did you mean 'memory'?"),
        _entry({"class": "memroy", "custom": dict(SECRETS)}),
    ),
    Case(
        "unknown-dotted-class",
        UnknownProviderError,
        ("'org.example.NoSuchCache'", "module 'org.example' does not exist"),
        _entry({"class": "org.example.NoSuchCache"}),
    ),
    Case(
        "unknown-module-colon-class",
        UnknownProviderError,
        ("module 'no_such_module_xyz' does not exist",),
        _entry({"class": "no_such_module_xyz:Cache"}),
    ),
    Case(
        "class-not-a-cache",
        ConfigError,
        ("not a subclass of cachehub.BaseCache",),
        _entry({"class": "collections:OrderedDict"}),
    ),
    Case(
        "redis-not-installed",
        MissingPackageError,
        ("pip install", "cachehub-redis"),
        _hidden("cachehub-redis", "cachehub_redis", "redis"),
    ),
    Case(
        "dynamodb-not-installed-lucee-class",
        MissingPackageError,
        ("pip install", "cachehub-dynamodb"),
        _hidden(
            "cachehub-dynamodb",
            "cachehub_dynamodb",
            "org.lucee.extension.aws.dynamodb.DynamoDBCache",
        ),
    ),
    Case(
        "package-version-unsatisfied",
        MissingPackageError,
        ("requires cachehub-memory>=99", "pip install"),
        _entry({"class": "memory", "package": "cachehub-memory>=99"}),
    ),
    Case(
        "package-not-a-requirement",
        ConfigError,
        ("is not a valid pip requirement",),
        _entry({"class": "memory", "package": "not a requirement!!"}),
    ),
    # ---- provider settings: unknown names (did you mean), wrong types, ranges
    Case(
        "memory-unknown-setting",
        ConfigError,
        ("unknown setting 'maxsise'", "Did you mean 'maxsize'?"),
        _custom("memory", maxsise=5),
    ),
    Case(
        "redis-unknown-setting-holding-a-secret",
        ConfigError,
        ("unknown setting 'passwrd'", "Did you mean 'password'?"),
        _custom("redis", passwrd=REDIS_PASSWORD),
    ),
    Case(
        "dynamodb-setting-spelled-twice",  # names are case-insensitive, as in CFML
        ConfigError,
        ("'tablename' and 'TABLE' both set 'tableName'",),
        _custom("dynamodb", tablename="t", TABLE="u", secretkey=AWS_SECRET_KEY),
    ),
    Case(
        "dynamodb-unknown-setting-secret-key",
        ConfigError,
        ("unknown setting 'secretKeyy'", "Did you mean"),
        _custom("dynamodb", **_dynamo(secretKeyy=AWS_SECRET_KEY)),
    ),
    Case(
        "memory-maxsize-wrong-type",
        ConfigError,
        ("'maxsize' must be int, got str 'lots'",),
        _custom("memory", maxsize="lots"),
    ),
    Case(
        "memory-maxsize-zero",
        ConfigError,
        ("'maxsize'", "below its minimum 1"),
        _custom("memory", maxsize=0),
    ),
    Case(
        "redis-port-wrong-type",
        ConfigError,
        ("'port' must be int",),
        _custom("redis", port="six", **SECRETS),
    ),
    Case(
        "redis-password-wrong-type",
        ConfigError,
        ("'password' must be str, got list *****",),
        _custom("redis", password=[REDIS_PASSWORD]),
    ),
    Case(
        "redis-url-bad-port-with-password",
        ConfigError,
        ("is not a Redis URL",),
        _custom("redis", url=f"redis://:{REDIS_PASSWORD}@localhost:notaport/0"),
    ),
    Case(
        "redis-sentinel-without-sentinels",
        ConfigError,
        ("needs both 'sentinel'",),
        _custom("redis", sentinel="mymaster", **SECRETS),
    ),
    Case(
        "redis-cluster-with-db",
        ConfigError,
        ("Redis Cluster only has database 0",),
        _custom("redis", cluster=True, db=3, **SECRETS),
    ),
    Case(
        "dynamodb-secret-key-wrong-type",
        ConfigError,
        ("'secretkey' must be str, got dict *****",),
        _custom("dynamodb", **_dynamo(accessKeyId="AKIA1", secretkey={"k": AWS_SECRET_KEY})),
    ),
    Case(
        "dynamodb-live-timeout-zero",
        ConfigError,
        ("'liveTimeout'", "below its minimum"),
        _custom("dynamodb", **_dynamo(liveTimeout=0)),
    ),
    Case(
        "dynamodb-table-missing",
        ConfigError,
        ("required setting 'tableName' is missing",),
        _custom("dynamodb", region="us-east-1", secretkey=AWS_SECRET_KEY, accessKeyId="A"),
    ),
    Case(
        "dynamodb-table-blank",
        ConfigError,
        ("'tableName' is empty",),
        _custom("dynamodb", **_dynamo(tableName="   ")),
    ),
    Case(
        "dynamodb-half-credentials",
        ConfigError,
        ("'secretkey' is set but 'accessKeyId' is not",),
        _custom("dynamodb", **_dynamo(secretkey=AWS_SECRET_KEY)),
    ),
    Case(
        "dynamodb-retry-mode-unknown",
        ConfigError,
        ("'retryMode'", "not one of"),
        _custom("dynamodb", **_dynamo(retryMode="legacy")),
    ),
    Case(
        "codec-unknown",
        ConfigError,
        ("'codec'", "not one of 'safe', 'pickle'"),
        _custom("memory", codec="yaml", signingKey=SIGNING_KEY),
    ),
    Case(
        "on-error-unknown",
        ConfigError,
        ("'onError'", "not one of 'raise', 'miss'"),
        _custom("redis", onError="ignore", **SECRETS),
    ),
    Case(
        "pickle-without-signing-key",
        ConfigError,
        ("needs a signingKey",),
        _custom("memory", codec="pickle"),
    ),
    Case(
        "pickle-short-signing-key",
        ConfigError,
        ("shorter than 16 characters",),
        _custom("memory", codec="pickle", signingKey="SuperSecret-123"),
    ),
    Case(
        "signing-key-wrong-type",
        ConfigError,
        ("'signingKey' must be str", "*****"),
        _custom("memory", codec="pickle", signingKey=[SIGNING_KEY]),
    ),
    Case(
        "compress-threshold-negative",
        ConfigError,
        ("'compressThreshold'", "below its minimum"),
        _custom("memory", compressThreshold=-1),
    ),
]


@pytest.mark.parametrize("case", params(CASES))
def test_bad_config(
    case: Case, request: pytest.FixtureRequest, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    check(case, Env(request, tmp_path), caplog)
