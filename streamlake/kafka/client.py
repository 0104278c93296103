"""aiokafka keyword arguments built from :class:`~streamlake.config.Settings`."""

from __future__ import annotations

import ssl
from typing import Any

from ..config import Settings


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Connection arguments shared by every aiokafka client StreamLake creates."""
    kwargs: dict[str, Any] = {"bootstrap_servers": settings.bootstrap_servers}
    sec = settings.security
    if sec.protocol != "PLAINTEXT":
        kwargs["security_protocol"] = sec.protocol
    if sec.protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = ssl_context(settings)
    if sec.sasl_mechanism:
        kwargs["sasl_mechanism"] = sec.sasl_mechanism
        kwargs["sasl_plain_username"] = sec.sasl_username
        kwargs["sasl_plain_password"] = sec.sasl_password
    return kwargs


def ssl_context(settings: Settings) -> ssl.SSLContext:
    sec = settings.security
    ctx = ssl.create_default_context(cafile=sec.ssl_cafile)
    if sec.ssl_certfile:
        ctx.load_cert_chain(sec.ssl_certfile, sec.ssl_keyfile)
    return ctx
