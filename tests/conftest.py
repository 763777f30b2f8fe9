"""Shared fixtures for the core tests."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator

import pytest

from cachehub import plugins


@pytest.fixture
def without_distribution(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], None]]:
    """Simulate a provider distribution that is not installed, whatever this venv has.

    ``without_distribution("cachehub-redis", "cachehub_redis")`` unregisters the
    distribution's entry-point plugin, makes its package unimportable and its version
    unknown, so the "pip install ..." error paths run deterministically in CI too.
    """
    manager = plugins.plugin_manager()
    removed: list[tuple[str, object]] = []

    def hide(distribution: str, package: str) -> None:
        for name, plugin in manager.list_name_plugin():
            module = getattr(plugin, "__name__", "")
            if module == package or module.startswith(package + "."):
                manager.unregister(plugin)
                removed.append((name, plugin))
        for module in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
            monkeypatch.delitem(sys.modules, module)
        monkeypatch.setitem(sys.modules, package, None)  # import now raises ImportError
        real = plugins.installed_version
        monkeypatch.setattr(
            plugins,
            "installed_version",
            lambda dist: None if dist == distribution else real(dist),
        )

    yield hide
    for name, plugin in removed:
        manager.register(plugin, name=name)
