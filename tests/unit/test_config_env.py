from pathlib import Path

import pytest

from sumflow.config import ConfigError, load_accumulator_config, load_adder_config, split_listen


def test_defaults_match_the_documented_contract():
    adder = load_adder_config({})
    assert adder.common.kafka_bootstrap == ("localhost:9092",)
    assert adder.common.topic == "summation"
    assert adder.grpc_listen == "0.0.0.0:50051"
    assert adder.metrics_listen == "0.0.0.0:9464"
    assert adder.dedupe_ttl_seconds == 86400
    acc = load_accumulator_config({})
    assert acc.http_listen == "0.0.0.0:8080"
    assert acc.consumer_group == "sumflow-accumulator"
    assert acc.dlq_topic == "summation.dlq"
    assert acc.dlq_writer is True  # one instance alone dead-letters, as it always did
    assert acc.applied_window_seconds >= 60


def test_values_are_read_and_trimmed(tmp_path):
    cfg = load_adder_config(
        {
            "SUMFLOW_KAFKA_BOOTSTRAP": " k1:9092, k2:9092 ",
            "SUMFLOW_DEDUPE_DIR": str(tmp_path),
            "SUMFLOW_DEDUPE_TTL_SECONDS": "60",
            "SUMFLOW_LOG_LEVEL": "debug",
            "SUMFLOW_GRPC_LISTEN": "[::]:6000",
        }
    )
    assert cfg.common.kafka_bootstrap == ("k1:9092", "k2:9092")
    assert cfg.dedupe_dir == Path(tmp_path)
    assert cfg.dedupe_ttl_seconds == 60
    assert cfg.common.log_level == "DEBUG"
    assert split_listen(cfg.grpc_listen) == ("::", 6000)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"SUMFLOW_DEDUPE_TTL_SECONDS": "soon"}, "SUMFLOW_DEDUPE_TTL_SECONDS"),
        ({"SUMFLOW_DEDUPE_TTL_SECONDS": "0"}, "SUMFLOW_DEDUPE_TTL_SECONDS"),
        ({"SUMFLOW_GRPC_LISTEN": "50051"}, "SUMFLOW_GRPC_LISTEN"),
        ({"SUMFLOW_GRPC_LISTEN": "host:99999"}, "SUMFLOW_GRPC_LISTEN"),
        ({"SUMFLOW_KAFKA_BOOTSTRAP": "kafka"}, "SUMFLOW_KAFKA_BOOTSTRAP"),
        ({"SUMFLOW_TOPIC": "bad topic"}, "SUMFLOW_TOPIC"),
        ({"SUMFLOW_LOG_LEVEL": "LOUD"}, "SUMFLOW_LOG_LEVEL"),
    ],
)
def test_bad_adder_settings_name_the_variable(env, names):
    with pytest.raises(ConfigError, match=names):
        load_adder_config(env)


def test_dlq_must_differ_from_topic():
    with pytest.raises(ConfigError, match="SUMFLOW_DLQ_TOPIC"):
        load_accumulator_config({"SUMFLOW_TOPIC": "t", "SUMFLOW_DLQ_TOPIC": "t"})


def test_state_dir_defaults_under_systemd_state_directory(monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/sumflow")
    assert load_accumulator_config({}).state_dir == Path("/var/lib/sumflow/accumulator")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("false", False), (" FALSE ", False), ("True", True), ("", True)],
)
def test_dlq_writer_reads_true_or_false_in_any_case(raw, expected):
    assert load_accumulator_config({"SUMFLOW_DLQ_WRITER": raw}).dlq_writer is expected


@pytest.mark.parametrize("raw", ["yes", "0", "1", "no", "off", "writer"])
def test_dlq_writer_refuses_anything_but_true_or_false(raw):
    with pytest.raises(ConfigError, match=rf"SUMFLOW_DLQ_WRITER='{raw}': expected true or false"):
        load_accumulator_config({"SUMFLOW_DLQ_WRITER": raw})


def test_each_instance_names_its_own_consumer_group():
    config = load_accumulator_config(
        {"SUMFLOW_CONSUMER_GROUP": "sumflow-accumulator-app2", "SUMFLOW_DLQ_WRITER": "false"}
    )
    assert (config.consumer_group, config.dlq_writer) == ("sumflow-accumulator-app2", False)
