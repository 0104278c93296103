"""Lake tables on a real Iceberg catalog (no broker needed): the stale-writer race, schema
evolution and refusal, and the object-store path on moto's S3 server."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from pyiceberg.exceptions import CommitFailedException

from streamlake.config import load_settings
from streamlake.core.lake_progress import RecentWindow
from streamlake.core.records import SourceRecord
from streamlake.lake.settings import load_lake_settings
from streamlake.lake.tables import (
    LakeSchemaError,
    arrow_schema_for,
    ensure_table,
    open_catalog,
    table_offsets_of,
    target_for,
)
from streamlake.lake.writer import PartitionBatch, TableWriter
from streamlake.topology import Stream
from tests.kafka_fixtures import ROOT

COLUMNS = {"order_id": "string", "amount": "decimal(12,2)", "ts": "timestamptz"}


def stream(columns=None, **kw) -> Stream:
    return Stream(domain="sales", dataset="orders", key_field="order_id", columns=columns or COLUMNS,
                  event_time_field="ts" if "ts" in (columns or COLUMNS) else None, **kw)


def lake_for(tmp_path: Path, prefix: str, environ: dict[str, str] | None = None):
    env = {"STREAMLAKE_TOPIC_PREFIX": prefix, "STREAMLAKE_LAKE_CATALOG_URI": f"sqlite:///{tmp_path}/c.db",
           "STREAMLAKE_LAKE_WAREHOUSE": f"file://{tmp_path}/wh", **(environ or {})}
    settings = load_settings(env="test", root=ROOT, environ=env)
    return settings, load_lake_settings(settings, environ=env)


def batch(s: Stream, topic: str, partition: int, start: int, end: int, day: int = 0) -> PartitionBatch:
    builder_stream = s
    from streamlake.core.lake_rows import RowBuilder

    builder = RowBuilder(builder_stream.lake_columns, "seq", None, builder_stream.event_time_field)
    rows = builder.new_buffer()
    window = RecentWindow(1000)
    for offset in range(start, end):
        value = b'{"order_id": "k%d", "seq": %d, "amount": 1.5, "ts": %d}' % (
            offset % 7, offset, 1_700_000_000_000 + day * 86_400_000)
        record = SourceRecord(topic, partition, offset, 1_700_000_000_000, b"k%d" % (offset % 7), value)
        builder.build(record, 0, rows, window)
    return PartitionBatch(start, end, rows)


def rows_of(table) -> int:
    return table.refresh().scan().to_arrow().num_rows


def test_a_stale_writer_lands_its_batch_once(tmp_path):
    settings, lake = lake_for(tmp_path, f"t{uuid.uuid4().hex[:8]}")
    s = stream()
    target = target_for(s, settings.topic_prefix)
    catalog = open_catalog(lake)
    table = ensure_table(catalog, target)
    schema = arrow_schema_for(s)
    fresh = TableWriter(catalog.load_table(target.identifier), schema, "fresh")
    stale = TableWriter(catalog.load_table(target.identifier), schema, "stale")
    tp = (target.topic, 0)

    # the stale writer checks the offsets, then the other commits before its append: the append
    # must fail (commit.retry.num-retries=0), and the re-check must drop the batch
    reload = stale._reload
    raced = []

    def reload_then_race():
        offsets = reload()
        if not raced:
            raced.append(fresh.commit({tp: batch(s, target.topic, 0, 0, 10)}))
        return offsets

    stale._reload = reload_then_race  # type: ignore[method-assign]
    outcome = stale.commit({tp: batch(s, target.topic, 0, 0, 10)})
    assert raced[0].landed == {tp: 10} and raced[0].rows == 10
    assert outcome.conflicts == 1 and outcome.rows == 0 and outcome.rewind == {tp: 10}
    assert rows_of(table) == 10 and table_offsets_of(table.refresh()) == {tp: 10}

    # the table's retry setting is what makes this safe: a stale append is refused, not re-applied
    assert table.refresh().properties["commit.retry.num-retries"] == "0"
    old = catalog.load_table(target.identifier)
    fresh.commit({tp: batch(s, target.topic, 0, 10, 15)})
    with pytest.raises(CommitFailedException):
        old.append(fresh.arrow_schema.empty_table())


def test_writers_racing_in_threads_land_each_partition_once(tmp_path):
    settings, lake = lake_for(tmp_path, f"t{uuid.uuid4().hex[:8]}")
    s = stream()
    target = target_for(s, settings.topic_prefix)
    catalog = open_catalog(lake)
    ensure_table(catalog, target)
    schema = arrow_schema_for(s)
    errors: list[BaseException] = []

    def race(name: str) -> None:
        try:
            writer = TableWriter(open_catalog(lake).load_table(target.identifier), schema, name)
            for p in range(6):
                writer.commit({(target.topic, p): batch(s, target.topic, p, 0, 20)})
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=race, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    table = catalog.load_table(target.identifier)
    assert rows_of(table) == 6 * 20
    assert table_offsets_of(table) == {(target.topic, p): 20 for p in range(6)}


def test_schema_evolves_by_adding_and_promoting_and_refuses_the_rest(tmp_path):
    settings, lake = lake_for(tmp_path, f"t{uuid.uuid4().hex[:8]}")
    catalog = open_catalog(lake)
    v1 = stream({"order_id": "string", "qty": "int", "amount": "decimal(10,2)"})
    target = target_for(v1, settings.topic_prefix)
    table = ensure_table(catalog, target)
    TableWriter(table, arrow_schema_for(v1), "v1").commit({(target.topic, 0): batch(v1, target.topic, 0, 0, 5)})

    v2 = stream({"order_id": "string", "qty": "long", "amount": "decimal(12,2)", "channel": "string"})
    table = ensure_table(catalog, target_for(v2, settings.topic_prefix))
    types = {f.name: str(f.field_type) for f in table.schema().fields}
    assert types["qty"] == "long" and types["amount"] == "decimal(12, 2)" and types["channel"] == "string"
    # a lander still on the old declaration keeps landing (the new column is null for its rows)
    TableWriter(table, arrow_schema_for(v1), "v1").commit({(target.topic, 0): batch(v1, target.topic, 0, 5, 8)})
    assert rows_of(table) == 8

    with pytest.raises(LakeSchemaError, match="qty is long in the table but declared string"):
        ensure_table(catalog, target_for(stream({"order_id": "string", "qty": "string"}), settings.topic_prefix))
    with pytest.raises(LakeSchemaError, match="bump the stream's version"):
        ensure_table(catalog, target_for(stream({"order_id": "string", "amount": "decimal(12,3)"}),
                                         settings.topic_prefix))


@pytest.fixture
def moto_s3():
    """moto's S3 API on loopback, with a bucket; dummy credentials only in the environment."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    creds = {"AWS_ACCESS_KEY_ID": "testing-key", "AWS_SECRET_ACCESS_KEY": "testing-secret", "AWS_REGION": "us-east-1"}
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing-key",
                 aws_secret_access_key="testing-secret").create_bucket(Bucket="lake")
    yield endpoint, creds
    server.stop()


