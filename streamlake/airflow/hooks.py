"""The ``streamlake`` connection type: which StreamLake deployment a task talks to.

A connection maps onto StreamLake's documented environment overrides, so a task
sees exactly the settings a CLI command would with the same variables:

| connection field | setting |
|---|---|
| host, port | ``STREAMLAKE_BROKER`` (``kafka://host:port``; ``host`` may list ``h1:9092,h2:9092``) |
| login, password | ``STREAMLAKE_SASL_USERNAME`` / ``STREAMLAKE_SASL_PASSWORD`` |
| extra ``env`` | ``STREAMLAKE_ENV`` (picks ``conf/<env>.toml``) |
| extra ``home`` | ``STREAMLAKE_HOME`` (the project with conf/ and topologies/) |
| extra ``topic_prefix``, ``app_id`` | ``STREAMLAKE_TOPIC_PREFIX``, ``STREAMLAKE_APP_ID`` |
| extra ``lake_catalog_uri``, ``lake_warehouse`` | ``STREAMLAKE_LAKE_CATALOG_URI``, ``STREAMLAKE_LAKE_WAREHOUSE`` |
| extra ``security_protocol``, ``sasl_mechanism`` | ``STREAMLAKE_SECURITY_PROTOCOL``, ``STREAMLAKE_SASL_MECHANISM`` |

Without a ``streamlake_default`` connection, tasks use the process environment
and ``conf/`` as the CLI does. The password stays in Airflow's secrets and the
in-memory settings; it is never logged (``KafkaSecurity`` hides it from repr).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowNotFoundException

from ..config import Settings, load_settings

if TYPE_CHECKING:
    from ..lake.settings import LakeSettings

__all__ = ["StreamLakeHook", "Deployment", "connection_environ"]


@dataclass(frozen=True)
class Deployment:
    """A deployment's settings and the environment they were read from (the lake reads its own from it)."""

    settings: Settings
    environ: Mapping[str, str] = field(repr=False)

    def lake(self) -> LakeSettings:
        """The lake's settings: ``[lake]`` in conf, overridden by the same environment."""
        from ..lake.settings import load_lake_settings

        return load_lake_settings(self.settings, environ=self.environ)

_EXTRA_ENV = {
    "env": "STREAMLAKE_ENV",
    "home": "STREAMLAKE_HOME",
    "topic_prefix": "STREAMLAKE_TOPIC_PREFIX",
    "app_id": "STREAMLAKE_APP_ID",
    "lake_catalog_uri": "STREAMLAKE_LAKE_CATALOG_URI",
    "lake_warehouse": "STREAMLAKE_LAKE_WAREHOUSE",
    "security_protocol": "STREAMLAKE_SECURITY_PROTOCOL",
    "sasl_mechanism": "STREAMLAKE_SASL_MECHANISM",
}


def connection_environ(host: str | None, port: int | None, login: str | None, password: str | None,
                       extra: Mapping[str, Any]) -> dict[str, str]:
    """The StreamLake environment variables a connection stands for."""
    out: dict[str, str] = {}
    if host:
        servers = host if port is None else ",".join(
            h if ":" in h else f"{h}:{port}" for h in host.split(","))
        out["STREAMLAKE_BROKER"] = ";".join(f"kafka://{s.strip()}" for s in servers.split(",") if s.strip())
    if login:
        out["STREAMLAKE_SASL_USERNAME"] = login
    if password:
        out["STREAMLAKE_SASL_PASSWORD"] = password
    unknown = sorted(set(extra) - set(_EXTRA_ENV))
    if unknown:
        raise ValueError(f"unknown extra field(s) in the streamlake connection: {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(_EXTRA_ENV))}")
    for key, var in _EXTRA_ENV.items():
        if extra.get(key) not in (None, ""):
            out[var] = str(extra[key])
    return out


class StreamLakeHook(BaseHook):
    """Settings for one StreamLake deployment, from an Airflow connection (or the environment)."""

    conn_name_attr = "streamlake_conn_id"
    default_conn_name = "streamlake_default"
    conn_type = "streamlake"
    hook_name = "StreamLake"

    def __init__(self, streamlake_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.streamlake_conn_id = streamlake_conn_id

    def get_deployment(self) -> Deployment:
        """Load StreamLake's settings with the connection's fields as overrides."""
        try:
            conn = self.get_connection(self.streamlake_conn_id)
        except AirflowNotFoundException:
            if self.streamlake_conn_id != self.default_conn_name:
                raise
            conn = None
        return _deployment_for(conn)

    async def aget_deployment(self) -> Deployment:
        """:meth:`get_deployment` for triggers (the connection is read without blocking the loop)."""
        try:
            conn = await self.aget_connection(self.streamlake_conn_id)
        except AirflowNotFoundException:
            if self.streamlake_conn_id != self.default_conn_name:
                raise
            conn = None
        return _deployment_for(conn)

    def get_settings(self) -> Settings:
        return self.get_deployment().settings

    def get_conn(self) -> Deployment:
        return self.get_deployment()

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        return {
            "hidden_fields": ["schema"],
            "relabeling": {"host": "Broker host(s)", "login": "SASL username", "password": "SASL password"},
            "placeholders": {
                "host": "127.0.0.1 or h1:9092,h2:9092",
                "port": "9092",
                "extra": '{"env": "dev", "lake_catalog_uri": "sqlite:///...", "lake_warehouse": "file:///..."}',
            },
        }


def _deployment_for(conn: Any | None) -> Deployment:
    environ = dict(os.environ)
    if conn is not None:
        environ.update(connection_environ(conn.host, conn.port, conn.login, conn.password, conn.extra_dejson))
    home = environ.get("STREAMLAKE_HOME")
    return Deployment(load_settings(root=Path(home).resolve() if home else None, environ=environ), environ)
