"""roles/exporter_web's bcrypt filter: the hash it writes into web.yml verifies the password and
nothing else, is the same for the same inputs (a second Ansible run changes nothing) and differs per
seed. (tests/deploy/test_monitoring_web_security.py checks that Go's bcrypt, in the real
node_exporter and Prometheus, accepts it.)"""

from __future__ import annotations

import re
from pathlib import Path
from types import ModuleType

import bcrypt
import pytest
from ansible.errors import AnsibleFilterError

from tests.fixtures.file_module import load_file_module

PLUGIN = Path(__file__).resolve().parents[2] / "roles/exporter_web/filter_plugins/exporter_web_bcrypt.py"
PASSWORD = "Zq3wY7mK2pV9sT4xN8bR1cF6hJ0dL5gA"


def _plugin() -> ModuleType:
    return load_file_module(PLUGIN)


def _verifies(password: str, hashed: str) -> bool:
    return bcrypt.checkpw(password.encode(), hashed.encode())


def test_the_hash_verifies_the_password_and_no_other() -> None:
    hashed = _plugin().exporter_web_bcrypt(PASSWORD, "mon-1/prometheus")
    assert re.fullmatch(r"\$2b\$10\$[./A-Za-z0-9]{53}", hashed), hashed
    assert _verifies(PASSWORD, hashed)
    assert not _verifies(PASSWORD[:-1], hashed)
    assert not _verifies(PASSWORD + "x", hashed)


def test_same_inputs_same_hash_and_each_seed_its_own_salt() -> None:
    hash_ = _plugin().exporter_web_bcrypt
    first = hash_(PASSWORD, "mon-1/prometheus")
    assert hash_(PASSWORD, "mon-1/prometheus") == first
    other_host = hash_(PASSWORD, "kafka-1/prometheus")
    assert other_host[:29] != first[:29]  # "$2b$10$" + the 22-character salt
    assert _verifies(PASSWORD, other_host)
    assert hash_(PASSWORD, "mon-1/prometheus", 12).startswith("$2b$12$")


@pytest.mark.parametrize(
    ("password", "cost", "message"),
    [("x" * 73, 10, "at most 72 bytes"), (PASSWORD, 3, "cost must be 4-31"), (PASSWORD, 32, "cost must be 4-31")],
)
def test_refuses_what_bcrypt_cannot_hash(password: str, cost: int, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        _plugin().exporter_web_bcrypt(password, "seed", cost)
