"""The topic catalog: which physical topics exist and with what settings.

``conf/catalog.toml`` (overlaid by ``conf/catalog.<env>.toml`` when present)
sets partitions, replication and topic configs per logical dataset; the
topologies say which datasets exist. Together they give every topic StreamLake
owns: each stream's source, output, DLQ and retry topics.

Layering, lowest first: built-in defaults, ``[defaults]``, then
``[datasets."<domain>.<dataset>"]``. DLQ and retry topics start from their own
built-in defaults (:data:`DLQ_DEFAULTS`, :data:`RETRY_DEFAULTS`), then ``[dlq]`` /
``[retry]``, then ``[datasets."<name>".dlq]`` / ``.retry``. Partitions and
replication of DLQ and retry topics follow the dataset unless set.

A stream with ``partitioning = repartition`` (the default) also gets its
internal ``<source>.repartition`` topic (``[repartition]``,
``[datasets."<name>".repartition]``, built-in :data:`REPARTITION_DEFAULTS`).
It is always co-partitioned with its source: a partition count of its own is
refused. Its records are read back within seconds; its retention only has to
outlast the longest time workers may be down, like the source's.
"""

from __future__ import annotations

import enum
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Settings
from .errors import CatalogError
from .naming import find_metric_collisions
from .topology import Partitioning, Stream

__all__ = [
    "TopicRole", "TopicSpec", "Catalog", "load_catalog", "build_catalog", "read_catalog_file",
    "TOPIC_CONFIG_KEYS", "DLQ_DEFAULTS", "RETRY_DEFAULTS", "REPARTITION_DEFAULTS",
]

#: Topic-level configs Kafka 4.1 accepts (``LogConfig.configNames()``); a typo fails here, not at the broker.
TOPIC_CONFIG_KEYS = frozenset({
    "cleanup.policy", "compression.gzip.level", "compression.lz4.level", "compression.type",
    "compression.zstd.level", "delete.retention.ms", "file.delete.delay.ms", "flush.messages", "flush.ms",
    "follower.replication.throttled.replicas", "index.interval.bytes", "leader.replication.throttled.replicas",
    "local.retention.bytes", "local.retention.ms", "max.compaction.lag.ms", "max.message.bytes",
    "message.timestamp.after.max.ms", "message.timestamp.before.max.ms", "message.timestamp.type",
    "min.cleanable.dirty.ratio", "min.compaction.lag.ms", "min.insync.replicas", "preallocate",
    "remote.log.copy.disable", "remote.log.delete.on.disable", "remote.storage.enable", "retention.bytes",
    "retention.ms", "segment.bytes", "segment.index.bytes", "segment.jitter.ms", "segment.ms",
    "unclean.leader.election.enable",
})

#: A DLQ keeps data longer than its source: someone has to look at it before it expires.
DLQ_DEFAULTS: Mapping[str, str] = {"cleanup.policy": "delete", "retention.ms": str(30 * 24 * 3600 * 1000)}
#: Retry records are re-sent within minutes; a week covers a long outage.
RETRY_DEFAULTS: Mapping[str, str] = {"cleanup.policy": "delete", "retention.ms": str(7 * 24 * 3600 * 1000)}
#: Repartitioned records wait here only until a worker reads them back; a week covers a long outage.
REPARTITION_DEFAULTS: Mapping[str, str] = {"cleanup.policy": "delete", "retention.ms": str(7 * 24 * 3600 * 1000)}

_SECTIONS = {"defaults", "datasets", "dlq", "retry", "repartition"}
_TOPIC_KEYS = {"partitions", "replication_factor", "config"}
_DATASET_KEYS = _TOPIC_KEYS | {"dlq", "retry", "repartition"}
_CLEANUP_POLICIES = {"delete", "compact"}


class TopicRole(enum.Enum):
    """What a topic is for, relative to its stream."""

    SOURCE = "source"
    OUTPUT = "output"
    DLQ = "dlq"
    RETRY = "retry"
    REPARTITION = "repartition"


@dataclass(frozen=True)
class TopicSpec:
    """One physical topic as the catalog wants it.

    ``config`` holds only the configs the catalog sets; the broker defaults the rest.
    """

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

    def as_dict(self) -> dict[str, Any]:
        """Return a JSON-ready view."""
        return {
            "name": self.name, "stream": self.stream, "role": self.role.value, "partitions": self.partitions,
            "replication_factor": self.replication_factor, "keyed": self.keyed, "config": dict(self.config),
        }


@dataclass(frozen=True)
class Catalog:
    """Every topic StreamLake owns, in stream order (source, output, DLQ, retry[, repartition])."""

    topics: tuple[TopicSpec, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.topics)

    def by_name(self, name: str) -> TopicSpec:
        for spec in self.topics:
            if spec.name == name:
                return spec
        raise CatalogError(f"topic {name!r} is not in the catalog; known: {', '.join(self.names) or 'none'}")

    def for_stream(self, stream: str, role: TopicRole) -> TopicSpec:
        for spec in self.topics:
            if spec.stream == stream and spec.role is role:
                return spec
        raise CatalogError(f"no {role.value} topic for stream {stream!r} in the catalog")


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) else value
    return out


def read_catalog_file(conf_dir: Path, env: str) -> dict[str, Any]:
    """Read ``catalog.toml`` and overlay ``catalog.<env>.toml`` when it exists."""
    base_path = conf_dir / "catalog.toml"
    if not base_path.is_file():
        raise CatalogError(f"no catalog at {base_path}; create it (see docs/TOPICS.md, 'The catalog')")
    path = base_path
    try:
        data = tomllib.loads(base_path.read_text())
        path = conf_dir / f"catalog.{env}.toml"
        if path.is_file():
            data = _merge(data, tomllib.loads(path.read_text()))
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"{path} is not valid TOML: {exc}") from exc
    return data


