"""The embedded default: a single-node Apache Kafka broker run from its jars."""

from .local import (
    DEFAULT_KAFKA_VERSION,
    BrokerState,
    broker_status,
    kafka_tool_command,
    resolve_jars,
    start_broker,
    stop_broker,
)

__all__ = [
    "DEFAULT_KAFKA_VERSION",
    "BrokerState",
    "broker_status",
    "kafka_tool_command",
    "resolve_jars",
    "start_broker",
    "stop_broker",
]
