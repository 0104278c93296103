"""Create the one Faust app whose id is the consumer group."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import faust

from ..config import Settings, load_settings
from ..kafka.client import ssl_context


def faust_settings(settings: Settings) -> dict[str, Any]:
    """Faust app keyword arguments; every value comes from conf or the environment."""
    conf: dict[str, Any] = dict(
        broker=settings.broker,
        store=settings.store,
        processing_guarantee=settings.processing_guarantee,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        web_port=settings.web_port,
        datadir=settings.datadir,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=settings.heartbeat_interval,
        broker_commit_interval=settings.commit_interval,
        topic_disable_leader=True,
        autodiscover=False,
        table_cleanup_interval=60.0,
        producer_linger=0.005,
        producer_acks=-1,
        stream_wait_empty=True,
        consumer_auto_offset_reset="earliest",
    )
    credentials = _credentials(settings)
    if credentials is not None:
        conf["broker_credentials"] = credentials
    return conf


def _credentials(settings: Settings) -> Any:
    sec = settings.security
    if sec.sasl_mechanism:
        return faust.SASLCredentials(
            username=sec.sasl_username,
            password=sec.sasl_password,
            mechanism=sec.sasl_mechanism,
            ssl_context=ssl_context(settings) if sec.protocol == "SASL_SSL" else None,
        )
    if sec.protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    return None


def create_app(settings: Settings | None = None) -> faust.App:
    settings = settings or load_settings()
    Path(settings.datadir).mkdir(parents=True, exist_ok=True)
    app = faust.App(settings.app_id, **faust_settings(settings))
    app.streamlake_settings = settings  # type: ignore[attr-defined]
    return app
