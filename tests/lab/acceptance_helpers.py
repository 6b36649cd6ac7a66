"""Helpers of the acceptance lab tests: the simulators' admin API from inside the provider container (the
admin token never leaves the host), report reading, PLAY RECAP parsing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

_ADMIN = """
import json, sys, urllib.request
port, method, body = sys.argv[1], sys.argv[2], sys.argv[3]
token = open('/etc/schoolgate-sim/admin-token').read().strip()
req = urllib.request.Request(f'http://127.0.0.1:{port}/admin/v1/faults', method=method,
    data=body.encode() if body else None,
    headers={'X-Admin-Token': token, 'Content-Type': 'application/json'})
print(urllib.request.urlopen(req, timeout=15).read().decode())
"""


def sim_faults(lab: Any, faults: dict[str, Any] | None, port: int = 8080) -> dict[str, Any]:
    """PUT (faults) or DELETE (None) the simulator's fault injection; port 8080 test, 8081 the lab's prod."""
    method, body = ("PUT", json.dumps(faults)) if faults is not None else ("DELETE", "")
    rc, out = lab.exec("provider", "python3", "-c", _ADMIN, str(port), method, body)
    assert rc == 0, out
    return json.loads(out.strip().splitlines()[-1])


def report(lab: Any, school: str = "school-001", suffix: str = "") -> dict[str, Any]:
    path = ROOT / "reports" / "acceptance" / f"{lab.ns}-{school}{suffix}" / "acceptance.json"
    return json.loads(path.read_text(encoding="utf-8"))


def recap(stdout: str, host: str) -> dict[str, int]:
    line = next(x for x in stdout.splitlines() if x.startswith(host) and "ok=" in x)
    return {k: int(v) for k, v in (p.split("=") for p in line.split(":", 1)[1].split())}
