"""Start, stop and inspect the lab's host containers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from schoolgate.lab import images, podman
from schoolgate.lab.topology import LabHost

LAB_LABEL = "org.schoolgate.lab"
STATE_DIR = podman.PROJECT_DIR / "lab" / "state"
TOPOLOGY_FILE = STATE_DIR / "topology.json"
SYSTEMD_TIMEOUT_S = 90


class HostStartError(RuntimeError):
    def __init__(self, host: str, message: str) -> None:
        self.host = host
        super().__init__(f"lab host {host!r} failed to start: {message.strip()}")


@dataclass
class HostStatus:
    name: str
    state: str  # podman state or "absent"
    systemd: str  # is-system-running output or "-"
    image: str


def start_host(host: LabHost, *, image: str | None = None, label: str = "host") -> str:
    """Start (or keep) one systemd container. Returns 'reused' or 'started'.

    A running container built from the current image is kept so a second `make lab` converges
    to 0 changed; anything else with that name (exited, older image, unlabelled leftover) is removed.
    """
    image = image or images.image_name(host.suite)
    state = podman.container_state(host.name)
    if state == "running" and _container_image_id(host.name) == podman.image_id(image):
        wait_systemd(host.name)
        return "reused"
    if state is not None:
        podman.remove_container(host.name)
    args = [
        "run",
        "-d",
        "--name",
        host.name,
        "--hostname",
        host.name,
        "--network",
        podman.NETWORK,
        "--network-alias",
        host.fqdn,
        "--label",
        f"{LAB_LABEL}={label}",
        "--systemd",
        "always",
        image,
        "/sbin/init",
    ]
    try:
        podman.run(args, subject=host.name, action="start container", timeout=120)
    except podman.PodmanError as exc:
        podman.remove_container(host.name)
        raise HostStartError(host.name, exc.message) from exc
    wait_systemd(host.name)
    return "started"


def _container_image_id(name: str) -> str | None:
    """Id of the image the container was created from (a rebuilt image under the same tag differs)."""
    proc = podman.run(
        ["container", "inspect", "--format", "{{.Image}}", name], subject=name, action="inspect", check=False
    )
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def systemd_state(name: str) -> str:
    proc = podman.run(
        ["exec", name, "systemctl", "is-system-running"], subject=name, action="query systemd", check=False
    )
    return (proc.stdout.strip() or proc.stderr.strip() or "unknown").splitlines()[0]


def wait_systemd(name: str, timeout: float = SYSTEMD_TIMEOUT_S) -> str:
    """Wait until systemd finished booting ('running' or 'degraded')."""
    deadline = time.monotonic() + timeout
    last = "unknown"
    while time.monotonic() < deadline:
        state = podman.container_state(name)
        if state != "running":
            logs = podman.container_logs(name)
            raise HostStartError(name, f"container is {state or 'gone'} after start; podman logs:\n{logs}")
        last = systemd_state(name)
        if last in ("running", "degraded"):
            return last
        time.sleep(1)
    raise HostStartError(name, f"systemd did not finish booting within {timeout:.0f}s (state {last!r})")


def lab_containers() -> list[str]:
    proc = podman.run(
        ["ps", "-a", "--filter", f"label={LAB_LABEL}=host", "--format", "{{.Names}}"],
        subject="lab",
        action="list containers",
    )
    return sorted(n for n in proc.stdout.split() if n)


def status(names: list[str]) -> list[HostStatus]:
    out = []
    for name in names:
        state = podman.container_state(name) or "absent"
        sysd = systemd_state(name) if state == "running" else "-"
        proc = podman.run(
            ["container", "inspect", "--format", "{{.ImageName}}", name],
            subject=name,
            action="inspect",
            check=False,
        )
        out.append(HostStatus(name, state, sysd, proc.stdout.strip() if proc.returncode == 0 else "-"))
    return out


def save_topology(hosts: list[LabHost], inventory: Path) -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    data = {"inventory": str(inventory), "hosts": [asdict(h) for h in hosts]}
    TOPOLOGY_FILE.write_text(json.dumps(data, indent=2) + "\n")


def up(hosts: list[LabHost], log: Callable[[str], None] = print) -> dict[str, str]:
    results: dict[str, str] = {}
    for host in hosts:
        results[host.name] = start_host(host)
        log(f"{host.name}: {results[host.name]} ({systemd_state(host.name)})")
    return results


def down(log: Callable[[str], None] = print) -> list[str]:
    removed = []
    for name in lab_containers():
        if podman.remove_container(name):
            removed.append(name)
            log(f"{name}: removed")
    return removed
