"""roles/kafka's operation filters (filter_plugins/kafka_ops.py) on the text Kafka 4.0.2 and 4.1.1 print.

The inputs are the real outputs of `kafka-features describe`, `kafka-features version-mapping` and
`kafka-topics --describe`, captured from local KRaft clusters. That the commands built from them do what
they should on real brokers: tests/deploy/test_kafka_ops.py.
"""

from __future__ import annotations

import base64
from pathlib import Path
from types import ModuleType

import pytest

from tests.fixtures.file_module import load_file_module

PLUGIN = Path(__file__).resolve().parents[2] / "roles/kafka/filter_plugins/kafka_ops.py"


def _feature(name: str, low: str, high: str, finalized: str) -> str:
    fields = [f"Feature: {name}", f"SupportedMinVersion: {low}", f"SupportedMaxVersion: {high}"]
    return "\t".join([*fields, f"FinalizedVersionLevel: {finalized}", "Epoch: 88"])


def _describe(metadata: str, elr: str) -> str:
    return "\n".join(
        [
            _feature("eligible.leader.replicas.version", "0", "1", elr),
            _feature("group.version", "0", "1", "1"),
            _feature("kraft.version", "0", "1", "0"),
            _feature("metadata.version", "3.3-IV3", "4.1-IV1", metadata),
            _feature("share.version", "0", "1", "0"),
            _feature("transaction.version", "0", "2", "2"),
        ]
    )


# 4.1.1 brokers still at the 4.0 features (after the binaries' upgrade), and after finalizing
DESCRIBE_4_0_ON_4_1 = _describe("4.0-IV3", "0")
DESCRIBE_4_1 = _describe("4.1-IV1", "1")
MAPPING_4_1 = """\
metadata.version=27 (4.1)
kraft.version=1
transaction.version=2
group.version=1
eligible.leader.replicas.version=1
share.version=0
streams.version=0
"""
MAPPING_4_0_IV3 = MAPPING_4_1.replace("metadata.version=27 (4.1)", "metadata.version=25 (4.0-IV3)").replace(
    "eligible.leader.replicas.version=1", "eligible.leader.replicas.version=0"
)
MAPPING_4_1_IV1 = MAPPING_4_1.replace("(4.1)", "(4.1-IV1)")


def _topic(name: str, rf: int, configs: str, partitions: list[str]) -> list[str]:
    head = f"Topic: {name}\tTopicId: NqciQHvTQqCnimFu4lsZAg\tPartitionCount: {len(partitions)}"
    lines = [f"{head}\tReplicationFactor: {rf}\tConfigs: {configs}"]
    for p, replicas in enumerate(partitions):
        leader = replicas.split(",")[0]
        lines.append(f"\tTopic: {name}\tPartition: {p}\tLeader: {leader}\tReplicas: {replicas}\tIsr: {replicas}\tElr: ")
    return lines


TOPICS = "\n".join(
    _topic("summation", 1, "min.insync.replicas=1,segment.bytes=67108864", ["3", "1", "2"])
    + _topic("summation.dlq", 3, "", ["1,2,3"])
)


@pytest.fixture(scope="module")
def ops() -> ModuleType:
    return load_file_module(PLUGIN)


def test_after_an_upgrade_the_features_behind_the_release_are_raised_but_not_kraft_version(ops: ModuleType) -> None:
    upgrades = ops.kafka_feature_upgrades(MAPPING_4_1, DESCRIBE_4_0_ON_4_1, MAPPING_4_0_IV3)
    assert upgrades == ["eligible.leader.replicas.version=1", "metadata.version=27"]


def test_a_finalized_cluster_needs_no_upgrade(ops: ModuleType) -> None:
    assert ops.kafka_feature_upgrades(MAPPING_4_1, DESCRIBE_4_1, MAPPING_4_1_IV1) == []


def test_kraft_version_is_raised_only_when_not_kept(ops: ModuleType) -> None:
    upgrades = ops.kafka_feature_upgrades(MAPPING_4_1, DESCRIBE_4_1, MAPPING_4_1_IV1, keep=[])
    assert upgrades == ["kraft.version=1"]


def test_features_are_never_lowered(ops: ModuleType) -> None:
    # finalizing to 4.0 on a cluster already at 4.1: nothing to do (a downgrade is not this filter's)
    assert ops.kafka_feature_upgrades(MAPPING_4_0_IV3, DESCRIBE_4_1, MAPPING_4_1_IV1) == []


def test_unexpected_tool_output_is_refused(ops: ModuleType) -> None:
    with pytest.raises(ops.KafkaOpsError):
        ops.kafka_feature_upgrades("Failed to create new KafkaAdminClient", DESCRIBE_4_1, MAPPING_4_1_IV1)
    with pytest.raises(ops.KafkaOpsError):
        ops.kafka_feature_upgrades(MAPPING_4_1, "", MAPPING_4_1_IV1)


