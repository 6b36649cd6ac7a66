"""Run commands in lab containers the way the lab's Ansible connection (connection_plugins/podman_nsenter.py)
does: enter the container's namespaces and cgroups with nsenter instead of a `podman exec` per command.

A `podman exec` starts podman, conmon and runc (~0.2 s of CPU, seconds on a loaded 2-core machine); testinfra
verifiers and lab tests run thousands of commands, so `make test` spends minutes of CPU on them. The logic
lives in the connection plugin; this module loads it from the project so there is one implementation.
Root and rootful podman only (the lab); `run_in` falls back to `podman exec` otherwise.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
import sys
from types import ModuleType
from typing import Any

from schoolgate.lab import podman

PLUGIN = podman.PROJECT_DIR / "connection_plugins" / "podman_nsenter.py"


@functools.cache
def plugin() -> ModuleType:
    spec = importlib.util.spec_from_file_location("schoolgate_lab_podman_nsenter", PLUGIN)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {PLUGIN}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def available() -> bool:
    return os.geteuid() == 0 and PLUGIN.exists()


def run(container: str, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
    """subprocess.run of argv inside the container (root, clean environment, cwd /)."""
    mod = plugin()
    try:
        target = mod.find_target(container)
    except mod.NsenterError as exc:
        raise podman.PodmanError(container, "enter", str(exc)) from exc
    return subprocess.run(mod.nsenter_argv(target, argv), check=False, **kwargs)


def run_in(container: str, argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
    """argv in the container: nsenter where the lab allows it (root), else `podman exec`."""
    if available():
        return run(container, argv, **kwargs)
    podman_exec = ["podman", "exec", container, *argv]
    return subprocess.run(podman_exec, env=podman.podman_env(), check=False, **kwargs)
