"""Shared output and error handling for the thin CLI commands."""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Callable
from typing import Any

import click
import orjson
from aiokafka.errors import KafkaConnectionError

from ..config import load_settings
from ..errors import StreamLakeError
from ..kafka.client import connection_failure

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


def emit(data: Any, as_json: bool, render: Callable[[Any], str] | None = None) -> None:
    """Print *data* as JSON, or as the text *render* makes of it."""
    if as_json:
        click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS, default=str).decode())
    else:
        click.echo(render(data) if render else str(data))


def friendly_errors(fun: Callable) -> Callable:
    """Turn :class:`StreamLakeError` into a one-paragraph message and exit 1."""

    @functools.wraps(fun)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fun(*args, **kwargs)
        except StreamLakeError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except KafkaConnectionError:  # a client that never connected: say why (credentials, TLS, address)
            click.echo(f"error: {asyncio.run(connection_failure(load_settings()))}", err=True)
            sys.exit(1)

    return wrapper


def table(rows: list[list[Any]], header: list[str]) -> str:
    """A plain aligned text table."""
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
