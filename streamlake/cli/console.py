"""``streamlake console``: the web console (streams, ordering, DLQ, lag, lake) on a local port."""

from __future__ import annotations

import asyncio
import contextlib

import click

from ..config import load_settings
from ..console import TOKEN_ENV
from .output import friendly_errors

__all__ = ["console"]


@click.command("console")
@click.option("--port", type=click.IntRange(0, 65535), default=8070, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help=f"Address to bind. Anything but loopback makes redrive execute need {TOKEN_ENV}.")
@click.option("--interval", type=click.FloatRange(min=0.2), default=2.0, show_default=True,
              help="Seconds between samples of the counters and the group (the charts' resolution).")
@click.option("--history", "capacity", type=click.IntRange(min=2), default=900, show_default=True,
              help="Samples kept in memory for the charts.")
@friendly_errors
def console(port: int, host: str, interval: float, capacity: int) -> None:
    """Serve the web console: overview, streams, DLQ browser with redrive, lake tables."""
    from ..console.server import is_loopback, serve  # aiohttp, the lake views: only when the console runs

    settings = load_settings()
    if not is_loopback(host):
        click.echo(f"warning: the console listens on {host}, reachable from other machines; "
                   f"redrive execute needs {TOKEN_ENV}", err=True)

    def ready(url: str) -> None:
        click.echo(f"StreamLake console at {url}", err=False)

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings, host, port, interval, capacity, on_ready=ready))
