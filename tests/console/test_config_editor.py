"""The configuration editor: loader validation with did-you-mean, ${VAR} kept, atomic write."""

from __future__ import annotations

import html
import json
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cachehub_memory import MemoryCache

from cachehub.config import Option
from cachehub.console.config_edit import ConfigFile
from cachehub.errors import ConfigError
from cachehub.scrub import SECRET_MASK

from .conftest import SECRET_MARK, MakeConsole


def _form(env: Any, name: str) -> dict[str, str]:
    text = env.client.get("/config/edit", params={"name": name}).text
    custom = re.search(r'<textarea id="custom"[^>]*>(.*?)</textarea>', text, re.S)
    klass = re.search(r'id="class" name="class" value="([^"]*)"', text)
    assert custom is not None
    assert klass is not None
    return {
        "original": name,
        "name": name,
        "class": html.unescape(klass.group(1)),
        "custom": html.unescape(custom.group(1)),
    }


def test_add_a_cache_keeps_the_rest_of_the_file(make_console: MakeConsole) -> None:
    env = make_console("redis")
    before = json.loads(env.path.read_text())
    response = env.post(
        "/config/save",
        name="reports",
        custom='{"namespace": "reports:", "maxsize": 100, "signingKey": "${CONSOLE_SIGNING_KEY}"}',
        **{"class": "memory"},
    )
    assert response.status_code in (200, 303), html.unescape(response.text)[-400:]
    after = json.loads(env.path.read_text())
    assert after["other"] == {"kept": True}  # other server settings untouched
    assert after["caches"]["main"] == before["caches"]["main"]  # references as written
    assert after["caches"]["reports"]["custom"]["signingKey"] == "${CONSOLE_SIGNING_KEY}"
    assert list(after["caches"]) == ["main", "reports"]
    # The console now serves it.
    assert "reports" in env.console.caches.names()
    assert env.client.get("/keys?cache=reports").status_code == 200
    # No temporary file is left behind.
    assert sorted(p.name for p in env.path.parent.iterdir()) == [env.path.name]


def test_unset_variable_is_saved_as_written_with_a_warning(make_console: MakeConsole) -> None:
    os.environ.pop("LATER_NS_UNSET", None)
    # The file references the variable (the console never adds one: see test_hostile).
    env = make_console(extra={"later": {"class": "memory", "custom": {"namespace": "x:"}}})
    env.path.write_text(env.path.read_text().replace('"x:"', '"${LATER_NS_UNSET}"'))
    response = env.post(
        "/config/save",
        original="later",
        name="later",
        custom='{"password": "${LATER_NS_UNSET}"}',
        **{"class": "memory"},
    )
    assert response.status_code == 400  # memory has no 'password' setting
    assert "unknown setting 'password'" in html.unescape(response.text)
    response = env.post(
        "/config/save",
        original="later",
        name="later",
        custom='{"namespace": "${LATER_NS_UNSET}"}',
        **{"class": "memory"},
    )
    assert response.status_code == 200
    assert "not usable in this console" in response.text
    assert "LATER_NS_UNSET" in response.text
    assert "${LATER_NS_UNSET}" in env.path.read_text()


def test_validation_uses_the_loader_with_did_you_mean(make_console: MakeConsole) -> None:
    env = make_console()
    before = env.path.read_text()
    cases = {
        ("memory", '{"maxsise": 10}'): "Did you mean 'maxsize'?",
        ("memroy", "{}"): "memroy",
        ("memory", '{"maxsize": "lots"}'): "maxsize",
        ("memory", "[1, 2]"): "must be a JSON object",
        ("memory", "{bad json"): "not valid JSON",
        ("memory", "[" * 50_000): "too deeply",
        # A bare ValueError of json.loads (over 4,300 digits): it was a 500 page.
        ("memory", '{"maxsize": ' + "7" * 5_000 + "}"): "integer of thousands of digits",
        ("", "{}"): "class",
    }
    for (klass, custom), message in cases.items():
        response = env.post("/config/save", name="x", custom=custom, **{"class": klass})
        assert response.status_code == 400, (klass, custom)
        assert message in html.unescape(response.text), (message, response.text[-500:])
        # The form comes back as submitted, for fixing.
        assert 'id="config-form"' in response.text
    for name, message in (("", "needs a name"), ("MAIN", "already configured"), ("n" * 201, "")):
        response = env.post("/config/save", name=name, custom="{}", **{"class": "memory"})
        assert response.status_code == 400, name
        assert message in html.unescape(response.text)
    assert env.path.read_text() == before


