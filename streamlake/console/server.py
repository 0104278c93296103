"""The console's web server (aiohttp): pages, a JSON API per page, static files, and the sampler.

Security invariants:

* it binds to loopback unless told otherwise (:func:`is_loopback` decides);
* every response carries a Content-Security-Policy that allows scripts from
  the console only (no inline script), so even a value that escaped escaping
  could not run;
* a redrive *execute* needs a JSON POST with the ``X-StreamLake-Console``
  header (a cross-site form cannot send one) and ``confirm: true``; when the
  console does not listen on loopback it also needs the token from
  ``STREAMLAKE_CONSOLE_TOKEN`` in ``X-StreamLake-Token``, and without that
  variable execute is refused. The token is compared in constant time and
  never logged or shown.

About 300 lines: the routes and the security checks they share are kept in one module.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from ..config import Settings
from ..core.dlq_policy import DlqError, DlqFilter, parse_time
from ..errors import StreamLakeError
from . import TOKEN_ENV, pages
from .state import ConsoleState

__all__ = ["TOKEN_ENV", "ConsoleConfig", "build_app", "serve", "is_loopback", "parse_filter"]

log = logging.getLogger("streamlake.console")

CSRF_HEADER = "X-StreamLake-Console"
TOKEN_HEADER = "X-StreamLake-Token"
_CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
STATE_KEY = web.AppKey("state", ConsoleState)


def is_loopback(host: str) -> bool:
    """Whether *host* (an address or ``localhost``) is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: assume it is reachable from elsewhere


class ConsoleConfig:
    """Where the console listens and whether redrive execute needs a token."""

    def __init__(self, host: str, port: int, token: str | None) -> None:
        self.host = host
        self.port = port
        self._token = token or None

    @property
    def token_required(self) -> bool:
        return self._token is not None or not is_loopback(self.host)

    def execute_refusal(self, offered: str | None) -> str | None:
        """Why an execute request may not run (None when it may)."""
        if not self.token_required:
            return None
        if self._token is None:
            return (f"redrive execute is disabled: the console listens on {self.host}, not loopback; "
                    f"set {TOKEN_ENV} in the console's environment and send it with the request")
        if offered is None or not hmac.compare_digest(offered.encode(), self._token.encode()):
            return "redrive execute needs the console token (wrong or missing)"
        return None


CONFIG_KEY = web.AppKey("config", ConsoleConfig)


def parse_filter(params: dict[str, Any]) -> DlqFilter:
    """A DLQ filter from query or JSON fields (empty fields match everything), as the CLI options build it."""
    def text(name: str) -> str | None:
        value = params.get(name)
        return None if value is None or str(value).strip() == "" else str(value).strip()

    since, until, key = text("since"), text("until"), params.get("key")
    return DlqFilter(reason=text("reason"), stage=text("stage"),
                     since_ms=parse_time(since, "since") if since else None,
                     until_ms=parse_time(until, "until") if until else None,
                     key=str(key).encode() if key not in (None, "") else None)


def _limit(raw: str | None) -> int:
    try:
        return int(raw) if raw not in (None, "") else 50
    except ValueError:
        raise DlqError(f"limit {raw!r} is not a whole number") from None


@web.middleware
async def _headers_and_errors(request: web.Request,
                              handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    try:
        response = await handler(request)
    except StreamLakeError as exc:
        if request.path.startswith("/api/"):
            response = web.json_response({"error": str(exc)}, status=400)
        else:
            state = request.app[STATE_KEY]
            response = _html(pages.error_page("Error", str(exc), state.overview(), sorted(state.topics)), status=400)
    response.headers["Content-Security-Policy"] = _CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _html(markup: str, status: int = 200) -> web.Response:
    return web.Response(text=markup, status=status, content_type="text/html", charset="utf-8")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=_dumps)


def _dumps(data: Any) -> str:
    return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS, default=str).decode()


# -- handlers ------------------------------------------------------------------------------------

async def overview_page(request: web.Request) -> web.Response:
    return _html(pages.overview_page(request.app[STATE_KEY].overview()))


async def overview_api(request: web.Request) -> web.Response:
    return _json(request.app[STATE_KEY].overview())


