"""Calling StreamLake's library from tasks and triggers, whether a function is sync or async.

The library is moving to async functions for broker I/O (``asyncio.run`` only in
the CLI). Operators run in a plain thread, so a coroutine is run to completion
here; triggers run on the triggerer's event loop, so a blocking function is
moved to a thread there.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["run_library", "await_library", "json_ready"]


def run_library(fun: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call *fun* from synchronous code; run its coroutine if it returns one."""
    result = fun(*args, **kwargs)
    if inspect.isawaitable(result):
        return asyncio.run(_wait(result))
    return result


async def _wait(awaitable: Any) -> Any:
    return await awaitable


async def await_library(fun: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call *fun* from a coroutine without blocking the event loop."""
    if inspect.iscoroutinefunction(fun):
        return await fun(*args, **kwargs)
    result = await asyncio.to_thread(fun, *args, **kwargs)
    if inspect.isawaitable(result):
        return await result
    return result


def json_ready(value: Any) -> Any:
    """*value* as plain JSON types (what XCom stores): enums and times as text, keys as strings."""
    return orjson.loads(orjson.dumps(value, default=_fallback, option=orjson.OPT_NON_STR_KEYS))


def _fallback(value: Any) -> Any:
    if hasattr(value, "value"):  # enums
        return value.value
    return str(value)
