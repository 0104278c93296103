"""Settings: ``conf/<env>.toml`` read with tomllib, then environment overrides.

The environment is chosen by ``STREAMLAKE_ENV`` (default ``dev``). Every
override is listed in :data:`ENV_OVERRIDES`; the README documents each one.
Credentials are only ever read from the environment and are kept out of
``repr()`` so they cannot end up in a log line.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["Settings", "KafkaSecurity", "load_settings", "project_root", "ENV_OVERRIDES"]

GUARANTEES = ("at_least_once", "exactly_once")


@dataclass(frozen=True)
class KafkaSecurity:
    """SASL/SSL client settings. Secrets come from the environment only."""

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def __repr__(self) -> str:  # never show the password, not even its length
        secret = "***" if self.sasl_password else None
        return (
            f"KafkaSecurity(protocol={self.protocol!r}, sasl_mechanism={self.sasl_mechanism!r}, "
            f"sasl_username={self.sasl_username!r}, sasl_password={secret!r})"
        )


@dataclass(frozen=True)
class Settings:
    """Everything a worker or a command needs to know about its environment."""

    env: str = "dev"
    root: Path = Path(".")
    broker: str = "kafka://127.0.0.1:9092"
    topic_prefix: str = ""
    app_id: str = "streamlake"
    processing_guarantee: str = "at_least_once"
    store: str = "memory://"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    datadir: str = ".streamlake/worker"
    session_timeout: float = 10.0
    heartbeat_interval: float = 1.0
    commit_interval: float = 1.0
    request_timeout: float = 30.0
    batch_size: int = 1000
    batch_within: float = 0.05
    fast_path: bool = True
    dlq_retry_attempts: int = 3
    dlq_retry_backoff: float = 1.0
    dlq_retry_backoff_max: float = 30.0
    dlq_log_payload: bool = False
    local_broker_port: int = 9092
    local_broker_data_dir: str = ".streamlake/broker"
    kafka_version: str = "4.1.1"
    security: KafkaSecurity = KafkaSecurity()

    @property
    def bootstrap_servers(self) -> str:
        """The broker list without the ``kafka://`` scheme, for aiokafka."""
        return ",".join(
            part.split("://", 1)[-1] for part in self.broker.split(";") if part.strip()
        )

    @property
    def conf_dir(self) -> Path:
        return self.root / "conf"

    @property
    def topologies_dir(self) -> Path:
        return self.root / "topologies"


# env var -> (settings field, converter)
ENV_OVERRIDES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "STREAMLAKE_BROKER": ("broker", str),
    "STREAMLAKE_TOPIC_PREFIX": ("topic_prefix", str),
    "STREAMLAKE_APP_ID": ("app_id", str),
    "STREAMLAKE_PROCESSING_GUARANTEE": ("processing_guarantee", str),
    "STREAMLAKE_STORE": ("store", str),
    "STREAMLAKE_WEB_HOST": ("web_host", str),
    "STREAMLAKE_WEB_PORT": ("web_port", int),
    "STREAMLAKE_DATADIR": ("datadir", str),
    "STREAMLAKE_SESSION_TIMEOUT": ("session_timeout", float),
    "STREAMLAKE_COMMIT_INTERVAL": ("commit_interval", float),
    "STREAMLAKE_REQUEST_TIMEOUT": ("request_timeout", float),
    "STREAMLAKE_BATCH_SIZE": ("batch_size", int),
    "STREAMLAKE_FAST_PATH": ("fast_path", lambda v: v.strip().lower() not in ("0", "false", "no", "off")),
    "STREAMLAKE_DLQ_RETRY_ATTEMPTS": ("dlq_retry_attempts", int),
    "STREAMLAKE_DLQ_RETRY_BACKOFF": ("dlq_retry_backoff", float),
    "STREAMLAKE_DLQ_RETRY_BACKOFF_MAX": ("dlq_retry_backoff_max", float),
    "STREAMLAKE_DLQ_LOG_PAYLOAD": ("dlq_log_payload", lambda v: v.strip().lower() in ("1", "true", "yes", "on")),
    "STREAMLAKE_KAFKA_VERSION": ("kafka_version", str),
}

