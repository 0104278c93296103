"""The worker's web server and views: counters as JSON, Prometheus metrics, liveness and readiness.

* ``/streamlake/counters`` – this worker's counters per stream (JSON);
* ``/metrics`` – Prometheus text (see :mod:`streamlake.runtime.metrics`);
* ``/health`` – liveness: 200 while the app's services run, 503 once it crashed or stops;
* ``/ready`` – readiness: 200 once the worker joined the group, no rebalance is
  in progress and table recovery has completed; 503 otherwise. Both bodies
  are JSON that say why.

The server is :class:`StreamLakeWeb`, Faust's aiohttp driver with one change: ``web_port`` 0
binds any free port (Faust's own driver accepts 1-65535 only). Once it listens, the worker logs
``web server listening on http://HOST:PORT`` with the port it got, whatever was asked for.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any, cast

from aiohttp import web
from faust.exceptions import AlreadyConfiguredWarning
from faust.web import Request, Response, View
from faust.web.drivers import DRIVERS
from faust.web.drivers.aiohttp import Web as AiohttpWeb
from yarl import URL

from .metrics import readiness, render_metrics

if TYPE_CHECKING:
    from .factory import StreamLakeApp

__all__ = ["WEB_DRIVER_SCHEME", "StreamLakeWeb", "install_web_views", "worker_counters", "liveness"]

log = logging.getLogger("streamlake.web")

_PROMETHEUS_TEXT = "text/plain; version=0.0.4"

#: The app's ``web`` setting is ``<scheme>://``; Faust looks the driver up by it.
WEB_DRIVER_SCHEME = "streamlake"


class StreamLakeWeb(AiohttpWeb):
    """Faust's aiohttp web server, where StreamLake's ``web_port`` 0 binds any free port.

    The bound port goes into the app's conf (``web_port``, and the canonical URL the worker
    announces to its group) before the consumer starts: Faust starts the web server first.
    """

    runner: web.AppRunner | None = None

    @property
    def any_port(self) -> bool:
        # Faust's conf cannot hold port 0 (it refuses it), so 0 lives in StreamLake's settings only.
        return cast("StreamLakeApp", self.app).streamlake_settings.web_port == 0

    @property
    def url(self) -> URL:
        """The canonical URL; port 0 until a server on any free port listens (Faust's banner shows it)."""
        url = super().url
        return url.with_port(0) if self.any_port and self.runner is None else url

    async def start_server(self) -> None:
        conf = self.app.conf
        if conf.web_transport.scheme != "tcp":  # a unix socket: Faust's own way
            await super().start_server()
            return
        any_port = self.any_port
        runner = self.runner = web.AppRunner(self.web_app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, conf.web_bind, 0 if any_port else conf.web_port,
                          ssl_context=conf.web_ssl_context).start()
        bound = runner.addresses[0][1]
        if any_port:
            # Faust warns that these were read already (by its banner): the port is known only now,
            # and the group assignor reads the canonical URL anew at each join.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", AlreadyConfiguredWarning)
                conf.web_port = bound
                conf.canonical_url = conf.canonical_url.with_port(bound)
        host = conf.web_bind
        log.info("web server listening on http://%s:%d", f"[{host}]" if ":" in host else host, bound)

    async def stop_server(self) -> None:
        if self.runner is None:
            await super().stop_server()
            return
        await self.runner.cleanup()  # stops the site, then runs the app's cleanup
        self.runner = None


# Registered by name, as Faust's own drivers are; the app's settings ask for it (factory.py).
DRIVERS[WEB_DRIVER_SCHEME] = f"{__name__}:StreamLakeWeb"


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
