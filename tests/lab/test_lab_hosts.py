"""The lab brings up real systemd containers and reports failures by host name."""

import os
import subprocess

import pytest

from schoolgate.lab import hosts, nsenter, podman
from schoolgate.lab.topology import LabHost

from .conftest import podman_exec


@pytest.mark.parametrize("suite", ["bookworm", "trixie"])
def test_host_boots_systemd(lab_host, suite):
    name = lab_host(f"e2e-lab-{suite}", suite)
    assert hosts.systemd_state(name) in ("running", "degraded")
    rc, out = podman_exec(name, "cat", "/etc/os-release")
    assert rc == 0 and f"VERSION_CODENAME={suite}" in out
    rc, out = podman_exec(name, "ps", "-p", "1", "-o", "comm=")
    assert out.strip() == "systemd"


def test_restart_reuses_running_host(lab_host):
    name = lab_host("e2e-lab-reuse")
    assert hosts.start_host(LabHost(name, "test", "bookworm"), label="test") == "reused"


def test_stale_container_is_replaced(lab_host):
    name = lab_host("e2e-lab-stale")
    podman.run(["stop", "--time", "1", name], subject=name, action="stop")
    assert podman.container_state(name) in ("exited", "stopped")
    assert hosts.start_host(LabHost(name, "test", "bookworm"), label="test") == "started"
    assert hosts.systemd_state(name) in ("running", "degraded")


def test_failing_host_names_host_and_podman_message(lab_ready):
    host = LabHost("e2e-lab-broken", "test", "bookworm")
    with pytest.raises(hosts.HostStartError) as err:
        hosts.start_host(host, image="localhost/schoolgate-base:no-such-tag", label="test")
    text = str(err.value)
    assert "e2e-lab-broken" in text
    assert "no-such-tag" in text  # podman's own message names the missing image
    assert podman.container_state("e2e-lab-broken") is None


def test_hosts_resolve_each_other_by_name(lab_host):
    a = lab_host("e2e-lab-dns-a")
    lab_host("e2e-lab-dns-b")
    rc, out = podman_exec(a, "getent", "hosts", "e2e-lab-dns-b")
    assert rc == 0 and "e2e-lab-dns-b" in out


def test_nsenter_is_the_same_container_as_podman_exec(lab_host):
    """Lab tests and testinfra verifiers enter containers with nsenter (schoolgate.lab.nsenter): same
    filesystem, hostname, network, PID namespace and cgroup as `podman exec`, and a re-created container
    (new init PID) is found again."""
    name = lab_host("e2e-lab-nsenter")
    probe = "hostname; id -u; readlink /proc/1/exe; cat /etc/machine-id; cut -f1-3 /proc/net/route"
    via_podman = podman.run(["exec", name, "sh", "-c", probe], subject=name, action="exec").stdout
    via_nsenter = nsenter.run(name, ["sh", "-c", probe], capture_output=True, text=True)
    assert via_nsenter.returncode == 0 and via_nsenter.stdout == via_podman
    cgroup = nsenter.run(name, ["cat", "/proc/self/cgroup"], capture_output=True, text=True).stdout
    cid = podman.run(["inspect", "--format", "{{.Id}}", name], subject=name, action="inspect").stdout.strip()
    assert cid in cgroup
    assert nsenter.run(name, ["sh", "-c", "exit 7"]).returncode == 7
    podman.run(["stop", "--time", "1", name], subject=name, action="stop")
    with pytest.raises(podman.PodmanError, match="not running"):
        nsenter.run(name, ["true"])
    hosts.start_host(LabHost(name, "test", "bookworm"), label="test")
    assert nsenter.run(name, ["sh", "-c", probe], capture_output=True, text=True).stdout.split()[0] == name


@pytest.mark.parametrize("suite", ["bookworm", "trixie"])
def test_ansible_payloads_compile_once_per_host(lab_host, tmp_path, suite):
    """The lab images' code cache (schoolgate.lab.zipcode) serves real Ansible modules on both releases:
    the first module run fills it, the next ones reuse it and still work."""
    name = lab_host(f"e2e-lab-zipcode-{suite}", suite)
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        f"{name} ansible_connection=podman_nsenter ansible_python_interpreter=/usr/bin/python3\n",
        encoding="utf-8",
    )

    def module(args: str) -> str:
        proc = subprocess.run(
            ["ansible", name, "-i", str(inventory), "-m", "ansible.builtin.file", "-a", args],
            cwd=podman.PROJECT_DIR,
            env={
                **os.environ,
                "ANSIBLE_CONFIG": str(podman.PROJECT_DIR / "ansible.cfg"),
                "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",  # ansible.cfg says yaml; the assertion reads JSON
            },
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    def entries() -> list[str]:
        rc, out = podman_exec(
            name, "sh", "-c", "ls /var/cache/schoolgate-zipcode; stat -c %a /var/cache/schoolgate-zipcode"
        )
        assert rc == 0, out
        return out.split()

    module("path=/tmp/zipcode-probe state=directory mode=0755")
    first = entries()
    assert first[-1] == "700" and len(first) > 20, first  # basic.py and its imports, root-only
    assert '"changed": false' in module("path=/tmp/zipcode-probe state=directory mode=0755")
    assert entries() == first  # nothing compiled again
