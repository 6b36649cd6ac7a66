"""The acceptance load phase (200 concurrent closed-loop clients) against a real agent on loopback with the
real simulator behind it over TLS: what the client side of the integration test measures, without nginx
and without containers. Prints requests, rate, p50/p95/p99 and errors per operation, the machine, the load
average, and the CPU seconds of the agent and of this client (the client shares the cores: a loaded
machine inflates the percentiles; compare the rate per agent CPU-second).

    python bench/bench_acceptance_load.py [--clients 200] [--seconds 20]
        [--mix record=0.6,services=0.3,document=0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import tempfile
from pathlib import Path

from bench_agent_common import cpu_s, machine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(
    0, str(ROOT / "tests" / "unit")
)  # the simulator's scripted onboarding client and the test PKI

from agent.conftest import _write_pki, delivery_config  # noqa: E402
from sim.simclient import SimProcess, onboard  # noqa: E402

from schoolgate.acceptance.cli import _mix  # noqa: E402
from schoolgate.acceptance.load import LoadRun  # noqa: E402
from schoolgate.acceptance.target import Target  # noqa: E402
from schoolgate.agent.harness import AgentProcess, free_port  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--mix", type=_mix, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-acceptance-") as tmp_s:
        tmp = Path(tmp_s)
        pki = _write_pki(tmp / "pki", "bench")
        os.environ["REQUESTS_CA_BUNDLE"] = str(pki["ca"])
        sim = SimProcess(
            tmp / "sim",
            "--tls-cert",
            str(pki["cert"]),
            "--tls-key",
            str(pki["key"]),
            "--log-level",
            "warning",
        )
        sim.base = f"https://127.0.0.1:{sim.port}"
        sim.start()
        agent = None
        try:
            port = free_port()
            school = onboard(sim.base, tmp / "school", redirect_base=f"http://127.0.0.1:{port}")
            cfg = delivery_config(sim, school, pki["ca"])
            cfg["listen"] = {"host": "127.0.0.1", "port": port}
            cfg["services"] = {"poll_s": 1.0, "refresh_s": 60}
            agent = AgentProcess(tmp / "agent", cfg)
            agent.port = port
            agent.config["listen"]["port"] = port
            agent.start()
            # The catalogue is fetched in the background at start; wait for it (services requests need it).
            for _ in range(100):
                if agent.request("GET", "/v1/services")[0] == 200:
                    break
                asyncio.run(asyncio.sleep(0.2))
            target = Target.from_dict(
                {
                    "school": "bench",
                    "portal_url": agent.url,
                    "api_prefix": "",
                    "hmac_secret_file": str(agent.secret_path),
                    "school_id": "school-001",
                }
            )
            agent_cpu0, me0 = cpu_s(agent.proc.pid), resource.getrusage(resource.RUSAGE_SELF)
            result = asyncio.run(
                LoadRun(target, agent.secret, clients=args.clients, seconds=args.seconds, mix=args.mix).run()
            )
            agent_cpu = cpu_s(agent.proc.pid) - agent_cpu0
            me1 = resource.getrusage(resource.RUSAGE_SELF)
            client_cpu = (me1.ru_utime + me1.ru_stime) - (me0.ru_utime + me0.ru_stime)
        finally:
            if agent is not None:
                agent.stop()
            sim.stop()
    print(machine())
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(
        f"clients={result.clients} duration={result.duration_s:.1f}s requests={result.requests} "
        f"rate={result.rate_rps:.1f}/s p50={result.p50_s:.3f}s p95={result.p95_s:.3f}s "
        f"p99={result.p99_s:.3f}s "
        f"max={result.max_s:.3f}s 5xx={result.errors_5xx} other_errors={result.errors_other}"
    )
    for op, d in result.by_operation.items():
        print(f"  {op:<9} {d}")
    print(
        f"agent CPU {agent_cpu:.1f}s "
        f"({result.requests / max(agent_cpu, 1e-9):.0f} requests per agent CPU-second), "
        f"client CPU {client_cpu:.1f}s"
    )
    print("verdict:", "passed" if result.passed else "failed: " + "; ".join(result.reasons))
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
