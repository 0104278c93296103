"""Settings, each declared once: type, TOML key, environment variable, default and doc.

Every setting is a field of :class:`Settings` made with :func:`setting`; the
conf-file keys, the environment overrides and the README's configuration
table (:func:`settings_table`, checked by tests/unit/test_config.py) are all
read from those declarations. Precedence, highest first: a command-line
option (the worker's ``--datadir``/``--web-port``/``--web-host``, applied with
:func:`with_overrides`), the environment, ``conf/<STREAMLAKE_ENV>.toml``, the
default. Credentials are only ever read from the environment and are kept
out of ``repr()`` so they cannot end up in a log line.
"""

from __future__ import annotations

import functools
import os
import tomllib
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from .errors import ConfigError

__all__ = ["Settings", "KafkaSecurity", "Guarantee", "load_settings", "project_root", "with_overrides",
           "settings_table", "ENV_OVERRIDES"]

Guarantee = Literal["at_least_once", "exactly_once"]
GUARANTEES: tuple[str, ...] = typing.get_args(Guarantee)


def setting(default: Any, doc: str, toml: str | None = None, env: str | None = None, secret: bool = False) -> Any:
    """Declare a setting: *toml* is ``"section.key"`` in conf/<env>.toml, *env* its environment variable."""
    return field(default=default, repr=not secret, metadata={"toml": toml, "env": env, "doc": doc})


