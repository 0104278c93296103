"""Lake fixtures: a lake of the test's own (SQLite catalog + file warehouse in tmp) and lander processes.

Every test gets its own topic prefix and app id (from ``test_env``), so its tables
(``<prefix>.sales.orders_v1``) and its lander group (``<app id>-land``) are its own too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from streamlake.lake.settings import LakeSettings, load_lake_settings
from tests.kafka_fixtures import ProcessFactory, TestEnv, WorkerProcess, call_failed, wait_for


@dataclass
class LakeEnv:
    env: TestEnv
    lake_dir: Path

    @property
    def lake(self) -> LakeSettings:
        return load_lake_settings(self.env.settings(), environ=self.env.environ())

    @property
    def table(self) -> str:
        return f"{self.env.prefix}.sales.orders_v1"

    @property
    def valid_topic(self) -> str:
        return f"{self.env.prefix}.sales.orders.valid.v1"


@pytest.fixture
def lake_env(test_env: TestEnv) -> LakeEnv:
    lake_dir = test_env.tmp / "lake"
    lake_dir.mkdir()
    test_env.extra.update(STREAMLAKE_LAKE_CATALOG_URI=f"sqlite:///{lake_dir}/catalog.db",
                          STREAMLAKE_LAKE_WAREHOUSE=f"file://{lake_dir}/warehouse",
                          STREAMLAKE_LAKE_COMMIT_INTERVAL="0.5", STREAMLAKE_LAKE_MAX_FIELD_BYTES="100000")
    return LakeEnv(test_env, lake_dir)


@pytest.fixture
def lander_factory(lake_env: LakeEnv, request: pytest.FixtureRequest) -> Iterator[Callable[..., WorkerProcess]]:
    """Start ``streamlake land`` processes in the test's lander group; all stopped at the end."""
    factory = ProcessFactory(lake_env.env)
    yield factory.lander
    if call_failed(request):
        factory.report_failure()
    factory.stop_all()


def wait_rows(lake_env: LakeEnv, rows: int, timeout: float = 90.0) -> int:
    """Wait until the table holds at least *rows* rows (from its metadata)."""
    from streamlake.errors import StreamLakeError
    from streamlake.lake.info import row_count

    def count() -> int | None:
        try:
            n = row_count(lake_env.env.settings(), lake_env.table, lake_env.lake)
        except StreamLakeError:
            return None
        return n if n >= rows else None

    return int(wait_for(count, timeout=timeout, interval=0.5, what=f"{rows} rows in {lake_env.table}") or 0)
