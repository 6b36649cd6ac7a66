"""Shared fixtures for lab end-to-end tests (real podman containers on the `schoolgate` network).

`lab_host(name, suite="bookworm")` starts a systemd container from the lab image and removes it at the end
of the test session; use names unique to your area (e.g. "e2e-tls-school").
`converged_lab` is a whole lab (namespace `t`) with site.yml applied once per test run (`make test` runs the
lab groups as separate pytest processes; they share one converge); it is kept afterwards so the next run
reuses the containers and only re-converges (idempotent, fast).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from schoolgate.lab import cli as lab_cli
from schoolgate.lab import hosts, images, nsenter, podman, site, testrun, topology
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
    # The lab hosts are bookworm; other suites are ensured by the tests that start them (lab_host).
    images.ensure_image("bookworm", log=lambda _m: None)
    podman.ensure_network()


@pytest.fixture(scope="session")
def lab_host(lab_ready: None) -> Iterator[Callable[..., str]]:
    started: list[str] = []

    def start(name: str, suite: str = "bookworm") -> str:
        images.ensure_image(suite, log=lambda _m: None)
        hosts.start_host(LabHost(name, "test", suite), label="test")
        started.append(name)
        return name

    yield start
    for name in started:
        podman.remove_container(name)


def podman_exec(name: str, *cmd: str) -> tuple[int, str]:
    proc = nsenter.run_in(name, list(cmd), capture_output=True, text=True, errors="replace")
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


def _lab_containers(ns: str) -> list[str]:
    proc = podman.run(
        ["ps", "--format", "{{.Names}}", "--filter", f"name=^{ns}-"], subject=ns, action="list", check=False
    )
    return sorted(proc.stdout.split()) if proc.returncode == 0 else []


def _converged_record(ns: str) -> Path:
    return podman.PROJECT_DIR / "lab" / "state" / f"converged-{ns}.json"


def _converged_this_run(ns: str) -> Path | None:
    """`make test` runs the lab tests in groups (pytest processes); the first group that needs the converged
    lab converges it and records the run id, the others reuse it while all its containers still run."""
    run_id = os.environ.get(testrun.RUN_ID_ENV, "")
    record = _converged_record(ns)
    if not run_id or not record.exists():
        return None
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if data.get("run") != run_id or not data.get("containers"):
        return None
    if any(podman.container_state(name) != "running" for name in data["containers"]):
        return None
    return Path(data.get("site_log", ""))


@pytest.fixture(scope="session")
def converged_lab(lab_ready: None) -> ConvergedLab:
    """`schoolgate lab --lab t run` once per test run (a warm lab converges in a few minutes)."""
    inventory = lab_cli.inventory_path(TEST_LAB_NS)
    reused = _converged_this_run(TEST_LAB_NS)
    if reused is not None:
        return ConvergedLab(TEST_LAB_NS, inventory, reused)
    record = _converged_record(TEST_LAB_NS)
    record.unlink(missing_ok=True)
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
    site_log = logs[-1] if logs else Path()
    if os.environ.get(testrun.RUN_ID_ENV):
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(
            json.dumps(
                {
                    "run": os.environ[testrun.RUN_ID_ENV],
                    "containers": _lab_containers(TEST_LAB_NS),
                    "site_log": str(site_log),
                }
            ),
            encoding="utf-8",
        )
    return ConvergedLab(TEST_LAB_NS, inventory, site_log)
