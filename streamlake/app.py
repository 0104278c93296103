"""The Faust app module: ``faust -A streamlake.app worker`` and ``streamlake worker``.

Nothing is built at import time. ``streamlake --help`` and StreamLake's own
commands never build the app; a worker (and anything that reads
:data:`app`, as ``faust -A streamlake.app`` does) builds it on first use,
from the settings with the command line's Faust options applied
(:mod:`streamlake.cli.front`). A bad setting ends the process with one
``error:`` line and exit status 2, not a traceback.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import click

from .cli import register_commands
from .cli.front import allow_any_free_web_port, command_of, needs_app, settings_overrides
from .config import Settings, load_settings, with_overrides
from .errors import StreamLakeError
from .runtime.watchdog import WATCHED_ENV, run_watched

if TYPE_CHECKING:
    from .runtime.factory import StreamLakeApp

__all__ = ["build_app", "main"]

if command_of(sys.argv[1:]) != "worker":  # a worker runs none of StreamLake's commands
    register_commands()
allow_any_free_web_port()


def _settings_from(argv: Sequence[str]) -> Settings:
    """The settings from conf/ and the environment, with the Faust options in *argv* winning over both."""
    settings = load_settings()
    overrides = settings_overrides(argv)
    return with_overrides(settings, **overrides) if overrides else settings


def build_app(argv: Sequence[str]) -> StreamLakeApp:
    """The app from conf/ and the environment, with the Faust options in *argv* winning over both."""
    from .runtime.factory import create_app
    from .runtime.startup import lock_datadir

    settings = _settings_from(argv)
    app = create_app(settings)
    if command_of(argv) == "worker" and settings.store.startswith("rocksdb"):
        app.datadir_lock = lock_datadir(settings.datadir)
    return app


def _refuse(exc: Exception) -> NoReturn:
    click.echo(f"error: {exc}", err=True)
    sys.exit(2)


def __getattr__(name: str) -> Any:
    """``streamlake.app.app``: built on first use, then kept."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        app = build_app(sys.argv[1:])
    except (StreamLakeError, click.UsageError) as exc:
        _refuse(exc)
    globals()["app"] = app
    return app


def main() -> None:
    """Console script ``streamlake``: Faust's CLI with StreamLake's front door."""
    from faust.cli.faust import cli as faust_cli

    argv = sys.argv[1:]
    if not needs_app(argv):
        faust_cli.main(args=argv, prog_name="streamlake")
        return
    try:
        if command_of(argv) == "worker" and WATCHED_ENV not in os.environ:
            settings = _settings_from(argv)
            if settings.worker_watchdog:
                sys.exit(run_watched(argv, settings))
        app = build_app(argv)
    except (StreamLakeError, click.UsageError) as exc:
        _refuse(exc)
    globals()["app"] = app
    app.main()