SECURITY_ENV: dict[str, str] = {
    "STREAMLAKE_SECURITY_PROTOCOL": "protocol",
    "STREAMLAKE_SASL_MECHANISM": "sasl_mechanism",
    "STREAMLAKE_SASL_USERNAME": "sasl_username",
    "STREAMLAKE_SASL_PASSWORD": "sasl_password",
    "STREAMLAKE_SSL_CAFILE": "ssl_cafile",
    "STREAMLAKE_SSL_CERTFILE": "ssl_certfile",
    "STREAMLAKE_SSL_KEYFILE": "ssl_keyfile",
}

# conf file [section] key -> settings field
_FILE_KEYS: dict[tuple[str, str], str] = {
    ("kafka", "broker"): "broker",
    ("kafka", "topic_prefix"): "topic_prefix",
    ("kafka", "session_timeout"): "session_timeout",
    ("kafka", "heartbeat_interval"): "heartbeat_interval",
    ("kafka", "commit_interval"): "commit_interval",
    ("kafka", "request_timeout"): "request_timeout",
    ("app", "id"): "app_id",
    ("app", "processing_guarantee"): "processing_guarantee",
    ("app", "store"): "store",
    ("app", "web_host"): "web_host",
    ("app", "web_port"): "web_port",
    ("app", "datadir"): "datadir",
    ("app", "batch_size"): "batch_size",
    ("app", "batch_within"): "batch_within",
    ("app", "fast_path"): "fast_path",
    ("dlq", "retry_attempts"): "dlq_retry_attempts",
    ("dlq", "retry_backoff"): "dlq_retry_backoff",
    ("dlq", "retry_backoff_max"): "dlq_retry_backoff_max",
    ("dlq", "log_payload"): "dlq_log_payload",
    ("local_broker", "port"): "local_broker_port",
    ("local_broker", "data_dir"): "local_broker_data_dir",
    ("local_broker", "kafka_version"): "kafka_version",
}


def project_root() -> Path:
    """The directory holding conf/ and topologies/.

    ``STREAMLAKE_HOME`` wins; otherwise the working directory when it has a
    conf/ folder; otherwise the checkout this package was installed from.
    """
    home = os.environ.get("STREAMLAKE_HOME")
    if home:
        return Path(home).resolve()
    cwd = Path.cwd()
    if (cwd / "conf").is_dir():
        return cwd
    return Path(__file__).resolve().parent.parent


def load_settings(env: str | None = None, root: Path | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Read ``conf/<env>.toml`` and apply environment overrides."""
    environ = os.environ if environ is None else environ
    env = env or environ.get("STREAMLAKE_ENV", "dev")
    root = root or project_root()
    path = root / "conf" / f"{env}.toml"
    if not path.is_file():
        known = sorted(p.stem for p in (root / "conf").glob("*.toml") if p.stem != "catalog")
        raise ConfigError(
            f"no settings file {path} for STREAMLAKE_ENV={env!r}; "
            f"known environments: {', '.join(known) or 'none'}"
        )
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    values: dict[str, Any] = {"env": env, "root": root}
    for (section, key), name in _FILE_KEYS.items():
        if key in data.get(section, {}):
            values[name] = data[section][key]
    for var, (name, convert) in ENV_OVERRIDES.items():
        if environ.get(var):
            try:
                values[name] = convert(environ[var])
            except ValueError as exc:
                raise ConfigError(f"{var}={environ[var]!r} is not a valid {getattr(convert, '__name__', 'value')}") from exc
    security = {attr: environ[var] for var, attr in SECURITY_ENV.items() if environ.get(var)}
    settings = Settings(**values, security=KafkaSecurity(**security))
    _check(settings, path)
    return settings


def _check(settings: Settings, path: Path) -> None:
    if settings.processing_guarantee not in GUARANTEES:
        raise ConfigError(
            f"processing_guarantee {settings.processing_guarantee!r} in {path} (or "
            f"STREAMLAKE_PROCESSING_GUARANTEE) must be one of {', '.join(GUARANTEES)}"
        )
    if not settings.broker.startswith("kafka://"):
        raise ConfigError(f"broker {settings.broker!r} must look like kafka://host:port")
    if settings.batch_size < 1:
        raise ConfigError("batch_size must be at least 1")


def with_overrides(settings: Settings, **changes: Any) -> Settings:
    """A copy of *settings* with some fields changed (CLI flags use this)."""
    known = {f.name for f in fields(Settings)}
    unknown = set(changes) - known
    if unknown:
        raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
    return replace(settings, **changes)
