"""The topic catalog: which physical topics exist and with what settings.

``conf/catalog.toml`` (overlaid by ``conf/catalog.<env>.toml`` when present)
sets partitions, replication and topic configs per logical dataset; the
topologies say which datasets exist. Together they give every topic StreamLake
owns: each stream's source, output, DLQ and retry topics.
"""

from __future__ import annotations

import enum
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from .config import Settings
from .errors import CatalogError
from .naming import find_metric_collisions
from .topology import Stream

__all__ = ["TopicRole", "TopicSpec", "Catalog", "load_catalog"]


class TopicRole(enum.Enum):
    SOURCE = "source"
    OUTPUT = "output"
    DLQ = "dlq"
    RETRY = "retry"


@dataclass(frozen=True)
class TopicSpec:
    """One physical topic as the catalog wants it."""

    name: str
    stream: str
    role: TopicRole
    partitions: int
    replication_factor: int
    config: Mapping[str, str] = field(default_factory=dict)

    @property
    def keyed(self) -> bool:
        """Every StreamLake topic is keyed: growing it moves keys between partitions."""
        return True


@dataclass(frozen=True)
class Catalog:
    topics: tuple[TopicSpec, ...]

    def by_name(self, name: str) -> TopicSpec:
        for spec in self.topics:
            if spec.name == name:
                return spec
        raise CatalogError(f"topic {name!r} is not in the catalog; known: {', '.join(t.name for t in self.topics)}")

    def for_stream(self, stream: str, role: TopicRole) -> TopicSpec:
        for spec in self.topics:
            if spec.stream == stream and spec.role is role:
                return spec
        raise CatalogError(f"no {role.value} topic for stream {stream!r} in the catalog")


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), dict) else value
    return out


def read_catalog_file(conf_dir: Path, env: str) -> dict[str, Any]:
    base_path = conf_dir / "catalog.toml"
    if not base_path.is_file():
        raise CatalogError(f"no catalog at {base_path}; create it (see README, 'Topic catalog')")
    try:
        data = tomllib.loads(base_path.read_text())
        overlay = conf_dir / f"catalog.{env}.toml"
        if overlay.is_file():
            data = _merge(data, tomllib.loads(overlay.read_text()))
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"catalog TOML is invalid: {exc}") from exc
    return data


def load_catalog(settings: Settings, streams: Iterable[Stream]) -> Catalog:
    """Every topic the declared *streams* need, with its catalog settings."""
    return build_catalog(read_catalog_file(settings.conf_dir, settings.env), streams, settings.topic_prefix)


def build_catalog(data: Mapping[str, Any], streams: Iterable[Stream], prefix: str = "") -> Catalog:
    defaults = data.get("defaults", {})
    datasets = data.get("datasets", {})
    specs: list[TopicSpec] = []
    for stream in streams:
        ds = _merge(defaults, datasets.get(stream.name, {}))
        partitions = _positive(ds.get("partitions", 1), f"datasets.{stream.name}.partitions")
        replication = _positive(ds.get("replication_factor", 1), f"datasets.{stream.name}.replication_factor")
        config = _config(ds.get("config", {}))
        source, output = str(stream.source_topic(prefix)), str(stream.output_topic(prefix))
        specs.append(TopicSpec(source, stream.name, TopicRole.SOURCE, partitions, replication, config))
        specs.append(TopicSpec(output, stream.name, TopicRole.OUTPUT, partitions, replication, config))
        for role, section, name in ((TopicRole.DLQ, "dlq", stream.dlq_topic(prefix)),
                                    (TopicRole.RETRY, "retry", stream.retry_topic(prefix))):
            derived = data.get(section, {})
            specs.append(TopicSpec(
                name, stream.name, role,
                _positive(derived.get("partitions", partitions), f"{section}.partitions"),
                _positive(derived.get("replication_factor", replication), f"{section}.replication_factor"),
                _config(derived.get("config", {})),
            ))
    collisions = find_metric_collisions(s.name for s in specs)
    if collisions:
        raise CatalogError(
            "topic names collide in Kafka metric names ('.' and '_' both become '_'): "
            + "; ".join(" vs ".join(c) for c in collisions)
        )
    return Catalog(tuple(specs))


def _positive(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CatalogError(f"{where} must be a positive integer, got {value!r}")
    return value


def _config(values: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in values.items()}
