"""The Faust app module: ``faust -A streamlake.app worker`` and ``streamlake worker``.

Importing it builds the app from conf/, binds every topology under
topologies/ and adds StreamLake's commands to Faust's CLI.
"""

from __future__ import annotations

from .cli import register_commands
from .runtime.factory import create_app

app = create_app()
register_commands()


def main() -> None:
    """Console script ``streamlake``: Faust's CLI with StreamLake's commands."""
    app.main()
