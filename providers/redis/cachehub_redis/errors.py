"""Translate redis-py exceptions into cachehub's typed errors, without leaking secrets."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from typing import Final, cast

from redis import exceptions as rx
from redis.sentinel import MasterNotFoundError

from cachehub.provider import (
    CacheBackendError,
    CacheError,
    CachePermissionError,
    CacheUnavailableError,
    ConfigError,
    ErrorRule,
    causes,
    scrub,
    translate_error,
)

from .scripts import CALLED, command_at

__all__ = [
    "CLUSTER_COMMANDS",
    "NATIVE_COMMANDS",
    "REDIS_ERRORS",
    "TABLE",
    "RedisPermissionError",
    "acl_rules",
    "missing_rule",
    "translate",
]

REDIS_ERRORS = (rx.RedisError, rx.RedisClusterException)
"""Everything redis-py raises: RedisClusterException ("no node reachable") is not a
RedisError, so ``except rx.RedisError`` alone lets a cluster outage escape untyped."""

NATIVE_COMMANDS: Final = frozenset(
    ("SET", "MSET", "GETRANGE", "UNLINK", "SCAN", "EVALSHA", "EVAL", "INFO")
)
"""The commands the provider sends itself (``EVAL`` when the server lost a script,
``INFO`` for ``info()`` only); the scripts it runs need :data:`.scripts.CALLED` too."""

CLUSTER_COMMANDS: Final = frozenset(("CLUSTER|SLOTS", "COMMAND"))
"""What redis-py's cluster client asks every node when it starts: the slot map and the
command table (where each command's keys are, to route it)."""

_DENIED: Final = (
    r"no permissions to (run|access)|executing the script can't (run|access)"
    r"|\bNOPERM\b"
)
"""An ACL refusal, as a command's reply and as a script's error reply (6.2 and 7) say it."""
_KEY_DENIED: Final = re.compile(r"access one of the keys|access at least one of the keys")
_RUN_DENIED: Final = re.compile(r"permissions to run the '([A-Za-z_|-]{1,64})' command")
"""A command's name as Redis spells it: what else a reply holds never reaches the hint."""
_READ_DENIED: Final = re.compile(r"the script's ([A-Z]+) failed")
_SCRIPT_AT: Final = re.compile(r"([0-9a-f]{40})\b.*?@user_script:\s*(\d+)", re.DOTALL)


class RedisPermissionError(CachePermissionError):
    """The Redis ACL user lacks a command or key: :attr:`rule` is what to grant."""

    rule: str = ""
    """The ``ACL SETUSER`` rule that allows what was refused (``+scan``, ``~ns:*``)."""


_NEEDED: Final = NATIVE_COMMANDS | CALLED | CLUSTER_COMMANDS


def acl_rules(key_rule: str, cluster: bool = False) -> str:
    """Every ``ACL SETUSER`` rule a cache's user needs: its keys, then the commands
    (with those of a Redis Cluster client when ``cluster``)."""
    needed = NATIVE_COMMANDS | CALLED | (CLUSTER_COMMANDS if cluster else frozenset())
    return " ".join((key_rule, *(f"+{c}" for c in sorted(c.lower() for c in needed))))


def _refusal(exc: BaseException) -> BaseException:
    """The ACL refusal behind ``exc``, if any, else ``exc``.

    redis-py's cluster client reports any error reply to its ``CLUSTER SLOTS`` - an ACL
    refusal too - as "Cluster mode is not enabled on this node", raised while handling
    the reply's error (its ``__context__``), and wraps that again (``__cause__``).
    """
    # The wrapping is two levels deep: five exceptions are a bound, not a walk of any chain.
    refusals = (e for e in causes(exc, limit=5) if isinstance(e, rx.NoPermissionError))
    return next(refusals, exc)


def missing_rule(text: str, key_rule: str) -> str:
    """The ACL rule a refusal's ``text`` says is missing: the key pattern ``key_rule``, or
    the refused command; every rule a cache needs when the text names neither."""
    if _KEY_DENIED.search(text):
        return key_rule
    found = _READ_DENIED.search(text) or _RUN_DENIED.search(text)
    command = found[1] if found else None
    if command is None and (at := _SCRIPT_AT.search(text)):
        # A script's own redis.call: the reply gives the script and the line, not the name.
        command = command_at(at[1], int(at[2]))
    if command is None:
        return acl_rules(key_rule)
    # Redis 6.2 names the container command ('cluster'): grant the one subcommand needed.
    sub = [c for c in _NEEDED if c.startswith(f"{command.upper()}|")]
    return f"+{(sub[0] if len(sub) == 1 else command).lower()}"


_RESTORE_HINT: Final = (
    "use Redis 6.2 or later, and restore the command if the server's configuration "
    "renames or disables it (rename-command); the commands a cache needs are in "
    "docs/redis.md, 'Sharing a Redis'."
)

_POOL_EXHAUSTED: Final = ErrorRule(
    CacheUnavailableError,
    "the connection pool for Redis at {endpoint} is exhausted ({detail}).",
    "raise 'maxConnections' (or 'socketTimeout', how long a request waits for a free "
    "connection), or reduce the threads or tasks using this cache at once.",
    types=(rx.MaxConnectionsError,),
)

_READ_ONLY: Final = ErrorRule(
    CacheBackendError,
    "Redis at {endpoint} is a read-only replica ({detail}).",
    "point the cache at the primary, or use Sentinel so it follows failovers.",
    types=(rx.ReadOnlyError,),
)
_OUT_OF_MEMORY: Final = ErrorRule(
    CacheBackendError,
    "Redis at {endpoint} is out of memory ({detail}).",
    "raise maxmemory or set an eviction policy such as "
    "maxmemory-policy volatile-lru / allkeys-lru.",
    types=(rx.OutOfMemoryError,),
)

TABLE: Final = (
    ErrorRule(
        RedisPermissionError,
        "Redis at {endpoint} refused this cache's ACL user a command or key ({detail}).",
        "allow it: ACL SETUSER <user> {rule} (all a cache needs: {rules}; docs/redis.md, "
        "'Sharing a Redis').",
        types=(rx.NoPermissionError, rx.ResponseError),
        text=_DENIED,
    ),
    ErrorRule(
        CachePermissionError,
        "Redis at {endpoint} refused access ({detail}).",
        "check the password/username (or the user:password part of the url); the ACL "
        "rules a cache needs are in docs/redis.md, 'Sharing a Redis'.",
        types=(
            rx.AuthenticationError,
            rx.AuthenticationWrongNumberOfArgsError,
            rx.AuthorizationError,
            rx.NoPermissionError,
        ),
    ),
    _POOL_EXHAUSTED,
    # What redis-py's blocking pools raise (a ConnectionError) after waiting in vain.
    replace(_POOL_EXHAUSTED, types=(), text="No connection available"),
    ErrorRule(
        CacheUnavailableError,
        "Redis at {endpoint} is unavailable ({detail}).",
        "check url/host/port, that redis-server is running and reachable from here, and "
        "'socketTimeout'; the cache reconnects by itself once it is back.",
        types=(
            rx.ConnectionError,
            rx.TimeoutError,
            rx.ClusterDownError,
            rx.RedisClusterException,
            rx.BusyLoadingError,
            rx.TryAgainError,
            MasterNotFoundError,
        ),
    ),
    # Server states that pass (another client's script ends, the replicas reconnect):
    # unavailable, so onError: miss degrades reads instead of raising.
    ErrorRule(
        CacheUnavailableError,
        "Redis at {endpoint} is busy running another client's script ({detail}).",
        "every client waits until that script ends; its owner can stop it with SCRIPT "
        "KILL. The cache works again by itself afterwards.",
        types=(rx.ResponseError,),
        text=r"^BUSY\b",
    ),
    ErrorRule(
        CacheUnavailableError,
        "Redis at {endpoint} refuses writes: too few replicas are connected ({detail}).",
        "check the replicas and their links to the primary, or lower the primary's "
        "min-replicas-to-write.",
        types=(rx.ResponseError,),
        text=r"\bNOREPLICAS\b",
    ),
    ErrorRule(
        CacheUnavailableError,
        "Redis at {endpoint} is a replica that lost its primary ({detail}).",
        "point the cache at the primary, or use Sentinel so it follows failovers.",
        types=(rx.ResponseError,),
        text=r"\bMASTERDOWN\b",
    ),
    ErrorRule(
        CacheBackendError,
        "Redis at {endpoint} does not know a command the cache needs ({detail}).",
        _RESTORE_HINT,
        types=(rx.ResponseError,),
        text=r"^(ERR )?unknown command\b",
    ),
    ErrorRule(
        # A command run inside a script: the reply names the script and its line, and
        # missing_rule the command there ('{rule}' is its ACL form, e.g. +scan).
        CacheBackendError,
        "Redis at {endpoint} does not know the command {rule} a cachehub script runs ({detail}).",
        _RESTORE_HINT,
        types=(rx.ResponseError,),
        text=r"\bUnknown Redis command called from (Lua )?script\b",  # 7 / 6.2
    ),
    ErrorRule(
        CacheUnavailableError,
        "the server at {endpoint} does not answer in Redis's protocol ({detail}).",
        "check url/host/port: another service listens there (a TLS port needs rediss://).",
        types=(rx.InvalidResponse,),
    ),
    ErrorRule(
        ConfigError,
        "Redis at {endpoint} has no database of the number the cache selects ({detail}).",
        "set 'db' (or the /N of the url) below the server's 'databases' setting (16 by "
        "default: 0 to 15), or raise that setting.",
        types=(rx.ResponseError,),
        text=r"\bDB index is out of range\b",
    ),
    _READ_ONLY,
    # Redis 6.2 reports a script's failed command inside a generic "Error running script".
    replace(_READ_ONLY, types=(rx.ResponseError,), text=r"\bREADONLY You can't write"),
    _OUT_OF_MEMORY,
    replace(_OUT_OF_MEMORY, types=(rx.ResponseError,), text=r"\bOOM command not allowed"),
    ErrorRule(CacheBackendError, "Redis at {endpoint} returned an error ({detail})."),
)
"""redis-py's exceptions as cachehub errors, first match wins (a pool that waited in vain
raises a ConnectionError: it is told apart before the other connection errors)."""


def translate(
    exc: rx.RedisError | rx.RedisClusterException,
    endpoint: str,
    secrets: Iterable[str],
    key_rule: str = "~*",
    cluster: bool = False,
) -> CacheError:
    """The cachehub error for a redis-py exception raised while talking to ``endpoint``;
    ``key_rule`` is the ACL key pattern of the cache's keys and ``cluster`` whether it is
    a Redis Cluster (for an ACL refusal's hint)."""
    exc = cast(rx.RedisError, _refusal(exc))
    detail = scrub(f"{type(exc).__name__}: {exc}", secrets)
    rule = missing_rule(str(exc), key_rule)
    rules = acl_rules(key_rule, cluster)
    error = translate_error(TABLE, exc, endpoint=endpoint, detail=detail, rule=rule, rules=rules)
    if isinstance(error, RedisPermissionError):
        error.rule = rule
    return error
