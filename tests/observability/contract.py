"""Metric names the sumflow services export, derived from the contract in sumflow.observability.metrics,
and the reviewed allow-list of names that exist only on deployed hosts."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from sumflow.observability.metrics import AccumulatorMetrics, AdderMetrics, new_registry

_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("", "_count", "_sum"),
    "info": ("_info",),
    "gauge": ("",),
    "unknown": ("",),
}

# Labels the Alloy pipeline attaches to log streams in Loki (see docs/observability.md).
LOKI_LABELS = {"service", "level", "host", "unit"}

# REVIEWED ALLOW-LIST: series that only exist on deployed hosts, because they come from the Kafka
# broker's JMX exporter (java agent, port 9404, scrape job "kafka"). The test cannot scrape them, so
# they are checked by exact name against what roles/kafka/templates/jmx-exporter.yml.j2 produces
# (lowercaseOutputName: true; `kafka.(server|...)<type=(.+), name=(.+)><>Count` -> kafka_$1_$2_$3_total,
# `...><>Value` -> kafka_$1_$2_$3). Adding a name here needs the rule there that produces it.
DEPLOY_ONLY_METRICS = {
    # metric name: the MBean attribute it comes from, in the JMX exporter's pattern-matching format
    "kafka_server_brokertopicmetrics_messagesinpersec_total": (
        "kafka.server<type=BrokerTopicMetrics, name=MessagesInPerSec><>Count"
    ),
    "kafka_server_replicamanager_underreplicatedpartitions": (
        "kafka.server<type=ReplicaManager, name=UnderReplicatedPartitions><>Value"
    ),
}
# Selectors (exact text) that only match on deployed hosts: the broker's scrape job.
DEPLOY_ONLY_SELECTORS = {'up{job="kafka"}': "scrape job of the broker's JMX exporter"}


def _names(registry: CollectorRegistry) -> set[str]:
    names = set()
    for family in registry.collect():
        for suffix in _SUFFIXES[family.type]:
            names.add(family.name + suffix)
        names.update(sample.name for sample in family.samples)
    return names


def exported_metric_names() -> set[str]:
    """Every series name an adder or accumulator /metrics page can carry (incl. process_*)."""
    adder, accumulator = new_registry(), new_registry()
    AdderMetrics(adder)
    AccumulatorMetrics(accumulator)
    return _names(adder) | _names(accumulator)