def test_lake_on_s3_through_moto(tmp_path, moto_s3):
    from streamlake.lake.query import query_lake

    endpoint, creds = moto_s3
    prefix = f"t{uuid.uuid4().hex[:8]}"
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "test.toml").write_text((ROOT / "conf" / "test.toml").read_text()
                                    + f"\n[lake.properties]\n's3.endpoint' = '{endpoint}'\n")
    (tmp_path / "topologies").symlink_to(ROOT / "topologies")
    env = {"STREAMLAKE_TOPIC_PREFIX": prefix, "STREAMLAKE_LAKE_CATALOG_URI": f"sqlite:///{tmp_path}/c.db",
           "STREAMLAKE_LAKE_WAREHOUSE": "s3://lake/wh", **creds}
    settings = load_settings(env="test", root=tmp_path, environ=env)
    lake = load_lake_settings(settings, environ=env)
    assert "testing-secret" not in repr(lake)
    s = next(x for x in __import__("streamlake.topology", fromlist=["x"]).discover_streams(settings.topologies_dir))
    target = target_for(s, prefix)
    catalog = open_catalog(lake)
    table = ensure_table(catalog, target)
    assert table.location().startswith("s3://lake/wh/")
    outcome = TableWriter(table, arrow_schema_for(s), "s3").commit({(target.topic, 2): batch(s, target.topic, 2, 0, 9)})
    assert outcome.rows == 9 and outcome.files >= 1
    assert table_offsets_of(catalog.load_table(target.identifier)) == {(target.topic, 2): 9}
    result = query_lake(settings, f"SELECT count(*), sum(amount) FROM {target.name}", lake)
    assert result.rows[0][0] == 9 and str(result.rows[0][1]) == "13.50"


