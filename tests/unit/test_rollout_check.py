"""molecule/rolling's rollout check: what the app hosts report after a rollout is judged right.

The scenario runs it on the real hosts' `readlink` and `systemctl show` output; here the same text,
as systemctl prints it, with chosen timestamps: the rules (same release everywhere, every unit
restarted within the rollout, one host at a time) must pass a good rollout and fail each bad one.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tests.fixtures.file_module import load_file_module

SCRIPT = Path(__file__).resolve().parents[2] / "molecule/rolling/files/rollout_check.py"


rollout = load_file_module(SCRIPT)
NEW, OLD = "0.1.0.post1-abc123", "0.1.0-def456"


def host(stop_adder: int, start_adder: int, stop_acc: int, start_acc: int, current: str = NEW) -> str:
    return (
        f"/opt/sumflow/venvs/{current}\n/opt/sumflow/venvs/{OLD}\n"
        f"Id=sumflow-adder.service\nInactiveEnterTimestampMonotonic={stop_adder}\n"
        f"ActiveEnterTimestampMonotonic={start_adder}\n\n"
        f"Id=sumflow-accumulator.service\nInactiveEnterTimestampMonotonic={stop_acc}\n"
        f"ActiveEnterTimestampMonotonic={start_acc}\n"
    )


def test_one_host_at_a_time_within_the_rollout_passes() -> None:
    hosts = {
        "app1": host(10_000_000, 12_000_000, 10_500_000, 13_000_000),
        "app2": host(20_000_000, 22_000_000, 20_100_000, 23_500_000),
    }
    result = rollout.check(hosts, 1_000_000, 30_000_000, "0.1.0.post1-*", OLD)
    assert result["current"] == NEW and result["previous"] == OLD
    assert result["order"] == ["app1", "app2"]
    assert result["hosts"]["app1"]["sumflow-adder.service"] == {"stopped_s": 9.0, "started_s": 11.0, "down_s": 2.0}
    assert result["hosts"]["app2"]["sumflow-accumulator.service"]["down_s"] == 3.4


def test_the_hosts_are_taken_in_the_order_they_stopped() -> None:
    hosts = {"app2": host(20, 22, 20, 23), "app1": host(10, 12, 10, 13)}
    assert rollout.check(hosts, 1, 30, NEW, OLD)["order"] == ["app1", "app2"]


@pytest.mark.parametrize(
    ("hosts", "reason"),
    [
        # app2 stopped while app1's accumulator was still starting
        ({"app1": host(10, 12, 10, 15), "app2": host(14, 16, 14, 17)}, "before app1 was back"),
        # app1's adder was not restarted by this rollout
        ({"app1": host(0, 0, 10, 12), "app2": host(14, 16, 14, 17)}, "not both within the rollout"),
        # a unit still down when the rollout ended
        ({"app1": host(10, 12, 10, 12), "app2": host(14, 16, 14, 99)}, "not both within the rollout"),
        # app2 was left on another release
        ({"app1": host(10, 12, 10, 12), "app2": host(14, 16, 14, 17, current="0.1.0.post1-zzz")}, "different releases"),
        ({"app1": host(10, 12, 10, 12, current=OLD)}, "expected 0.1.0.post1-"),
    ],
)
def test_a_bad_rollout_fails_with_its_reason(hosts: dict[str, str], reason: str) -> None:
    with pytest.raises(rollout.RolloutError, match=reason):
        rollout.check(hosts, 1, 20, "0.1.0.post1-*", OLD)


def test_the_command_reads_the_hosts_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({"app1": host(10, 12, 10, 12)})))
    assert rollout.main(["--began=1", "--ended=20", f"--current={NEW}", f"--previous={OLD}"]) == 0
    assert json.loads(capsys.readouterr().out)["hosts"]["app1"]["sumflow-adder.service"]["down_s"] == 0.0
