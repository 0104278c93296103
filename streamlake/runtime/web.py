"""The worker's web views: counters as JSON, Prometheus metrics, liveness and readiness.

* ``/streamlake/counters`` – this worker's counters per stream (JSON);
* ``/metrics`` – Prometheus text (see :mod:`streamlake.runtime.metrics`);
* ``/health`` – liveness: 200 while the app's services run, 503 once it crashed or stops;
* ``/ready`` – readiness: 200 once the worker joined the group, no rebalance is
  in progress and table recovery has completed; 503 otherwise. Both bodies
  are JSON that say why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from faust.web import Request, Response, View

from .metrics import readiness, render_metrics

if TYPE_CHECKING:
    from .factory import StreamLakeApp

__all__ = ["install_web_views", "worker_counters", "liveness"]

_PROMETHEUS_TEXT = "text/plain; version=0.0.4"


def install_web_views(app: StreamLakeApp) -> None:
    @app.page("/streamlake/counters")
    class Counters(View):
        async def get(self, request: Request) -> Response:
            return self.json(worker_counters(app))

    @app.page("/metrics")
    class Metrics(View):
        async def get(self, request: Request) -> Response:
            return self.text(render_metrics(app).decode(), content_type=_PROMETHEUS_TEXT)

    @app.page("/health")
    class Health(View):
        async def get(self, request: Request) -> Response:
            alive, body = liveness(app)
            return self.json(body, status=200 if alive else 503)

    @app.page("/ready")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            ready, checks = readiness(app)
            return self.json({"ready": ready, **checks}, status=200 if ready else 503)


def worker_counters(app: StreamLakeApp) -> dict[str, Any]:
    """This worker's counters since it started, per stream."""
    return {b.stream.name: b.counters.to_dict() for b in app.bindings}


def liveness(app: StreamLakeApp) -> tuple[bool, dict[str, Any]]:
    """Whether the worker is alive: its services have not crashed and it is not shutting down."""
    crashed = bool(app.crashed)
    stopping = bool(app.should_stop)
    body: dict[str, Any] = {"alive": not (crashed or stopping), "crashed": crashed, "stopping": stopping}
    reason = app.crash_reason
    if reason is not None:
        body["crash_reason"] = f"{type(reason).__name__}: {reason}"
    return not (crashed or stopping), body
