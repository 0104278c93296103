"""The peer for ``python -m bench landing``: Quix Streams' ``IcebergSink`` landing a prefilled topic.

Quix's sink supports only an AWS Glue catalog; here it is given the same SQLite catalog and
local warehouse as the other paths (its catalog object is swapped before ``setup()``), so
what is measured is its write path: rows to Parquet, read back, ``union_by_name`` schema
update, ``append`` — with its default partition spec, identity(_key) plus day(_timestamp).
Run as ``python -m bench.quix_landing``; names come from ``BENCH_BROKER``, ``BENCH_APP_ID``,
``BENCH_SOURCE``, ``BENCH_CATALOG_URI``, ``BENCH_WAREHOUSE``, ``BENCH_TABLE``; commit interval
``BENCH_COMMIT_INTERVAL`` seconds. Quix's sink records no offsets in the table.
"""

from __future__ import annotations

import os

from pyiceberg.catalog.sql import SqlCatalog
from quixstreams import Application
from quixstreams.sinks.community.iceberg import AWSIcebergConfig, IcebergSink


def main() -> None:
    app = Application(
        broker_address=os.environ["BENCH_BROKER"].split("://", 1)[-1],
        consumer_group=os.environ["BENCH_APP_ID"],
        auto_offset_reset="earliest",
        commit_interval=float(os.environ.get("BENCH_COMMIT_INTERVAL", "2")),
        loglevel="WARNING",
    )
    warehouse = os.environ["BENCH_WAREHOUSE"]
    sink = IcebergSink(table_name=os.environ["BENCH_TABLE"],
                       config=AWSIcebergConfig(aws_s3_uri=f"{warehouse}/quix", aws_region="us-east-1",
                                               aws_access_key_id="unused", aws_secret_access_key="unused"),
                       data_catalog_spec="aws_glue")
    catalog = SqlCatalog("quix", uri=os.environ["BENCH_CATALOG_URI"], warehouse=warehouse)
    catalog.create_namespace_if_not_exists(os.environ["BENCH_TABLE"].split(".")[0])
    sink.data_catalog = catalog  # Glue only upstream: the same SQLite catalog as the other paths
    source = app.topic(os.environ["BENCH_SOURCE"], key_deserializer="bytes", value_deserializer="json")
    app.dataframe(source).sink(sink)
    app.run()


if __name__ == "__main__":
    main()
