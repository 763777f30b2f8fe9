"""Registers the memory provider with cachehub through the ``cachehub`` entry-point group."""

from __future__ import annotations

from cachehub.hookspecs import hookimpl


@hookimpl
def cachehub_providers() -> dict[str, str]:
    """``memory`` plus the Lucee class names an existing .CFConfig.json may carry."""
    target = "cachehub_memory:MemoryCache"
    return {
        "memory": target,
        "lucee.runtime.cache.eh.EHCache": target,
        "lucee.runtime.cache.ram.RamCache": target,
    }
