"""Benchmark: records/s the simulator's intake sustains (POST /edu/v1/batches/{kind}).

A real `schoolgate sim serve` process on 127.0.0.1 and a real HTTP load generator (aiohttp client, several
connections in flight) in this process. Bodies are serialised before the clock starts, so the figure is the
server's. Target: >= 20,000 records/s on the 2-core development machine.

    .venv/bin/python bench/bench_sim_intake.py [--records 200000] [--batch 1000] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.unit.sim.simclient import SimProcess, onboard

KIND_FOR = {"grades": "grade", "attendance": "attendance", "performance": "performance"}


def make_record(kind: str, i: int) -> dict:
    base = {"record_id": str(uuid.uuid4()), "school_id": "school-001", "pupil_id": f"p-{i % 900:04d}"}
    if kind == "grades":
        base.update(subject="Математика", grade=1 + i % 5, date="2026-11-20", teacher_id="t-7")
    elif kind == "attendance":
        base.update(date="2026-11-20", lesson=1 + i % 8, status="present")
    else:
        base.update(period="2026-Q1", subject="Физика", average=4.25, final_grade=4)
    return base


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{platform.node()}: {os.cpu_count()} cores, {cpu}{mem}, {platform.platform()}, "
        f"Python {platform.python_version()}"
    )


async def run(
    base: str, token: str, kind: str, bodies: list[bytes], concurrency: int
) -> tuple[float, int, list[float]]:
    queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
    for i, body in enumerate(bodies):
        queue.put_nowait((i, body))
    accepted = 0
    latencies: list[float] = []
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    async def worker(http: aiohttp.ClientSession) -> None:
        nonlocal accepted
        while not queue.empty():
            i, body = queue.get_nowait()
            t0 = time.perf_counter()
            async with http.post(
                f"{base}/edu/v1/batches/{kind}",
                data=body,
                headers={**headers, "Idempotency-Key": f"bench-{i}-{uuid.uuid4()}"},
            ) as resp:
                data = await resp.json()
                if resp.status != 200:
                    raise RuntimeError(f"batch {i}: HTTP {resp.status}: {data}")
                accepted += data["accepted"]
            latencies.append(time.perf_counter() - t0)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        start = time.perf_counter()
        await asyncio.gather(*(worker(http) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
    return elapsed, accepted, latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--kind", choices=list(KIND_FOR), default="grades")
    parser.add_argument("--target", type=float, default=20_000.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-sim-") as tmp:
        sim = SimProcess(Path(tmp) / "state", "--log-level", "warning").start()
        try:
            school = onboard(sim.base, Path(tmp) / "school")
            token = school.service_token()
            n_batches = max(1, args.records // args.batch)
            bodies = [
                json.dumps(
                    {"records": [make_record(args.kind, b * args.batch + i) for i in range(args.batch)]}
                ).encode()
                for b in range(n_batches)
            ]
            # Warm-up: token verification (cached afterwards), validator compilation.
            asyncio.run(run(sim.base, token, args.kind, bodies[:1], 1))
            server_cpu0, client_cpu0 = proc_cpu(sim.proc.pid), resource.getrusage(resource.RUSAGE_SELF)
            elapsed, accepted, lat = asyncio.run(
                run(sim.base, token, args.kind, bodies[1:], args.concurrency)
            )
            server_cpu = proc_cpu(sim.proc.pid) - server_cpu0
            ru = resource.getrusage(resource.RUSAGE_SELF)
            client_cpu = ru.ru_utime + ru.ru_stime - client_cpu0.ru_utime - client_cpu0.ru_stime
            load = os.getloadavg()
            stats = school.http.get(sim.base + "/admin/v1/intake/stats", timeout=10).json()
        finally:
            sim.stop()
    lat.sort()
    rate = accepted / elapsed
    print(f"machine: {machine()}")
    print(
        f"intake {args.kind}: {accepted} records in {len(lat)} batches of {args.batch}, "
        f"concurrency {args.concurrency}: {elapsed:.2f} s → {rate:,.0f} records/s"
    )
    print(
        f"batch latency: p50 {lat[len(lat) // 2] * 1000:.1f} ms, "
        f"p95 {lat[int(len(lat) * 0.95)] * 1000:.1f} ms, "
        f"max {lat[-1] * 1000:.1f} ms"
    )
    print(
        f"CPU during the run: server {server_cpu:.2f} s ({accepted / max(server_cpu, 1e-9):,.0f} records per "
        f"server CPU-second), load generator {client_cpu:.2f} s; load average {load[0]:.2f} "
        "(other work on the machine shares the 2 cores)"
    )
    print(f"server stats: {stats['records_total']} records stored, {stats['batches']} batches")
    ok = rate >= args.target and stats["records_total"] == accepted + args.batch
    print(f"target {args.target:,.0f} records/s: {'MET' if ok else 'NOT MET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
