"""``cachehub console``: serve the web console for the configuration file (needs the extra)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import click

from ..errors import MissingPackageError
from .app import DEFAULT_CONFIG, State

__all__ = ["COMMANDS", "DEFAULT_PORT", "console_url", "is_loopback"]

DEFAULT_PORT = 8742
"""Port the console listens on unless --port says otherwise."""


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the console on this machine."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve to anything


def console_url(host: str, port: int, token: str) -> str:
    """The URL to open, with the access token (IPv6 literals bracketed)."""
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}/?token={token}"


@click.command("console")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--read-only", is_flag=True, help="Show data, change nothing (writes answer 403).")
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Allow a non-loopback --host (anyone who can reach it and has the token gets in).",
)
@click.pass_obj
def console_command(
    state: State, port: int, host: str, read_only: bool, allow_remote: bool
) -> None:
    """Serve the web console: caches, keys, entries, configuration editor.

    Prints a URL with a random access token, like Jupyter; the first visit trades it for
    a cookie. Needs the extra: pip install 'cachehub[console]'.
    """
    try:
        from ..console import require_extra

        require_extra()
    except MissingPackageError as exc:
        click.echo(f"Error: {exc}", err=True)
        raise click.exceptions.Exit(2) from None
    if not is_loopback(host) and not allow_remote:
        raise click.UsageError(
            f"refusing to listen on {host!r}, which is not a loopback address: anyone who can "
            "reach it could try the console. Add --allow-remote if you mean it."
        )
    path = state.config_path(required=False) or Path(DEFAULT_CONFIG)
    import uvicorn

    from ..console.app import create_app

    app = create_app(path, read_only=read_only, bind_host=host, allow_any_host=allow_remote)
    token = app.state.console.token
    click.echo(f"cachehub console for {path}{' (read-only)' if read_only else ''}")
    click.echo(f"Open: {console_url(host, port, token)}")
    click.echo("Stop it with Ctrl+C.")
    # No access log: it would print every URL, the first one with the token.
    uvicorn.run(app, host=host, port=port, access_log=False, log_level="warning")


COMMANDS = (console_command,)
