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

__all__ = [
    "AgentProcess",
    "children_rss_kb",
    "cpu_s",
    "grade_record",
    "machine",
    "main_thread_cpu_s",
    "rss_kb",
    "threads_cpu_s",
]

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


def children(pid: int) -> list[int]:
    """Live child processes (the agent's parsing workers)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return out


def cpu_s(pid: int, *, with_children: bool = True) -> float:
    """user+system CPU seconds of a process and its live children: on a shared machine, throughput per
    CPU-second is the figure that survives other people's load."""
    total = 0.0
    for p in [pid, *(children(pid) if with_children else [])]:
        try:
            with open(f"/proc/{p}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def children_rss_kb(pid: int) -> int:
    return sum(rss_kb(c)[0] for c in children(pid))


def main_thread_cpu_s(pid: int) -> float:
    """user+system CPU seconds of a process's main thread (the agent's event loop). The loop is the part
    that cannot spread over cores, so loop CPU per record bounds throughput: ceiling = 1 / that."""
    with open(f"/proc/{pid}/task/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def threads_cpu_s(pid: int) -> list[float]:
    """CPU seconds of each thread of a process, the main thread first."""
    out = []
    tids = sorted(os.listdir(f"/proc/{pid}/task"), key=lambda t: (int(t) != pid, int(t)))
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out.append((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    return out
