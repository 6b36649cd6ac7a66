"""Fixtures for the monitoring role's unit tests: render the role's real templates with Ansible."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
RENDER_PLAYBOOK = Path(__file__).with_name("render.yml")


def need_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} not found: install the Debian packages prometheus and prometheus-alertmanager "
            "(apt-get install -y --no-install-recommends prometheus prometheus-alertmanager "
            "prometheus-blackbox-exporter); they are in the Makefile's package list"
        )
    return path


def render(dest: Path, overrides: dict | None = None) -> Path:
    """Render the monitoring templates into dest with the role defaults plus overrides."""
    dest.mkdir(parents=True, exist_ok=True)
    extra = dest / "overrides.json"
    extra.write_text(json.dumps(overrides or {}))
    ansible = shutil.which("ansible-playbook", path=str(ROOT / ".venv" / "bin")) or "ansible-playbook"
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_LOCALHOST_WARNING="False")
    proc = subprocess.run(
        [
            ansible,
            "-i",
            str(RENDER_PLAYBOOK.with_name("inventory.ini")),
            str(RENDER_PLAYBOOK),
            "-e",
            f"render_dir={dest}",
            "-e",
            f"@{extra}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, f"rendering failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}"
    return dest


@pytest.fixture(scope="session")
def rendered_default(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(tmp_path_factory.mktemp("monitoring-default"))
