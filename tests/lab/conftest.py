"""Shared fixtures for lab end-to-end tests (real podman containers on the `schoolgate` network).

`lab_host(name, suite="bookworm")` starts a systemd container from the lab image and removes it at the end
of the test session; use names unique to your area (e.g. "e2e-tls-school").
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator

import pytest

from schoolgate.lab import hosts, images, podman
from schoolgate.lab.topology import LabHost


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/lab/" in str(item.fspath):
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session")
def lab_ready() -> None:
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed (run `make deps`)")
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