def test_registry_rules_across_entries(make_console: MakeConsole) -> None:
    env = make_console(extra={"b": {"class": "memory", "default": True}})
    before = env.path.read_text()
    second_default = env.post(
        "/config/save", name="c", custom="{}", default="on", **{"class": "memory"}
    )
    assert second_default.status_code == 400
    assert "several caches are marked default" in html.unescape(second_default.text)
    assert env.path.read_text() == before


def test_edit_keeps_masked_literal_secrets_and_renames(
    make_console: MakeConsole, tmp_path: Path
) -> None:
    literal = f"{SECRET_MARK}-literal"
    env = make_console(
        "redis",
        extra={
            "legacy": {
                "class": "redis",
                "custom": {
                    "url": f"redis://:{literal}@127.0.0.1:1/0",
                    "password": literal,
                    "namespace": "legacy:",
                },
                "maven": "org.lucee:redis:1.0",
            }
        },
    )
    os.chmod(env.path, 0o640)
    form = _form(env, "legacy")
    assert literal not in form["custom"]
    shown = json.loads(form["custom"])
    assert shown["password"] == "*****"
    assert literal not in shown["url"]
    shown["namespace"] = "legacy2:"
    saved = env.post(
        "/config/save",
        original="legacy",
        name="legacy2",
        custom=json.dumps(shown),
        readOnly="on",
        **{"class": "redis"},
    )
    assert saved.status_code == 303, html.unescape(saved.text)[-400:]
    doc = json.loads(env.path.read_text())
    assert list(doc["caches"]) == ["main", "legacy2"]  # renamed in place
    entry = doc["caches"]["legacy2"]
    assert entry["custom"]["password"] == literal  # the masked value was kept
    assert entry["custom"]["url"] == f"redis://:{literal}@127.0.0.1:1/0"
    assert entry["custom"]["namespace"] == "legacy2:"
    assert entry["readOnly"] is True
    assert entry["maven"] == "org.lucee:redis:1.0"  # keys the form does not edit
    assert stat.S_IMODE(env.path.stat().st_mode) == 0o640
    page = env.client.get(saved.headers["location"]).text
    assert literal not in page
    assert 'id="saved"' in page


def test_a_file_changed_meanwhile_is_not_overwritten_blindly(make_console: MakeConsole) -> None:
    env = make_console()
    form = _form(env, "main")
    doc = json.loads(env.path.read_text())
    doc["caches"] = {"renamed": doc["caches"]["main"]}
    env.path.write_text(json.dumps(doc))
    response = env.post("/config/save", **form)
    assert response.status_code == 400
    assert "no longer in" in html.unescape(response.text)
    assert json.loads(env.path.read_text()) == doc


def test_a_broken_file_is_an_error_page_not_a_crash(make_console: MakeConsole) -> None:
    env = make_console()
    for text, message in (
        ('{"caches": {"main": ', "not valid JSON"),
        ("[1, 2]", "must contain a JSON object"),
        ("\xff\xfe garbage", "not valid JSON"),
    ):
        env.path.write_text(text, encoding="utf-8")
        for response in (
            env.client.get("/config"),
            env.post("/config/save", name="x", custom="{}", **{"class": "memory"}),
        ):
            assert response.status_code == 400
            assert message in html.unescape(response.text)
            assert "Traceback" not in response.text
        assert env.path.read_text(encoding="utf-8") == text  # never overwritten
    # The caches already loaded keep working.
    assert env.client.get("/keys?cache=main").status_code == 200


def _legacy_redis(make_console: MakeConsole, url: str) -> Any:
    return make_console(
        "redis",
        extra={"legacy": {"class": "redis", "custom": {"url": url, "namespace": "legacy:"}}},
    )


