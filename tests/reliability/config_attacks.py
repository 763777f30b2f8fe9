"""Child-process targets for tests/reliability/test_config_attacks.py.

Each builds what it needs from picklable arguments (no fixtures in the child) and returns
plain data, so :func:`reliability.sandbox.run_bounded` can contain a case that would
exhaust memory, block forever or end the interpreter.
"""

from __future__ import annotations

import sys

from cachehub.registry import Caches


def load_file_config(path: str) -> list[str]:
    """Load the configuration file ``path``; the cache names it configures."""
    return Caches.from_file(path).names()


def load_checkpoint(path: str) -> bool:
    """Read ``path`` as a ``cachehub migrate --resume-file`` checkpoint (nothing written)."""
    from pathlib import Path

    from cachehub.migration import Checkpoint

    Checkpoint.load(Path(path), "a", "b", None, write=False)
    return True


def load_class_from_env(class_name: str) -> bool:
    """Load (and validate) one cache whose ``class`` comes from ``${HOSTILE_CLASS}``.

    Returns whether the module named by ``class_name`` ended up imported (the cache
    cannot be valid, so returning at all means the loader accepted a non-provider).
    """
    module = class_name.partition(":")[0]
    try:
        caches = Caches({"c": {"class": "${HOSTILE_CLASS}"}}, environ={"HOSTILE_CLASS": class_name})
        caches.validate()
    finally:
        imported = module in sys.modules
    return imported


def module_was_imported_after_refusal(class_name: str) -> bool:
    """Resolve ``class_name`` (expected to be refused) and say if its module got imported."""
    from cachehub.errors import ConfigError
    from cachehub.resolve import resolve_provider

    try:
        resolve_provider(class_name)
    except ConfigError:
        return class_name.partition(":")[0] in sys.modules
    raise AssertionError(f"{class_name} resolved")
