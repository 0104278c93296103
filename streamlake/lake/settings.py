"""Lake settings: ``[lake]`` of ``conf/<env>.toml``, then environment overrides, then credentials.

Invariants:
- every setting is declared once in :data:`LAKE_SETTINGS` (TOML key, environment variable,
  default, meaning); docs/LAKE.md's table is that list;
- credentials (object store keys, catalog tokens, a catalog URI with a password) come only
  from the environment, are passed to pyiceberg as properties and never appear in
  ``repr()`` or a log line;
- the embedded default needs no service: a SQLite catalog and a ``file://`` warehouse
  under ``<root>/<dir>``.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Settings
from ..core.lake_progress import BatchThresholds
from ..errors import ConfigError

__all__ = ["LakeSettings", "LakeSetting", "LAKE_SETTINGS", "CREDENTIAL_ENV", "load_lake_settings"]


@dataclass(frozen=True)
class LakeSetting:
    """One ``[lake]`` setting: its TOML key, environment variable, default and meaning."""

    key: str
    env: str | None
    default: Any
    convert: Callable[[str], Any]
    doc: str


LAKE_SETTINGS: tuple[LakeSetting, ...] = (
    LakeSetting("catalog_name", None, "streamlake", str, "pyiceberg catalog name"),
    LakeSetting("catalog_type", "STREAMLAKE_LAKE_CATALOG_TYPE", "sql", str,
                "pyiceberg catalog type: sql (SQLite or Postgres), rest, glue, hive"),
    LakeSetting("catalog_uri", "STREAMLAKE_LAKE_CATALOG_URI", "", str,
                "catalog URI; empty = sqlite:///<root>/<dir>/catalog.db"),
    LakeSetting("warehouse", "STREAMLAKE_LAKE_WAREHOUSE", "", str,
                "warehouse location (file://, s3://, ...); empty = file://<root>/<dir>/warehouse"),
    LakeSetting("dir", "STREAMLAKE_LAKE_DIR", ".streamlake/lake", str,
                "folder of the embedded catalog and warehouse, relative to the project root"),
    LakeSetting("commit_interval", "STREAMLAKE_LAKE_COMMIT_INTERVAL", 10.0, float,
                "seconds between table commits (the max age of a buffered row)"),
    LakeSetting("max_rows", "STREAMLAKE_LAKE_MAX_ROWS", 250_000, int,
                "rows buffered per partition before a commit is due"),
    LakeSetting("max_bytes", "STREAMLAKE_LAKE_MAX_BYTES", 64 * 1024 * 1024, int,
                "record bytes buffered per partition before a commit is due"),
    LakeSetting("dedup_window", "STREAMLAKE_LAKE_DEDUP_WINDOW", 100_000, int,
                "offsets per partition within which a repeated (key, seq) is dropped as a duplicate"),
    LakeSetting("max_field_bytes", "STREAMLAKE_LAKE_MAX_FIELD_BYTES", 1024 * 1024, int,
                "largest string field (or _extra) a row may carry; larger goes to the landing DLQ"),
    LakeSetting("expire_older_than", None, 3600.0, float,
                "snapshots (and orphan files) older than this many seconds are expired"),
    LakeSetting("expire_every", None, 100, int,
                "a lander expires old snapshots after every this many commits (0: never; `lake expire` still works)"),
    LakeSetting("retain_last", None, 10, int, "`lake expire`: snapshots always kept"),
    LakeSetting("web_port", "STREAMLAKE_LAKE_WEB_PORT", 6067, int, "lander web port (/health, /ready, /metrics)"),
)

#: Environment variable -> pyiceberg property. Only ever read from the environment.
CREDENTIAL_ENV: Mapping[str, str] = {
    "AWS_ACCESS_KEY_ID": "s3.access-key-id",
    "AWS_SECRET_ACCESS_KEY": "s3.secret-access-key",
    "AWS_SESSION_TOKEN": "s3.session-token",
    "STREAMLAKE_LAKE_CATALOG_TOKEN": "token",
    "STREAMLAKE_LAKE_CATALOG_CREDENTIAL": "credential",
}
#: Not secret, but deployment-specific: also taken from the environment when set.
_REGION_ENV = ("AWS_REGION", "AWS_DEFAULT_REGION")
_SECRET_PROPERTIES = frozenset(CREDENTIAL_ENV.values())
_URI_PASSWORD = re.compile(r"(://[^:/@]+:)[^@]*@")


@dataclass(frozen=True)
class LakeSettings:
    """Where the lake is and how landers batch; built by :func:`load_lake_settings`."""

    root: Path
    catalog_name: str
    catalog_type: str
    catalog_uri: str
    warehouse: str
    dir: str
    commit_interval: float
    max_rows: int
    max_bytes: int
    dedup_window: int
    max_field_bytes: int
    expire_older_than: float
    retain_last: int
    expire_every: int
    web_port: int
    properties: Mapping[str, str] = field(default_factory=dict)  # [lake.properties]: pyiceberg catalog/FileIO
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return (f"LakeSettings(catalog={self.catalog_type}:{redact_uri(self.catalog_uri)}, "
                f"warehouse={self.warehouse!r}, commit_interval={self.commit_interval}, "
                f"credentials={sorted(self.credentials)})")

    @property
    def thresholds(self) -> BatchThresholds:
        return BatchThresholds(self.max_rows, self.max_bytes, self.commit_interval)

    def catalog_properties(self) -> dict[str, str]:
        """Everything pyiceberg's ``load_catalog`` needs, credentials included (never log this)."""
        props = {"type": self.catalog_type, "warehouse": self.warehouse, **self.properties}
        if self.catalog_uri:
            props["uri"] = self.catalog_uri
        props.update(self.credentials)
        return props

    def describe(self) -> dict[str, Any]:
        """The settings as a dict fit for logs and ``--json``: no credential values."""
        return {"catalog_type": self.catalog_type, "catalog_uri": redact_uri(self.catalog_uri),
                "warehouse": self.warehouse, "commit_interval": self.commit_interval, "max_rows": self.max_rows,
                "max_bytes": self.max_bytes, "dedup_window": self.dedup_window,
                "credentials_from_env": sorted(k for k, v in CREDENTIAL_ENV.items() if v in self.credentials)}