def test_an_edited_url_keeps_its_masked_credentials_while_the_host_stays(
    make_console: MakeConsole,
) -> None:
    literal = f"{SECRET_MARK}-p@ss#word"
    env = _legacy_redis(make_console, f"redis://admin:{literal}@127.0.0.1:1/0")
    form = _form(env, "legacy")
    shown = json.loads(form["custom"])
    assert shown["url"] == "redis://*****@127.0.0.1:1/0"
    shown["url"] = "redis://*****@127.0.0.1:2/3"  # another port and database
    saved = env.post("/config/save", **{**form, "custom": json.dumps(shown)})
    assert saved.status_code == 303, html.unescape(saved.text)[-400:]
    entry = json.loads(env.path.read_text())["caches"]["legacy"]
    assert entry["custom"]["url"] == f"redis://admin:{literal}@127.0.0.1:2/3"
    assert literal not in env.client.get(saved.headers["location"]).text


def test_a_mask_moved_to_another_host_or_place_is_refused(make_console: MakeConsole) -> None:
    literal = f"{SECRET_MARK}-password"
    env = _legacy_redis(make_console, f"redis://:{literal}@cache.internal:6379/0")
    form = _form(env, "legacy")
    before = env.path.read_text()
    for url in (
        "redis://*****@evil.example:6379/0",  # the credentials would go to another host
        "redis://*****@cache.internal.evil.example:6379/0",  # more host after the name
        "redis://*****@cache.internal:6379@evil.example/0",
        "rediss://*****@cache.internal:6379/0",  # another scheme
        "redis://cache.internal:6379/0?password=*****",  # the mask moved into the query
        "redis://*****@cache.internal/0 redis://*****@cache.internal/1",  # two masks, one secret
        # inside another URL, whose host gets it in a query (the client name is sent)
        "redis://evil.example:6379/0?client_name=redis://*****@cache.internal:6379/0",
        "xredis://*****@cache.internal:6379/0",  # another scheme, ending like this one
        "*****",
    ):
        shown = {**json.loads(form["custom"]), "url": url}
        response = env.post("/config/save", **{**form, "custom": json.dumps(shown)})
        text = html.unescape(response.text)
        assert response.status_code == 400, url
        assert "setting 'url' still holds *****" in text
        assert "type the secret again" in text
        assert literal not in text
        assert env.path.read_text() == before  # nothing written, the secret kept


# ---------------------------------------------------------------- nested values


class NestedOptionsCache(MemoryCache):
    """A memory cache with a dict and a list setting: nested custom values to edit."""

    options: ClassVar[tuple[Option, ...]] = (
        *MemoryCache.options,
        Option("connection", dict, None, "nested connection settings"),
        Option("servers", list, None, "server URLs"),
    )


NESTED_CLASS = f"{__name__}:NestedOptionsCache"
NESTED_SECRET = f"{SECRET_MARK}-nested"


def _nested_file(tmp_path: Path, custom: dict[str, Any]) -> ConfigFile:
    path = tmp_path / "caches.json"
    path.write_text(json.dumps({"caches": {"n": {"class": NESTED_CLASS, "custom": custom}}}))
    return ConfigFile(path, environ={})


NESTED = {
    "connection": {"user": "app", "password": NESTED_SECRET, "token": "${TOKEN_VAR}"},
    "servers": [f"redis://:{NESTED_SECRET}@a.internal:6379/0", "redis://b.internal:6379/0"],
}


def _shown(config: ConfigFile) -> dict[str, Any]:
    entry = config.entry("n")
    assert entry is not None
    assert NESTED_SECRET not in entry.custom_text
    shown: dict[str, Any] = json.loads(entry.custom_text)
    return shown


def _save(config: ConfigFile, custom: dict[str, Any]) -> dict[str, Any]:
    config.save(original="n", name="n", class_name=NESTED_CLASS, custom_text=json.dumps(custom))
    saved: dict[str, Any] = json.loads(config.path.read_text())["caches"]["n"]["custom"]
    return saved


def test_nested_values_are_shown_as_top_level_ones(tmp_path: Path) -> None:
    shown = _shown(_nested_file(tmp_path, NESTED))
    assert shown["connection"] == {"user": "app", "password": "*****", "token": "${TOKEN_VAR}"}
    assert shown["servers"] == ["redis://*****@a.internal:6379/0", "redis://b.internal:6379/0"]


