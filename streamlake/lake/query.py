"""SQL over the lake through DuckDB: every table visible under its identifier (``sales.orders_v1``).

DuckDB reads each table's current metadata with ``iceberg_scan`` (the iceberg extension ships
as the PyPI package ``duckdb-ext-iceberg``, loaded offline). Tables outside a local warehouse,
or when the extension cannot load, are read through pyiceberg's own scan instead. Never a
raw Parquet glob: after compaction or expiry it returns rows that are no longer in the table.
"""

from __future__ import annotations

import datetime as dt
import decimal
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

from ..config import Settings
from ..errors import StreamLakeError
from .info import LakeSession, lake_targets
from .settings import LakeSettings

__all__ = ["QueryResult", "query_lake", "lake_connection"]


@dataclass(frozen=True)
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]

    def records(self) -> list[dict[str, Any]]:
        """Rows as objects, JSON-ready (decimals and times as text)."""
        return [{c: _jsonable(v) for c, v in zip(self.columns, row, strict=True)} for row in self.rows]


def _jsonable(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    return value


def _extension_directory() -> str | None:
    spec = importlib.util.find_spec("duckdb_ext")
    if spec is None or not spec.submodule_search_locations:
        return None
    return str(Path(next(iter(spec.submodule_search_locations))) / "extensions")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def lake_connection(settings: Settings, lake: LakeSettings | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with one view per table, named by its identifier.

    Every table of the namespaces the streams land in is visible, not only the
    streams' own: tables derived from them (a summary an Airflow DAG writes
    beside its stream's table) are queried the same way.
    """
    con = duckdb.connect(":memory:")
    extensions = _extension_directory()
    iceberg = False
    if extensions:
        try:
            con.execute(f"SET extension_directory = '{extensions}'")
            con.execute("LOAD iceberg")
            iceberg = True
        except duckdb.Error:
            iceberg = False
    with LakeSession(settings, lake) as session:
        for identifier in _lake_identifiers(session, settings):
            try:
                table = session.catalog.load_table(identifier)
            except NoSuchTableError:
                continue
            *namespace, name = identifier
            catalog_name = "memory"
            if len(namespace) > 1:  # a topic prefix: an attached database per outer level
                catalog_name = namespace[0]
                attached = {r[0] for r in con.execute("SELECT database_name FROM duckdb_databases()").fetchall()}
                if catalog_name not in attached:
                    con.execute(f"ATTACH ':memory:' AS {_quote(catalog_name)}")
                namespace = ["_".join(namespace[1:])]
            schema = f"{_quote(catalog_name)}.{_quote(namespace[0])}"
            con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            view = f"{schema}.{_quote(name)}"
            location = table.metadata_location
            if iceberg and location.startswith(("file://", "/")) and table.current_snapshot() is not None:
                path = location.removeprefix("file://").replace("'", "''")
                con.execute(f"CREATE VIEW {view} AS SELECT * FROM iceberg_scan('{path}')")
            else:
                arrow = table.scan().to_arrow()
                con.register(f"_arrow_{'_'.join(identifier)}", arrow)
                con.execute(f"CREATE VIEW {view} AS SELECT * FROM {_quote('_arrow_' + '_'.join(identifier))}")
    return con


def _lake_identifiers(session: LakeSession, settings: Settings) -> list[tuple[str, ...]]:
    """The streams' tables, then every other table of their namespaces (in name order)."""
    identifiers = [tuple(target.identifier) for target in lake_targets(settings)]
    for namespace in dict.fromkeys(identifier[:-1] for identifier in identifiers):
        try:
            listed = session.catalog.list_tables(namespace)
        except NoSuchNamespaceError:
            continue  # nothing landed there yet
        identifiers.extend(sorted(tuple(found) for found in listed if tuple(found) not in identifiers))
    return identifiers


def query_lake(settings: Settings, sql: str, lake: LakeSettings | None = None) -> QueryResult:
    """Run *sql* against the lake.

    Raises:
        StreamLakeError: the SQL failed, with DuckDB's message.
    """
    con = lake_connection(settings, lake)
    try:
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description or []]
        return QueryResult(columns, cursor.fetchall() if columns else [])
    except duckdb.Error as exc:
        raise StreamLakeError(f"query failed: {exc}") from exc
    finally:
        con.close()
