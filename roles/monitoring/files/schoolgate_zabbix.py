#!/usr/bin/python3
"""Zabbix agent 2 user parameters over the schoolgate textfile metrics.

Reads the same ``*.prom`` files node_exporter serves (the Prometheus text format), so a regional centre on
Zabbix sees exactly the values the Prometheus rules use. Zabbix forbids quotes and braces in item keys
(UnsafeUserParameters=0), hence labels are passed as separate key parameters:

  schoolgate.metric[schoolgate_backup_last_status]
  schoolgate.metric[schoolgate_cert_days_left,kind,signing]
  schoolgate.age[schoolgate_backup_last_success_timestamp_seconds]   -> seconds since that timestamp

Prints the value, or a message on stderr with exit status 1 (Zabbix marks the item unsupported).
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

TEXTFILE_DIR = Path(os.environ.get("SCHOOLGATE_TEXTFILE_DIR", "/var/lib/prometheus/node-exporter"))
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def find(name: str, label: str = "", value: str = "", directory: Path = TEXTFILE_DIR) -> float:
    for path in sorted(directory.glob("*.prom")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            match = _SAMPLE.match(line)
            if not match or match.group(1) != name:
                continue
            labels = dict(_LABEL.findall(match.group(3) or ""))
            if label and labels.get(label) != value:
                continue
            return float(match.group(4))
    selector = f"{name}{{{label}={value}}}" if label else name
    raise LookupError(f"{selector} not found in {directory}/*.prom")


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("metric", "age") or len(argv) not in (2, 4):
        print("usage: schoolgate_zabbix.py metric|age NAME [LABEL VALUE]", file=sys.stderr)
        return 1
    try:
        result = find(*argv[1:])
    except (LookupError, OSError, ValueError) as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if argv[0] == "age":
        result = time.time() - result
    print(f"{result:.6g}" if argv[0] == "metric" else f"{result:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
