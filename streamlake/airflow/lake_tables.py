"""Write a query's answer into a lake table, replacing the rows of one key: the daily-summary step.

No Airflow here: the operator calls :func:`replace_rows_from_query`. The query runs in
DuckDB over the lake (:func:`streamlake.lake.query.lake_connection`, every table under
its identifier); the answer is written through pyiceberg with one ``overwrite`` whose
filter is ``key_column == key_value``, so the key's old rows go and the new ones come
in one commit, and running it again leaves the same table. A table this creates has
``commit.retry.num-retries=0``, like every table StreamLake creates.
"""

from __future__ import annotations

import re
from typing import Any

from ..config import Settings
from ..errors import StreamLakeError

__all__ = ["replace_rows_from_query"]


def replace_rows_from_query(settings: Settings, lake: Any, sql: str, table: str, key_column: str,
                            key_value: str) -> dict[str, Any]:
    """Run *sql* over the lake and make its rows the rows of ``key_column = key_value`` in *table*."""
    import duckdb
    from pyiceberg.exceptions import NoSuchTableError

    from ..lake.query import lake_connection
    from ..lake.tables import open_catalog

    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key_column):
        raise StreamLakeError(f"key column {key_column!r} must be a plain column name (letters, digits, _)")
    identifier = tuple(table.split("."))
    if len(identifier) < 2 or not all(identifier):
        raise StreamLakeError(f"table {table!r} must be <namespace>.<name>, e.g. sales.orders_v1_daily")
    con = lake_connection(settings, lake)
    try:
        answer = con.execute(sql).arrow()
    except duckdb.Error as exc:
        raise StreamLakeError(f"the summary query failed: {exc}") from exc
    finally:
        con.close()
    if hasattr(answer, "read_all"):  # duckdb may hand back a record batch reader
        answer = answer.read_all()
    if key_column not in answer.column_names:
        raise StreamLakeError(f"the query's answer has no column {key_column!r} (it has "
                              f"{', '.join(answer.column_names)}); select the key column too")
    catalog = open_catalog(lake)
    try:
        target = catalog.load_table(identifier)
        created = False
    except NoSuchTableError:
        catalog.create_namespace_if_not_exists(identifier[:-1])
        target = catalog.create_table(identifier, schema=answer.schema,
                                      properties={"commit.retry.num-retries": "0"})
        created = True
    quoted = key_value.replace("'", "''")
    target.overwrite(answer, overwrite_filter=f"{key_column} = '{quoted}'")
    snapshot = target.current_snapshot()
    return {"table": table, "created": created, "key_column": key_column, "key_value": key_value,
            "rows": answer.num_rows, "snapshot_id": snapshot.snapshot_id if snapshot is not None else None}
