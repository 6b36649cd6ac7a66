"""testinfra backend for lab containers over nsenter (schoolgate.lab.nsenter); used by molecule/conftest.py.

`podman://name` hosts keep their meaning (the container `name`); only the transport changes. A host with a
user (`podman://user@name`) still goes through `podman exec -u`.
"""

from __future__ import annotations

from typing import Any

from testinfra.backend import BACKENDS, base
from testinfra.backend.podman import PodmanBackend

from schoolgate.lab import nsenter


class NsenterBackend(PodmanBackend):
    def run(self, command: str, *args: str, **kwargs: Any) -> base.CommandResult:
        if self.user is not None:
            return super().run(command, *args, **kwargs)
        cmd = self.get_command(command, *args)
        proc = nsenter.run(self.name, ["/bin/sh", "-c", cmd], capture_output=True)
        return self.result(proc.returncode, self.encode(cmd), proc.stdout, proc.stderr)


def install() -> bool:
    """Serve `podman://` hosts with NsenterBackend in this process, when the lab allows it (root)."""
    if not nsenter.available():
        return False
    BACKENDS["podman"] = f"{__name__}.{NsenterBackend.__name__}"
    return True
