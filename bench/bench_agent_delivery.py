"""Delivery throughput: a real agent drains a pre-filled outbox into the real provider simulator.

1. the simulator is started and a school is onboarded through the ESIA core (its scripted client);
2. an agent with delivery off takes N records through its batch API, then stops;
3. the agent is restarted with delivery on (ESIA client_credentials token, Idempotency-Key batches);
   we time until its queue is empty and check the simulator's intake holds exactly N new records.

Target (issue 10): ≥ 20,000 records/s. Plain HTTP on loopback (TLS costs little with keep-alive).

    python bench/bench_agent_delivery.py [--records 200000] [--batch 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import requests
from bench_agent_batch import make_bodies, post_all
from bench_agent_common import AgentProcess, cpu_s, machine, rss_kb

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit"))
from sim.simclient import SimProcess, onboard


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=1000)
    args = ap.parse_args()
    print("machine:", machine())
    work = Path(tempfile.mkdtemp(prefix="bench-agent-delivery-"))
    sim = SimProcess(work / "sim", "--log-level", "warning").start()
    try:
        school = onboard(sim.base, work / "school")
        fill = AgentProcess(work / "agent", {"log_level": "warning"}).start()
        sent = 0
        seed = 100
        while sent < args.records:
            n = min(100_000, args.records - sent)
            errors, _ = asyncio.run(post_all(fill.url, make_bodies(fill.secret, n, 1000, seed), 4))
            assert errors == 0
            sent += n
            seed += 1
        fill.stop()
        before = requests.get(sim.base + "/admin/v1/intake/stats", timeout=10).json()["records_total"]
        cfg = {
            "log_level": "warning",
            "provider": {"base_url": sim.base},
            "esia": {
                "base_url": sim.base,
                "client_id": school.client_id,
                "scope": "edu_intake",
                "redirect_uri": school.redirect_base + "/esia/callback",
                "signer": {
                    "type": "openssl-gost",
                    "key": str(school.key_dir / "school.key"),
                    "cert": str(school.key_dir / "school.crt"),
                },
            },
            "delivery": {"enabled": True, "batch_size": args.batch},
        }
        agent = AgentProcess(work / "agent", cfg)
        sim_cpu0 = cpu_s(sim.proc.pid)
        t0 = time.perf_counter()
        agent.start()
        db = sqlite3.connect(agent.db_path)
        while db.execute("SELECT COUNT(*) FROM records WHERE state = 0").fetchone()[0]:
            time.sleep(0.05)
            if time.perf_counter() - t0 > 600:
                print("not drained after 600 s:", agent.log_tail())
                return 1
        elapsed = time.perf_counter() - t0
        rss, hwm = rss_kb(agent.proc.pid)
        agent_cpu, sim_cpu = cpu_s(agent.proc.pid), cpu_s(sim.proc.pid) - sim_cpu0
        agent.stop()
        after = requests.get(sim.base + "/admin/v1/intake/stats", timeout=10).json()["records_total"]
        dead = db.execute("SELECT COUNT(*) FROM records WHERE state = 2").fetchone()[0]
        result = {
            "benchmark": "agent delivery to the simulator (drain of a pre-filled outbox)",
            "records": sent,
            "batch": args.batch,
            "seconds": round(elapsed, 2),
            "records_per_s": round(sent / elapsed),
            "simulator_new_records": after - before,
            "dead": dead,
            "agent_peak_rss_mb": round(hwm / 1024, 1),
            "agent_rss_mb": round(rss / 1024, 1),
            "agent_cpu_s": round(agent_cpu, 2),
            "simulator_cpu_s": round(sim_cpu, 2),
        }
        print(json.dumps(result, ensure_ascii=False))
        print("target ≥ 20,000 records/s:", "MET" if result["records_per_s"] >= 20_000 else "NOT MET")
        return 0 if after - before == sent and dead == 0 else 1
    finally:
        sim.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
