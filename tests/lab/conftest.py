"""Shared fixtures for lab end-to-end tests (real podman containers on the `schoolgate` network).

`lab_host(name, suite="bookworm")` starts a systemd container from the lab image and removes it at the end
of the test session; use names unique to your area (e.g. "e2e-tls-school").
`converged_lab` is a whole lab (namespace `t`) with site.yml applied once per session; it is kept afterwards
so the next run reuses the containers and only re-converges (idempotent, fast).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from schoolgate.lab import cli as lab_cli
from schoolgate.lab import hosts, images, podman, site, topology
from schoolgate.lab.topology import LabHost


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/lab/" in str(item.fspath):
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session")
def lab_ready() -> None:
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed (run `make deps`)")
    hosts.ensure_inotify(lambda _m: None)
    for suite in images.SUITES:
        images.ensure_image(suite, log=lambda _m: None)
    podman.ensure_network()


@pytest.fixture(scope="session")
def lab_host(lab_ready: None) -> Iterator[Callable[..., str]]:
    started: list[str] = []

    def start(name: str, suite: str = "bookworm") -> str:
        hosts.start_host(LabHost(name, "test", suite), label="test")
        started.append(name)
        return name

    yield start
    for name in started:
        podman.remove_container(name)


def podman_exec(name: str, *cmd: str) -> tuple[int, str]:
    proc = podman.run(["exec", name, *cmd], subject=name, action="exec", check=False)
    return proc.returncode, proc.stdout + proc.stderr


TEST_LAB_NS = "t"


@dataclass
class ConvergedLab:
    """The test suite's own complete lab (namespace `t`): provider, monitor, backup, school-001 with site.yml
    applied. Tests that inject faults must undo them (try/finally) — the next test sees the same hosts."""

    ns: str
    inventory: Path
    site_log: Path

    def container(self, host: str) -> str:
        return topology.container_name(host, self.ns)

    def exec(self, host: str, *cmd: str) -> tuple[int, str]:
        return podman_exec(self.container(host), *cmd)

    def playbook(self, playbook: str, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
        """ansible-playbook against this lab (own fact cache); output captured for assertions."""
        return subprocess.run(
            ["ansible-playbook", "-i", str(self.inventory), playbook, *args],
            cwd=podman.PROJECT_DIR,
            env=site.ansible_env(self.ns),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture(scope="session")
def converged_lab(lab_ready: None) -> ConvergedLab:
    """`schoolgate lab --lab t run` once per test session (a warm lab converges in a few minutes)."""
    env = dict(site.ansible_env(TEST_LAB_NS))
    proc = subprocess.run(
        [sys.executable, "-m", "schoolgate", "lab", "--lab", TEST_LAB_NS, "run"],
        cwd=podman.PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    logs = sorted((podman.PROJECT_DIR / "reports").glob(f"lab-{TEST_LAB_NS}-site-*.log"))
    if proc.returncode != 0:
        pytest.fail(
            f"the test lab did not converge (exit {proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}"
        )
    return ConvergedLab(TEST_LAB_NS, lab_cli.inventory_path(TEST_LAB_NS), logs[-1] if logs else Path())
