"""docs/configuration.md is generated from config.py and committed: it must match, and be complete."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sumflow import config
from sumflow.config import ConfigError, describe_settings, load_accumulator_config, load_adder_config

ROOT = Path(__file__).resolve().parents[2]


def test_committed_reference_is_what_config_py_generates() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "config_docs.py"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


def test_reference_names_every_variable_config_py_mentions() -> None:
    source = Path(config.__file__).read_text()
    mentioned = set(re.findall(r'"(SUMFLOW_[A-Z_]+)"', source))
    described = {s.name for settings in describe_settings().values() for s in settings}
    assert mentioned == described
    reference = (ROOT / "docs" / "configuration.md").read_text()
    assert all(f"`{name}`" in reference for name in described)


@pytest.mark.parametrize("service", ["adder", "accumulator"])
def test_every_described_setting_is_really_read(service: str) -> None:
    """A malformed value of each described variable is refused by that service's loader."""
    load = load_adder_config if service == "adder" else load_accumulator_config
    for setting in describe_settings()["both"] + describe_settings()[service]:
        if setting.accepts in ("text", "directory path"):
            continue  # free-form: nothing is malformed
        with pytest.raises(ConfigError, match=setting.name):
            load({setting.name: "not valid: \x01"})
