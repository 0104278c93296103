"""Opening the lake catalog: processes that start together all get it."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import sqlalchemy.exc

from streamlake.config import load_settings
from streamlake.lake import tables
from streamlake.lake.settings import LakeSettings, load_lake_settings


def _lake(tmp_path: Path) -> LakeSettings:
    """The embedded default under *tmp_path*: a new SQLite catalog."""
    (tmp_path / "conf").mkdir(exist_ok=True)
    (tmp_path / "conf" / "dev.toml").write_text("")
    lake = load_lake_settings(load_settings(env="dev", root=tmp_path, environ={}), environ={})
    Path(lake.catalog_uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return lake


def test_losing_the_race_to_create_the_catalog_tables_opens_it_again(tmp_path, monkeypatch):
    real = tables.load_catalog
    calls = []

    def racing(name, **props):
        calls.append(name)
        if len(calls) == 1:  # what SQLite says when another process created the table a moment earlier
            raise sqlalchemy.exc.OperationalError("CREATE TABLE iceberg_tables", {}, Exception(
                "table iceberg_tables already exists"))
        return real(name, **props)

    monkeypatch.setattr(tables, "load_catalog", racing)
    catalog = tables.open_catalog(_lake(tmp_path))
    assert len(calls) == 2 and catalog.list_namespaces() == []


def _open(path: str, barrier, results) -> None:
    barrier.wait()
    try:
        tables.open_catalog(_lake(Path(path)))
        results.put("ok")
    except Exception as exc:
        results.put(repr(exc))


def test_processes_opening_a_new_catalog_at_once_all_succeed(tmp_path):
    _lake(tmp_path)  # the conf and the catalog's directory; the catalog itself is not created yet
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_open, args=(str(tmp_path), barrier, results)) for _ in range(4)]
    for proc in procs:
        proc.start()
    outcomes = [results.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(timeout=60)
    assert outcomes == ["ok"] * 4
