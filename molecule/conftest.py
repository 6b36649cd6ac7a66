"""Shared by every scenario's testinfra tests (pytest loads conftest.py from parent directories).

Molecule hands testinfra the scenario inventory, whose hosts use the project's podman_nsenter connection
(connection_plugins/). testinfra does not know that connection and falls back to one `ansible` run per
command (seconds each); talk to the same containers with testinfra's native podman backend instead
(`podman exec`), which is the same host, just ~20x faster. `host.backend.get_hostname()` still returns the
inventory/container name. As root (the lab), `podman://` hosts are entered with nsenter like the Ansible
connection does (schoolgate.lab.testinfra_backend), not with a `podman exec` per command.
"""

import os
from pathlib import Path

import pytest
import testinfra

from schoolgate.lab import testinfra_backend

os.environ.setdefault("CONTAINERS_CONF", str(Path(__file__).resolve().parents[1] / "lab" / "containers.conf"))
testinfra_backend.install()


@pytest.fixture(scope="module")
def host(_testinfra_host):
    backend = _testinfra_host.backend
    if getattr(backend, "NAME", "") != "ansible":
        return _testinfra_host
    hostvars = backend.ansible_runner.get_variables(backend.host)
    if hostvars.get("ansible_connection") not in ("podman_nsenter", "containers.podman.podman"):
        return _testinfra_host
    name = hostvars.get("ansible_host", backend.host)  # container name (molecule/_shared/create.yml)
    return testinfra.get_host(f"podman://{name}")