def test_the_reassignment_raises_short_partitions_keeps_leaders_first_and_evens_the_load(ops: ModuleType) -> None:
    plan = ops.kafka_reassignment(TOPICS, {"summation": 3, "summation.dlq": 3}, [1, 2, 3])
    assert plan["version"] == 1
    assert plan["partitions"] == [
        {"topic": "summation", "partition": 0, "replicas": [3, 1, 2]},
        {"topic": "summation", "partition": 1, "replicas": [1, 3, 2]},
        {"topic": "summation", "partition": 2, "replicas": [2, 3, 1]},
    ]


def test_the_added_replicas_spread_over_the_brokers(ops: ModuleType) -> None:
    lines = ["Topic: t\tTopicId: x\tPartitionCount: 6\tReplicationFactor: 1\tConfigs: "]
    lines += [f"\tTopic: t\tPartition: {p}\tLeader: 1\tReplicas: 1\tIsr: 1" for p in range(6)]
    plan = ops.kafka_reassignment("\n".join(lines), {"t": 2}, ["1", "2", "3", "4"])
    followers = [move["replicas"][1] for move in plan["partitions"]]
    assert sorted(followers) == [2, 2, 3, 3, 4, 4]
    assert all(move["replicas"][0] == 1 for move in plan["partitions"])


def test_enough_replicas_mean_an_empty_plan_and_too_few_brokers_an_error(ops: ModuleType) -> None:
    assert ops.kafka_reassignment(TOPICS, {"summation.dlq": 3, "absent": 3}, [1, 2, 3])["partitions"] == []
    assert ops.kafka_reassignment(TOPICS, {"summation": 1}, [1, 2, 3])["partitions"] == []
    with pytest.raises(ops.KafkaOpsError):
        ops.kafka_reassignment(TOPICS, {"summation": 3}, [1, 2])


def test_topic_configs_are_read_from_the_description(ops: ModuleType) -> None:
    configs = ops.kafka_topic_configs(TOPICS)
    assert configs == {
        "summation": {"min.insync.replicas": "1", "segment.bytes": "67108864"},
        "summation.dlq": {},
    }


def test_the_wanted_replication_covers_the_role_topics_and_the_internal_topics_that_exist(ops: ModuleType) -> None:
    described = TOPICS + "\n" + "\n".join(_topic("__consumer_offsets", 1, "", ["1", "2"]))
    topics = [
        {"name": "summation", "partitions": 3},
        {"name": "summation.dlq", "partitions": 1, "replication_factor": 2},
    ]
    wanted = ops.kafka_replication_wanted(topics, "3", ["__consumer_offsets", "__transaction_state"], described)
    assert wanted == {"summation": 3, "summation.dlq": 2, "__consumer_offsets": 3}


def test_the_initial_controllers_are_the_same_list_on_every_node_with_canonical_directory_ids(ops: ModuleType) -> None:
    nodes = [
        {"id": "2", "address": "kafka-2.internal", "controller_port": "9093"},
        {"id": 1, "address": "kafka-1.internal", "controller_port": 9093},
    ]
    listed = ops.kafka_initial_controllers(nodes, "ycmq8ZXUR0qRKgaQc3CdvQ")
    assert listed == ops.kafka_initial_controllers(list(reversed(nodes)), "ycmq8ZXUR0qRKgaQc3CdvQ")
    first, second = listed.split(",")
    assert first.startswith("1@kafka-1.internal:9093:")
    assert second.startswith("2@kafka-2.internal:9093:")
    ids = [entry.rsplit(":", 1)[1] for entry in (first, second)]
    for directory_id in ids:
        decoded = base64.urlsafe_b64decode(directory_id + "==")
        assert len(decoded) == 16
        assert base64.urlsafe_b64encode(decoded).decode().rstrip("=") == directory_id
    assert ids[0] != ids[1]
    other_cluster = ops.kafka_initial_controllers(nodes, "AnotherClusterIdQgaQ0A").split(",")
    assert [entry.rsplit(":", 1)[1] for entry in other_cluster] != ids
    with pytest.raises(ops.KafkaOpsError):
        ops.kafka_initial_controllers([nodes[1], nodes[1]], "ycmq8ZXUR0qRKgaQc3CdvQ")


def test_the_quorum_roles_are_read_from_describe_replication(ops: ModuleType) -> None:
    described = "\n".join(
        [
            "NodeId\tDirectoryId           \tLogEndOffset\tLag\tLastFetchTimestamp\tLastCaughtUpTimestamp\tStatus  \t",
            "1     \tAAAAAAAAAAAAAAAAAAAAAA\t92          \t0  \t1796686290969     \t1796686290969        \tLeader  \t",
            "2     \tAAAAAAAAAAAAAAAAAAAAAA\t92          \t0  \t1796686290774     \t1796686290774        \tFollower\t",
            "4     \tq3CdvQycmq8ZXUR0qRKgaQ\t90          \t2  \t1796686290775     \t1796686290775        \tObserver\t",
        ]
    )
    assert ops.kafka_quorum_roles(described) == {1: "Leader", 2: "Follower", 4: "Observer"}
