"""Three-node KRaft cluster (RF=3, min.insync.replicas=2) with one broker SIGKILLed mid-stream: the
adder keeps serving within its retry budget (its producer retries while leadership moves) and no
acknowledged event is lost: exact total at the end."""

from __future__ import annotations

import random
import time
from pathlib import Path

from tests.support.broker import KafkaCluster
from tests.support.chaos import FaultStream, audit_counts, judge, plan_requests, report, run_with_faults

SIZES = {"short": (1_500, 1), "long": (20_000, 3)}  # requests, broker kills (each restarted but the last)
PUBLISH_BUDGET = 10.0  # the adder's SUMFLOW_PUBLISH_TIMEOUT_SECONDS (its default)


def test_one_broker_of_three_killed_loses_no_acknowledged_event(size, tmp_path: Path, deploy):
    count, kills = SIZES[size]
    rng = random.Random(f"cluster-{size}")
    cluster = KafkaCluster(tmp_path / "k3")
    try:
        cluster.start(timeout=240)

        def create(name: str, partitions: int) -> str:
            return cluster.create_topic(name, partitions=partitions, configs={"min.insync.replicas": "2"})

        d = deploy(cluster.bootstrap, create, adder_extra={"SUMFLOW_PUBLISH_TIMEOUT_SECONDS": str(PUBLISH_BUDGET)})
        d.adder.start()
        d.accumulator.start()
        d.accumulator.wait_ready()
        requests = plan_requests(count, seed=53)
        stream = FaultStream(d.adder.target, requests)
        killed: list[int] = []
        started = time.monotonic()

        def kill(i: int) -> None:
            if killed and i < kills:  # bring the previous victim back first: two of three must stay up
                cluster.nodes[killed[-1]].start()
                time.sleep(5)
            victim = rng.randrange(len(cluster.nodes))
            cluster.nodes[victim].kill()
            killed.append(victim)

        points = sorted(rng.sample(range(count // 5, count - count // 5), kills))
        outcome = run_with_faults(stream, points, kill, timeout=count / 10 + 300)
        assert not outcome.unexpected, outcome.unexpected[:10]
        assert len(outcome.acknowledged) == count
        final = d.accumulator.wait_applied(count)
        assert d.accumulator.terminate() == 0
        verdict = judge(requests, outcome, final, audit_counts(d.state_dir))
        report(
            f"3-node cluster, broker SIGKILL (retries {outcome.retries}, longest gap {outcome.longest_outage:.1f}s)",
            faults=len(killed),
            sent=outcome.sent,
            acknowledged=len(outcome.acknowledged),
            verdict=verdict,
            wall=time.monotonic() - started,
        )
        verdict.assert_exact()
        # served through the failover: no stretch without any answer longer than the retry budget
        assert outcome.longest_outage < PUBLISH_BUDGET + 5, outcome.longest_outage
    finally:
        cluster.kill()
