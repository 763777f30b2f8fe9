"""Lucee configurations load unchanged: aliases, any case, units, lazy ${VAR}, default."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from spec_examples import SECRET

from cachehub.config import LuceeOption, Option, canonical_settings, validate_settings
from cachehub.errors import ConfigError, MissingEnvVarError, UnknownCacheError
from cachehub.registry import Caches

REDIS_PASSWORD = "Redis-Pa55word-NeverShown"

# The DynamoDB driver form of the Lucee admin writes its fields lower-case
# (tableName, accesskeyid, secretkey, region, host, log), every value a string.
LUCEE_ADMIN_DYNAMODB = {
    "class": "org.lucee.extension.aws.dynamodb.DynamoDBCache",
    "bundleName": "org.lucee.dynamodb",
    "bundleVersion": "1.0.0.7-RC",
    "custom": {
        "tableName": "lucee_cache",
        "accesskeyid": "${LUCEE_TEST_KEY_ID}",
        "secretkey": "${LUCEE_TEST_SECRET}",
        "region": "eu-west-1",
        "host": "dynamodb.eu-west-1.amazonaws.com",
        "log": "application",
    },
    "readOnly": "false",
    "storage": "false",
    "default": "",
}

# The 4.x Redis driver form (build/context/admin/cdriver/Redis.cfc): every field, as text.
LUCEE_ADMIN_REDIS = {
    "class": "lucee.extension.io.cache.redis.RedisCache",
    "bundleName": "redis.extension",
    "bundleVersion": "4.0.0.0",
    "custom": {
        "connectionMode": "standalone",
        "host": "redis.internal",
        "port": "6380",
        "sentinelMasterName": "mymaster",
        "sentinelNodes": "",
        "clusterNodes": "",
        "ssl": "false",
        "username": "",
        "password": "${LUCEE_TEST_REDIS_PASSWORD}",
        "secretName": "",
        "region": "",
        "accessKeyId": "",
        "secretKey": "",
        "keyPrefix": "myapp",
        "sessionLockingEnabled": "false",
        "sessionLockExpiration": "30",
        "sessionLockTimeout": "5000",
        "alwaysClone": "false",
        "timeToLiveSeconds": "0",
        "idleTimeoutSeconds": "0",
        "touchOnAccess": "false",
        "maxTotal": "24",
        "maxLowPriority": "0",
        "maxIdle": "8",
        "minIdle": "0",
        "liveTimeout": "3600000",
        "idleTimeout": "300000",
        "connectionTimeout": "5000",
        "socketTimeout": "2000",
        "databaseIndex": "3",
    },
    "readOnly": "false",
    "storage": "true",
    "default": "object",
}

# The older 3.x sentinel form: masterName, sentinels (one per line), timeout.
LUCEE_ADMIN_SENTINEL = {
    "class": "lucee.extension.io.cache.redis.sentinel.RedisSentinelCache",
    "custom": {
        "masterName": "mymaster",
        "sentinels": "sentinel-1:26379\nsentinel-2:26379",
        "namespace": "lucee:cache",
        "password": "",
        "timeToLiveSeconds": "0",
        "maxTotal": "8",
        "maxIdle": "8",
        "minIdle": "0",
        "timeout": "2000",
    },
}


@pytest.fixture
def lucee_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LUCEE_TEST_KEY_ID", "AKIALUCEEEXAMPLE")
    monkeypatch.setenv("LUCEE_TEST_SECRET", SECRET)
    monkeypatch.setenv("LUCEE_TEST_REDIS_PASSWORD", REDIS_PASSWORD)


def cfconfig(tmp_path: Path, caches: dict[str, Any]) -> Path:
    path = tmp_path / ".CFConfig.json"
    doc = {"mode": "single", "inspectTemplate": "once", "caches": caches}
    path.write_text(json.dumps(doc, indent=2))
    return path


@pytest.mark.usefixtures("lucee_env")
def test_real_lucee_admin_configs_of_both_extensions_load_unchanged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = cfconfig(
        tmp_path,
        {"dynamo": LUCEE_ADMIN_DYNAMODB, "sessions": LUCEE_ADMIN_REDIS, "ha": LUCEE_ADMIN_SENTINEL},
    )
    with caplog.at_level(logging.DEBUG, logger="cachehub"), Caches.from_file(path) as caches:
        assert caches.default_name == "sessions"  # "object"; the others say ""
        dynamo = caches["dynamo"]
        assert dynamo.settings["accessKeyId"] == "AKIALUCEEEXAMPLE"
        assert dynamo.settings["tableName"] == "lucee_cache"
        # Lucee prefixes https:// to a host without a scheme.
        assert dynamo.settings["host"] == "https://dynamodb.eu-west-1.amazonaws.com"
        redis = caches["sessions"]
        assert redis.storage is True
        assert redis.settings["socketTimeout"] == 2.0  # Lucee's 2000 ms, in seconds
        assert redis.settings["port"] == 6380
        assert redis.settings["databaseIndex"] == 3
        assert redis.settings["maxTotal"] == 24
        assert redis.settings["namespace"] == "myapp:"
        assert redis.settings["cluster"] is False
        assert redis.settings["sentinel"] is None  # sentinelMasterName: not sentinel mode
        ha = caches["ha"]
        assert ha.settings["masterName"] == "mymaster"
        assert ha.settings["namespace"] == "lucee:cache"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    ignored = [w for w in warnings if "ignoring Lucee settings" in w]
    # One warning per cache that has unused settings, naming all of them at once.
    assert len([w for w in ignored if "'sessions'" in w]) == 1
    sessions = next(w for w in ignored if "'sessions'" in w)
    for name in ("minIdle", "maxIdle", "liveTimeout", "idleTimeout", "connectionTimeout"):
        assert name in sessions
    assert "timeToLiveSeconds" not in sessions  # 0: the default, nothing is lost
    assert "timeout" in next(w for w in ignored if "'ha'" in w)
    assert SECRET not in caplog.text
    assert REDIS_PASSWORD not in caplog.text


def test_every_dynamodb_extension_alias_and_case(monkeypatch: pytest.MonkeyPatch) -> None:
    custom = {
        "TABLE": "t1",
        "AwsAccessKeyId": "AKIAALIAS",
        "AWSSECRETKEY": SECRET,
        "Location": "ap-south-1",
        "Endpoint": "localhost:8000",
        "PRIMARYKEY": "id",
        "LiveTimeout": "4000",
    }
    caches = Caches(
        {"d": {"class": "org.lucee.extension.aws.dynamodb.DynamoDBCache", "custom": custom}}
    )
    settings = caches["d"].settings
    assert settings["tableName"] == "t1"
    assert settings["accessKeyId"] == "AKIAALIAS"
    assert settings["secretkey"] == SECRET
    assert settings["region"] == "ap-south-1"
    assert settings["host"] == "https://localhost:8000"
    assert settings["primaryKey"] == "id"
    assert settings["liveTimeout"] == 4000  # the extension's unit is ms, as is ours
    for alias in ("accesskey", "accessKeyId", "accesskeyid"):
        other = Caches(
            {
                "d": {
                    "class": "dynamodb",
                    "custom": {"table": "t", alias: "A", "secretkey": "s", "region": "us-east-1"},
                }
            }
        )
        assert other["d"].settings["accessKeyId"] == "A"
    for alias in ("server", "host", "endpoint"):
        other = Caches({"d": {"class": "dynamodb", "custom": {"table": "t", alias: "http://h:1"}}})
        assert other["d"].settings["host"] == "http://h:1"


def test_the_default_aws_endpoint_means_no_endpoint() -> None:
    caches = Caches(
        {
            "d": {
                "class": "dynamodb",
                "custom": {"table": "t", "region": "us-east-1", "server": "dynamodb.amazonaws.com"},
            }
        }
    )
    assert caches["d"].settings["host"] is None


def test_two_spellings_of_one_setting_with_different_values_name_both() -> None:
    caches = Caches(
        {
            "d": {
                "class": "dynamodb",
                "custom": {"tableName": "a", "TABLE": "b", "region": "us-east-1"},
            }
        }
    )
    with pytest.raises(ConfigError) as info:
        caches["d"]
    message = str(info.value)
    assert "'tableName' and 'TABLE' both set 'tableName'" in message
    # The same value twice is harmless.
    same = Caches(
        {
            "d": {
                "class": "dynamodb",
                "custom": {"tableName": "a", "tablename": "a", "region": "us-east-1"},
            }
        }
    )
    assert same["d"].settings["tableName"] == "a"


def test_secret_values_in_colliding_spellings_are_not_shown() -> None:
    caches = Caches(
        {
            "d": {
                "class": "dynamodb",
                "custom": {
                    "table": "t",
                    "secretkey": SECRET,
                    "awsSecretKey": SECRET + "x",
                    "region": "us-east-1",
                },
            }
        }
    )
    with pytest.raises(ConfigError) as info:
        caches["d"]
    assert SECRET not in str(info.value)
    assert "awsSecretKey" in str(info.value)


def test_cachehub_socket_timeout_stays_in_seconds() -> None:
    caches = Caches({"r": {"class": "redis", "custom": {"socketTimeout": 3, "minIdle": 2}}})
    assert caches["r"].settings["socketTimeout"] == 3.0


@pytest.mark.parametrize(
    ("custom", "message"),
    [
        ({"connectionMode": "ring"}, "connectionMode must be standalone, sentinel or cluster"),
        ({"socketTimeout": "two seconds"}, "Lucee setting 'socketTimeout'"),
        ({"socketTimeout": "nan"}, "Lucee setting 'socketTimeout'"),
        ({"socketTimeout": "1e309"}, "Lucee setting 'socketTimeout'"),
        ({"socketTimeout": True}, "Lucee setting 'socketTimeout'"),
        ({"secretName": "prod/redis"}, "secretName"),
        ({"minIdel": "1"}, "Did you mean 'minIdle'?"),
    ],
)
def test_bad_lucee_redis_settings_are_typed_errors(custom: dict[str, Any], message: str) -> None:
    caches = Caches({"r": {"class": "lucee.extension.io.cache.redis.RedisCache", "custom": custom}})
    with pytest.raises(ConfigError, match=message) as info:
        caches["r"]
    assert info.value.hint


def test_lucee_cluster_and_sentinel_modes() -> None:
    cluster = Caches(
        {
            "r": {
                "class": "lucee.extension.io.cache.redis.RedisCache",
                "custom": {
                    "connectionMode": "cluster",
                    "clusterNodes": "n1:6379,n2:6379",
                    "host": "n1",
                },
            }
        }
    )
    assert cluster["r"].settings["cluster"] is True
    sentinel = Caches(
        {
            "r": {
                "class": "lucee.extension.io.cache.redis.RedisCache",
                "custom": {
                    "connectionMode": "SENTINEL",
                    "sentinelMasterName": "m",
                    "sentinelNodes": "s1:26379,s2:26379",
                },
            }
        }
    )
    assert sentinel["r"].settings["sentinel"] == "m"
    assert sentinel["r"].settings["sentinels"] == "s1:26379,s2:26379"


def test_canonical_settings_is_idempotent_and_bounded() -> None:
    options = (Option("tableName", aliases=("table",)), Option("socketTimeout", float))
    foreign = (LuceeOption("minIdle"), LuceeOption("socketTimeout", "socketTimeout", float))
    first = canonical_settings({"TABLE": "x", "socketTimeout": 5}, options, foreign, where="w")
    assert first == {"tableName": "x", "socketTimeout": 5}
    assert canonical_settings(first, options, foreign, where="w") == first
    # A hostile number of spellings is still one linear pass with one error.
    many = {f"table{'_' * i}": "x" for i in range(1, 200)}
    with pytest.raises(ConfigError, match="unknown setting"):
        validate_settings(many, options, where="w")


def test_lucee_ram_and_eh_cache_entries_load(caplog: pytest.LogCaptureFixture) -> None:
    config = {
        "ram": {
            "class": "lucee.runtime.cache.ram.RamCache",
            "custom": {"timeToIdleSeconds": "0", "timeToLiveSeconds": "0"},
            "default": "object",
        },
        "eh": {
            "class": "org.lucee.extension.cache.eh.EHCache",
            "custom": {
                "maxelementsinmemory": "500",
                "memoryevictionpolicy": "LFU",
                "eternal": "false",
                "timeToIdleSeconds": "3600",
                "timeToLiveSeconds": "0",
                "diskpersistent": "true",
                "overflowtodisk": "false",
                "distributed": "false",
                "automatic_hostName": "",
            },
        },
    }
    with caplog.at_level(logging.WARNING, logger="cachehub"):
        caches = Caches(config)
        assert caches.default_name == "ram"
        caches["ram"].put("k", 1)
        eh = caches["eh"]
    assert (eh.settings["maxsize"], eh.settings["policy"]) == (500, "lfu")
    ignored = [r.getMessage() for r in caplog.records if "ignoring Lucee" in r.getMessage()]
    assert len(ignored) == 1
    assert "timeToIdleSeconds" in ignored[0]
    assert "diskpersistent" in ignored[0]
    assert "overflowtodisk" not in ignored[0]  # false: nothing is lost


@pytest.mark.parametrize(
    ("custom", "message"),
    [
        ({"maxelementsinmemory": "0"}, "always bounded"),
        ({"memoryevictionpolicy": "CLOCK"}, "LRU, LFU or FIFO"),
    ],
)
def test_lucee_eh_cache_values_cachehub_cannot_honour(custom: dict[str, Any], message: str) -> None:
    caches = Caches({"eh": {"class": "org.lucee.extension.cache.eh.EHCache", "custom": custom}})
    with pytest.raises(ConfigError, match=message):
        caches["eh"]


# ---------------------------------------------------------------------- lazy ${VAR}


def test_an_unset_variable_breaks_only_its_own_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LUCEE_TEST_UNSET", raising=False)
    caches = Caches(
        {
            "good": {"class": "memory", "default": True},
            "bad": {
                "class": "redis",
                "custom": {"password": "${LUCEE_TEST_UNSET}", "namespace": "x:"},
            },
        }
    )
    caches["good"].put("k", 1)
    assert caches.get().get("k") == 1
    with pytest.raises(MissingEnvVarError, match="'LUCEE_TEST_UNSET' is not set") as info:
        caches["bad"]
    assert "cache 'bad'" in str(info.value)
    with pytest.raises(MissingEnvVarError):
        caches.validate()
    # Resolved when used: once the variable is set, the cache builds.
    monkeypatch.setenv("LUCEE_TEST_UNSET", REDIS_PASSWORD)
    assert caches["bad"].settings["password"] == REDIS_PASSWORD
    assert REDIS_PASSWORD not in repr(caches)


def test_several_unset_variables_are_named_together(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("LUCEE_A", "LUCEE_B", "LUCEE_C"):
        monkeypatch.delenv(name, raising=False)
    caches = Caches(
        {
            "x": {
                "class": "${LUCEE_A}",
                "readOnly": "${LUCEE_B}",
                "custom": {"namespace": "${LUCEE_C}"},
            }
        }
    )
    with pytest.raises(MissingEnvVarError) as info:
        caches["x"]
    for name in ("LUCEE_A", "LUCEE_B", "LUCEE_C"):
        assert name in str(info.value)


def test_doctor_reports_an_unset_variable_per_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from cachehub.cli.app import cli

    monkeypatch.delenv("LUCEE_TEST_UNSET", raising=False)
    path = tmp_path / "caches.json"
    path.write_text(
        json.dumps(
            {
                "good": {"class": "memory"},
                "bad": {"class": "memory", "custom": {"namespace": "${LUCEE_TEST_UNSET}"}},
            }
        )
    )
    result = CliRunner().invoke(cli, ["--config", str(path), "doctor", "--json"])
    assert result.exit_code == 1, result.output
    reports = {r["cache"]: r for r in json.loads(result.stdout)}
    assert reports["good"]["ok"] is True
    assert reports["bad"]["ok"] is False
    assert "LUCEE_TEST_UNSET" in reports["bad"]["checks"][0]["detail"]
    # Other commands still work on the good cache.
    listed = CliRunner().invoke(cli, ["--config", str(path), "--cache", "good", "count"])
    assert listed.exit_code == 0, listed.output


# ---------------------------------------------------------------------- default


def test_a_single_cache_marked_not_default_is_not_the_default() -> None:
    caches = Caches({"only": {"class": "memory", "default": ""}})
    assert caches.default_name is None
    with pytest.raises(ConfigError, match="no default cache"):
        caches.get()
    assert Caches({"only": {"class": "memory"}}).default_name == "only"
    assert Caches({"only": {"class": "memory", "default": False}}).default_name is None
    assert Caches({"only": {"class": "memory", "default": "object"}}).default_name == "only"


def test_unknown_cache_still_suggests() -> None:
    with pytest.raises(UnknownCacheError, match="Did you mean 'only'"):
        Caches({"only": {"class": "memory"}})["onyl"]


def test_secret_settings_are_masked_in_every_spelling() -> None:
    from cachehub.cli.admin import entry_config
    from cachehub.loader import parse_entry

    entry = parse_entry(
        "d",
        {
            "class": "org.lucee.extension.aws.dynamodb.DynamoDBCache",
            "custom": {"TABLE": "t", "AccessKey": SECRET, "AWSSECRETKEY": SECRET},
        },
    )
    shown = entry_config(entry)
    assert SECRET not in repr(shown)
    assert SECRET not in repr(entry)
    assert shown["custom"]["TABLE"] == "t"
