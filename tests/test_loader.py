"""Configuration loading: Lucee file shapes, ${VAR} interpolation, entry validation, secrets."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from spec_examples import CFCONFIG, SECRET

from cachehub.config import SECRET_MASK
from cachehub.errors import ConfigError, MissingEnvVarError
from cachehub.loader import CacheEntry, default_entry, interpolate, load_config, parse_entries
from cachehub.registry import Caches


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)


def write(tmp_path: Path, text: str, name: str = ".CFConfig.json") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ---------------------------------------------------------------------- shapes


@pytest.mark.usefixtures("aws_env")
def test_spec_cfconfig_loads_unchanged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, CFCONFIG)
    with caplog.at_level(logging.DEBUG, logger="cachehub"):
        entries = load_config(server_config=path)
    entry = entries["dynamo"]
    assert entry.class_name == "org.lucee.extension.aws.dynamodb.DynamoDBCache"
    assert entry.package is None
    assert entry.read_only is False
    assert entry.storage is False
    assert entry.default is False
    assert entry.source == str(path)
    assert dict(entry.custom) == {
        "tableName": "prod_cache",
        "accessKeyId": "AKIAEXAMPLE",
        "secretkey": SECRET,
        "primaryKey": "pk",
        "region": "us-east-1",
        "liveTimeout": 5000,
        "log": "dynamodb",
    }
    assert "ignoring Lucee key 'maven'" in caplog.text
    assert SECRET not in caplog.text
    assert SECRET not in repr(entry)
    assert SECRET not in str(entry)
    assert SECRET_MASK in repr(entry)


@pytest.mark.usefixtures("aws_env")
def test_spec_application_example() -> None:
    # Application.cfc's this.caches from the spec, as a Python dict.
    this_caches = {
        "dynamo": {
            "class": "org.lucee.extension.aws.dynamodb.DynamoDBCache",
            "maven": "org.lucee:dynamodb:1.0.0.7-RC",
            "storage": False,
            "custom": {
                "tableName": "my_cache_table",
                "accessKeyId": "${AWS_ACCESS_KEY_ID}",
                "secretkey": "${AWS_SECRET_ACCESS_KEY}",
                "primaryKey": "pk",
                "region": "us-east-1",
                "liveTimeout": 3600000,
                "log": "application",
            },
            "default": "",
        }
    }
    entry = load_config(this_caches)["dynamo"]
    assert entry.default is False
    assert entry.source == "application"
    assert entry.custom["secretkey"] == SECRET


def test_file_that_is_directly_name_to_entry(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps({"main": {"class": "memory"}}), "caches.json")
    assert load_config(path)["main"].class_name == "memory"


def test_cache_connections_shape_of_the_ehcache_migration_example() -> None:
    # this.cache.connections["ehcache"] = {...} from the spec's migration section.
    config = {
        "cache": {
            "connections": {
                "ehcache": {"class": "lucee.runtime.cache.eh.EHCache", "storage": False}
            }
        }
    }
    entry = load_config(config)["ehcache"]
    assert entry.class_name == "lucee.runtime.cache.eh.EHCache"


def test_a_cache_literally_named_caches_is_an_entry() -> None:
    entries = load_config({"caches": {"class": "memory"}})
    assert entries["caches"].class_name == "memory"


def test_other_cfconfig_keys_are_ignored() -> None:
    doc = {"datasources": {"x": {}}, "caches": {"m": {"class": "memory"}}}
    assert list(load_config(server_config=doc)) == ["m"]


# ---------------------------------------------------------------------- files


def test_malformed_json_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, '{\n  "caches": {\n    "a": {"class": "memory",}\n  }\n}\n')
    with pytest.raises(ConfigError) as info:
        load_config(server_config=path)
    message = str(info.value)
    assert str(path) in message
    assert "line 3" in message
    assert "column 29" in message


def test_malformed_json_never_echoes_content(tmp_path: Path) -> None:
    path = write(tmp_path, '{"a": {"custom": {"secretkey": "' + SECRET + '"},}}')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert SECRET not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.json")


def test_file_must_hold_an_object(tmp_path: Path) -> None:
    path = write(tmp_path, "[1, 2]")
    with pytest.raises(ConfigError, match="must contain a JSON object, got list"):
        load_config(path)


def test_bom_is_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"a": {"class": "memory"}}).encode())
    assert "a" in load_config(path)


def test_config_of_wrong_type() -> None:
    with pytest.raises(ConfigError, match="mapping or a file path, got list"):
        load_config([1])  # type: ignore[arg-type]


# ---------------------------------------------------------------------- interpolation


def test_interpolation_variants(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOST", "db.local")
    monkeypatch.setenv("EMPTY", "")
    monkeypatch.delenv("UNSET_VAR", raising=False)
    config = {
        "a": {
            "class": "memory",
            "custom": {
                "url": "http://${HOST}:8000/x",
                "fallback": "${UNSET_VAR:-eu-west-1}",
                "empty": "${EMPTY:-default}",
                "literal": "$${HOST} costs $5",
                "nested": {"list": ["${HOST}", 3, {"deep": "${HOST}"}]},
                "number": 5,
            },
        }
    }
    custom = load_config(config)["a"].custom
    assert custom["url"] == "http://db.local:8000/x"
    assert custom["fallback"] == "eu-west-1"
    assert custom["empty"] == "default"
    assert custom["literal"] == "${HOST} costs $5"
    assert custom["nested"] == {"list": ["db.local", 3, {"deep": "db.local"}]}
    assert custom["number"] == 5


def test_interpolation_applies_to_entry_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CACHE_CLASS", "memory")
    monkeypatch.setenv("READ_ONLY", "true")
    entry = load_config({"a": {"class": "${CACHE_CLASS}", "readOnly": "${READ_ONLY}"}})["a"]
    assert entry.class_name == "memory"
    assert entry.read_only is True


def test_missing_variable_names_variable_cache_and_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", SECRET)
    config = json.loads(CFCONFIG)
    entry = load_config(server_config=config)["dynamo"]  # lazy: only this cache is broken
    assert isinstance(entry.problem, MissingEnvVarError)
    assert SECRET not in repr(entry)
    with pytest.raises(MissingEnvVarError) as info:
        Caches(server_config=config).get("dynamo")
    message = str(info.value)
    assert "AWS_SECRET_ACCESS_KEY" in message
    assert "cache 'dynamo'" in message
    assert "custom.secretkey" in message
    assert SECRET not in message
    assert isinstance(info.value, ConfigError)


def test_unset_variable_in_ignored_maven_key_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAVEN_VERSION", raising=False)
    entry = load_config({"a": {"class": "memory", "maven": "org.lucee:x:${MAVEN_VERSION}"}})["a"]
    assert entry.class_name == "memory"


@pytest.mark.parametrize("text", ["${1BAD}", "${}", "${A B}"])
def test_invalid_reference(text: str) -> None:
    with pytest.raises(ConfigError, match="not a valid environment variable reference"):
        interpolate(text, cache="c", setting="s", environ={})


def test_unterminated_reference() -> None:
    with pytest.raises(ConfigError, match="unterminated"):
        interpolate("abc ${HOST", cache="c", setting="s", environ={"HOST": "x"})


def test_interpolate_with_explicit_environ() -> None:
    assert interpolate(["${A}", ("${A}",)], cache="c", setting="s", environ={"A": "1"}) == [
        "1",
        ["1"],
    ]


# ---------------------------------------------------------------------- validation


def test_override_order_application_wins_case_insensitively(tmp_path: Path) -> None:
    server = write(
        tmp_path,
        json.dumps(
            {
                "caches": {
                    "dynamo": {"class": "dynamodb", "custom": {"tableName": "t"}},
                    "shared": {"class": "memory", "readOnly": True},
                }
            }
        ),
    )
    app = {"Dynamo": {"class": "memory"}, "local": {"class": "memory"}}
    entries = load_config(app, server_config=server)
    assert list(entries) == ["shared", "Dynamo", "local"]
    assert entries["Dynamo"].class_name == "memory"
    assert entries["Dynamo"].source == "application"
    assert entries["shared"].read_only is True
    assert entries["shared"].source == str(server)


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [("clas", "class"), ("readOnyl", "readOnly"), ("costum", "custom"), ("packages", "package")],
)
def test_unknown_entry_key_did_you_mean(key: str, suggestion: str) -> None:
    with pytest.raises(ConfigError, match=f"unknown key '{key}'. Did you mean '{suggestion}'"):
        load_config({"a": {"class": "memory", key: 1}})


def test_entry_keys_are_case_insensitive_like_cfml() -> None:
    entry = load_config({"a": {"CLASS": "memory", "readonly": True, "Storage": "FALSE"}})["a"]
    assert entry.class_name == "memory"
    assert entry.read_only is True
    assert entry.storage is False


def test_snake_case_read_only_is_accepted() -> None:
    assert load_config({"a": {"class": "memory", "read_only": True}})["a"].read_only is True


def test_key_given_twice() -> None:
    with pytest.raises(ConfigError, match="given twice"):
        load_config({"a": {"class": "memory", "readOnly": True, "readonly": False}})


@pytest.mark.parametrize(
    ("value", "shown"), [("yes", "string 'yes'"), (1, "int"), (None, "NoneType")]
)
def test_read_only_accepts_only_bools(value: Any, shown: str) -> None:
    with pytest.raises(ConfigError, match=f"'readOnly' must be true or false, got {shown}"):
        load_config({"a": {"class": "memory", "readOnly": value}})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("", False),
        ("object", True),
        ("false", False),
        ("True", True),
        (None, False),
    ],
)
def test_default_values(value: Any, expected: bool) -> None:
    assert load_config({"a": {"class": "memory", "default": value}})["a"].default is expected


def test_default_of_wrong_type() -> None:
    with pytest.raises(ConfigError, match="'default' must be a bool or a string, got int"):
        load_config({"a": {"class": "memory", "default": 1}})


def test_class_is_required() -> None:
    with pytest.raises(ConfigError, match=r"cache 'a' .* has no 'class'"):
        load_config({"a": {"custom": {}}})


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"class": 5}, "'class' must be a non-empty string, got int"),
        ({"class": " "}, "'class' must be a non-empty string, got str"),
        ({"class": "memory", "custom": "tableName=x"}, "'custom' must be an object"),
        ({"class": "memory", "package": 3}, "'package' must be a pip requirement string"),
    ],
)
def test_wrong_entry_types_are_named(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config({"a": entry})


def test_entry_must_be_a_mapping() -> None:
    with pytest.raises(ConfigError, match=r"cache 'a' .* must be an object with a 'class' key"):
        load_config({"a": "memory"})


def test_names_must_be_non_empty_strings() -> None:
    with pytest.raises(ConfigError, match="non-empty strings"):
        load_config({"": {"class": "memory"}})


def test_names_differing_only_in_case_are_ambiguous() -> None:
    with pytest.raises(ConfigError, match="differ only in case"):
        load_config({"a": {"class": "memory"}, "A": {"class": "memory"}})


def test_package_and_custom_are_kept() -> None:
    entry = load_config(
        {"a": {"class": "memory", "package": " cachehub-memory>=0.1 ", "custom": None}}
    )["a"]
    assert entry.package == "cachehub-memory>=0.1"
    assert dict(entry.custom) == {}


def test_custom_is_read_only() -> None:
    entry = load_config({"a": {"class": "memory", "custom": {"maxsize": 3}}})["a"]
    with pytest.raises(TypeError):
        entry.custom["maxsize"] = 4  # type: ignore[index]


def test_entry_is_frozen() -> None:
    entry = CacheEntry("a", "memory")
    with pytest.raises(AttributeError):
        entry.name = "b"  # type: ignore[misc]


# ---------------------------------------------------------------------- secrets


def test_repr_masks_every_secret_looking_value() -> None:
    entry = parse_entries(
        {
            "a": {
                "class": "memory",
                "package": "cachehub-x @ https://user:tok3n-value@example.com/x.whl",
                "custom": {
                    "secretkey": "s3cret-value",
                    "password": "pa55-value",
                    "signingKey": "sign-value",
                    "authToken": "tok-value",
                    "url": "redis://default:url-pw-value@host:6379/0",
                    "nested": {"secretAccessKey": "nested-value"},
                },
            }
        }
    )["a"]
    for text in (repr(entry), str(entry), f"{entry}", repr([entry])):
        for secret in (
            "s3cret",
            "pa55",
            "sign-value",
            "tok-value",
            "url-pw",
            "nested-value",
            "tok3n",
        ):
            assert secret not in text
    assert "host:6379" in repr(entry)


def test_wrong_type_errors_never_show_values() -> None:
    with pytest.raises(ConfigError) as info:
        load_config({"a": {"class": "memory", "custom": SECRET}})
    assert SECRET not in str(info.value)


# ---------------------------------------------------------------------- defaults


def test_default_entry_selection() -> None:
    one = load_config({"a": {"class": "memory"}})
    assert default_entry(one) == "a"
    two = load_config({"a": {"class": "memory"}, "b": {"class": "memory", "default": "object"}})
    assert default_entry(two) == "b"
    none = load_config({"a": {"class": "memory"}, "b": {"class": "memory"}})
    assert default_entry(none) is None
    assert default_entry({}) is None


def test_several_defaults_is_an_error() -> None:
    entries = load_config(
        {"a": {"class": "memory", "default": True}, "b": {"class": "memory", "default": True}}
    )
    with pytest.raises(ConfigError, match="several caches are marked default: a, b"):
        default_entry(entries)


# ---------------------------------------------------------------------- hostile input (#15)

_NEST_ENV = {"A": "alpha", "EMPTY": "", "TRAP": "${SECRET_VAR}", "SECRET_VAR": "hunter2"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${UNSET:-${A}}", "alpha"),
        ("${UNSET:-${UNSET2:-${A}}}", "alpha"),
        ("${UNSET:-x${A}y}z", "xalphayz"),
        ("${EMPTY:-${A}}", "alpha"),  # :- also replaces an empty value, as in shells
        ("${A:-${UNSET}}", "alpha"),  # an unused fallback is never expanded
        ("${TRAP}", "${SECRET_VAR}"),  # a value is inserted as it is
        ("${UNSET:-${TRAP}}", "${SECRET_VAR}"),
        ("$${A:-${A}}", "${A:-alpha}"),
        ("${UNSET:-$${A}}", "${A}"),  # $${ in a fallback is literal; the first } closes
        ("${UNSET:-}", ""),
        ("a}b${A}}", "a}balpha}"),
        ("${UNSET:-" * 8 + "deep" + "}" * 8, "deep"),
    ],
)
def test_nested_references(text: str, expected: str) -> None:
    assert interpolate(text, cache="c", setting="s", environ=_NEST_ENV) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${UNSET:-${A}", "unterminated '\\${' reference at character 1"),
        ("x ${A:-${UNSET", "unterminated '\\${' reference at character 8"),
        ("${A-x}", "'\\${A-x}' is not a valid environment variable reference \\(at character 1"),
        ("${A:?msg}", "not a valid environment variable reference"),
        ("${A:+alt}", "not a valid environment variable reference"),
        ("${UNSET:-${1BAD}}", "'\\${1BAD}' is not a valid"),
        ("${X:-" * 9 + "}" * 9, "references nest more than 8 levels deep at character 41"),
        ("${X:-" * 50_000 + "}" * 50_000, "nest more than 8 levels"),
    ],
)
def test_malformed_nested_references(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        interpolate(text, cache="c", setting="s", environ=_NEST_ENV)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("setting", "text", "fragment"),
    [
        ("custom.password", "Xy7${Kq-9zT}Pw", "Kq-9zT"),
        ("custom.password", "ab${Secretpart}cd", "Secretpart"),
        ("custom.sentinelPassword", "p${a b}", "a b"),
        ("custom.secretkey", "s3${cr3t", "cr3t"),
        ("custom.url", "redis://admin:Tr0ub${dor-3}x@127.0.0.1:6379/0", "dor-3"),
        ("custom.url", "redis://admin:Tr0ub${dorthree}x@127.0.0.1:6379/0", "dorthree"),
        ("custom.host", "https://u:p${ass-w}@example.test", "ass-w"),
    ],
)
def test_a_secret_setting_is_never_quoted_by_a_reference_error(
    setting: str, text: str, fragment: str
) -> None:
    # On main the "not a valid reference" error quoted '${Kq-9zT}', and the unset-variable
    # error named 'Secretpart': pieces of a literal password that contains "${".
    with pytest.raises(ConfigError) as info:
        interpolate(text, cache="c", setting=setting, environ={})
    rendered = f"{info.value} {info.value.hint}"
    assert fragment not in rendered
    assert "at character" in rendered  # where to look, still
    assert "$${" in (info.value.hint or "")  # and how to write a literal ${


def test_a_secret_setting_still_names_a_variable_named_like_one() -> None:
    with pytest.raises(MissingEnvVarError, match="'REDIS_PASSWORD' is not set"):
        interpolate("${REDIS_PASSWORD}", cache="c", setting="custom.password", environ={})


@pytest.mark.parametrize("number", ["1e400", "-1e400", "1.5e999"])
def test_a_number_past_a_floats_range_is_refused_as_infinity_is(
    tmp_path: Path, number: str
) -> None:
    # json reads 1e400 as inf: on main it passed the file's "no Infinity" rule.
    path = write(tmp_path, '{"c": {"class": "memory", "custom": {"x": ' + number + "}}}")
    with pytest.raises(ConfigError, match="beyond a float's range"):
        load_config(path)


def test_a_used_fallback_that_names_an_unset_variable() -> None:
    with pytest.raises(MissingEnvVarError, match="'INNER' is not set"):
        interpolate("${OUTER:-${INNER}}", cache="c", setting="s", environ={})


def test_deep_json_is_a_config_error(tmp_path: Path) -> None:
    path = write(tmp_path, '{"c": {"class": "memory", "custom": {"x": ' + "[" * 200_000)
    with pytest.raises(ConfigError, match="nests objects or lists too deeply"):
        parse_entries(path)


@pytest.mark.parametrize("where", ["custom", "maven"])
def test_nesting_past_the_limit_is_a_config_error(where: str) -> None:
    from cachehub.loader import MAX_DEPTH

    deep: Any = "leaf"
    for _ in range(MAX_DEPTH):
        deep = [deep]
    with pytest.raises(ConfigError, match=f"setting '{where}': objects and lists nest more"):
        parse_entries({"c": {"class": "memory", where: {"x": deep}}})


def test_self_containing_and_shared_bombs_are_config_errors() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(ConfigError, match="or contain themselves"):
        parse_entries({"c": {"class": "memory", "custom": loop}})
    bomb: list[Any] = ["x"]
    for _ in range(25):
        bomb = [bomb, bomb, bomb]
    with pytest.raises(ConfigError, match="holds more than 100,000 values"):
        parse_entries({"c": {"class": "memory", "custom": {"bomb": bomb}}})


class _Counted(str):
    """A str that counts how often the loader compares or folds it."""

    calls = 0

    def startswith(self, *args: Any) -> bool:  # type: ignore[override]
        _Counted.calls += 1
        return super().startswith(*args)

    def lower(self) -> str:
        _Counted.calls += 1
        return super().lower()


@pytest.mark.parametrize("n", [500, 4_000])
def test_merging_n_entries_in_two_layers_is_linear(n: int) -> None:
    """Before, every application entry scanned every server entry: n**2 lower() calls."""
    server = {_Counted(f"s{i}"): {"class": "memory"} for i in range(n)}
    app = {_Counted(f"a{i}"): {"class": "memory"} for i in range(n)}
    app[_Counted("S7")] = {"class": "memory", "custom": {"namespace": "override:"}}
    _Counted.calls = 0
    entries = load_config(app, server_config=server)
    assert len(entries) == 2 * n
    assert "s7" not in entries
    assert entries["S7"].custom["namespace"] == "override:"
    assert n <= _Counted.calls <= 8 * n  # 6 per entry today; n**2 before


@pytest.mark.parametrize("n", [500, 4_000])
def test_checking_n_namespaces_is_linear(n: int) -> None:
    """Before, every pair of caches on one backend was compared: n**2 startswith() calls."""
    from cachehub.loader import _check_group

    members = [(_Counted(f"n{i}:"), f"c{i}") for i in range(n)]
    _Counted.calls = 0
    _check_group(members)
    assert _Counted.calls <= n
    members.append((_Counted(f"n{n // 2}:inner:"), "inner"))
    with pytest.raises(ConfigError, match=f"cache 'inner' .* lies inside cache 'c{n // 2}'"):
        _check_group(members)


def test_nested_namespaces_found_among_many() -> None:
    from cachehub import loader

    config: dict[str, Any] = {
        f"c{i}": {"class": "memory", "custom": {"namespace": f"n{i}:"}} for i in range(3_000)
    }
    config["deeper"] = {"class": "memory", "custom": {"namespace": "n1234:x:"}}
    config["equal"] = {"class": "memory", "custom": {"namespace": "n77:"}}  # equal: allowed
    with pytest.raises(ConfigError, match=r"cache 'deeper' \(namespace 'n1234:x:'\) lies inside"):
        # One shared backend for all (memory caches are private by default).
        loader.check_namespaces(
            load_config(config), lambda entry: ("one-backend", entry.custom["namespace"])
        )


# ---------------------------------------------------------------------- misplaced secrets


@pytest.mark.parametrize(
    "entry",
    [
        {"class": "${REDIS_PASSWORD}"},
        {"class": "memory", "package": "${REDIS_PASSWORD}"},
        {"class": "memory", "package": "x>=${REDIS_PASSWORD}"},
        {"class": "redis", "custom": {"port": "${REDIS_PASSWORD}"}},
    ],
)
def test_a_secret_variable_is_masked_wherever_it_lands(entry: dict[str, Any]) -> None:
    # On main a password put in 'class' or 'package' by mistake was quoted verbatim:
    # "unknown cache class 'S3cr3tHunter2xyz'", "Fix: pip install S3cr3tHunter2xyz".
    secret = "S3cr3tHunter2xyz"
    with pytest.raises(ConfigError) as info:
        Caches({"c": entry}, environ={"REDIS_PASSWORD": secret})["c"]
    assert secret not in str(info.value)
    assert secret not in repr(info.value)


# ---------------------------------------------------------------------- text and numbers


@pytest.mark.parametrize(
    "config",
    [
        {"\ud800": {"class": "memory"}},
        {"c": {"class": "mem\ud800ory"}},
        {"c": {"class": "memory", "package": "cachehub-memory\udfff"}},
        {"c": {"class": "memory", "custom": {"store": "s\ud800"}}},
    ],
)
def test_a_lone_surrogate_is_refused_where_it_is_written(config: dict[str, Any]) -> None:
    # On main these loaded, and the CLI crashed printing them (UnicodeEncodeError).
    with pytest.raises(ConfigError, match="lone surrogate") as info:
        Caches(config)["c"] if "c" in config else Caches(config)
    str(info.value).encode("utf-8")  # the message itself is printable


def test_the_cli_reports_a_surrogate_cache_name(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from cachehub.cli import cli

    config = tmp_path / "cachehub.json"
    config.write_text('{"\\ud800": {"class": "memory"}}')
    result = CliRunner().invoke(cli, ["--config", str(config), "caches"])
    assert result.exit_code == 1
    assert "lone surrogate" in result.output
    assert not isinstance(result.exception, UnicodeError)


@pytest.mark.parametrize("text", ["1_000", "\u0661\u0662", "0x10", "1e3", " 12 34"])
def test_whole_numbers_from_text_are_plain_digits(text: str) -> None:
    # int() takes "1_000" and Arabic-Indic digits: an ${VAR} of either set a size.
    with pytest.raises(ConfigError, match="must be int"):
        Caches({"c": {"class": "memory", "custom": {"maxsize": text}}})["c"]
    assert Caches({"c": {"class": "memory", "custom": {"maxsize": " +12 "}}})["c"] is not None
