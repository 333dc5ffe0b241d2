"""Filters of the kafka role's operations: finalizing the features after an upgrade and raising the
replication factor of existing topics. They read the text Kafka's own command-line tools print and
return what the next command takes, so the role's tasks hold the commands and these hold the decisions.

kafka_feature_upgrades(target_mapping, describe, current_mapping, keep=('kraft.version',))
    The `--feature NAME=LEVEL` values that raise the cluster's finalized features to a release's:
    `target_mapping` is `kafka-features version-mapping --release-version <major.minor>`, `describe` is
    `kafka-features describe`, and `current_mapping` is `version-mapping --release-version <the finalized
    metadata.version>` (describe names metadata.version, e.g. 4.0-IV3, where the mapping gives its level).
    Only raises, never lowers; features in `keep` are left alone: kraft.version, because raising it from 0
    turns a static controller quorum into a dynamic one (what `upgrade --release-version` would do).

kafka_reassignment(describe, topics, brokers)
    The `kafka-reassign-partitions --reassignment-json-file` document that gives every partition of the
    named topics the replication factor wanted for it: `describe` is `kafka-topics --describe`, `topics` a
    mapping of topic name to wanted replication factor, `brokers` the broker ids. A partition keeps its
    replicas in their order (its leader stays first) and gets the brokers that hold the fewest replicas so
    far; partitions that already have enough replicas are left out, so an empty list means nothing to do.

kafka_replication_wanted(topics, default, internal, describe)
    The replication factor wanted per topic: each of `topics` (the role's kafka_topics: name, optional
    replication_factor) and each of the `internal` topic names that `describe` lists, at `default`.

kafka_initial_controllers(nodes, cluster_id)
    The `kafka-storage format --initial-controllers` list of a new dynamic quorum, id@address:port:directory
    for each node ({id, address, controller_port}). A node's metadata directory id is derived from the
    cluster id and its node id: 21 hex digits of their SHA-256 and an 'A' are 22 base64url characters
    that decode to 16 bytes with the unused bits zero (a canonical Kafka Uuid), so every node formatting
    the cluster computes the same list on its own.

kafka_quorum_roles(describe_replication)
    `kafka-metadata-quorum describe --replication`: {node id: Leader, Follower or Observer}.

kafka_topic_configs(describe)
    Each topic's non-default configs as `kafka-topics --describe` lists them ({topic: {key: value}}).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

_TOPIC_LINE = re.compile(
    r"^Topic:\s*(\S+)\s+TopicId:\s*\S+\s+PartitionCount:\s*(\d+)\s+ReplicationFactor:\s*(\d+)(.*)$"
)
_PARTITION_LINE = re.compile(r"^\s*Topic:\s*(\S+)\s+Partition:\s*(\d+)\s+Leader:\s*(-?\d+|none)\s+Replicas:\s*([\d,]*)")
_FEATURE_LINE = re.compile(r"^Feature:\s*(\S+)\s.*FinalizedVersionLevel:\s*(\S+)")
_MAPPING_LINE = re.compile(r"^([a-z][a-z0-9._]*)=(\d+)")


class KafkaOpsError(ValueError):
    """The tool output is not what the filter expects."""


def kafka_feature_levels(mapping: str) -> dict[str, int]:
    """`version-mapping` output: {feature: level}, e.g. {'metadata.version': 27, 'kraft.version': 1}."""
    levels = {m.group(1): int(m.group(2)) for line in mapping.splitlines() if (m := _MAPPING_LINE.match(line.strip()))}
    if "metadata.version" not in levels:
        raise KafkaOpsError(f"no metadata.version in the version mapping: {mapping!r}")
    return levels


def kafka_finalized_features(describe: str) -> dict[str, str]:
    """`kafka-features describe` output: {feature: finalized level as printed} (4.0-IV3 for metadata.version)."""
    found = {m.group(1): m.group(2) for line in describe.splitlines() if (m := _FEATURE_LINE.match(line.strip()))}
    if "metadata.version" not in found:
        raise KafkaOpsError(f"no metadata.version in the feature description: {describe!r}")
    return found


def kafka_feature_upgrades(
    target_mapping: str, describe: str, current_mapping: str, keep: Iterable[str] = ("kraft.version",)
) -> list[str]:
    target = kafka_feature_levels(target_mapping)
    finalized = kafka_finalized_features(describe)
    current: dict[str, int] = {}
    for name, level in finalized.items():
        if name == "metadata.version":
            current[name] = kafka_feature_levels(current_mapping)["metadata.version"]
        elif level.isdigit():
            current[name] = int(level)
        else:
            raise KafkaOpsError(f"feature {name} has a level that is not a number: {level!r}")
    kept = set(keep)
    return [
        f"{name}={level}" for name, level in sorted(target.items()) if name not in kept and level > current.get(name, 0)
    ]


def kafka_partitions(describe: str) -> dict[str, dict[int, list[int]]]:
    """`kafka-topics --describe` output: {topic: {partition: [replica ids in order]}}."""
    topics: dict[str, dict[int, list[int]]] = {}
    for line in describe.splitlines():
        if match := _PARTITION_LINE.match(line):
            replicas = [int(r) for r in match.group(4).split(",") if r]
            topics.setdefault(match.group(1), {})[int(match.group(2))] = replicas
    return topics


def kafka_topic_configs(describe: str) -> dict[str, dict[str, str]]:
    configs: dict[str, dict[str, str]] = {}
    for line in describe.splitlines():
        if match := _TOPIC_LINE.match(line):
            rest = match.group(4)
            listed = re.search(r"Configs:\s*(\S*)", rest)
            pairs = listed.group(1).split(",") if listed and listed.group(1) else []
            configs[match.group(1)] = dict(pair.split("=", 1) for pair in pairs if "=" in pair)
    return configs


def kafka_replication_wanted(
    topics: Iterable[Mapping[str, Any]], default: Any, internal: Iterable[str], describe: str
) -> dict[str, int]:
    existing = kafka_partitions(describe)
    wanted = {name: int(default) for name in internal if name in existing}
    for topic in topics:
        wanted[str(topic["name"])] = int(topic.get("replication_factor", default))
    return wanted


def kafka_reassignment(describe: str, topics: Mapping[str, Any], brokers: Iterable[Any]) -> dict[str, Any]:
    broker_ids = sorted({int(b) for b in brokers})
    current = kafka_partitions(describe)
    load = dict.fromkeys(broker_ids, 0)
    for partitions in current.values():
        for replicas in partitions.values():
            for replica in replicas:
                if replica in load:
                    load[replica] += 1
    moves: list[dict[str, Any]] = []
    for topic in sorted(topics):
        wanted = int(topics[topic])
        if wanted > len(broker_ids):
            raise KafkaOpsError(f"{topic}: replication factor {wanted} needs {wanted} brokers, there are {broker_ids}")
        for partition, replicas in sorted(current.get(topic, {}).items()):
            if len(replicas) >= wanted:
                continue
            new = list(replicas)
            while len(new) < wanted:
                # the least loaded broker not yet a replica; ties by id, rotated by partition for spread
                candidates = [b for b in broker_ids if b not in new]
                rotation = {b: (i - partition) % len(broker_ids) for i, b in enumerate(broker_ids)}
                chosen = min(candidates, key=lambda b: (load[b], rotation[b]))
                new.append(chosen)
                load[chosen] += 1
            moves.append({"topic": topic, "partition": partition, "replicas": new})
    return {"version": 1, "partitions": moves}


def kafka_directory_id(cluster_id: str, node_id: Any) -> str:
    return hashlib.sha256(f"{cluster_id}/{int(node_id)}".encode()).hexdigest()[:21] + "A"


def kafka_initial_controllers(nodes: Iterable[Mapping[str, Any]], cluster_id: str) -> str:
    entries = sorted((int(n["id"]), str(n["address"]), int(n["controller_port"])) for n in nodes)
    if not entries or len({node_id for node_id, _, _ in entries}) != len(entries):
        raise KafkaOpsError(f"the initial controllers need distinct node ids, got {entries}")
    return ",".join(
        f"{node_id}@{address}:{port}:{kafka_directory_id(cluster_id, node_id)}" for node_id, address, port in entries
    )


def kafka_quorum_roles(describe_replication: str) -> dict[int, str]:
    roles: dict[int, str] = {}
    columns: list[str] = []
    for line in describe_replication.splitlines():
        fields = line.split()
        if fields[:1] == ["NodeId"]:
            columns = fields
        elif columns and len(fields) == len(columns) and fields[0].isdigit():
            roles[int(fields[0])] = fields[columns.index("Status")]
    return roles


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {
            "kafka_feature_upgrades": kafka_feature_upgrades,
            "kafka_initial_controllers": kafka_initial_controllers,
            "kafka_quorum_roles": kafka_quorum_roles,
            "kafka_reassignment": kafka_reassignment,
            "kafka_replication_wanted": kafka_replication_wanted,
            "kafka_topic_configs": kafka_topic_configs,
        }
