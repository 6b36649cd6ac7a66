"""Thin wrapper around the podman CLI that always uses the project's containers.conf."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PROJECT_DIR = Path(__file__).resolve().parents[3]
CONTAINERS_CONF = PROJECT_DIR / "lab" / "containers.conf"
NETWORK = "schoolgate"
# A lab namespace lets several complete labs (the developer's `make lab`, the test suite's, one per engineer)
# run side by side: containers `<ns>-<host>` on network `schoolgate-<ns>`, host names inside unchanged.
NAMESPACE_ENV = "SCHOOLGATE_LAB"
_NS_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")


def lab_namespace() -> str:
    """The current lab namespace from $SCHOOLGATE_LAB ('' = the default lab of `make lab`)."""
    ns = os.environ.get(NAMESPACE_ENV, "").strip()
    if ns and not _NS_RE.match(ns):
        raise ValueError(
            f"{NAMESPACE_ENV}={ns!r} is not a valid lab namespace: use 1-8 lowercase letters/digits, "
            "starting with a letter (e.g. SCHOOLGATE_LAB=t)"
        )
    return ns


def network_name(ns: str | None = None) -> str:
    ns = lab_namespace() if ns is None else ns
    return f"{NETWORK}-{ns}" if ns else NETWORK


class PodmanError(RuntimeError):
    """A podman call failed; `subject` names the host/image/network it was about."""

    def __init__(self, subject: str, action: str, message: str) -> None:
        self.subject = subject
        self.action = action
        self.message = message.strip()
        super().__init__(f"{subject}: {action} failed: {self.message}")


def podman_env() -> dict[str, str]:
    env = dict(os.environ)
    # crun and podman's default ulimits do not work on our machines (see lab/containers.conf).
    env.setdefault("CONTAINERS_CONF", str(CONTAINERS_CONF))
    return env


def run(
    args: Sequence[str],
    *,
    subject: str,
    action: str,
    check: bool = True,
    input_bytes: bytes | None = None,
    timeout: float | None = 600,
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["podman", *args],
        env=podman_env(),
        input=input_bytes.decode() if input_bytes is not None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise PodmanError(subject, action, proc.stderr or proc.stdout or f"exit code {proc.returncode}")
    return proc


def image_labels(image: str) -> dict[str, str] | None:
    """Labels of a local image, or None when the image does not exist."""
    proc = run(["image", "inspect", image], subject=image, action="inspect image", check=False)
    if proc.returncode != 0:
        return None
    data: list[dict[str, Any]] = json.loads(proc.stdout or "[]")
    if not data:
        return None
    return dict(data[0].get("Labels") or data[0].get("Config", {}).get("Labels") or {})


def image_id(image: str) -> str | None:
    proc = run(
        ["image", "inspect", "--format", "{{.Id}}", image], subject=image, action="inspect", check=False
    )
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def container_state(name: str) -> str | None:
    """'running', 'exited', ... or None when no container has that name."""
    proc = run(
        ["container", "inspect", "--format", "{{.State.Status}}", name],
        subject=name,
        action="inspect container",
        check=False,
    )
    if proc.returncode != 0:
        return None
    return proc.stdout.strip() or None


def remove_container(name: str) -> bool:
    """Remove a container (any state). True if one existed."""
    if container_state(name) is None:
        return False
    run(["rm", "--force", "--time", "5", name], subject=name, action="remove stale container", check=False)
    return True


def ensure_network(name: str | None = None) -> bool:
    """Create the lab network (of the current namespace by default) if missing; tolerate another process
    creating it at the same time.

    Returns True when this call created it.
    """
    name = name or network_name()
    if run(["network", "exists", name], subject=name, action="check network", check=False).returncode == 0:
        return False
    proc = run(["network", "create", name], subject=name, action="create network", check=False)
    if proc.returncode == 0:
        return True
    # Lost a race with a concurrent scenario: fine as long as the network now exists.
    if run(["network", "exists", name], subject=name, action="check network", check=False).returncode == 0:
        return False
    raise PodmanError(name, "create network", proc.stderr)


def container_logs(name: str, lines: int = 20) -> str:
    proc = run(["logs", "--tail", str(lines), name], subject=name, action="logs", check=False)
    return (proc.stdout + proc.stderr).strip()