def redact_uri(uri: str) -> str:
    """``postgresql://user:secret@host/db`` -> ``postgresql://user:***@host/db``."""
    return _URI_PASSWORD.sub(r"\1***@", uri)


def load_lake_settings(settings: Settings, environ: Mapping[str, str] | None = None) -> LakeSettings:
    """Read ``[lake]`` from the settings' conf file and apply the environment."""
    environ = os.environ if environ is None else environ
    path = settings.conf_dir / f"{settings.env}.toml"
    try:
        section = tomllib.loads(path.read_text()).get("lake", {}) if path.is_file() else {}
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from exc
    known = {s.key for s in LAKE_SETTINGS} | {"properties"}
    unknown = sorted(set(section) - known)
    if unknown:
        raise ConfigError(f"[lake] in {path} has unknown key(s) {', '.join(unknown)}; "
                          f"known: {', '.join(sorted(known))}")
    values: dict[str, Any] = {}
    for setting in LAKE_SETTINGS:
        value = section.get(setting.key, setting.default)
        if setting.env and environ.get(setting.env):
            try:
                value = setting.convert(environ[setting.env])
            except ValueError as exc:
                raise ConfigError(f"{setting.env}={environ[setting.env]!r} is not a valid {setting.convert.__name__}"
                                  ) from exc
        values[setting.key] = value
    properties = {str(k): str(v) for k, v in section.get("properties", {}).items()}
    secret_in_file = sorted(_SECRET_PROPERTIES & set(properties))
    if secret_in_file:
        raise ConfigError(f"[lake.properties] in {path} sets {', '.join(secret_in_file)}: credentials come only "
                          f"from the environment ({', '.join(CREDENTIAL_ENV)})")
    for var in _REGION_ENV:
        if environ.get(var) and "s3.region" not in properties:
            properties["s3.region"] = environ[var]
    credentials = {prop: environ[var] for var, prop in CREDENTIAL_ENV.items() if environ.get(var)}
    lake_dir = (settings.root / values["dir"]).resolve()
    if not values["catalog_uri"] and values["catalog_type"] == "sql":
        values["catalog_uri"] = f"sqlite:///{lake_dir / 'catalog.db'}"
    if not values["warehouse"]:
        values["warehouse"] = f"file://{lake_dir / 'warehouse'}"
    lake = LakeSettings(root=settings.root, properties=properties, credentials=credentials, **values)
    _check(lake, path)
    return lake


def _check(lake: LakeSettings, path: Path) -> None:
    if lake.commit_interval <= 0:
        raise ConfigError(f"[lake] commit_interval in {path} (or STREAMLAKE_LAKE_COMMIT_INTERVAL) must be > 0 seconds")
    for name in ("max_rows", "max_bytes", "dedup_window", "max_field_bytes"):
        if getattr(lake, name) < 1:
            raise ConfigError(f"[lake] {name} in {path} must be at least 1")
    if lake.catalog_uri.startswith("sqlite:///"):
        Path(lake.catalog_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
