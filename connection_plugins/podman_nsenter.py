# schoolgate lab connection: run tasks in a local podman container by entering its namespaces.
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: podman_nsenter
short_description: Run tasks in a local podman container by entering its namespaces (lab and Molecule)
description:
  - Talks to a running podman container on the controller itself, like C(containers.podman.podman), but runs
    each command with C(nsenter) in the container's mount, UTS, IPC, network and PID namespaces and moves the
    process into the container's cgroups, instead of a C(podman exec) per command.
  - A C(podman exec) costs a podman process start (hundreds of milliseconds, seconds on a loaded machine)
    and the podman connection needs several per task (it cannot pipeline). This plugin pipelines, so a task
    is one C(nsenter), a few milliseconds. The container's init PID is looked up once with C(podman inspect)
    and cached per container id; the cache is checked against the process's cgroup before every use.
  - Controller and container must be the same machine and the controller must run as root (rootful podman).
    Commands run as root in the container; use C(become) for other users.
  - For the schoolgate podman lab and Molecule scenarios only. Real school servers are reached over SSH.
author: schoolgate
version_added: "0.1.0"
extends_documentation_fragment:
  - connection_pipelining
options:
  remote_addr:
    description: Name or id of the container.
    default: inventory_hostname
    type: str
    vars:
      - name: inventory_hostname
      - name: ansible_host
      - name: ansible_podman_host
  podman_executable:
    description: The podman command (only used to find the container's init process).
    default: podman
    type: str
    vars:
      - name: ansible_podman_executable
    env:
      - name: ANSIBLE_PODMAN_EXECUTABLE
  container_path:
    description: PATH for commands in the container (podman exec uses the image's; Debian's default here).
    default: /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    type: str
    vars:
      - name: ansible_podman_nsenter_path
"""

import fcntl
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from typing import Any

from ansible.errors import AnsibleConnectionFailure, AnsibleError
from ansible.module_utils.common.text.converters import to_bytes, to_native
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display

display = Display()

NAMESPACES = ("--mount", "--uts", "--ipc", "--net", "--pid")
CACHE_DIR = os.path.join(tempfile.gettempdir(), "schoolgate-nsenter-%d" % os.getuid())
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# The functions below are plain Python (no Ansible objects) so the lab's testinfra backend
# and lab tests (schoolgate.lab.nsenter) enter containers the same way.


class NsenterError(Exception):
    """The container cannot be entered (not found, not running, podman missing, not root)."""


def _inspect(name: str, podman_executable: str) -> dict:
    podman = shutil.which(podman_executable)
    if not podman:
        raise NsenterError("podman_nsenter: %s not found in PATH" % podman_executable)
    proc = subprocess.run(
        [
            podman,
            "inspect",
            "--type",
            "container",
            "--format",
            "{{.State.Pid}} {{.Id}} {{.State.Status}}",
            name,
        ],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise NsenterError(
            "podman_nsenter: container %s not found: %s" % (name, to_native(proc.stderr).strip()[-500:])
        )
    pid, cid, status = to_native(proc.stdout).split()
    if status != "running" or int(pid) <= 0:
        raise NsenterError("podman_nsenter: container %s is %s, not running" % (name, status))
    return {"pid": int(pid), "id": cid}


def cgroup_procs(pid: int, cid: str) -> list[str] | None:
    """cgroup.procs files of the container (every hierarchy), or None if pid is not that container's."""
    try:
        with open("/proc/%d/cgroup" % pid, encoding="ascii") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    if not any(cid in line for line in lines):
        return None
    procs = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        path = re.sub(r"/init\.scope$", "", path)  # podman exec joins the container's cgroup, not init's
        if controllers == "":
            base = "/sys/fs/cgroup/unified" if os.path.isdir("/sys/fs/cgroup/unified") else "/sys/fs/cgroup"
        else:
            base = "/sys/fs/cgroup/" + controllers.replace("name=", "")
        candidate = base + path + "/cgroup.procs"
        if os.path.exists(candidate):
            procs.append(candidate)
    return procs


def find_target(name: str, podman_executable: str = "podman") -> tuple[int, list[str]]:
    """(init pid, cgroup.procs files) of a running container. Cached per name across processes; the cache is
    checked against the process's cgroup before every use, so a re-created container is looked up again."""
    if os.geteuid() != 0:
        raise NsenterError("podman_nsenter needs root on the controller (rootful podman lab)")
    os.makedirs(CACHE_DIR, mode=0o700, exist_ok=True)
    cache = os.path.join(CACHE_DIR, re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".json")
    with open(cache + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = None
        try:
            with open(cache, encoding="utf-8") as fh:
                found = json.load(fh)
        except (OSError, ValueError):
            pass
        procs = cgroup_procs(found["pid"], found["id"]) if found else None
        if procs is None:
            found = _inspect(name, podman_executable)
            procs = cgroup_procs(found["pid"], found["id"])
            if procs is None:
                raise NsenterError("podman_nsenter: process %d is not in container %s" % (found["pid"], name))
            tmp = cache + ".tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(found, fh)
            os.replace(tmp, cache)
    return found["pid"], procs


def nsenter_argv(
    target: tuple[int, list[str]], argv: list[str], container_path: str = CONTAINER_PATH
) -> list[str]:
    """Host-side shell joins the container's cgroups, then nsenter runs argv inside with a clean env."""
    pid, procs = target
    join = "".join("{ echo $$ > %s; } 2>/dev/null; " % shlex.quote(p) for p in procs)
    env = [
        "/usr/bin/env",
        "-i",
        "PATH=" + container_path,
        "HOME=/root",
        "USER=root",
        "LOGNAME=root",
        "container=podman",
    ]
    enter = ["nsenter", "--target", str(pid), *NAMESPACES, "--root", "--wd", "--"]
    return ["/bin/sh", "-c", join + "exec " + " ".join(shlex.quote(a) for a in enter + env + argv)]


class Connection(ConnectionBase):
    """Enter a local podman container's namespaces for every command (pipelining supported)."""

    transport = "podman_nsenter"
    has_pipelining = True
    default_user = "root"

    def __init__(self, play_context: Any, new_stdin: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(play_context, new_stdin, *args, **kwargs)
        self._target: tuple[int, list[str]] | None = None

    def _container(self) -> str:
        return to_native(self.get_option("remote_addr"))

    def _connect(self) -> Connection:
        if self._connected and self._target:
            return self
        name = self._container()
        try:
            self._target = find_target(name, self.get_option("podman_executable"))
        except NsenterError as exc:
            raise AnsibleConnectionFailure(str(exc)) from exc
        display.vvv("NSENTER container %s (init pid %d)" % (name, self._target[0]), host=name)
        self._connected = True
        return self

    def _argv(self, argv: list[str]) -> list[bytes]:
        script = nsenter_argv(self._target, argv, self.get_option("container_path"))
        return [to_bytes(a, errors="surrogate_or_strict") for a in script]

    # -- ConnectionBase -----------------------------------------------------------------------------------

    def exec_command(
        self, cmd: str, in_data: bytes | None = None, sudoable: bool = True
    ) -> tuple[int, bytes, bytes]:
        super().exec_command(cmd, in_data=in_data, sudoable=sudoable)
        self._connect()
        argv = self._argv(["/bin/sh", "-c", to_native(cmd, errors="surrogate_or_strict")])
        display.vvv("EXEC %s" % to_native(cmd), host=self._container())
        proc = subprocess.run(argv, input=in_data, capture_output=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr

    def put_file(self, in_path: str, out_path: str) -> None:
        super().put_file(in_path, out_path)
        self._connect()
        display.vvv("PUT %s TO %s" % (in_path, out_path), host=self._container())
        argv = self._argv(["/bin/sh", "-c", 'cat > "$1"', "put", to_native(out_path)])
        try:
            with open(to_bytes(in_path, errors="surrogate_or_strict"), "rb") as src:
                proc = subprocess.run(argv, stdin=src, capture_output=True, check=False)
        except OSError as exc:
            raise AnsibleError("podman_nsenter: cannot read %s: %s" % (in_path, exc)) from exc
        if proc.returncode != 0:
            raise AnsibleError(
                "podman_nsenter: could not write %s in %s: %s"
                % (out_path, self._container(), to_native(proc.stderr).strip()[-500:])
            )

    def fetch_file(self, in_path: str, out_path: str) -> None:
        super().fetch_file(in_path, out_path)
        self._connect()
        display.vvv("FETCH %s TO %s" % (in_path, out_path), host=self._container())
        argv = self._argv(["/bin/cat", "--", to_native(in_path)])
        tmp = to_bytes(out_path, errors="surrogate_or_strict") + b".nsenter-part"
        with open(tmp, "wb") as dst:
            proc = subprocess.run(argv, stdout=dst, stderr=subprocess.PIPE, check=False)
        if proc.returncode != 0:
            os.unlink(tmp)
            raise AnsibleError(
                "podman_nsenter: could not read %s in %s: %s"
                % (in_path, self._container(), to_native(proc.stderr).strip()[-500:])
            )
        os.replace(tmp, to_bytes(out_path, errors="surrogate_or_strict"))

    def close(self) -> None:
        self._connected = False
        self._target = None
