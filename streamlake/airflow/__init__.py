"""StreamLake's Airflow provider: a connection type, idempotent operators and deferrable sensors.

Install with ``./scripts/airflow`` (its own virtualenv; see docs/AIRFLOW.md for why).
Airflow finds this provider through the ``apache_airflow_provider`` entry point.
Import the operators and sensors from their modules (``streamlake.airflow.operators``,
``streamlake.airflow.sensors``); this module stays cheap to import.
"""

from __future__ import annotations

from typing import Any

__all__ = ["get_provider_info"]


def get_provider_info() -> dict[str, Any]:
    """What Airflow's providers manager reads: the connection type, hooks, operators, sensors, triggers."""
    from .. import __version__

    return {
        "package-name": "streamlake",
        "name": "StreamLake",
        "description": "Kafka ingestion topologies landing in Apache Iceberg: operators and deferrable sensors.",
        "versions": [__version__],
        "connection-types": [
            {"hook-class-name": "streamlake.airflow.hooks.StreamLakeHook", "connection-type": "streamlake"},
        ],
        "hooks": [{"integration-name": "StreamLake", "python-modules": ["streamlake.airflow.hooks"]}],
        "operators": [{"integration-name": "StreamLake", "python-modules": ["streamlake.airflow.operators"]}],
        "sensors": [{"integration-name": "StreamLake", "python-modules": ["streamlake.airflow.sensors"]}],
        "triggers": [{"integration-name": "StreamLake", "python-modules": ["streamlake.airflow.triggers"]}],
    }
