"""Configuration: packaged defaults, a file over them, environment variables over both."""

from __future__ import annotations

import pytest

from readnext.config import PROJECT_ROOT, ConfigError, load_config


def test_defaults_are_local(tmp_path):
    config = load_config(env={})
    assert config.kafka.bootstrap_servers == "127.0.0.1:9092"
    assert config.spark.master == "local[*]"
    assert config.spark.metastore_uri == ""
    assert config.stack.state_dir == PROJECT_ROOT / ".state"


def test_file_then_environment_override(tmp_path):
    cluster = tmp_path / "cluster.toml"
    cluster.write_text(
        '[kafka]\nbootstrap_servers = "k1:9092,k2:9092"\n[spark]\nmaster = "yarn"\n'
        'metastore_uri = "thrift://meta:9083"\n[hbase]\nport = 19090\n'
    )
    config = load_config(
        env={
            "READNEXT_CONFIG": str(cluster),
            "READNEXT_HBASE_PORT": "29090",
            "READNEXT_SPARK_UI_ENABLED": "yes",
            "READNEXT_ARTIFACTS_URI": "s3://bucket/models",
        }
    )
    assert config.kafka.bootstrap_servers == "k1:9092,k2:9092"
    assert config.spark.master == "yarn"
    assert config.spark.metastore_uri == "thrift://meta:9083"
    assert config.hbase.port == 29090
    assert config.spark.ui_enabled is True
    assert config.artifacts.uri == "s3://bucket/models"


def test_relative_paths_resolve_from_the_project_root():
    config = load_config(env={"READNEXT_SPARK_WAREHOUSE_DIR": "elsewhere/wh"})
    assert config.spark.warehouse_dir == PROJECT_ROOT / "elsewhere" / "wh"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"READNEXT_HBASE_PORT": "ninety"}, "[hbase] port: expected an integer"),
        ({"READNEXT_SPARK_UI_ENABLED": "maybe"}, "[spark] ui_enabled: expected true or false"),
    ],
)
def test_bad_values_name_the_setting(env, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(env=env)


def test_unknown_settings_are_refused(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[kafka]\nbootstrap = 'x:1'\n")
    with pytest.raises(ConfigError, match="unknown setting.*bootstrap"):
        load_config(env={"READNEXT_CONFIG": str(bad)})
