"""The "sumflow overview" dashboard: one screen answering "is it working, how fast, where is it stuck"."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models.dashboard import DashboardCursorSync, DashboardLinkType

from dashgen.panels import Kind, Panel, Query, Row, add_rows
from dashgen.queries import (
    DEDUPE_HIT_RATIO,
    GRPC_DURATION,
    GRPC_REQUESTS,
    RATE,
    SERVER_ERROR_CODES,
    SERVER_ERROR_RATIO,
    per_service,
    quantile,
    rate_sum,
    replicas_rate,
)

UID = "sumflow-overview"
TITLE = "sumflow overview"

E2E_BUCKETS = "sumflow_accumulator_end_to_end_latency_seconds_bucket"
PRODUCE_BUCKETS = "sumflow_kafka_produce_duration_seconds_bucket"
KAFKA_MESSAGES_IN = "kafka_server_brokertopicmetrics_messagesinpersec_total"
# Filesystems that can hold the state or Kafka's data (same filter as the SumflowDiskNearlyFull alert).
REAL_FS = '{fstype!~"tmpfs|ramfs|squashfs|overlay|nsfs"}'


def percentiles(bucket_metric: str, *quantiles: float) -> list[Query]:
    """p50 / p95 / ... of a histogram; the first one carries exemplars (dots linking to a trace)."""
    return [
        Query(quantile(q, bucket_metric), legend=f"p{round(q * 100)}", exemplar=i == 0) for i, q in enumerate(quantiles)
    ]


STAT, UP, SERIES, LOGS, TRACES = Kind.STAT, Kind.UP, Kind.TIMESERIES, Kind.LOGS, Kind.TRACES
ROWS = (
    Row(
        "Status",
        [
            Panel(
                STAT,
                "Calls / s",
                "gRPC AddNumbers calls per second, all codes.",
                [Query(rate_sum(GRPC_REQUESTS))],
                "reqps",
            ),
            Panel(
                STAT,
                "Server error ratio",
                f"Share of calls answered with a server-side code ({SERVER_ERROR_CODES}). Alert: > 5% for 5m.",
                [Query(SERVER_ERROR_RATIO)],
                "percentunit",
            ),
            Panel(STAT, "Total", "The accumulator's running total.", [Query("max(sumflow_accumulator_total)")]),
            Panel(
                STAT,
                "Consumer lag",
                "Records on the topic not yet applied, all partitions, by the accumulator replica furthest behind.",
                [Query("max(sum by (instance) (sumflow_accumulator_consumer_lag))")],
                "short",
            ),
            Panel(
                UP,
                "Accumulator ready",
                "1 when the state is loaded, partitions are assigned and the last commit succeeded.",
                [Query("min by (instance) (sumflow_accumulator_ready)", legend="{{instance}}")],
                width=4,
            ),
            Panel(
                UP,
                "Kafka broker up",
                "Prometheus can scrape the broker's JMX exporter (job kafka).",
                [Query('up{job="kafka"}', legend="{{instance}}")],
                width=4,
            ),
        ],
    ),
    Row(
        "Adder (gRPC)",
        [
            Panel(
                SERIES,
                "Request rate by code",
                "gRPC calls per second by status code.",
                [Query(rate_sum(GRPC_REQUESTS, by="code"), legend="{{code}}")],
                "reqps",
                stacked=True,
            ),
            Panel(
                SERIES,
                "Error rate by code",
                "Calls per second answered with anything but OK, by code (client and server errors).",
                [Query(rate_sum(GRPC_REQUESTS, by="code", selector='{code!="OK"}'), legend="{{code}}")],
                "reqps",
                stacked=True,
            ),
            Panel(
                SERIES,
                "Call latency p50 / p95 / p99",
                "Time to answer AddNumbers. Exemplars (dots) link to the trace of a slow call in Tempo.",
                percentiles(GRPC_DURATION, 0.5, 0.95, 0.99),
                "s",
            ),
            Panel(
                SERIES,
                "Dedupe hit ratio",
                "Share of de-duplication lookups that found a stored answer (client retries of one request id).",
                [Query(DEDUPE_HIT_RATIO, legend="duplicate")],
                "percentunit",
            ),
            Panel(
                SERIES,
                "Dedupe outcomes",
                "De-duplication outcomes per second: new, duplicate, conflict (same id, other numbers), takeover.",
                [Query(rate_sum("sumflow_adder_dedupe_lookups_total", by="outcome"), legend="{{outcome}}")],
                "ops",
            ),
            Panel(
                SERIES,
                "Kafka produce latency",
                "Send to acknowledgement (acks=all) of one event.",
                percentiles(PRODUCE_BUCKETS, 0.5, 0.99),
                "s",
            ),
        ],
    ),
    Row(
        "Accumulator (Kafka consumer)",
        [
            Panel(
                SERIES,
                "Events applied / s",
                "Events added to the total, and events dropped as duplicates or skipped as redeliveries "
                "(each accumulator replica applies every event: the fastest replica's rate).",
                [
                    Query(replicas_rate("sumflow_accumulator_events_applied_total"), legend="applied"),
                    Query(replicas_rate("sumflow_accumulator_duplicates_dropped_total"), legend="duplicates dropped"),
                    Query(replicas_rate("sumflow_accumulator_redeliveries_total"), legend="redeliveries skipped"),
                ],
                "ops",
            ),
            Panel(
                SERIES,
                "Consumer lag per partition",
                "Records on the topic not yet applied. Alert: above 1000 and growing for 10m.",
                [Query("max by (partition) (sumflow_accumulator_consumer_lag)", legend="partition {{partition}}")],
                "short",
            ),
            Panel(
                SERIES,
                "End-to-end latency p50 / p95 / p99",
                "From the adder's produce timestamp to the event committed to the state.",
                percentiles(E2E_BUCKETS, 0.5, 0.95, 0.99),
                "s",
            ),
            Panel(
                SERIES,
                "DLQ rate",
                "Invalid events per second, by reason (every replica skips each; the DLQ writer sends it to the "
                "dead-letter topic once). Alert: any.",
                [Query(replicas_rate("sumflow_accumulator_dlq_events_total", by="reason"), legend="{{reason}}")],
                "ops",
            ),
            Panel(
                SERIES,
                "Total over time",
                "The running total as committed to the state.",
                [Query("max(sumflow_accumulator_total)", legend="total")],
                minimum=None,
            ),
            Panel(
                SERIES,
                "State commits",
                "Batch commit latency (p99) and failed commits per second (disk full, I/O error).",
                [
                    Query(
                        quantile(0.99, "sumflow_accumulator_batch_commit_duration_seconds_bucket"), legend="commit p99"
                    ),
                    Query(rate_sum("sumflow_accumulator_state_errors_total"), legend="commit errors / s"),
                ],
                "s",
            ),
        ],
    ),
    Row(
        "Resources",
        [
            Panel(
                SERIES,
                "CPU per service",
                "CPU cores used by each sumflow process.",
                [
                    Query(
                        per_service(f"sum by (job, instance) (rate(process_cpu_seconds_total[{RATE}]))"),
                        legend="{{service}} {{instance}}",
                    )
                ],
                "short",
                width=12,
            ),
            Panel(
                SERIES,
                "Memory per service",
                "Resident memory of each sumflow process.",
                [
                    Query(
                        per_service("sum by (job, instance) (process_resident_memory_bytes)"),
                        legend="{{service}} {{instance}}",
                    )
                ],
                "bytes",
                width=12,
            ),
            Panel(
                SERIES,
                "CPU per host",
                "Share of CPU time not idle, per host (node_exporter).",
                [
                    Query(
                        f'1 - avg by (instance) (rate(node_cpu_seconds_total{{mode="idle"}}[{RATE}]))',
                        legend="{{instance}}",
                    )
                ],
                "percentunit",
            ),
            Panel(
                SERIES,
                "Memory per host",
                "Memory in use (total - available), per host.",
                [Query("node_memory_MemTotal_bytes - node_memory_MemAvailable_bytes", legend="{{instance}}")],
                "bytes",
            ),
            Panel(
                SERIES,
                "Disk space left",
                "Free share of each real filesystem (state and Kafka data live here). Alert: < 10%.",
                [
                    Query(
                        f"min by (instance, mountpoint) (node_filesystem_avail_bytes{REAL_FS}"
                        f" / node_filesystem_size_bytes{REAL_FS})",
                        legend="{{instance}} {{mountpoint}}",
                    )
                ],
                "percentunit",
            ),
            Panel(
                SERIES,
                "Kafka broker",
                "Messages in per second and under-replicated partitions (JMX exporter on the broker hosts).",
                [
                    Query(
                        # topic="" is the broker-wide series; per-topic series share the name.
                        f'sum by (instance) (rate({KAFKA_MESSAGES_IN}{{topic=""}}[{RATE}]))',
                        legend="messages in {{instance}}",
                    ),
                    Query(
                        "sum by (instance) (kafka_server_replicamanager_underreplicatedpartitions)",
                        legend="under-replicated {{instance}}",
                    ),
                ],
                "short",
                width=24,
            ),
        ],
    ),
    Row(
        "Logs and traces",
        [
            Panel(
                LOGS,
                "Error logs",
                "Warning and error lines of both services (Loki). Expand a line: its trace_id links to Tempo.",
                [Query('{service=~"adder|accumulator", level=~"warning|error|critical"}')],
            ),
            Panel(
                TRACES,
                "Slowest recent calls",
                "Traces of AddNumbers calls slower than 50 ms; click a trace id to open it in Tempo.",
                [Query('{resource.service.name="sumflow-adder" && kind=server && duration > 50ms}')],
            ),
        ],
    ),
)


def build() -> dashboard.Dashboard:
    board = (
        dashboard.Dashboard(TITLE)
        .uid(UID)
        .tags(["sumflow"])
        .description("Requests, errors, latency, Kafka pipeline, resources, logs and traces of sumflow.")
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .tooltip(DashboardCursorSync.CROSSHAIR)
        .editable()
        .link(
            dashboard.DashboardLink("Explore traces (Tempo)")
            .type(DashboardLinkType.LINK)
            .icon("external link")
            .url('/explore?left={"datasource":"tempo","queries":[{"refId":"A","queryType":"traceql"}]}')
            .keep_time(True)
            .target_blank(True)
        )
        .link(
            dashboard.DashboardLink("Explore logs (Loki)")
            .type(DashboardLinkType.LINK)
            .icon("external link")
            .url(
                '/explore?left={"datasource":"loki","queries":[{"refId":"A","expr":"{service=~\\"adder|accumulator\\"}"}]}'
            )
            .keep_time(True)
            .target_blank(True)
        )
    )
    add_rows(board, ROWS)
    return board
