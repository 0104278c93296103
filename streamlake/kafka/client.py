"""aiokafka keyword arguments built from :class:`~streamlake.config.Settings`, and why a connection failed.

Security settings come from the environment only (``STREAMLAKE_SECURITY_PROTOCOL``,
``STREAMLAKE_SASL_*``, ``STREAMLAKE_SSL_*``); nothing here logs, prints or stores the password.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    IllegalSaslStateError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)

from ..config import Settings

__all__ = ["client_kwargs", "connection_failure", "new_consumer", "new_producer", "ssl_context"]

_SASL_REFUSED = (SaslAuthenticationFailed, AuthenticationFailedError, IllegalSaslStateError)


def client_kwargs(settings: Settings) -> dict[str, Any]:
    """Connection arguments shared by every aiokafka client StreamLake creates."""
    kwargs: dict[str, Any] = {"bootstrap_servers": settings.bootstrap_servers}
    kwargs.update(_security_kwargs(settings))
    return kwargs


def _security_kwargs(settings: Settings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
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


_PROBE_SECONDS = 10.0


async def connection_failure(settings: Settings) -> str:
    """Say why no broker of *settings* accepted a connection, in terms of what to fix.

    Connects to each bootstrap address once, as the clients would: a broker that refuses the
    SASL credentials or fails the TLS handshake is named as such (clients only log that and
    then report "Unable to bootstrap"). The user name is shown, the password never.
    """
    sec = settings.security
    reasons: list[str] = []
    for address in settings.bootstrap_servers.split(","):
        host, _, port = address.rpartition(":")
        try:
            async with asyncio.timeout(_PROBE_SECONDS):
                conn = await create_conn(host, int(port), request_timeout_ms=int(_PROBE_SECONDS * 1000),
                                         **_security_kwargs(settings))
        except _SASL_REFUSED:
            return (f"the brokers at {settings.bootstrap_servers} refused the SASL credentials of user "
                    f"{sec.sasl_username!r} ({sec.sasl_mechanism}): check STREAMLAKE_SASL_USERNAME and "
                    "STREAMLAKE_SASL_PASSWORD, and that the user exists on the cluster")
        except UnsupportedSaslMechanismError:
            return (f"the brokers at {settings.bootstrap_servers} do not accept SASL mechanism "
                    f"{sec.sasl_mechanism}: set STREAMLAKE_SASL_MECHANISM to one they enable")
        except ssl.SSLCertVerificationError as exc:
            return (f"the TLS certificate of {address} is not trusted ({exc.verify_message}): point "
                    "STREAMLAKE_SSL_CAFILE at the CA that signed the brokers' certificates")
        except ssl.SSLError as exc:
            return (f"the TLS handshake with {address} failed ({exc.reason}): check STREAMLAKE_SECURITY_PROTOCOL "
                    "(SSL / SASL_SSL) against the listener, and STREAMLAKE_SSL_* ")
        except (TimeoutError, OSError) as exc:
            reasons.append(f"{address}: {type(exc).__name__}: {exc}")
        except Exception as exc:  # any other handshake failure is still a reason to report
            reasons.append(f"{address}: {type(exc).__name__}: {exc}")
        else:
            conn.close()
            reasons.append(f"{address}: accepts connections now")
    return (f"cannot reach Kafka at {settings.bootstrap_servers} ({'; '.join(reasons)}); start it with "
            "`streamlake broker start`, or point STREAMLAKE_BROKER / conf/<env>.toml [kafka] broker at it")


def new_consumer(settings: Settings, **options: Any) -> AIOKafkaConsumer:
    """An aiokafka consumer for *settings*' brokers, with their security settings; *options* are the rest."""
    return AIOKafkaConsumer(**client_kwargs(settings), **options)


def new_producer(settings: Settings, **options: Any) -> AIOKafkaProducer:
    """An aiokafka producer for *settings*' brokers, with their security settings; *options* are the rest."""
    return AIOKafkaProducer(**client_kwargs(settings), **options)
