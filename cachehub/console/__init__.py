"""The cachehub web console: the Lucee Administrator's cache pages for cachehub.

``cachehub console`` serves it (see :mod:`cachehub.cli.console`); :func:`create_app`
builds the Starlette application for a configuration file. It needs the optional extra:
``pip install 'cachehub[console]'`` (Starlette, Jinja2, uvicorn, python-multipart).
This module imports none of them, so :func:`require_extra` can say what is missing.
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

from ..errors import MissingPackageError

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["EXTRA_MODULES", "create_app", "require_extra"]

EXTRA_MODULES = ("starlette", "jinja2", "uvicorn", "multipart")
"""The modules of the ``console`` extra (python-multipart installs ``multipart``)."""


def require_extra() -> None:
    """Raise :class:`MissingPackageError` unless the ``console`` extra is installed."""
    missing = []
    for module in EXTRA_MODULES:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a module set to None in sys.modules
            found = False
        if not found:
            missing.append(module)
    if missing:
        raise MissingPackageError(
            f"the web console needs {', '.join(missing)}, which "
            f"{'is' if len(missing) == 1 else 'are'} not installed.",
            hint="pip install 'cachehub[console]'",
        )


def create_app(*args: Any, **kwargs: Any) -> Starlette:
    """:func:`cachehub.console.app.create_app`, after checking the extra is installed."""
    require_extra()
    from .app import create_app as create

    return create(*args, **kwargs)
