"""The worker's web views: counters as JSON (metrics, health and readiness come with the ops work)."""

from __future__ import annotations

from typing import Any

import faust
from faust.web import Request, Response, View


def install_web_views(app: faust.App) -> None:
    @app.page("/streamlake/counters")
    class Counters(View):
        async def get(self, request: Request) -> Response:
            return self.json(worker_counters(app))


def worker_counters(app: Any) -> dict[str, Any]:
    """This worker's counters since it started, per stream."""
    return {b.stream.name: b.counters.to_dict() for b in app.bindings}
