"""Three-node KRaft cluster (RF=3, min.insync.replicas=2) with one broker SIGKILLed mid-stream: the
adder keeps serving within its retry budget (its producer retries while leadership moves) and no
acknowledged event is lost: exact total at the end."""

from __future__ import annotations

import random
import time

SIZES = {"short": (1_500, 1), "long": (20_000, 3)}  # requests, broker kills (each restarted but the last)
PUBLISH_BUDGET = 10.0  # the adder's SUMFLOW_PUBLISH_TIMEOUT_SECONDS (its default)


def test_one_broker_of_three_killed_loses_no_acknowledged_event(size, own_cluster, deploy):
    count, kills = SIZES[size]
    rng = random.Random(f"cluster-{size}")
    d = deploy(
        own_cluster,
        topic_configs={"min.insync.replicas": "2"},
        adder_extra={"SUMFLOW_PUBLISH_TIMEOUT_SECONDS": str(PUBLISH_BUDGET)},
    )
    run = d.start_run(count, seed=53)
    killed: list[int] = []

    def kill(i: int) -> None:
        if killed and i < kills:  # bring the previous victim back first: two of three must stay up
            own_cluster.nodes[killed[-1]].start()
            time.sleep(5)
        victim = rng.randrange(len(own_cluster.nodes))
        own_cluster.nodes[victim].kill()
        killed.append(victim)

    points = sorted(rng.sample(range(count // 5, count - count // 5), kills))
    outcome = run.with_faults(points, kill, timeout=count / 10 + 300)
    verdict = run.finish(
        f"3-node cluster, broker SIGKILL (retries {outcome.retries}, longest gap {outcome.longest_outage:.1f}s)",
        faults=len(killed),
    )
    verdict.assert_exact()
    # served through the failover: no stretch without any answer longer than the retry budget
    assert outcome.longest_outage < PUBLISH_BUDGET + 5, outcome.longest_outage