def load_catalog(settings: Settings, streams: Iterable[Stream]) -> Catalog:
    """Return every topic the declared *streams* need, with its catalog settings."""
    return build_catalog(read_catalog_file(settings.conf_dir, settings.env), streams, settings.topic_prefix)


def build_catalog(data: Mapping[str, Any], streams: Iterable[Stream], prefix: str = "") -> Catalog:
    """Make the logical *data* (parsed catalog TOML) physical for *streams*.

    Raises:
        CatalogError: for unknown sections, keys, configs or datasets, bad values,
            or names that collide in Kafka's metric names.
    """
    streams = list(streams)
    _check_keys(data, _SECTIONS, "the catalog")
    defaults = _section(data, "defaults")
    datasets = _section(data, "datasets")
    _check_keys(defaults, _TOPIC_KEYS, "[defaults]")
    declared = {s.name for s in streams}
    unknown = sorted(set(datasets) - declared)
    if unknown:
        raise CatalogError(
            f"catalog datasets {', '.join(unknown)} are not declared under topologies/ "
            f"(declared: {', '.join(sorted(declared)) or 'none'}); fix the name or remove the entry")
    specs: list[TopicSpec] = []
    for stream in streams:
        where = f'[datasets."{stream.name}"]'
        own = _section(datasets, stream.name, where)
        _check_keys(own, _DATASET_KEYS, where)
        ds = _merge(defaults, {k: v for k, v in own.items() if k not in ("dlq", "retry", "repartition")})
        partitions = _positive(ds.get("partitions", 1), f"{where} partitions")
        replication = _positive(ds.get("replication_factor", 1), f"{where} replication_factor")
        config = _config(ds.get("config", {}), replication, where)
        source, output = str(stream.source_topic(prefix)), str(stream.output_topic(prefix))
        specs.append(TopicSpec(source, stream.name, TopicRole.SOURCE, partitions, replication, config))
        specs.append(TopicSpec(output, stream.name, TopicRole.OUTPUT, partitions, replication, config))
        derived_topics = [
            (TopicRole.DLQ, "dlq", stream.dlq_topic(prefix), DLQ_DEFAULTS),
            (TopicRole.RETRY, "retry", stream.retry_topic(prefix), RETRY_DEFAULTS),
        ]
        if stream.partitioning is Partitioning.REPARTITION:
            derived_topics.append(
                (TopicRole.REPARTITION, "repartition", stream.repartition_topic(prefix), REPARTITION_DEFAULTS))
        for role, section, name, builtin in derived_topics:
            shared = _section(data, section)
            _check_keys(shared, _TOPIC_KEYS, f"[{section}]")
            mine = _section(own, section, f"{where}.{section}")
            _check_keys(mine, _TOPIC_KEYS, f"{where}.{section}")
            derived = _merge(_merge({"config": dict(builtin)}, shared), mine)
            d_where = f"{section} topic of {stream.name}"
            if role is TopicRole.REPARTITION and derived.get("partitions", partitions) != partitions:
                raise CatalogError(f"{d_where}: partitions must equal the source's ({partitions}): records are "
                                   "written to their key's partition there; remove the partitions setting")
            d_replication = _positive(derived.get("replication_factor", replication), f"{d_where}: replication_factor")
            specs.append(TopicSpec(
                name, stream.name, role,
                _positive(derived.get("partitions", partitions), f"{d_where}: partitions"),
                d_replication,
                _config(derived.get("config", {}), d_replication, d_where),
            ))
    collisions = find_metric_collisions(s.name for s in specs)
    if collisions:
        raise CatalogError(
            "topic names collide in Kafka metric names ('.' and '_' both become '_'): "
            + "; ".join(" vs ".join(c) for c in collisions) + "; rename one of each pair"
        )
    return Catalog(tuple(specs))


def _section(data: Mapping[str, Any], key: str, where: str | None = None) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise CatalogError(f"{where or f'[{key}]'} must be a table, got {value!r}")
    return value


def _check_keys(section: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(section) - allowed)
    if unknown:
        raise CatalogError(f"{where} has unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")


def _positive(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CatalogError(f"{where} must be a positive integer, got {value!r}")
    return value


def _config(values: Any, replication: int, where: str) -> dict[str, str]:
    if not isinstance(values, Mapping):
        raise CatalogError(f"{where}: config must be a table of Kafka topic configs, got {values!r}")
    config = {str(k): str(v).lower() if isinstance(v, bool) else str(v) for k, v in values.items()}
    unknown = sorted(set(config) - TOPIC_CONFIG_KEYS)
    if unknown:
        raise CatalogError(f"{where}: {', '.join(unknown)} is not a Kafka topic config; "
                           "check the spelling against https://kafka.apache.org/documentation/#topicconfigs")
    policy = config.get("cleanup.policy")
    if policy is not None and (not policy or not set(policy.split(",")) <= _CLEANUP_POLICIES):
        raise CatalogError(f"{where}: cleanup.policy {policy!r} must be delete, compact or 'compact,delete'")
    isr = config.get("min.insync.replicas")
    if isr is not None:
        if not isr.isdigit() or int(isr) < 1:
            raise CatalogError(f"{where}: min.insync.replicas must be a positive integer, got {isr!r}")
        if int(isr) > replication:
            raise CatalogError(f"{where}: min.insync.replicas {isr} exceeds replication_factor {replication}, "
                               "so acks=all producers could never write; lower it or raise the replication")
    return config