def test_nested_masked_values_are_kept_when_something_else_changes(tmp_path: Path) -> None:
    """On main an edit anywhere in a dict or list saved its masks as the secrets."""
    config = _nested_file(tmp_path, NESTED)
    shown = _shown(config)
    shown["connection"]["user"] = "app2"  # the dict changed, its masked password did not
    shown["servers"][1] = "redis://c.internal:6379/0"  # the list changed, not its mask
    shown["servers"][0] = "redis://*****@a.internal:6380/1"  # same host, another port
    saved = _save(config, shown)
    assert saved["connection"] == {
        "user": "app2",
        "password": NESTED_SECRET,
        "token": "${TOKEN_VAR}",
    }
    assert saved["servers"] == [
        f"redis://:{NESTED_SECRET}@a.internal:6380/1",
        "redis://c.internal:6379/0",
    ]
    assert SECRET_MASK not in config.path.read_text()


def test_nested_values_sent_back_unchanged_keep_the_file(tmp_path: Path) -> None:
    config = _nested_file(tmp_path, NESTED)
    shown = _shown(config)
    shown["namespace"] = "other:"
    saved = _save(config, shown)
    assert {k: saved[k] for k in NESTED} == NESTED


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        pytest.param(
            lambda s: s["connection"].update(user="*****"),
            "connection.user",
            id="mask-pasted-into-key",
        ),
        pytest.param(
            lambda s: s["connection"].update(extra="*****"),
            "connection.extra",
            id="mask-in-a-new-key",
        ),
        pytest.param(
            lambda s: s["servers"].append("redis://*****@a.internal:6379/0"),
            "servers[2]",
            id="mask-in-a-new-list-element",
        ),
        pytest.param(
            lambda s: s["servers"].__setitem__(1, "redis://*****@b.internal:6379/0"),
            "servers[1]",
            id="mask-pasted-into-another-element",
        ),
        pytest.param(
            lambda s: s["servers"].__setitem__(0, "redis://*****@evil.example:6379/0"),
            "servers[0]",
            id="mask-moved-to-another-host",
        ),
        pytest.param(
            lambda s: s["servers"].reverse(), "servers[1]", id="elements-swapped-masks-moved"
        ),
        pytest.param(
            lambda s: s["connection"].update(password="my*****pass"),
            "connection.password",
            id="mask-looking-literal-typed",
        ),
        pytest.param(
            lambda s: s.update(namespace="*****"), "namespace", id="top-level-mask-into-another-key"
        ),
        pytest.param(
            lambda s: s.update(servers={"primary": "*****"}), "servers", id="list-became-a-dict"
        ),
    ],
)
def test_a_nested_mask_that_moved_or_was_typed_is_refused(
    tmp_path: Path, edit: Callable[[dict[str, Any]], None], where: str
) -> None:
    config = _nested_file(tmp_path, NESTED)
    before = config.path.read_text()
    shown = _shown(config)
    edit(shown)
    with pytest.raises(ConfigError) as info:
        _save(config, shown)
    assert f"setting '{where}'" in str(info.value)
    assert "type the secret" in str(info.value)
    assert NESTED_SECRET not in str(info.value)
    assert config.path.read_text() == before  # nothing written, the secret kept


def test_a_new_cache_with_a_mask_anywhere_is_refused(tmp_path: Path) -> None:
    config = _nested_file(tmp_path, NESTED)
    with pytest.raises(ConfigError, match=r"setting 'connection' holds \*\*\*\*\*"):
        config.save(
            original=None,
            name="fresh",
            class_name=NESTED_CLASS,
            custom_text=json.dumps({"connection": {"deep": [{"password": "*****"}]}}),
        )


