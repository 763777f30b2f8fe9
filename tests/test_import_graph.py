"""The core's import graph has no cycles, and the core imports no provider package.

Every ``import`` in ``cachehub/`` counts, module level or inside a function (a lazy import
only hides a cycle until that function runs); imports under ``if TYPE_CHECKING:`` do not
(they never execute).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import cachehub

CORE = Path(cachehub.__file__).parent
PROVIDER_PACKAGES = ("cachehub_memory", "cachehub_redis", "cachehub_dynamodb")


def _module_name(path: Path) -> str:
    parts = path.relative_to(CORE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can execute (skipping ``if TYPE_CHECKING:`` bodies)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """The modules (any package, absolute names) an import statement loads."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    if node.level:
        package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
        for _ in range(node.level - 1):
            package = package.rpartition(".")[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module or ""
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        yield sub if sub in MODULES else base


def import_graph() -> dict[str, set[str]]:
    """``module -> modules it imports at run time`` for every module of the core."""
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        graph[module] = {t for node in _runtime_imports(tree) for t in _targets(module, node)}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle among the core modules, as a path, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def test_the_checker_sees_lazy_imports_and_finds_cycles() -> None:
    # The checker itself must be able to fail: a lazy import inside a function counts.
    tree = ast.parse("def f():\n    from .b import x\nif TYPE_CHECKING:\n    from .c import y\n")
    found = [t for node in _runtime_imports(tree) for t in _targets("cachehub.api", node)]
    assert found == ["cachehub.b"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_core_import_graph_is_acyclic() -> None:
    graph = import_graph()
    # The package __init__ re-exports everything; a core module importing it would be a
    # cycle through the package itself.
    into_init = sorted(m for m, targets in graph.items() if "cachehub" in targets)
    assert into_init == [], f"core modules importing the cachehub package: {into_init}"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle in the core: " + " -> ".join(cycle or [])


def test_the_core_never_imports_a_provider_package() -> None:
    offenders = sorted(
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        for target in targets
        if target.partition(".")[0] in PROVIDER_PACKAGES
    )
    assert offenders == []


_HIDDEN_PROVIDERS = """
import importlib.abc, importlib.metadata, sys

PROVIDERS = {"cachehub_memory", "cachehub_redis", "cachehub_dynamodb"}

class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.partition(".")[0] in PROVIDERS:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Hide())
original = importlib.metadata.distributions

def distributions(**kwargs):
    # As if the provider distributions were not installed: pluggy finds no entry points.
    return [d for d in original(**kwargs) if not d.metadata["Name"].startswith(
        ("cachehub-memory", "cachehub-redis", "cachehub-dynamodb", "cachehub_"))]

importlib.metadata.distributions = distributions
from click.testing import CliRunner
import cachehub.cli
from cachehub.cli import cli
result = CliRunner().invoke(cli, ["--help"])
assert result.exit_code == 0, result.output
assert "Warning" not in result.output, result.output
loaded = sorted(m for m in sys.modules if m.partition(".")[0] in PROVIDERS)
assert loaded == [], loaded
import click
print("commands:", " ".join(cli.list_commands(click.Context(cli))))
"""


@pytest.mark.timeout(60)
def test_the_cli_works_without_any_provider_installed() -> None:
    # A fresh interpreter where every provider package is missing: `cachehub --help`
    # still works, and no provider module was imported along the way.
    done = subprocess.run(
        [sys.executable, "-c", _HIDDEN_PROVIDERS],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    commands = done.stdout.split("commands:")[1].split()
    assert {"doctor", "tour"} <= set(commands)
    assert "local-dynamodb" not in commands  # contributed by the DynamoDB plugin only


@pytest.mark.timeout(60)
def test_the_cli_loads_provider_commands_through_the_plugin_hook() -> None:
    import click

    from cachehub.cli import cli

    assert "local-dynamodb" in cli.list_commands(click.Context(cli))


BACKEND_LIBRARIES = ("redis", "botocore", "boto3", "aiobotocore", "cachetools", "opentelemetry")

_CLI_FOOTPRINT = """
import json, sys
from cachehub.cli import main
try:
    main({args!r})
except SystemExit:
    pass
print("MODULES " + json.dumps(sorted(sys.modules)))
"""


def _fresh(code: str) -> str:
    """The stdout of ``code`` run by a new interpreter (a module is imported once per
    process, so what a first use imports shows only in a fresh one)."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    return done.stdout


def _heavy(modules: list[str]) -> list[str]:
    """The backend libraries and provider cache/CLI modules among ``modules``."""
    return [
        m
        for m in modules
        if m.partition(".")[0] in BACKEND_LIBRARIES
        or (m.partition(".")[0] in PROVIDER_PACKAGES and m.rpartition(".")[2] in ("cache", "cli"))
    ]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("args", [["--help"], ["--version"], ["get", "--help"]])
def test_the_cli_imports_no_backend_library_until_a_command_needs_one(args: list[str]) -> None:
    # Loading the plugins imported every provider package, whose __init__ imported its
    # cache class: `cachehub --help` imported 775 modules (redis-py, opentelemetry,
    # botocore, boto3, cachetools among them) where 402 do.
    out = _fresh(_CLI_FOOTPRINT.format(args=args))
    modules: list[str] = json.loads(out.rpartition("MODULES ")[2])
    assert _heavy(modules) == []
    if args == ["--help"]:  # the provider commands are listed all the same
        assert "local-dynamodb" in out
        assert "from-lucee" in out
        assert "cachehub_dynamodb.plugin" in modules


_PROVIDER_ATTRIBUTES = """
import sys
import cachehub_redis, cachehub_memory, cachehub_dynamodb
assert [m for m in sys.modules if m.partition(".")[0] in ("redis", "botocore", "cachetools")] == []
assert "RedisCache" in dir(cachehub_redis) and "DynamoDBCache" in dir(cachehub_dynamodb)
from cachehub_redis.cache import RedisCache
assert cachehub_redis.RedisCache is RedisCache and "redis" in sys.modules
from cachehub_dynamodb import DynamoDBCache, dynamodb_command, LocalDynamoDB
from cachehub_dynamodb import ConditionFailedError, ForeignEntryError, LuceeDynamoDBCache
# Whatever loads the class loads the Lucee layout too: never first imported on a loop.
assert "cachehub_dynamodb.lucee" in sys.modules
assert issubclass(LuceeDynamoDBCache, DynamoDBCache)
from cachehub_dynamodb import *
from cachehub_memory import MemoryCache
for package in (cachehub_redis, cachehub_memory, cachehub_dynamodb):
    try:
        package.NoSuchName
    except AttributeError as exc:
        assert str(exc) == f"module {package.__name__!r} has no attribute 'NoSuchName'", exc
    else:
        raise AssertionError("no AttributeError")
print("ok")
"""


@pytest.mark.timeout(60)
def test_provider_packages_import_their_classes_on_first_access() -> None:
    assert _fresh(_PROVIDER_ATTRIBUTES).strip() == "ok"


@pytest.mark.timeout(60)
def test_a_first_lucee_cache_class_loads_the_lucee_layout_with_it() -> None:
    # The cache module, imported directly, brings lucee.py along (get_all() and an
    # itemFormat "lucee" cache import it lazily, maybe on an event loop).
    code = "import sys, cachehub_dynamodb.cache\nprint('cachehub_dynamodb.lucee' in sys.modules)"
    assert _fresh(code).strip() == "True"
