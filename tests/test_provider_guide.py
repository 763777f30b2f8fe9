"""docs/provider-guide.md's example provider is real: its code block passes the conformance suite.

The block after the ``<!-- provider-guide-example -->`` marker is extracted from the page,
loaded as a module and run through :class:`cachehub.testing.CacheConformance`, with hit
counting off (the default) and on, plus a few hostile cases of its own.
"""

from __future__ import annotations

import importlib.util
import re
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cachehub.errors import (
    CacheBackendError,
    CacheUnavailableError,
    CacheValueError,
    CorruptEntryError,
)
from cachehub.provider import RemoteCache
from cachehub.testing import CacheConformance

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "provider-guide.md"
_BLOCK = re.compile(r"<!-- provider-guide-example -->\s*```python\n(?P<code>.*?)\n```", re.S)


def _load_example() -> ModuleType:
    match = _BLOCK.search(GUIDE.read_text(encoding="utf-8"))
    assert match is not None, f"{GUIDE} lost its example block"
    name = "cachehub_provider_guide_example"
    spec = importlib.util.spec_from_loader(name, loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__file__ = str(GUIDE)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    exec(compile(match.group("code"), str(GUIDE), "exec"), module.__dict__)
    return module


EXAMPLE = _load_example()
SQLiteCache: type[RemoteCache[sqlite3.Connection]] = EXAMPLE.SQLiteCache


class TestGuideExampleConformance(CacheConformance):
    @pytest.fixture
    def cache_factory(self, tmp_path: Path) -> Callable[..., Any]:
        return lambda **kw: SQLiteCache(path=str(tmp_path / "cache.db"), **kw)

    @pytest.fixture
    def unreachable_factory(self, tmp_path: Path) -> Callable[..., Any]:
        return lambda **kw: SQLiteCache(path=str(tmp_path / "missing" / "cache.db"), **kw)


def _statements(cache: Any) -> list[str]:
    """Every SQL statement the cache's connection runs from now on."""
    seen: list[str] = []
    cache._connection().set_trace_callback(seen.append)
    return seen


def test_the_example_is_a_remote_cache_and_reads_never_write(tmp_path: Path) -> None:
    cache = SQLiteCache(path=str(tmp_path / "c.db"), hitFlushInterval=0.000001)
    assert isinstance(cache, RemoteCache)
    cache.put_many({"a": 1, "b": 2})
    seen = _statements(cache)
    assert cache.get("a") == 1
    assert cache.get_many(["a", "b"]) == {"a": 1, "b": 2}
    assert cache.exists("b")
    cache.close()
    writes = [s for s in seen if s.split()[0] in {"UPDATE", "INSERT", "DELETE"}]
    assert writes == []
    assert cache.metadata("a").hit_count == 0


def test_the_example_counts_hits_when_asked(tmp_path: Path) -> None:
    path = str(tmp_path / "c.db")
    cache = SQLiteCache(path=path, hitCounts=True)
    cache.put("a", 1)
    for _ in range(3):
        cache.get("a")
    assert cache.pending_hits() == 1
    assert cache.metadata("a").hit_count == 3
    cache.close()
    assert SQLiteCache(path=path).metadata("a").hit_count == 3


def test_a_file_that_is_no_database_is_a_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"not a database at all" * 100)
    cache = SQLiteCache(path=str(path))
    with pytest.raises(CacheBackendError, match=r"junk\.db") as info:
        cache.put("k", 1)
    assert info.value.__cause__ is None  # the client library's exception is not chained


def test_an_unreachable_file_says_so(tmp_path: Path) -> None:
    cache = SQLiteCache(path=str(tmp_path / "no" / "such" / "dir.db"))
    with pytest.raises(CacheUnavailableError, match="unavailable"):
        cache.get("k")


def test_foreign_rows_do_not_crash_reads(tmp_path: Path) -> None:
    """Another program writes rows the provider did not: typed errors, never a crash."""
    path = str(tmp_path / "c.db")
    cache = SQLiteCache(path=path)
    cache.put("k", 1)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE cache SET value = x'00ff00' WHERE key = 'k'")
        conn.execute(
            "INSERT INTO cache VALUES ('n', ?, 1, 1, 1, 0, NULL, NULL)",
            (cache.codec.dumps("text"),),
        )
    conn.close()
    with pytest.raises(CacheValueError):
        cache.incr("n")
    with pytest.raises(CorruptEntryError):
        cache.get("k")
