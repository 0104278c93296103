"""Airflow tests: they run in .venv-airflow (``./scripts/test-airflow``), against the real broker and lake.

From the worker's virtualenv (no Airflow) the directory is not collected. The
metadata database is a copy of the one ``./scripts/airflow`` migrated (or a
fresh ``airflow db migrate``), in a temporary AIRFLOW_HOME, set before Airflow
is imported.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

if importlib.util.find_spec("airflow") is None:
    collect_ignore_glob = ["test_*.py"]
else:
    _home = Path(tempfile.mkdtemp(prefix="streamlake-airflow-test-"))
    os.environ["AIRFLOW_HOME"] = str(_home)
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_home}/airflow.db"
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags")
    os.environ.setdefault("STREAMLAKE_HOME", str(ROOT))
    _migrated = ROOT / ".streamlake" / "airflow" / "airflow.db"
    if _migrated.is_file() and (ROOT / ".streamlake" / "airflow" / ".migrated").is_file():
        shutil.copy(_migrated, _home / "airflow.db")
    else:
        subprocess.run([str(Path(sys.executable).parent / "airflow"), "db", "migrate"], check=True,
                       stdout=subprocess.DEVNULL)

    from tests.airflow.support import *  # noqa: F401,F403,E402  (fixtures)
    from tests.kafka_fixtures import kafka_broker, test_env  # noqa: F401,E402
