"""[lake] settings: defaults under the root, env overrides, credentials only from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamlake.config import load_settings
from streamlake.errors import ConfigError
from streamlake.lake.settings import load_lake_settings, redact_uri
from streamlake.naming import lake_table_identifier


def _settings(tmp_path: Path, lake_section: str = ""):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "dev.toml").write_text(lake_section)
    return load_settings(env="dev", root=tmp_path, environ={})


def test_embedded_default_is_sqlite_and_a_file_warehouse_under_the_root(tmp_path):
    lake = load_lake_settings(_settings(tmp_path), environ={})
    assert lake.catalog_type == "sql"
    assert lake.catalog_uri == f"sqlite:///{tmp_path.resolve()}/.streamlake/lake/catalog.db"
    assert lake.warehouse == f"file://{tmp_path.resolve()}/.streamlake/lake/warehouse"
    assert lake.commit_interval == 10.0 and lake.thresholds.max_age == 10.0


def test_environment_overrides_the_file(tmp_path):
    settings = _settings(tmp_path, "[lake]\ncommit_interval = 5.0\nwarehouse = 's3://a/b'\n")
    env = {"STREAMLAKE_LAKE_CATALOG_URI": "postgresql+psycopg2://u:secret@db/lake",
           "STREAMLAKE_LAKE_WAREHOUSE": "s3://lake/wh", "STREAMLAKE_LAKE_COMMIT_INTERVAL": "2.5"}
    lake = load_lake_settings(settings, environ=env)
    assert lake.warehouse == "s3://lake/wh" and lake.commit_interval == 2.5
    assert "secret" not in repr(lake) and "secret" not in str(lake.describe())
    with pytest.raises(ConfigError, match="STREAMLAKE_LAKE_COMMIT_INTERVAL"):
        load_lake_settings(settings, environ={"STREAMLAKE_LAKE_COMMIT_INTERVAL": "soon"})


def test_credentials_come_from_the_environment_only_and_never_show(tmp_path):
    settings = _settings(tmp_path, "[lake.properties]\n's3.endpoint' = 'http://127.0.0.1:9'\n")
    lake = load_lake_settings(settings, environ={"AWS_ACCESS_KEY_ID": "AKIAX", "AWS_SECRET_ACCESS_KEY": "s3cr3t",
                                                 "AWS_REGION": "eu-west-1"})
    props = lake.catalog_properties()
    assert props["s3.access-key-id"] == "AKIAX" and props["s3.secret-access-key"] == "s3cr3t"
    assert props["s3.endpoint"] == "http://127.0.0.1:9" and props["s3.region"] == "eu-west-1"
    assert "s3cr3t" not in repr(lake) and "AKIAX" not in repr(lake)
    bad = tmp_path / "other"
    bad.mkdir()
    with pytest.raises(ConfigError, match="only from the environment"):
        load_lake_settings(_settings(bad, "[lake.properties]\n's3.secret-access-key' = 'x'\n"), environ={})


def test_unknown_lake_keys_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown key"):
        load_lake_settings(_settings(tmp_path, "[lake]\ncommit_intervall = 1\n"), environ={})


def test_redact_uri_hides_the_password():
    assert redact_uri("postgresql://u:p@h/db") == "postgresql://u:***@h/db"
    assert redact_uri("sqlite:////x/c.db") == "sqlite:////x/c.db"


def test_table_identifier_rule():
    assert lake_table_identifier("sales.orders.valid.v1") == ("sales", "orders_v1")
    assert lake_table_identifier("prod.eu.sales.order-lines.valid.v12") == ("prod", "eu", "sales", "order_lines_v12")
    assert lake_table_identifier("sales.orders.curated.v2") == ("sales", "orders_v2")


def test_identifier_lint_warns_about_levels_that_start_with_a_digit():
    from streamlake.naming import lake_identifier_warnings

    assert lake_identifier_warnings(lake_table_identifier("sales.orders.valid.v1")) == []
    (warning,) = lake_identifier_warnings(lake_table_identifier("eu1.9sales.orders.valid.v1"))
    assert "'9sales' starts with a digit" in warning
