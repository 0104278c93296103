"""Every StreamLake error derives from :class:`StreamLakeError`.

Messages say what went wrong and what to do about it; the CLI prints them as
they are and exits non-zero.
"""

from __future__ import annotations

__all__ = [
    "StreamLakeError",
    "ConfigError",
    "TopicNameError",
    "CatalogError",
    "TopologyError",
    "BrokerError",
    "PartitionMismatchError",
    "RetryableError",
]


class StreamLakeError(Exception):
    """Base of every error StreamLake raises on purpose."""


class ConfigError(StreamLakeError):
    """A setting in conf/ or the environment is missing or wrong."""


class TopicNameError(StreamLakeError):
    """A topic name breaks the naming convention."""

    def __init__(self, name: str, rule: str, why: str) -> None:
        self.name = name
        self.rule = rule
        self.why = why
        super().__init__(f"{name!r} breaks rule {rule}: {why}")


class CatalogError(StreamLakeError):
    """The topic catalog is inconsistent or refers to something unknown."""


class TopologyError(StreamLakeError):
    """A declaration under topologies/ is invalid."""


class BrokerError(StreamLakeError):
    """The local broker could not be started, stopped or reached."""


class PartitionMismatchError(StreamLakeError):
    """A source topic and its state table are not co-partitioned."""


class RetryableError(StreamLakeError):
    """Raised by a user transform to mark a failure as transient.

    The record goes to the DLQ with reason ``transform-retryable`` and the DLQ
    agent sends it back through the stream's retry topic with backoff.
    """