def test_a_nested_edit_through_the_form_keeps_the_secret(
    make_console: MakeConsole, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKEN_VAR", f"{SECRET_MARK}-token")
    env = make_console(extra={"n": {"class": NESTED_CLASS, "custom": NESTED}})
    form = _form(env, "n")
    assert NESTED_SECRET not in form["custom"]
    shown = json.loads(form["custom"])
    shown["connection"]["user"] = "someone"
    saved = env.post("/config/save", **{**form, "custom": json.dumps(shown)})
    text = html.unescape(saved.text)
    assert saved.status_code == 303, re.findall(r'class="(?:bad|note)"[^>]*>(.*?)<', text)
    entry = json.loads(env.path.read_text())["caches"]["n"]
    assert entry["custom"]["connection"]["password"] == NESTED_SECRET
    assert entry["custom"]["connection"]["token"] == "${TOKEN_VAR}"
    assert NESTED_SECRET not in env.client.get(saved.headers["location"]).text


# ---------------------------------------------------------------- symbolic links
# Deployments link the configuration to a mounted config or secret volume: a save writes
# through to the link's target (atomically, in the target's directory, mode kept) and
# keeps the link; a link that leads nowhere, or into a directory the console may not
# write, is a ConfigError naming it, and nothing is changed.

SIMPLE = {"caches": {"main": {"class": "memory", "custom": {}}}}


def _linked(tmp_path: Path) -> tuple[Path, Path]:
    volume = tmp_path / "volume"
    volume.mkdir()
    target = volume / "caches.json"
    target.write_text(json.dumps(SIMPLE))
    os.chmod(target, 0o640)
    link = tmp_path / "app" / "caches.json"
    link.parent.mkdir()
    link.symlink_to(target)
    return link, target


def test_a_save_through_a_symlink_writes_the_target_and_keeps_the_link(tmp_path: Path) -> None:
    link, target = _linked(tmp_path)
    ConfigFile(link, environ={}).save(
        original=None, name="extra", class_name="memory", custom_text="{}"
    )
    assert link.is_symlink()
    assert os.readlink(link) == str(target)
    assert set(json.loads(target.read_text())["caches"]) == {"main", "extra"}
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in target.parent.iterdir()) == ["caches.json"]  # no temp left
    assert sorted(p.name for p in link.parent.iterdir()) == ["caches.json"]


def test_a_chain_of_relative_links_is_followed_to_the_file(tmp_path: Path) -> None:
    # Kubernetes' projected volumes: caches.json -> ..data/caches.json, ..data -> ..2026_x
    link, target = _linked(tmp_path)
    data = tmp_path / "app" / "..data"
    data.symlink_to(os.path.relpath(target.parent, data.parent))
    link.unlink()
    link.symlink_to("..data/caches.json")
    ConfigFile(link, environ={}).save(
        original="main", name="main", class_name="memory", custom_text='{"maxsize": 5}'
    )
    assert link.is_symlink()
    assert data.is_symlink()
    assert json.loads(target.read_text())["caches"]["main"]["custom"] == {"maxsize": 5}


@pytest.mark.parametrize("kind", ["dangling", "loop", "self"])
def test_a_link_that_leads_nowhere_is_refused_and_kept(tmp_path: Path, kind: str) -> None:
    link = tmp_path / "caches.json"
    if kind == "dangling":
        link.symlink_to(tmp_path / "unmounted" / "caches.json")
    elif kind == "loop":
        link.symlink_to(tmp_path / "other.json")
        (tmp_path / "other.json").symlink_to(link)
    else:
        link.symlink_to(link.name)
    before = os.readlink(link)
    config = ConfigFile(link, environ={})
    for action in (
        config.entries,
        lambda: config.save(original=None, name="x", class_name="memory", custom_text="{}"),
    ):
        with pytest.raises(ConfigError, match="symbolic link that leads to no file") as caught:
            action()
        assert str(link) in str(caught.value)
        assert "mounted" in str(caught.value)
    assert link.is_symlink()
    assert os.readlink(link) == before
    assert not (tmp_path / "unmounted").exists()


