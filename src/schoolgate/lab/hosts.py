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
NS_LABEL = "org.schoolgate.lab.ns"
STATE_DIR = podman.PROJECT_DIR / "lab" / "state"
TOPOLOGY_FILE = STATE_DIR / "topology.json"


def topology_file(ns: str = "") -> Path:
    return STATE_DIR / f"topology-{ns}.json" if ns else TOPOLOGY_FILE


# Generous: on a loaded 2-core machine systemd in a fresh container can take minutes to finish booting.
SYSTEMD_TIMEOUT_S = 300


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
    name = host.container
    state = podman.container_state(name)
    if state == "running" and _container_image_id(name) == podman.image_id(image) and _alive(name):
        wait_systemd(name)
        return "reused"
    if state is not None:
        podman.remove_container(name)
    args = [
        "run",
        "-d",
        "--name",
        name,
        "--hostname",
        host.name,
        "--network",
        podman.network_name(host.ns),
        # In a namespace the container name differs from the host name; the aliases keep `provider`,
        # `school-001` and their FQDNs resolvable inside the lab exactly as in the default lab.
        *(["--network-alias", host.name] if name != host.name else []),
        "--network-alias",
        host.fqdn,
        "--label",
        f"{LAB_LABEL}={label}",
        "--label",
        f"{NS_LABEL}={host.ns}",
        "--systemd",
        "always",
        image,
        "/sbin/init",
    ]
    try:
        podman.run(args, subject=name, action="start container", timeout=120)
    except podman.PodmanError as exc:
        podman.remove_container(name)
        raise HostStartError(name, exc.message) from exc
    wait_systemd(name)
    return "started"


def _alive(name: str) -> bool:
    """podman may still record a container as running after its processes died with the machine (a
    rebooted developer box, a CI runner reusing the storage); only a successful exec proves it is alive."""
    proc = podman.run(["exec", name, "true"], subject=name, action="probe container", check=False, timeout=60)
    return proc.returncode == 0


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


def lab_containers(ns: str = "") -> list[str]:
    """Host containers of one lab namespace (containers from before namespaces existed count as default)."""
    proc = podman.run(
        [
            "ps",
            "-a",
            "--filter",
            f"label={LAB_LABEL}=host",
            "--format",
            f'{{{{.Names}}}} ns={{{{index .Labels "{NS_LABEL}"}}}}',
        ],
        subject="lab",
        action="list containers",
    )
    names = []
    for line in proc.stdout.splitlines():
        name, _, label = line.strip().partition(" ns=")
        if name and (label if label != "<no value>" else "") == ns:
            names.append(name)
    return sorted(names)


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


def save_topology(hosts: list[LabHost], inventory: Path, ns: str = "") -> None:
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    data = {"namespace": ns, "inventory": str(inventory), "hosts": [asdict(h) for h in hosts]}
    topology_file(ns).write_text(json.dumps(data, indent=2) + "\n")


# systemd in every container takes inotify instances from the host user's budget; Debian's default (128) runs
# out with a few labs and Molecule scenarios at once and containers then hang in "initializing".
INOTIFY_MINIMUM = {"max_user_instances": 4096, "max_user_watches": 1048576}


def ensure_inotify(log: Callable[[str], None] = print) -> None:
    for key, minimum in INOTIFY_MINIMUM.items():
        path = Path("/proc/sys/fs/inotify") / key
        try:
            current = int(path.read_text())
            if current < minimum:
                path.write_text(str(minimum))
                log(f"host: fs.inotify.{key} {current} -> {minimum} (for systemd containers)")
        except (OSError, ValueError) as exc:
            log(f"WARNING: fs.inotify.{key} could not be raised to {minimum}: {exc}")


def up(hosts: list[LabHost], log: Callable[[str], None] = print) -> dict[str, str]:
    ensure_inotify(log)
    results: dict[str, str] = {}
    for host in hosts:
        results[host.name] = start_host(host)
        log(f"{host.container}: {results[host.name]} ({systemd_state(host.container)})")
    return results


def down(log: Callable[[str], None] = print, ns: str = "") -> list[str]:
    removed = []
    for name in lab_containers(ns):
        if podman.remove_container(name):
            removed.append(name)
            log(f"{name}: removed")
    return removed
