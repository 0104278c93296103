"""The async DLQ library (:mod:`streamlake.kafka.dlq`, :mod:`streamlake.kafka.redrive`) as blocking calls.

Broker tests written as plain functions (or handing the call to a thread) use these; each
runs the library's coroutine to completion on a fresh event loop, as the CLI does.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from streamlake.kafka import dlq, redrive

__all__ = ["dlq_stats", "inspect_dlq", "export_dlq", "redrive_dlq"]

_P = ParamSpec("_P")
_T = TypeVar("_T")


def _blocking(fun: Callable[_P, Coroutine[Any, Any, _T]]) -> Callable[_P, _T]:
    @functools.wraps(fun)
    def call(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        return asyncio.run(fun(*args, **kwargs))
    return call


dlq_stats = _blocking(dlq.dlq_stats)
inspect_dlq = _blocking(dlq.inspect_dlq)
export_dlq = _blocking(dlq.export_dlq)
redrive_dlq = _blocking(redrive.redrive_dlq)
