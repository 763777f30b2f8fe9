"""The ``cachehub`` click group: global options, config discovery and error handling.

Every command reaches its caches through :class:`State`, which finds the configuration
(``--config``, then ``$CACHEHUB_CONFIG``, then ``./cachehub.json``) and builds one
:class:`~cachehub.registry.Caches` registry lazily, so ``--help`` and argument errors
never touch a backend.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, NoReturn, ParamSpec, TypeVar

import click

from ..display import visible
from ..errors import CacheError, ConfigError
from ..scrub import scrub
from .output import Output

if TYPE_CHECKING:
    from ..api import BaseCache
    from ..registry import Caches

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "LazyCommand",
    "State",
    "cli",
    "data_command",
    "fail",
    "main",
    "wait_until_stopped",
]

CONFIG_ENV = "CACHEHUB_CONFIG"
"""Environment variable naming the configuration file when ``--config`` is not given."""
DEFAULT_CONFIG = "cachehub.json"
"""The configuration file looked up in the working directory as the last resort."""
DEBUG_ENV = "CACHEHUB_DEBUG"
"""Set to 1 to let unexpected exceptions show their traceback (for bug reports)."""

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class State:
    """Per-invocation state shared by the commands (``ctx.obj``)."""

    config_option: Path | None = None
    cache_name: str | None = None
    as_json: bool = False
    _caches: Caches | None = field(default=None, repr=False)

    @property
    def out(self) -> Output:
        """Where results go: rich tables, or JSON documents with ``--json``."""
        return Output(as_json=self.as_json)

    def config_path(self, *, required: bool = True) -> Path | None:
        """The configuration file to use, or None when none exists and ``required`` is off."""
        if self.config_option is not None:
            return self.config_option
        env = os.environ.get(CONFIG_ENV)
        if env:
            return Path(env)
        local = Path(DEFAULT_CONFIG)
        if local.is_file() or local.exists():  # a folder or a FIFO there: say what it is
            return local
        if not required:
            return None
        raise ConfigError(
            f"no cache configuration found (no --config, no ${CONFIG_ENV}, no ./{DEFAULT_CONFIG}).",
            hint=f"pass --config FILE (a cachehub JSON file or a Lucee .CFConfig.json), "
            f"set {CONFIG_ENV}, or create ./{DEFAULT_CONFIG}; "
            "`cachehub local-dynamodb` prints a ready-to-paste DynamoDB entry.",
        )

    def caches(self) -> Caches:
        """The registry built from the configuration file (created on first use)."""
        if self._caches is None:
            from ..registry import Caches

            path = self.config_path()
            assert path is not None  # required=True never returns None
            self._caches = Caches.from_file(path)
        return self._caches

    def cache(self, name: str | None = None) -> BaseCache:
        """The named cache, else ``--cache``, else the configuration's default cache."""
        return self.caches().get(name or self.cache_name)

    def close(self) -> None:
        """Close every cache the registry opened."""
        if self._caches is not None:
            self._caches.close()
            self._caches = None


def fail(message: str) -> NoReturn:
    """Print ``Error: message`` on stderr and exit with code 1."""
    raise click.ClickException(message)


def plugin_commands(taken: Iterable[str]) -> list[click.Command]:
    """Commands providers contribute through the ``cachehub_cli_commands`` hook.

    The core CLI imports no provider package. A broken plugin must not take the whole
    command line down: it is reported on stderr and skipped, as is a command whose name
    is ``taken`` already.
    """
    from ..plugins import plugin_manager

    try:
        contributed = plugin_manager().hook.cachehub_cli_commands()
    except Exception as exc:  # a broken third-party plugin: say so, keep the core commands
        click.echo(f"Warning: plugin commands are unavailable: {exc}", err=True)
        return []
    names = set(taken)
    commands: list[click.Command] = []
    for group in contributed:
        for command in group or ():
            if not isinstance(command, click.Command) or command.name is None:
                click.echo(f"Warning: ignoring {command!r:.80}: not a click command.", err=True)
            elif command.name in names:
                click.echo(f"Warning: ignoring a second 'cachehub {command.name}'.", err=True)
            else:
                names.add(command.name)
                commands.append(command)
    return commands


class LazyCommand(click.Command):
    """A provider's command that ``cachehub --help`` lists without importing its module.

    ``LazyCommand("local-dynamodb", "cachehub_dynamodb.cli:local_dynamodb_command",
    "Run a local DynamoDB endpoint.")``: the listing shows the name and ``summary``
    (shortened as click shortens a docstring's first sentence);
    running the command, its ``--help`` or its completion imports ``target`` (a
    ``"module:attribute"`` naming the real click command) and hands over to it, so a
    provider whose command module imports its backend library keeps it out of every
    other command.
    """

    def __init__(self, name: str, target: str, summary: str) -> None:
        module, _, attribute = target.partition(":")
        if not module or not attribute:
            raise ConfigError(
                f"lazy command {name!r}: target {target!r} is not 'module:attribute'.",
                hint="Name the click command as e.g. 'my_provider.cli:my_command'.",
            )
        super().__init__(name, help=summary, add_help_option=False)
        self.target = target
        self._module, self._attribute = module, attribute
        self._command: click.Command | None = None

    def load(self) -> click.Command:
        """The real command (imported on first call)."""
        if self._command is None:
            try:
                command = getattr(importlib.import_module(self._module), self._attribute)
            except (Exception, SystemExit) as exc:  # a module that exits must not end us
                raise ConfigError(
                    f"'cachehub {self.name}' cannot be loaded from {self.target}: "
                    f"{type(exc).__name__}: {scrub(str(exc))[:300]}.",
                    hint="Reinstall the package that provides the command.",
                ) from None
            if not isinstance(command, click.Command):
                raise ConfigError(
                    f"'cachehub {self.name}': {self.target} is a {type(command).__name__}, "
                    "not a click command.",
                    hint="Point the lazy command at a click command object.",
                )
            self._command = command
        return self._command

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        # The context (so parsing, --help, completion and invoke) is the real command's.
        return self.load().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        return self.load().invoke(ctx)


