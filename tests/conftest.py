"""Marks, and one broker for every xdist worker.

Everything under tests/integration and tests/faults needs the real broker; tests/cluster
starts a secured three-node cluster of its own (one per xdist worker: its modules share a group).
Run in parallel (``pytest -n N``), the workers share one broker: the one
``STREAMLAKE_TEST_BROKER`` names, or else one the controlling process starts
before it spawns the workers (they inherit its address through that same
variable, so the ``kafka_broker`` fixture takes its external path) and stops
at the end. Without xdist, the session fixture starts its own as before.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_BROKER_DIR_KEY = pytest.StashKey[Path]()


#: Run one at a time within their group under xdist (--dist loadgroup): the kill and scaling
#: tests each run several workers against a deadline, the JVM tests each start Java many times;
#: side by side they would only slow each other down.
XDIST_GROUPS = {
    "tests/faults/test_kill9.py": "workers", "tests/faults/test_broker_faults.py": "workers",
    "tests/faults/test_startup_race.py": "workers", "tests/integration/test_scaling.py": "workers",
    "tests/faults/test_lake_kill9.py": "workers",
    "tests/integration/test_recovery.py": "workers",
    "tests/integration/test_broker_cli.py": "jvm", "tests/integration/test_replay.py": "jvm",
    "tests/integration/test_partitioner_parity.py": "jvm",
    # one xdist worker, hence one secured three-node cluster (a session fixture) for both modules
    "tests/cluster/test_secured_cluster.py": "cluster", "tests/cluster/test_cluster_faults.py": "cluster",
    "tests/faults/test_repartition_crash.py": "workers", "tests/integration/test_repartition.py": "jvm",
}


# First: xdist's own hook turns xdist_group marks into node ids, and reads them only once.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    root = Path(str(config.rootpath))
    for item in items:
        path = Path(str(item.fspath))
        parts = path.parts
        if "integration" in parts:
            item.add_marker(pytest.mark.integration)
        if "faults" in parts:
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.faults)
        if "cluster" in parts:
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.cluster)
        group = XDIST_GROUPS.get(path.relative_to(root).as_posix()) if path.is_relative_to(root) else None
        if group is not None and config.pluginmanager.hasplugin("xdist"):  # `-p no:xdist` runs serially anyway
            item.add_marker(pytest.mark.xdist_group(group))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[pytest.TestReport]:
    """Keep each phase's report on the item (``item.report_call``): fixtures print logs at teardown when it failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _is_xdist_controller(config: pytest.Config) -> bool:
    return bool(getattr(config.option, "numprocesses", None)) and not hasattr(config, "workerinput")


def _needs_broker(config: pytest.Config) -> bool:
    """Unless only unit tests were asked for."""
    return not config.args or any("unit" not in Path(arg.split("::")[0]).parts for arg in config.args)


def pytest_configure(config: pytest.Config) -> None:
    if not _is_xdist_controller(config) or os.environ.get("STREAMLAKE_TEST_BROKER") or not _needs_broker(config):
        return
    from streamlake.broker import local

    data_dir = Path(tempfile.mkdtemp(prefix="streamlake-xdist-broker-"))
    try:
        state = local.start_broker(port=0, data_dir=data_dir, kafka_version=local.DEFAULT_KAFKA_VERSION, timeout=180)
    except Exception as exc:  # the broker is required: fail loudly, never skip
        raise pytest.UsageError(f"could not start the Kafka broker for integration tests: {exc}") from exc
    config.stash[_BROKER_DIR_KEY] = data_dir
    os.environ["STREAMLAKE_TEST_BROKER"] = state.url


def pytest_unconfigure(config: pytest.Config) -> None:
    data_dir = config.stash.get(_BROKER_DIR_KEY, None)
    if data_dir is not None:
        from streamlake.broker import local

        os.environ.pop("STREAMLAKE_TEST_BROKER", None)
        local.stop_broker(data_dir)