def test_compact_and_expire_are_dry_runs_by_default_keep_rows_and_offsets_and_are_idempotent(tmp_path):
    import os
    import time

    from streamlake.lake.maintenance import compact_tables, expire_tables

    settings, lake = lake_for(tmp_path, f"t{uuid.uuid4().hex[:8]}")
    s = next(x for x in __import__("streamlake.topology", fromlist=["x"]).discover_streams(settings.topologies_dir))
    target = target_for(s, settings.topic_prefix)
    catalog = open_catalog(lake)
    writer = TableWriter(ensure_table(catalog, target), arrow_schema_for(s), "t")
    for i in range(6):  # 6 small commits over 2 days
        writer.commit({(target.topic, 0): batch(s, target.topic, 0, i * 10, i * 10 + 10, day=i % 2)})
    table = catalog.load_table(target.identifier)
    files_before = len(table.inspect.files())
    offsets = table_offsets_of(table)

    dry = compact_tables(settings, target.name, execute=False, min_files=2, lake=lake)[0]
    assert [(r.files, r.rows) for r in dry.rewrites] == [(3, 30), (3, 30)] and not any(r.done for r in dry.rewrites)
    assert len(catalog.load_table(target.identifier).inspect.files()) == files_before  # nothing changed
    done = compact_tables(settings, target.name, execute=True, min_files=2, lake=lake)[0]
    assert all(r.done for r in done.rewrites) and done.rows_before == done.rows_after == 60
    table = catalog.load_table(target.identifier)
    assert len(table.inspect.files()) == 2 and rows_of(table) == 60
    assert table_offsets_of(table) == offsets
    assert compact_tables(settings, target.name, execute=True, min_files=2, lake=lake)[0].rewrites == []

    # a stray file (a killed commit's data file) and old snapshots
    data_dir = Path(table.location().removeprefix("file://")) / "data"
    stray = data_dir / "orphan-from-a-killed-commit.parquet"
    stray.write_bytes(b"PAR1")
    old = time.time() - 3600
    os.utime(stray, (old, old))
    snapshots = len(table.snapshots())
    dry_expiry = expire_tables(settings, target.name, execute=False, older_than=0, retain_last=2, lake=lake)[0]
    assert len(dry_expiry.snapshots) == snapshots - 2 and f"file://{stray}" in dry_expiry.orphan_files
    assert stray.exists() and len(catalog.load_table(target.identifier).snapshots()) == snapshots
    expire_tables(settings, target.name, execute=True, older_than=0, retain_last=2, lake=lake)
    table = catalog.load_table(target.identifier)
    assert not stray.exists() and len(table.snapshots()) == 2
    assert rows_of(table) == 60 and table_offsets_of(table) == offsets
    again = expire_tables(settings, target.name, execute=True, older_than=0, retain_last=2, lake=lake)[0]
    assert again.snapshots == [] and again.orphan_files == []
    writer.commit({(target.topic, 0): batch(s, target.topic, 0, 60, 70)})  # landing goes on after both
    assert rows_of(catalog.load_table(target.identifier)) == 70
