"""Shared helpers for the agent benchmarks: machine description, record generator, agent process."""

from __future__ import annotations

import os
import platform
import random
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from schoolgate.agent.harness import AgentProcess

__all__ = ["AgentProcess", "cpu_s", "grade_record", "machine", "rss_kb"]

SUBJECTS = ["Математика", "Русский язык", "Физика", "История", "Литература", "Химия", "Биология"]


def grade_record(rng: random.Random, pupils: int = 5000) -> dict:
    return {
        "record_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "school_id": "school-001",
        "pupil_id": f"p{rng.randrange(pupils):06d}",
        "subject": rng.choice(SUBJECTS),
        "grade": rng.randint(1, 5),
        "date": f"2026-{rng.randint(9, 12):02d}-{rng.randint(1, 28):02d}",
        "teacher_id": f"t{rng.randrange(80):03d}",
    }


def machine() -> str:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = os.getloadavg()
    return (
        f"{platform.node()} {platform.system()} {platform.release()} | {os.cpu_count()} CPU {cpu} | "
        f"{mem_gb:.0f} GiB RAM | Python {platform.python_version()} | loadavg before run "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


def rss_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process in KiB."""
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


def cpu_s(pid: int) -> float:
    """user+system CPU seconds of a process: on a shared machine, throughput per CPU-second is the
    figure that survives other people's load."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
