"""The "sumflow overview" dashboard: one screen answering "is it working, how fast, where is it stuck"."""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard
from grafana_foundation_sdk.models.dashboard import DashboardCursorSync, DashboardLinkType

from dashgen.panels import Query, logs_panel, row, stat_panel, timeseries_panel, traces_panel, up_panel
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
)

UID = "sumflow-overview"
TITLE = "sumflow overview"

E2E_BUCKETS = "sumflow_accumulator_end_to_end_latency_seconds_bucket"
PRODUCE_BUCKETS = "sumflow_kafka_produce_duration_seconds_bucket"
KAFKA_MESSAGES_IN = "kafka_server_brokertopicmetrics_messagesinpersec_total"
# Filesystems that can hold the state or Kafka's data (same filter as the SumflowDiskNearlyFull alert).
REAL_FS = '{fstype!~"tmpfs|ramfs|squashfs|overlay|nsfs"}'


def _status_row(board: dashboard.Dashboard) -> None:
    board.with_row(row("Status"))
    board.with_panel(
        stat_panel(
            "Calls / s", "gRPC AddNumbers calls per second, all codes.", Query(rate_sum(GRPC_REQUESTS)), unit="reqps"
        )
    )
    board.with_panel(
        stat_panel(
            "Server error ratio",
            f"Share of calls answered with a server-side code ({SERVER_ERROR_CODES}). Alert: > 5% for 5m.",
            Query(SERVER_ERROR_RATIO),
            unit="percentunit",
        )
    )
    board.with_panel(
        stat_panel("Total", "The accumulator's running total.", Query("max(sumflow_accumulator_total)"), unit="none")
    )
    board.with_panel(
        stat_panel(
            "Consumer lag",
            "Records on the topic not yet applied, all partitions.",
            Query("sum(sumflow_accumulator_consumer_lag)"),
            unit="short",
        )
    )
    board.with_panel(
        up_panel(
            "Accumulator ready",
            "1 when the state is loaded, partitions are assigned and the last commit succeeded.",
            Query("min by (instance) (sumflow_accumulator_ready)", legend="{{instance}}"),
            width=4,
        )
    )
    board.with_panel(
        up_panel(
            "Kafka broker up",
            "Prometheus can scrape the broker's JMX exporter (job kafka).",
            Query('up{job="kafka"}', legend="{{instance}}"),
            width=4,
        )
    )


def _adder_row(board: dashboard.Dashboard) -> None:
    board.with_row(row("Adder (gRPC)"))
    board.with_panel(
        timeseries_panel(
            "Request rate by code",
            "gRPC calls per second by status code.",
            [Query(rate_sum(GRPC_REQUESTS, by="code"), legend="{{code}}")],
            unit="reqps",
            stacked=True,
        )
    )
    board.with_panel(
        timeseries_panel(
            "Error rate by code",
            "Calls per second answered with anything but OK, by code (client and server errors).",
            [Query(rate_sum(GRPC_REQUESTS, by="code", selector='{code!="OK"}'), legend="{{code}}")],
            unit="reqps",
            stacked=True,
        )
    )
    board.with_panel(
        timeseries_panel(
            "Call latency p50 / p95 / p99",
            "Time to answer AddNumbers. Exemplars (dots) link to the trace of a slow call in Tempo.",
            [
                Query(quantile(0.5, GRPC_DURATION), legend="p50", exemplar=True),
                Query(quantile(0.95, GRPC_DURATION), legend="p95"),
                Query(quantile(0.99, GRPC_DURATION), legend="p99"),
            ],
            unit="s",
        )
    )
    board.with_panel(
        timeseries_panel(
            "Dedupe hit ratio",
            "Share of de-duplication lookups that found a stored answer (client retries of one request id).",
            [Query(DEDUPE_HIT_RATIO, legend="duplicate")],
            unit="percentunit",
        )
    )
    board.with_panel(
        timeseries_panel(
            "Dedupe outcomes",
            "De-duplication outcomes per second: new, duplicate, conflict (same id, other numbers), takeover.",
            [Query(rate_sum("sumflow_adder_dedupe_lookups_total", by="outcome"), legend="{{outcome}}")],
            unit="ops",
        )
    )
    board.with_panel(
        timeseries_panel(
            "Kafka produce latency",
            "Send to acknowledgement (acks=all) of one event.",
            [
                Query(quantile(0.5, PRODUCE_BUCKETS), legend="p50", exemplar=True),
                Query(quantile(0.99, PRODUCE_BUCKETS), legend="p99"),
            ],
            unit="s",
        )
    )