def test_a_link_into_a_directory_the_console_cannot_write_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    link, target = _linked(tmp_path)
    before = target.read_text()
    if os.geteuid() == 0:  # root writes anywhere: the volume refuses as a read-only one would
        real = __import__("tempfile").mkstemp

        def refuse(*args: Any, **kwargs: Any) -> tuple[int, str]:
            if Path(kwargs["dir"]) == target.parent:
                raise OSError(30, "Read-only file system")
            return real(*args, **kwargs)

        monkeypatch.setattr("cachehub.console.config_edit.tempfile.mkstemp", refuse)
    else:
        target.parent.chmod(0o500)
    try:
        with pytest.raises(ConfigError, match="cannot write") as caught:
            ConfigFile(link, environ={}).save(
                original=None, name="x", class_name="memory", custom_text="{}"
            )
    finally:
        target.parent.chmod(0o700)
    assert f"linked to {target}" in str(caught.value)
    assert "read-only mounted volume" in str(caught.value)
    assert link.is_symlink()
    assert target.read_text() == before
    assert sorted(p.name for p in link.parent.iterdir()) == ["caches.json"]


def _version(env: Any, name: str) -> str:
    page = env.client.get("/config/edit", params={"name": name}).text
    found = re.search(r'name="version" value="([0-9a-f]*)"', page)
    assert found is not None
    return found.group(1)


def test_a_form_opened_before_the_file_changed_is_refused(make_console: MakeConsole) -> None:
    # On main the save merged the stale form over the file: a hand edit made meanwhile
    # (namespace, readOnly: true) was undone, silently.
    env = make_console("memory")
    form = _form(env, "main")
    version = _version(env, "main")
    doc = json.loads(env.path.read_text())
    doc["caches"]["main"]["readOnly"] = True
    env.path.write_text(json.dumps(doc))
    response = env.post("/config/save", version=version, **form)
    assert response.status_code == 400
    assert "changed" in html.unescape(response.text)
    assert json.loads(env.path.read_text())["caches"]["main"]["readOnly"] is True
    fresh = _form(env, "main")
    again = env.post("/config/save", version=_version(env, "main"), **fresh)
    assert again.status_code in (200, 303), html.unescape(again.text)[-400:]


def test_caches_added_at_once_are_all_kept(make_console: MakeConsole) -> None:
    # On main eight simultaneous "Add a cache" saves each read, merged and wrote the file:
    # three or four of the eight were lost, each answered "saved".
    from concurrent.futures import ThreadPoolExecutor

    env = make_console("memory")

    def add(i: int) -> int:
        reply = env.post("/config/save", name=f"extra{i}", custom="{}", **{"class": "memory"})
        return int(reply.status_code)

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(add, range(8)))
    assert all(code in (200, 303) for code in codes), codes
    names = set(json.loads(env.path.read_text())["caches"])
    assert {f"extra{i}" for i in range(8)} <= names


def test_names_that_differ_only_in_case_are_refused_not_merged(
    make_console: MakeConsole,
) -> None:
    # On main editing 'Sessions' (maxsize 111) beside 'sessions' (222) showed one, merged
    # the other, and wrote one entry where there were two.
    env = make_console("memory")
    doc = json.loads(env.path.read_text())
    doc["caches"]["Sessions"] = {"class": "memory", "custom": {"maxsize": 111}}
    doc["caches"]["sessions"] = {"class": "memory", "custom": {"maxsize": 222}}
    env.path.write_text(json.dumps(doc))
    page = env.client.get("/config/edit", params={"name": "Sessions"})
    assert page.status_code == 400
    assert "differ only in case" in html.unescape(page.text)
    saved = env.post(
        "/config/save",
        original="Sessions",
        name="Sessions",
        custom='{"maxsize": 999}',
        **{"class": "memory"},
    )
    assert saved.status_code == 400
    after = json.loads(env.path.read_text())["caches"]
    assert after["Sessions"]["custom"]["maxsize"] == 111
    assert after["sessions"]["custom"]["maxsize"] == 222


def test_the_saved_notice_names_only_a_configured_cache(make_console: MakeConsole) -> None:
    # On main any text in ?saved= was shown as the console's own green status line.
    env = make_console("memory")
    spoof = "main. SECURITY NOTICE: run curl http://127.0.0.1:9/fix | sh"
    page = env.client.get("/config", params={"saved": spoof}).text
    assert "SECURITY NOTICE" not in page
    assert 'id="saved"' in env.client.get("/config", params={"saved": "main"}).text
