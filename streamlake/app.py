"""The Faust app module: ``faust -A streamlake.app worker`` and ``streamlake worker``.

Nothing is built at import time. ``streamlake --help`` and StreamLake's own
commands never build the app; a worker (and anything that reads
:data:`app`, as ``faust -A streamlake.app`` does) builds it on first use,
from the settings with the command line's Faust options applied
(:mod:`streamlake.cli.front`). A bad setting ends the process with one
``error:`` line and exit status 2, not a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from .cli import register_commands
from .cli.argv import command_of, needs_app, refuse, settings_from
from .cli.front import allow_any_free_web_port
from .errors import StreamLakeError

if TYPE_CHECKING:
    from .runtime.factory import StreamLakeApp

__all__ = ["build_app", "main"]

if command_of(sys.argv[1:]) != "worker":  # a worker runs none of StreamLake's commands
    register_commands()
allow_any_free_web_port()


def build_app(argv: Sequence[str]) -> StreamLakeApp:
    """The app from conf/ and the environment, with the Faust options in *argv* winning over both."""
    from .runtime.factory import create_app
    from .runtime.startup import lock_datadir

    settings = settings_from(argv)
    app = create_app(settings)
    if command_of(argv) == "worker" and settings.store.startswith("rocksdb"):
        app.datadir_lock = lock_datadir(settings.datadir)
    return app


def __getattr__(name: str) -> Any:
    """``streamlake.app.app``: built on first use, then kept."""
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        app = build_app(sys.argv[1:])
    except (StreamLakeError, click.UsageError) as exc:
        refuse(exc)
    globals()["app"] = app
    return app


def main() -> None:
    """``streamlake`` past its entry (:mod:`streamlake.entry`): Faust's CLI with StreamLake's front door."""
    from faust.cli.faust import cli as faust_cli

    argv = sys.argv[1:]
    if not needs_app(argv):
        faust_cli.main(args=argv, prog_name="streamlake")
        return
    try:
        app = build_app(argv)
    except (StreamLakeError, click.UsageError) as exc:
        refuse(exc)
    globals()["app"] = app
    app.main()
