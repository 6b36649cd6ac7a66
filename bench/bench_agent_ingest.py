"""Single-record ingest under load: wrk (C load generator, Lua script) → a real agent on loopback.

Target (issue 10): 200 concurrent clients for 60 s, p99 ≤ 50 ms, ≥ 3,000 accepted records/s, zero errors.

Every request is a distinct, valid, HMAC-signed record (signed before the run, since wrk's Lua has no
HMAC); afterwards the outbox is counted to prove every 2xx is really stored.

    python bench/bench_agent_ingest.py [--duration 60] [--connections 200] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_agent_common import AgentProcess, cpu_s, grade_record, machine, rss_kb

LUA = r"""
local reqs = {}
local n, i = 0, 0
local counter = 0
function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
end
local think = 0
function init(args)
  think = tonumber(args[2] or "0")
  local f = assert(io.open(args[1] .. "/reqs-" .. id .. ".txt", "r"))
  for line in f:lines() do
    local ts, sig, body = line:match("^(%d+)\t([^\t]+)\t(.*)$")
    n = n + 1
    reqs[n] = wrk.format("POST", "/v1/records/grade", {
      ["Content-Type"] = "application/json",
      ["X-Schoolgate-Timestamp"] = ts,
      ["X-Schoolgate-Signature"] = sig,
    }, body)
  end
  f:close()
end
if true then
  function delay()
    -- think time between a client's requests (0 = closed loop, every connection fires back-to-back)
    if think > 0 then return math.random(math.floor(think / 2), think + math.floor(think / 2)) end
    return 0
  end
end
function request()
  i = i + 1
  if i > n then i = 1 end
  return reqs[i]
end
"""


def parse_wrk(out: str) -> dict:
    def dur(s: str) -> float:
        m = re.match(r"([\d.]+)(us|ms|s|m)", s)
        v, u = float(m.group(1)), m.group(2)
        return v * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[u]

    res = {}
    for p in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{p}%\s+(\S+)", out, re.M)
        if m:
            res[f"p{p}_ms"] = dur(m.group(1))
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    res["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = sum(map(int, m.groups())) if m else 0
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1))
    return res


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=int, default=60)
    ap.add_argument("--connections", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--per-thread", type=int, default=0, help="pre-signed requests per wrk thread")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument(
        "--think-ms",
        type=int,
        default=0,
        help="pause of each client between requests (0 = closed loop at full speed)",
    )
    args = ap.parse_args()
    if not shutil.which("wrk"):
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    print("machine:", machine())
    work = Path(tempfile.mkdtemp(prefix="bench-agent-ingest-"))
    agent = AgentProcess(work, {"log_level": "warning"}).start()
    try:
        per_thread = args.per_thread or max(20_000, 6_000 * args.duration // args.threads)
        rng = random.Random(1)
        from schoolgate.agent.auth import sign

        t0 = time.time()
        ts = int(time.time()) + 5
        for t in range(1, args.threads + 1):
            with open(work / f"reqs-{t}.txt", "w") as fh:
                for _ in range(per_thread):
                    body = json.dumps(grade_record(rng), ensure_ascii=False, separators=(",", ":"))
                    h = sign(agent.secret, "POST", "/v1/records/grade", body.encode(), timestamp=ts)
                    fh.write(f"{h['X-Schoolgate-Timestamp']}\t{h['X-Schoolgate-Signature']}\t{body}\n")
        print(f"pre-signed {per_thread * args.threads} distinct records in {time.time() - t0:.1f}s")
        (work / "ingest.lua").write_text(LUA)
        cmd = [
            "wrk",
            f"-t{args.threads}",
            f"-c{args.connections}",
            f"-d{args.duration}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            str(work / "ingest.lua"),
            agent.url,
            "--",
            str(work),
            str(args.think_ms),
        ]
        print("running:", " ".join(cmd))
        cpu0 = cpu_s(agent.proc.pid)
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
        print(out)
        res = parse_wrk(out)
        rss, hwm = rss_kb(agent.proc.pid)
        agent_cpu = cpu_s(agent.proc.pid) - cpu0
        stored = sqlite3.connect(agent.db_path).execute("SELECT COUNT(*) FROM records").fetchone()[0]
        ok = res["requests"] - res["non2xx"]
        wrapped = res["requests"] > per_thread * args.threads
        print(
            json.dumps(
                {
                    "benchmark": "agent single-record ingest",
                    **res,
                    "accepted_per_s": round(ok / args.duration),
                    "stored_rows": stored,
                    "agent_rss_mb": round(rss / 1024),
                    "agent_peak_rss_mb": round(hwm / 1024),
                    "agent_cpu_s": round(agent_cpu, 2),
                    "requests_per_agent_cpu_s": round(res["requests"] / agent_cpu),
                    "think_ms": args.think_ms,
                    "requests_wrapped_to_duplicates": wrapped,
                },
                ensure_ascii=False,
            )
        )
        verdict = (
            res.get("p99_ms", 1e9) <= 50
            and ok / args.duration >= 3000
            and res["non2xx"] == 0
            and res["socket_errors"] == 0
            and (wrapped or stored >= ok)
        )
        print("targets (p99 ≤ 50 ms, ≥ 3000/s, 0 errors, every 2xx stored):", "MET" if verdict else "NOT MET")
        return 0 if res["non2xx"] == 0 and res["socket_errors"] == 0 else 1
    finally:
        agent.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