class CacheHubGroup(click.Group):
    """A click group that turns cachehub errors into one-line messages and exit code 1.

    Provider commands are added on first use (listing or looking up a command), not at
    import: a provider's CLI module imports this package, so loading it while this
    package is still importing would be circular.
    """

    _plugins_loaded = False

    def _load_plugin_commands(self) -> None:
        if not self._plugins_loaded:
            self._plugins_loaded = True
            for command in plugin_commands(self.commands):
                self.add_command(command)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        self._load_plugin_commands()
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except CacheError as exc:
            # The typed errors never carry secrets and already say how to fix the problem.
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            raise click.ClickException("interrupted.") from None
        except Exception as exc:
            if os.environ.get(DEBUG_ENV):
                raise
            from ..scrub import scrub

            raise click.ClickException(
                f"unexpected {type(exc).__name__}: {scrub(str(exc))} "
                f"(set {DEBUG_ENV}=1 for the traceback and report it)."
            ) from None


def wait_until_stopped() -> None:
    """Block until Ctrl-C (SIGINT) or SIGTERM: the main loop of a command that serves
    something (a provider's local server) until the user stops it."""
    stopped = threading.Event()
    # SIGTERM (service managers, `kill`) stops as cleanly as Ctrl-C does. SIGINT is
    # handled here too: a process started in the background by a shell inherits
    # SIGINT *ignored*, and Python then never raises KeyboardInterrupt for it.
    previous = signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    previous_int = signal.signal(signal.SIGINT, lambda *_: stopped.set())
    try:
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is the normal way out
            # A timed wait keeps the main thread responsive to Ctrl-C.
            while not stopped.wait(0.5):
                continue
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


@click.group(cls=CacheHubGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_option",
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Cache configuration (JSON, or a Lucee .CFConfig.json). "
    f"Default: ${CONFIG_ENV}, else ./{DEFAULT_CONFIG}.",
)
@click.option("--cache", "cache_name", help="Cache to operate on (default: the default cache).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")
@click.version_option(package_name="cachehub", prog_name="cachehub")
@click.pass_context
def cli(
    ctx: click.Context, config_option: Path | None, cache_name: str | None, as_json: bool
) -> None:
    """cachehub: DynamoDB, Redis and in-memory caches behind one API.

    Start with `cachehub tour`, which needs no configuration.
    """
    state = ctx.obj if isinstance(ctx.obj, State) else State()
    # An embedding program (or a test) may pass a prepared State as obj; options win.
    state.config_option = config_option or state.config_option
    state.cache_name = cache_name or state.cache_name
    state.as_json = as_json or state.as_json
    ctx.obj = state
    ctx.call_on_close(state.close)


def data_command(
    *, cache_option: bool = True
) -> Callable[[Callable[Concatenate[State, P], R]], Callable[P, R]]:
    """Decorate a command that outputs data: adds ``--json`` (and ``--cache``) locally too.

    The options are accepted both before the command name (global) and after it, so
    ``cachehub --json ls`` and ``cachehub ls --json`` mean the same.
    """

    def decorate(fn: Callable[Concatenate[State, P], R]) -> Callable[P, R]:
        @functools.wraps(fn)
        @click.pass_obj
        def wrapper(state: State, /, *args: P.args, **kwargs: P.kwargs) -> R:
            if kwargs.pop("as_json", False):
                state.as_json = True
            local_cache = kwargs.pop("cache_name", None)
            if local_cache:
                state.cache_name = str(local_cache)
            return fn(state, *args, **kwargs)

        command: Callable[P, R] = click.option(
            "--json", "as_json", is_flag=True, help="Machine-readable JSON output."
        )(wrapper)
        if cache_option:
            command = click.option(
                "--cache", "cache_name", help="Cache to operate on (default: the default cache)."
            )(command)
        return command

    return decorate


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``cachehub`` console script.

    Errors are one line on stderr: bad arguments exit 2, configuration and backend
    errors exit 1 (click's own three-line usage message is shortened).
    """
    try:
        # Without standalone mode click *returns* the code of a click.exceptions.Exit.
        code = cli.main(
            args=argv if argv is not None else sys.argv[1:],
            prog_name="cachehub",
            standalone_mode=False,
        )
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx is not None else "cachehub"
        message = visible(scrub(exc.format_message()))
        click.echo(f"Error: {message} (see '{command} --help')", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        # One line, printable: a message may quote a key or value another program wrote.
        click.echo(f"Error: {visible(scrub(exc.format_message()))}", err=True)
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
