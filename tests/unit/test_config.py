"""Settings: declared once, the README table generated from the declarations, precedence CLI > env > conf > default."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamlake.config import ENV_OVERRIDES, Settings, load_settings, settings_table, with_overrides
from streamlake.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_readme_table_is_the_one_generated_from_the_declarations() -> None:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- settings table:")
    table = readme[readme.index("\n", start) + 1:readme.index("<!-- end of settings table -->")]
    assert table == settings_table(), "README's settings table drifted: paste `python -m streamlake.config` into it"


def test_every_environment_override_names_a_declared_setting_and_appears_in_the_table() -> None:
    table = settings_table()
    names = {f for f in Settings.__dataclass_fields__}
    for var, (name, _) in ENV_OVERRIDES.items():
        assert name in names and f"`{var}`" in table


def write_conf(tmp_path: Path, body: str) -> Path:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "x.toml").write_text(body)
    return tmp_path


def test_precedence_is_option_then_environment_then_conf_then_default(tmp_path: Path) -> None:
    root = write_conf(tmp_path, "[app]\nweb_port = 7000\ndatadir = \"conf-dir\"\nbatch_size = 5\n")
    settings = load_settings(env="x", root=root, environ={"STREAMLAKE_WEB_PORT": "7100", "STREAMLAKE_DATADIR": "env-dir"})
    assert settings.batch_size == 5  # conf over default
    assert settings.web_port == 7100 and settings.datadir == "env-dir"  # env over conf
    assert settings.app_id == "streamlake"  # the default when nothing sets it
    assert with_overrides(settings, datadir="cli-dir").datadir == "cli-dir"  # a command-line option over env


def test_booleans_accept_the_usual_words_and_refuse_anything_else(tmp_path: Path) -> None:
    root = write_conf(tmp_path, "")
    assert load_settings(env="x", root=root, environ={"STREAMLAKE_FAST_PATH": "off"}).fast_path is False
    assert load_settings(env="x", root=root, environ={"STREAMLAKE_DLQ_LOG_PAYLOAD": "Yes"}).dlq_log_payload is True
    with pytest.raises(ConfigError, match="STREAMLAKE_FAST_PATH='maybe' is not a valid bool"):
        load_settings(env="x", root=root, environ={"STREAMLAKE_FAST_PATH": "maybe"})


def test_a_conf_value_of_the_wrong_type_names_the_file_and_the_key(tmp_path: Path) -> None:
    root = write_conf(tmp_path, "[app]\nweb_port = \"6066\"\n")
    with pytest.raises(ConfigError, match=r"x.toml \[app\] web_port = '6066' must be a int"):
        load_settings(env="x", root=root, environ={})


def test_an_integer_where_a_float_is_declared_is_accepted(tmp_path: Path) -> None:
    root = write_conf(tmp_path, "[kafka]\ncommit_interval = 2\n")
    assert load_settings(env="x", root=root, environ={}).commit_interval == 2.0


def test_unknown_environment_and_bad_toml_are_config_errors(tmp_path: Path) -> None:
    root = write_conf(tmp_path, "[app\n")
    with pytest.raises(ConfigError, match="known environments: x"):
        load_settings(env="nope", root=root, environ={})
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_settings(env="x", root=root, environ={})