@dataclass(frozen=True)
class KafkaSecurity:
    """SASL/SSL client settings. Secrets come from the environment only."""

    protocol: str = setting("PLAINTEXT", "`SSL`, `SASL_PLAINTEXT`, `SASL_SSL`", env="STREAMLAKE_SECURITY_PROTOCOL")
    sasl_mechanism: str | None = setting(None, "SASL mechanism (`PLAIN`, `SCRAM-SHA-256`, ...)",
                                         env="STREAMLAKE_SASL_MECHANISM")
    sasl_username: str | None = setting(None, "SASL user", env="STREAMLAKE_SASL_USERNAME")
    sasl_password: str | None = setting(None, "SASL password (environment only; never logged or written)",
                                        env="STREAMLAKE_SASL_PASSWORD", secret=True)
    ssl_cafile: str | None = setting(None, "TLS CA file", env="STREAMLAKE_SSL_CAFILE")
    ssl_certfile: str | None = setting(None, "TLS client certificate", env="STREAMLAKE_SSL_CERTFILE")
    ssl_keyfile: str | None = setting(None, "TLS client key", env="STREAMLAKE_SSL_KEYFILE")

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
    broker: str = setting("kafka://127.0.0.1:9092", "bootstrap servers (`;`-separated)",
                          toml="kafka.broker", env="STREAMLAKE_BROKER")
    topic_prefix: str = setting("", "optional first segment of every topic name",
                                toml="kafka.topic_prefix", env="STREAMLAKE_TOPIC_PREFIX")
    session_timeout: float = setting(10.0, "seconds before a dead worker's partitions move",
                                     toml="kafka.session_timeout", env="STREAMLAKE_SESSION_TIMEOUT")
    heartbeat_interval: float = setting(1.0, "seconds between heartbeats", toml="kafka.heartbeat_interval")
    commit_interval: float = setting(1.0, "seconds between offset commits (state is flushed first)",
                                     toml="kafka.commit_interval", env="STREAMLAKE_COMMIT_INTERVAL")
    request_timeout: float = setting(30.0, "seconds before a send fails; the failure is logged and the send retried",
                                     toml="kafka.request_timeout", env="STREAMLAKE_REQUEST_TIMEOUT")
    app_id: str = setting("streamlake", "Faust app id = consumer group", toml="app.id", env="STREAMLAKE_APP_ID")
    processing_guarantee: Guarantee = setting("at_least_once", "or `exactly_once`", toml="app.processing_guarantee",
                                              env="STREAMLAKE_PROCESSING_GUARANTEE")
    store: str = setting("memory://", "table store; `rocksdb://` keeps state on disk (one data dir per worker)",
                         toml="app.store", env="STREAMLAKE_STORE")
    web_host: str = setting("127.0.0.1", "worker web server host and bind address (`--web-host`)",
                            toml="app.web_host", env="STREAMLAKE_WEB_HOST")
    web_port: int = setting(6066, "worker web server port (`--web-port`); 0: any free port, logged once it listens",
                            toml="app.web_port", env="STREAMLAKE_WEB_PORT")
    datadir: str = setting(".streamlake/worker", "worker data dir, one per worker (`--datadir`)",
                           toml="app.datadir", env="STREAMLAKE_DATADIR")
    batch_size: int = setting(1000, "classic-path batch size", toml="app.batch_size", env="STREAMLAKE_BATCH_SIZE")
    batch_within: float = setting(0.05, "classic-path batch wait, seconds", toml="app.batch_within")
    fast_path: bool = setting(True, "batch fast path for `at_least_once`", toml="app.fast_path",
                              env="STREAMLAKE_FAST_PATH")
    table_standby_replicas: int = setting(1, "other workers that follow each table partition and take it over "
                                          "without a cold restore",
                                          toml="app.table_standby_replicas", env="STREAMLAKE_TABLE_STANDBY_REPLICAS")
    worker_watchdog: bool = setting(True, "`streamlake worker` runs the worker as its child; if the worker is "
                                    "killed (kill -9, OOM), the watchdog leaves the group for it, so its partitions "
                                    "move in about a second instead of after the session timeout "
                                    "(`faust -A streamlake.app worker` is never watched)",
                                    toml="app.worker_watchdog", env="STREAMLAKE_WORKER_WATCHDOG")
    gc_young_threshold: int = setting(10_000, "a worker's allocations between young garbage collections (Python's "
                                      "default: 700); 0 keeps Python's collector as it is",
                                      toml="app.gc_young_threshold", env="STREAMLAKE_GC_YOUNG_THRESHOLD")
    dlq_retry_attempts: int = setting(3, "attempts before a transient failure is parked",
                                      toml="dlq.retry_attempts", env="STREAMLAKE_DLQ_RETRY_ATTEMPTS")
    dlq_retry_backoff: float = setting(1.0, "first retry backoff, seconds (exponential)",
                                       toml="dlq.retry_backoff", env="STREAMLAKE_DLQ_RETRY_BACKOFF")
    dlq_retry_backoff_max: float = setting(30.0, "longest retry backoff, seconds", toml="dlq.retry_backoff_max",
                                           env="STREAMLAKE_DLQ_RETRY_BACKOFF_MAX")
    dlq_log_payload: bool = setting(False, "include values in DLQ log lines", toml="dlq.log_payload",
                                    env="STREAMLAKE_DLQ_LOG_PAYLOAD")
    local_broker_port: int = setting(9092, "the embedded broker's port", toml="local_broker.port")
    local_broker_data_dir: str = setting(".streamlake/broker", "the embedded broker's data dir",
                                         toml="local_broker.data_dir")
    kafka_version: str = setting("4.1.1", "the embedded broker's Kafka version", toml="local_broker.kafka_version",
                                 env="STREAMLAKE_KAFKA_VERSION")
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


