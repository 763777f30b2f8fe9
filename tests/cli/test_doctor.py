"""``cachehub doctor``: checks that pass, and failures mapped to the spec's advice."""

from __future__ import annotations

from typing import Any

from cachehub.cli.doctor import advice_for
from cachehub.errors import (
    CacheBackendError,
    CachePermissionError,
    CacheThrottledError,
    CacheUnavailableError,
)
from cachehub.hookspecs import DoctorAdvice, DoctorCheck

from .conftest import RunCli, dynamo_entry


def test_doctor_on_a_good_config(
    run_cli: RunCli, write_config: Any, dynamodb_endpoint: str, redis_url: str, namespace: str
) -> None:
    config = write_config(
        {
            "dynamo": dynamo_entry(dynamodb_endpoint, "cli_doctor", namespace=namespace),
            "redis": {"class": "redis", "custom": {"url": redis_url, "namespace": namespace}},
            "mem": {"class": "memory"},
        }
    )
    result = run_cli("--config", str(config), "doctor", "--json")
    assert result.code == 0, result.output
    reports = {r["cache"]: r for r in result.json()}
    assert all(r["ok"] for r in reports.values())
    dynamo = {c["name"]: c for c in reports["dynamo"]["checks"]}
    assert "discovered partition key 'pk'" in dynamo["connect"]["detail"]
    assert "ENABLED" in dynamo["ttl"]["detail"]
    assert {"put", "get", "delete", "ttl honoured"} <= set(dynamo)
    assert reports["dynamo"]["missingPermissions"] == []
    # The round trip ran in a scratch namespace and left nothing behind.
    from cachehub.registry import Caches

    assert Caches(server_config=config)["dynamo"].count() == 0

    one = run_cli("--config", str(config), "doctor", "redis")
    assert one.code == 0
    assert "cache 'redis'" in one.stdout
    assert "cache 'dynamo'" not in one.stdout


def test_doctor_on_a_wrong_host_fails_with_the_troubleshooting_advice(
    run_cli: RunCli, write_config: Any
) -> None:
    config = write_config(
        {
            "dynamo": dynamo_entry(
                "http://127.0.0.1:9", "cli_doctor", liveTimeout=2000, maxAttempts=1
            )
        }
    )
    result = run_cli("--config", str(config), "doctor")
    assert result.code == 1
    assert "Connection Errors" in result.stdout
    assert "verify your credentials and region" in result.stdout
    assert "host" in result.stdout


def test_doctor_on_a_misconfigured_entry(run_cli: RunCli, write_config: Any) -> None:
    config = write_config({"broken": {"class": "dynamodb", "custom": {"region": "us-east-1"}}})
    result = run_cli("--config", str(config), "doctor", "--json")
    assert result.code == 1
    check = result.json()[0]["checks"][0]
    assert check["status"] == "fail"
    assert "tableName" in check["detail"]


def test_generic_advice_is_chosen_by_error_type() -> None:
    # Providers refine it through cachehub_doctor_advice (see the DynamoDB provider's tests);
    # the core never matches message text: the same words in another type change nothing.
    down = CacheUnavailableError("the security token included in the request is invalid")
    assert advice_for(down).startswith("Connection error")
    assert advice_for(CachePermissionError("not found")).startswith("Access denied")
    assert advice_for(CacheThrottledError("x")).startswith("Throttling")
    assert advice_for(CacheBackendError("x", hint="do y")) == "do y"


def test_doctor_names_the_acl_rules_a_shared_redis_user_lacks(
    run_cli: RunCli, write_config: Any, redis_url: str, namespace: str
) -> None:
    # Before: a user refused SCAN failed only doctor's count step, with advice to "check
    # the credentials", and no missing permission; BITFIELD (incr) and TIME (locks) were
    # never tried. Now each refused command is a missing ACL rule.
    from redis import Redis

    admin = Redis.from_url(redis_url)
    user, password = f"doc{namespace[-9:-1]}", "doctor-acl-pw"
    admin.execute_command(
        "ACL", "SETUSER", user, "reset", "on", f">{password}", "~*", "+@all",
        "-scan", "-bitfield", "-time",
    )  # fmt: skip
    try:
        url = redis_url.replace("redis://", f"redis://{user}:{password}@")
        config = write_config(
            {"redis": {"class": "redis", "custom": {"url": url, "namespace": namespace}}}
        )
        result = run_cli("--config", str(config), "doctor", "--json")
        assert result.code == 1, result.output
        [report] = result.json()
        assert report["missingPermissions"] == ["+bitfield", "+scan", "+time"]
        checks = {c["name"]: c for c in report["checks"]}
        assert checks["connect"]["status"] == "ok"
        assert "ACL SETUSER <user> +scan" in checks["keys"]["advice"]
        assert password not in result.output
    finally:
        admin.execute_command("ACL", "DELUSER", user)
        admin.close()


def test_a_failed_check_takes_the_providers_advice_else_the_errors_hint() -> None:
    error = CachePermissionError("denied.", hint="grant it.")
    advised = DoctorCheck.failed("ttl", error, DoctorAdvice("allow X.", "svc:X"))
    assert advised == DoctorCheck("ttl", "fail", str(error), "allow X.", "svc:X")
    assert DoctorCheck.failed("ttl", error, None) == DoctorCheck(
        "ttl", "fail", "denied. Fix: grant it.", "grant it.", None
    )