def _accumulator_row(board: dashboard.Dashboard) -> None:
    board.with_row(row("Accumulator (Kafka consumer)"))
    board.with_panel(
        timeseries_panel(
            "Events applied / s",
            "Events added to the total, and events dropped as duplicates or skipped as redeliveries.",
            [
                Query(rate_sum("sumflow_accumulator_events_applied_total"), legend="applied"),
                Query(rate_sum("sumflow_accumulator_duplicates_dropped_total"), legend="duplicates dropped"),
                Query(rate_sum("sumflow_accumulator_redeliveries_total"), legend="redeliveries skipped"),
            ],
            unit="ops",
        )
    )
    board.with_panel(
        timeseries_panel(
            "Consumer lag per partition",
            "Records on the topic not yet applied. Alert: above 1000 and growing for 10m.",
            [Query("max by (partition) (sumflow_accumulator_consumer_lag)", legend="partition {{partition}}")],
            unit="short",
        )
    )
    board.with_panel(
        timeseries_panel(
            "End-to-end latency p50 / p95 / p99",
            "From the adder's produce timestamp to the event committed to the state.",
            [
                Query(quantile(0.5, E2E_BUCKETS), legend="p50", exemplar=True),
                Query(quantile(0.95, E2E_BUCKETS), legend="p95"),
                Query(quantile(0.99, E2E_BUCKETS), legend="p99"),
            ],
            unit="s",
        )
    )
    board.with_panel(
        timeseries_panel(
            "DLQ rate",
            "Invalid events sent to the dead-letter topic per second, by reason. Alert: any.",
            [Query(rate_sum("sumflow_accumulator_dlq_events_total", by="reason"), legend="{{reason}}")],
            unit="ops",
        )
    )
    board.with_panel(
        timeseries_panel(
            "Total over time",
            "The running total as committed to the state.",
            [Query("max(sumflow_accumulator_total)", legend="total")],
            unit="none",
            minimum=None,
        )
    )
    board.with_panel(
        timeseries_panel(
            "State commits",
            "Batch commit latency (p99) and failed commits per second (disk full, I/O error).",
            [
                Query(quantile(0.99, "sumflow_accumulator_batch_commit_duration_seconds_bucket"), legend="commit p99"),
                Query(rate_sum("sumflow_accumulator_state_errors_total"), legend="commit errors / s"),
            ],
            unit="s",
        )
    )


def _resources_row(board: dashboard.Dashboard) -> None:
    board.with_row(row("Resources"))
    board.with_panel(
        timeseries_panel(
            "CPU per service",
            "CPU cores used by each sumflow process.",
            [
                Query(
                    per_service(f"sum by (job, instance) (rate(process_cpu_seconds_total[{RATE}]))"),
                    legend="{{service}} {{instance}}",
                )
            ],
            unit="short",
            width=12,
        )
    )
    board.with_panel(
        timeseries_panel(
            "Memory per service",
            "Resident memory of each sumflow process.",
            [
                Query(
                    per_service("sum by (job, instance) (process_resident_memory_bytes)"),
                    legend="{{service}} {{instance}}",
                )
            ],
            unit="bytes",
            width=12,
        )
    )
    board.with_panel(
        timeseries_panel(
            "CPU per host",
            "Share of CPU time not idle, per host (node_exporter).",
            [
                Query(
                    f'1 - avg by (instance) (rate(node_cpu_seconds_total{{mode="idle"}}[{RATE}]))',
                    legend="{{instance}}",
                )
            ],
            unit="percentunit",
            width=8,
        )
    )
    board.with_panel(
        timeseries_panel(
            "Memory per host",
            "Memory in use (total - available), per host.",
            [
                Query(
                    "node_memory_MemTotal_bytes - node_memory_MemAvailable_bytes",
                    legend="{{instance}}",
                )
            ],
            unit="bytes",
            width=8,
        )
    )
    board.with_panel(
        timeseries_panel(
            "Disk space left",
            "Free share of each real filesystem (state and Kafka data live here). Alert: < 10%.",
            [
                Query(
                    f"min by (instance, mountpoint) (node_filesystem_avail_bytes{REAL_FS}"
                    f" / node_filesystem_size_bytes{REAL_FS})",
                    legend="{{instance}} {{mountpoint}}",
                )
            ],
            unit="percentunit",
            width=8,
        )
    )
    board.with_panel(
        timeseries_panel(
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
            unit="short",
            width=24,
        )
    )


def _logs_and_traces_row(board: dashboard.Dashboard) -> None:
    board.with_row(row("Logs and traces"))
    board.with_panel(
        logs_panel(
            "Error logs",
            "Warning and error lines of both services (Loki). Expand a line: its trace_id links to Tempo.",
            '{service=~"adder|accumulator", level=~"warning|error|critical"}',
        )
    )
    board.with_panel(
        traces_panel(
            "Slowest recent calls",
            "Traces of AddNumbers calls slower than 50 ms; click a trace id to open it in Tempo.",
            '{resource.service.name="sumflow-adder" && kind=server && duration > 50ms}',
        )
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
    _status_row(board)
    _adder_row(board)
    _accumulator_row(board)
    _resources_row(board)
    _logs_and_traces_row(board)
    return board