#: Environment variables read outside the settings (name, default, doc), for the README table.
OTHER_ENVIRONMENT = (
    ("STREAMLAKE_ENV", "dev", "which `conf/<env>.toml` to read"),
    ("STREAMLAKE_HOME", "the working directory", "the folder holding `conf/` and `topologies/`"),
    ("STREAMLAKE_CACHE", "~/.cache/streamlake", "where the Kafka jars are cached"),
    ("STREAMLAKE_BROKER_HEAP", "512m", "local broker heap"),
    ("STREAMLAKE_TEST_BROKER", "", "tests use this broker instead of starting one"),
)

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _declared(cls: type) -> Iterator[tuple[Field[Any], Any]]:
    """The declared settings of *cls* with their types."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if "doc" in f.metadata:
            yield f, hints[f.name]


def _base_type(hint: Any) -> type:
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is Literal:
        return str
    if args and typing.get_origin(hint) is not None:
        return _base_type(args[0])
    return hint if isinstance(hint, type) else str


def _convert(text: str, *, hint: Any) -> Any:
    kind = _base_type(hint)
    if kind is bool:
        lowered = text.strip().lower()
        if lowered in _TRUE or lowered in _FALSE:
            return lowered in _TRUE
        raise ValueError(f"expected one of {', '.join(_TRUE + _FALSE)}")
    return kind(text)


def _check_file_value(value: Any, hint: Any, where: str) -> Any:
    kind = _base_type(hint)
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not ok:
        raise ConfigError(f"{where} = {value!r} must be a {kind.__name__}")
    return value


# env var -> (settings field, converter): derived from the declarations.
ENV_OVERRIDES: dict[str, tuple[str, Callable[[str], Any]]] = {
    f.metadata["env"]: (f.name, functools.partial(_convert, hint=hint))
    for f, hint in _declared(Settings) if f.metadata["env"]
}


def settings_table() -> str:
    """The README's configuration table, generated from the declarations."""
    def default_of(f: Field[Any]) -> str:
        value = f.default if f.default is not MISSING else None
        if value is None:
            return "—"
        if isinstance(value, bool):
            return f"`{str(value).lower()}`"
        return f'`{value}`' if value != "" else '`""`'

    rows = ["| file key | environment variable | default | meaning |", "|---|---|---|---|"]
    for cls in (Settings, KafkaSecurity):
        for f, _ in _declared(cls):
            toml = f.metadata["toml"]
            key = f"`[{toml.split('.')[0]}] {toml.split('.', 1)[1]}`" if toml else "—"
            env = f"`{f.metadata['env']}`" if f.metadata["env"] else "—"
            rows.append(f"| {key} | {env} | {default_of(f)} | {f.metadata['doc']} |")
    for name, default, doc in OTHER_ENVIRONMENT:
        shown = "—" if not default else default if " " in default else f"`{default}`"
        rows.append(f"| — | `{name}` | {shown} | {doc} |")
    return "\n".join(rows) + "\n"


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
        # catalog.toml and its per-environment overlays (catalog.<env>.toml) are not environments.
        known = sorted(p.stem for p in (root / "conf").glob("*.toml") if p.stem.split(".")[0] != "catalog")
        raise ConfigError(
            f"no settings file {path} for STREAMLAKE_ENV={env!r}; "
            f"known environments: {', '.join(known) or 'none'}"
        )
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    values: dict[str, Any] = {"env": env, "root": root}
    for f, hint in _declared(Settings):
        toml = f.metadata["toml"]
        if toml:
            section, key = toml.split(".", 1)
            if key in data.get(section, {}):
                values[f.name] = _check_file_value(data[section][key], hint, f"{path} [{section}] {key}")
    hints = typing.get_type_hints(Settings)
    for var, (name, convert) in ENV_OVERRIDES.items():
        if environ.get(var):
            try:
                values[name] = convert(environ[var])
            except ValueError:
                raise ConfigError(f"{var}={environ[var]!r} is not a valid {_base_type(hints[name]).__name__}") from None
    security = {f.name: environ[f.metadata["env"]] for f, _ in _declared(KafkaSecurity)
                if environ.get(f.metadata["env"])}
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
    if settings.gc_young_threshold < 0:
        raise ConfigError("gc_young_threshold must be 0 (Python's collector as it is) or more")


def with_overrides(settings: Settings, **changes: Any) -> Settings:
    """A copy of *settings* with some fields changed (CLI flags use this)."""
    known = {f.name for f in fields(Settings)}
    unknown = set(changes) - known
    if unknown:
        raise ConfigError(f"unknown settings: {', '.join(sorted(unknown))}")
    return replace(settings, **changes)


if __name__ == "__main__":  # python -m streamlake.config: print the README's settings table
    print(settings_table(), end="")
