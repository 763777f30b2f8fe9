"""Optional peer libraries: import them if installed, and set Django up in-process.

The peers (cachelib, dogpile.cache, Django) are benchmark-only dependencies: the nox
``bench`` session installs them, the test session does not. A missing peer becomes a
"skipped: <package> not installed" row instead of an error.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["configure_django", "missing", "optional"]


def optional(module: str) -> ModuleType | None:
    """Import ``module``, or return None when it (or one of its dependencies) is absent."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def missing(package: str) -> str:
    """The skip reason for an absent peer package."""
    return f"skipped: {package} not installed"


def configure_django() -> bool:
    """Give Django the minimal settings its cache backends need; False if not installed."""
    conf = optional("django.conf")
    if conf is None:
        return False
    settings = conf.settings
    if not settings.configured:
        # Cache backends are instantiated directly; Django only needs settings to exist.
        settings.configure(USE_TZ=True, CACHES={})
    return True
