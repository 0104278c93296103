"""Deferrable sensors: lake completeness, DLQ depth per reason, consumer lag.

Each sensor defers to its trigger (``deferrable=True``, the default) and frees
its worker slot while it waits; with ``deferrable=False`` it pokes the same
check in place. Success pushes the trigger's evidence to XCom. A timeout fails
the task with :class:`AirflowSensorTimeout` and the last evidence in the
message (what is missing, on which partitions), never with a bare deferral error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout

from ..core.thresholds import DepthCondition, depth_by_reason
from ..errors import BrokerError, StreamLakeError
from .hooks import StreamLakeHook
from .triggers import ConsumerLagTrigger, DlqDepthTrigger, LakeCompleteTrigger, StreamLakeTrigger

__all__ = ["LakeCompleteSensor", "DlqDepthSensor", "ConsumerLagSensor", "epoch_ms"]

_MARGIN = 60  # seconds Airflow's own deferral timeout waits beyond the trigger's deadline


def epoch_ms(value: Any) -> int:
    """A datetime (naive: UTC), ISO text (as a template renders it) or epoch ms, as epoch ms."""
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"until={value!r} is not an ISO 8601 time; write e.g. 2024-05-01T00:00:00Z") from None
    if not isinstance(value, datetime):
        raise ValueError(f"until={value!r} is not a time")
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


class _StreamLakeSensor(BaseSensorOperator):
    """Defers to the trigger :meth:`make_trigger` builds; pokes its check when not deferrable."""

    def __init__(self, *, streamlake_conn_id: str = StreamLakeHook.default_conn_name, deferrable: bool = True,
                 poke_interval: float = 30.0, timeout: float = 6 * 3600.0, **kwargs: Any) -> None:
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.streamlake_conn_id = streamlake_conn_id
        self.deferrable = deferrable
        self._poke_trigger: StreamLakeTrigger | None = None

    def make_trigger(self, timeout_at: float) -> StreamLakeTrigger:
        raise NotImplementedError

    def execute(self, context: Context) -> Any:
        self._validate()
        if not self.deferrable:
            return super().execute(context)
        timeout_at = time.time() + float(self.timeout)
        self.defer(trigger=self.make_trigger(timeout_at), method_name="execute_complete",
                   timeout=timedelta(seconds=float(self.timeout) + _MARGIN))

    def _validate(self) -> None:
        """Check the arguments before waiting: bad input fails at once."""

    def poke(self, context: Context) -> Any:
        # one trigger for every poke of this try, so the completeness bounds stay fixed
        trigger = self._poke_trigger = self._poke_trigger or self.make_trigger(time.time())
        deployment = StreamLakeHook(self.streamlake_conn_id).get_deployment()
        try:
            done, evidence, summary = asyncio.run(trigger.check(deployment))
        except BrokerError as exc:
            self.log.warning("%s", exc)
            return False
        except StreamLakeError as exc:
            raise AirflowFailException(f"{self.task_id}: {exc}") from exc
        self.log.info("%s", summary)
        if done:
            return PokeReturnValue(is_done=True, xcom_value=evidence)
        return False

    def execute_complete(self, context: Context, event: Mapping[str, Any]) -> Any:
        status = event.get("status")
        if status == "success":
            self.log.info("%s", event.get("message"))
            return event.get("evidence")
        if status == "timeout":
            raise AirflowSensorTimeout(f"{self.task_id}: timed out after {float(self.timeout):.0f}s: "
                                       f"{event.get('message')}")
        raise AirflowFailException(f"{self.task_id}: {event.get('message', event)}")


class LakeCompleteSensor(_StreamLakeSensor):
    """Wait until a lake table holds every record produced to its stream's source before ``until``.

    ``until`` defaults to the run's ``data_interval_end``. ``grace`` waits that
    long past ``until`` for partitions with no later record yet (producers that
    stamp their own, slightly late, times). The rule is in
    :mod:`streamlake.core.completeness`; docs/AIRFLOW.md says why it is sound.
    """

    template_fields: Sequence[str] = ("table", "until")
    ui_color = "#c9f2e1"

    def __init__(self, *, table: str, until: Any = "{{ data_interval_end }}", grace: timedelta = timedelta(0),
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.table = table
        self.until = until
        self.grace = grace

    def _validate(self) -> None:
        try:
            epoch_ms(self.until)
        except ValueError as exc:
            raise AirflowFailException(f"{self.task_id}: {exc}") from exc

    def make_trigger(self, timeout_at: float) -> StreamLakeTrigger:
        return LakeCompleteTrigger(table=self.table, until_ms=epoch_ms(self.until),
                                   grace_ms=int(self.grace.total_seconds() * 1000),
                                   streamlake_conn_id=self.streamlake_conn_id,
                                   poll_interval=float(self.poke_interval), timeout_at=timeout_at)


class DlqDepthSensor(_StreamLakeSensor):
    """Wait until a stream's DLQ depth per reason ``exceeds`` (an alert) or is ``within`` its thresholds.

    ``thresholds`` maps a reason, ``stage/reason`` or ``*`` (every other reason)
    to a record count.
    """

    template_fields: Sequence[str] = ("stream",)

    def __init__(self, *, stream: str, thresholds: Mapping[str, int], condition: str = "exceeds",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stream = stream
        self.thresholds = dict(thresholds)
        self.condition = DepthCondition(condition).value

    def _validate(self) -> None:
        try:
            depth_by_reason((), self.thresholds)  # checks the thresholds themselves
        except ValueError as exc:
            raise AirflowFailException(f"{self.task_id}: {exc}") from exc

    def make_trigger(self, timeout_at: float) -> StreamLakeTrigger:
        return DlqDepthTrigger(stream=self.stream, thresholds=self.thresholds, condition=self.condition,
                               streamlake_conn_id=self.streamlake_conn_id,
                               poll_interval=float(self.poke_interval), timeout_at=timeout_at)


class ConsumerLagSensor(_StreamLakeSensor):
    """Wait until the ingestion group's lag (source, retry and repartition topics; one stream or all) is at most ``max_lag``."""

    template_fields: Sequence[str] = ("stream",)

    def __init__(self, *, max_lag: int = 0, stream: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if max_lag < 0:
            raise ValueError("max_lag must be >= 0")
        self.max_lag = max_lag
        self.stream = stream

    def make_trigger(self, timeout_at: float) -> StreamLakeTrigger:
        return ConsumerLagTrigger(max_lag=self.max_lag, stream=self.stream,
                                  streamlake_conn_id=self.streamlake_conn_id,
                                  poll_interval=float(self.poke_interval), timeout_at=timeout_at)