async def stream_page(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return _html(pages.stream_page(state.stream_view(request.match_info["name"]), sorted(state.topics)))


async def stream_api(request: web.Request) -> web.Response:
    return _json(request.app[STATE_KEY].stream_view(request.match_info["name"]))


async def _dlq_view(request: web.Request) -> dict[str, Any]:
    state = request.app[STATE_KEY]
    query = dict(request.query)
    stream = query.get("stream") or next(iter(sorted(state.topics)), "")
    query["stream"] = stream
    return await state.dlq_records(stream, parse_filter(query), _limit(query.get("limit")))


async def dlq_page(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    form = {k: v for k, v in request.query.items()}
    form.setdefault("stream", next(iter(sorted(state.topics)), ""))
    try:
        view = await _dlq_view(request)
    except DlqError as exc:  # a bad filter: show the form again with the message
        view = {**state.overview(), "problem": str(exc), "records": []}
    return _html(pages.dlq_page(view, sorted(state.topics), form, request.app[CONFIG_KEY].token_required))


async def dlq_api(request: web.Request) -> web.Response:
    return _json(await _dlq_view(request))


async def dlq_stats_api(request: web.Request) -> web.Response:
    return _json(await request.app[STATE_KEY].dlq_summary(request.match_info["name"]))


async def redrive_api(request: web.Request) -> web.Response:
    if request.headers.get(CSRF_HEADER) != "redrive" or request.content_type != "application/json":
        return _json({"error": f"a redrive is a JSON POST with the {CSRF_HEADER}: redrive header"}, status=403)
    try:
        body = await request.json()
    except ValueError:
        return _json({"error": "the request body is not JSON"}, status=400)
    if not isinstance(body, dict):
        return _json({"error": "the request body must be a JSON object"}, status=400)
    state = request.app[STATE_KEY]
    execute = body.get("mode") == "execute"
    if body.get("mode") not in ("dry-run", "execute"):
        return _json({"error": "mode must be dry-run or execute"}, status=400)
    if execute:
        refusal = request.app[CONFIG_KEY].execute_refusal(request.headers.get(TOKEN_HEADER))
        if refusal is not None:
            return _json({"error": refusal}, status=403)
        if body.get("confirm") is not True:
            return _json({"error": "an execute needs confirm: true (the confirmation step)"}, status=400)
        if not body.get("redrive_id"):
            return _json({"error": "an execute needs the redrive_id of its dry run"}, status=400)
    stream = str(body.get("stream") or "")
    report = await state.redrive(stream, parse_filter(body), execute, body.get("redrive_id") or None)
    if execute:
        log.info("redrive %s executed from the console: %s sent from %s", report["redrive_id"], report["sent"],
                 report["topic"])
    return _json(report)


async def lake_page(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    problem = None
    if request.query.get("verify"):
        try:
            await state.verify_table(request.query["verify"])
        except StreamLakeError as exc:
            problem = f"verify {request.query['verify']}: {exc}"
    view = await state.lake_view()
    return _html(pages.lake_page({**view, "problem": problem}, sorted(state.topics)))


async def lake_api(request: web.Request) -> web.Response:
    return _json(await request.app[STATE_KEY].lake_view())


async def lake_verify_api(request: web.Request) -> web.Response:
    return _json(await request.app[STATE_KEY].verify_table(request.match_info["table"]))


async def no_favicon(request: web.Request) -> web.Response:
    return web.Response(status=204)


async def health(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    return _json({"alive": True, "sampled_at": state.sampled_at, "error": state.error})


# -- the app -------------------------------------------------------------------------------------

def static_dir() -> Path:
    """The vendored chart library, the stylesheet and the page script."""
    return Path(str(resources.files("streamlake.console") / "static"))


def build_app(state: ConsoleState, config: ConsoleConfig, sample: bool = True) -> web.Application:
    """The console app; with *sample* its sampler runs for the app's lifetime."""
    app = web.Application(middlewares=[_headers_and_errors])
    app[STATE_KEY] = state
    app[CONFIG_KEY] = config
    app.router.add_get("/", overview_page)
    app.router.add_get("/stream/{name}", stream_page)
    app.router.add_get("/dlq", dlq_page)
    app.router.add_get("/lake", lake_page)
    app.router.add_get("/api/overview", overview_api)
    app.router.add_get("/api/stream/{name}", stream_api)
    app.router.add_get("/api/stream/{name}/dlq-stats", dlq_stats_api)
    app.router.add_get("/api/dlq", dlq_api)
    app.router.add_post("/api/dlq/redrive", redrive_api)
    app.router.add_get("/api/lake", lake_api)
    app.router.add_get("/api/lake/verify/{table}", lake_verify_api)
    app.router.add_get("/health", health)
    app.router.add_get("/favicon.ico", no_favicon)
    app.router.add_static("/static/", static_dir(), follow_symlinks=False)
    if sample:
        app.cleanup_ctx.append(_sampler)
    return app


async def _sampler(app: web.Application) -> AsyncIterator[None]:
    state = app[STATE_KEY]
    task = asyncio.create_task(state.run_sampler(), name="console-sampler")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def serve(settings: Settings, host: str, port: int, interval: float, capacity: int,
                on_ready: Callable[[str], None] | None = None) -> None:
    """Run the console until cancelled; *on_ready* gets its URL once it listens."""
    config = ConsoleConfig(host, port, os.environ.get(TOKEN_ENV))
    state = ConsoleState(settings, interval, capacity)
    runner = web.AppRunner(build_app(state, config), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            raise StreamLakeError(f"the console cannot listen on {host}:{port}: {exc.strerror or exc}; "
                                  "choose another --port") from None
        bound = runner.addresses[0][1] if runner.addresses else port
        shown = f"[{host}]" if ":" in host else host
        if on_ready is not None:
            on_ready(f"http://{shown}:{bound}/")
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
