"""`lab down` (and `lab up` with a new provider) forget the controller's record of the old provider."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from schoolgate.lab import cli, hosts, podman


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(podman, "PROJECT_DIR", tmp_path)
    wiring = tmp_path / "lab" / "state" / "wiring-t"
    (wiring / "host_vars" / "school-001").mkdir(parents=True)
    (wiring / "host_vars" / "school-001" / "registration_vault.yml").write_text("$ANSIBLE_VAULT;1.1;AES256\n")
    return tmp_path


def test_down_forgets_the_wiring_record(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHOOLGATE_LAB", "t")
    monkeypatch.setattr(hosts, "down", lambda log, ns: [])
    monkeypatch.setattr(hosts, "topology_file", lambda ns: project / "topology.json")
    assert cli.cmd_down(argparse.Namespace(all=False)) == 0
    assert not (project / "lab" / "state" / "wiring-t").exists()


def test_default_lab_record_is_wiring_default(project: Path) -> None:
    default = project / "lab" / "state" / "wiring-default"
    default.mkdir(parents=True)
    cli._forget_wiring("", "test")
    assert not default.exists() and (project / "lab" / "state" / "wiring-t").exists()
