"""Fleet rollout speed on lab schools: no-op rerun over N schools vs 1, tuned settings vs Ansible defaults.

Runs `playbooks/rollout.yml` for real (ansible-playbook, podman connection) against a lab namespace whose
schools already converged the measured stages (a warm-up run is done first and not timed). Every timed run
is a no-op (the recap must show changed=0 for every school, else the figure is reported as invalid).

Stage set: `--stages base` by default (the baseline role: apt, chrony, unattended-upgrades, admins, journald;
~40 tasks per school). A full site.yml on 20 lab schools takes too long on a shared 2-core machine; the
ratios are what this benchmark is about, and they hold per task.

    SCHOOLGATE_LAB=flt schoolgate lab up --schools 20 --without provider --without monitor --without backup
    python bench/bench_fleet.py --lab flt --schools 20 [--stages base] [--repeat 1] [--strategy-free]

Figures: wall time (s) for 1 school and N schools with the project's ansible.cfg ("tuned") and with Ansible
defaults on the same N schools (forks 5, gathering implicit, no fact cache, no pipelining), CPU seconds of
ansible and its workers, the ratios, and the machine with its load average before and after.

Two host models (`--hosts shared|sliced|both`, default both):
- shared: the lab schools run their modules on the controller's own CPUs, unlimited. With everything local a
  one-school run is CPU-bound (the controller and that school's modules take turns on one core), so N schools
  can never finish faster than their total CPU divided by the machine's CPUs; the benchmark prints that floor
  next to the measured ratio. On a 2-core machine it is ~N/2 x, whatever the settings.
- sliced: what the goal is about — a fleet of independent servers, each with its own CPU. Every school
  container gets the same fixed CPU slice (cgroup quota) in every run: (machine CPUs - 1) / N, so the N
  schools together never take the core the controller keeps. One school then runs at the speed of one such
  server, and N schools at once show whether the controller (forks, strategy, its own per-school CPU) keeps
  up. The quota is removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

from bench_agent_common import machine

from schoolgate.lab import cli as lab_cli
from schoolgate.lab import site, topology

ROOT = Path(__file__).resolve().parents[1]
RECAP_RE = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)
DEFAULTS = {  # what Ansible does without our ansible.cfg tuning
    "ANSIBLE_FORKS": "5",
    "ANSIBLE_GATHERING": "implicit",
    "ANSIBLE_CACHE_PLUGIN": "memory",
    "ANSIBLE_PIPELINING": "False",
}


def container_id(ns: str, name: str) -> str:
    return subprocess.run(
        ["podman", "inspect", "-f", "{{.Id}}", topology.container_name(name, ns)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()


def hosts_cpu(ns: str, names: list[str]) -> float | None:
    """CPU seconds spent inside the school containers so far (their cgroups; podman_nsenter runs the modules
    there), or None where the cgroup v1 cpuacct files are not available."""
    total = 0.0
    for name in names:
        cid = container_id(ns, name)
        usage = Path(f"/sys/fs/cgroup/cpuacct/libpod_parent/libpod-{cid}/cpuacct.usage")
        if not cid or not usage.exists():
            return None
        total += int(usage.read_text()) / 1e9
    return total


def cgroup_dir(ns: str, name: str) -> Path:
    cid = container_id(ns, name)
    if not cid:
        raise SystemExit(f"no container for {name} in lab {ns}; cannot set its CPU slice")
    for base in (Path("/sys/fs/cgroup/cpu,cpuacct"), Path("/sys/fs/cgroup/cpu"), Path("/sys/fs/cgroup")):
        found = base / "libpod_parent" / f"libpod-{cid}"
        if found.is_dir():
            return found
    raise SystemExit(f"no cgroup directory for {name} ({cid[:12]}); cannot set its CPU slice")


def set_cpu_slice(ns: str, names: list[str], cpus: float | None) -> None:
    """Give every school container the CPU quota `cpus` (fraction of one CPU), or remove it (None)."""
    period = 100_000
    for name in names:
        d = cgroup_dir(ns, name)
        if (d / "cpu.max").exists():  # cgroup v2
            (d / "cpu.max").write_text("max\n" if cpus is None else f"{int(cpus * period)} {period}\n")
        else:
            (d / "cpu.cfs_period_us").write_text(f"{period}\n")
            (d / "cpu.cfs_quota_us").write_text("-1\n" if cpus is None else f"{int(cpus * period)}\n")


def run(ns: str, inventory: Path, limit: list[str], stages: str, env_extra: dict[str, str]) -> dict:
    env = dict(site.ansible_env(ns))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(env_extra)
    tags = ",".join(f"stage_{s}" for s in stages.split(","))
    cmd = [
        "ansible-playbook",
        "-i",
        str(inventory),
        "playbooks/rollout.yml",
        "--limit",
        ",".join(limit),
        "--tags",
        tags,
        "-e",
        "rollout_wave=bench",
        "-e",
        "rollout_max_fail_percentage=100",
        "-e",
        f"rollout_results_dir={ROOT / 'reports' / 'fleet' / 'bench'}",
    ]
    hosts_before = hosts_cpu(ns, limit)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    hosts_after = hosts_cpu(ns, limit)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    on_hosts = hosts_after - hosts_before if hosts_before is not None and hosts_after is not None else None
    recap = {
        m.group(1): (int(m.group(3)), int(m.group(5)) + int(m.group(4)))
        for m in RECAP_RE.finditer(proc.stdout)
    }
    changed = sum(c for c, _ in recap.values())
    failed = sum(f for _, f in recap.values())
    return {
        "wall": wall,
        "cpu": cpu,
        "hosts_cpu": on_hosts,
        "hosts": len(recap),
        "changed": changed,
        "failed": failed,
        "rc": proc.returncode,
        "tail": proc.stdout[-1500:] + proc.stderr[-500:],
    }


def best(ns, inventory, limit, stages, env_extra, repeat):
    runs = [run(ns, inventory, limit, stages, env_extra) for _ in range(repeat)]
    return min(runs, key=lambda r: r["wall"])


def show(label: str, r: dict) -> None:
    valid = "" if r["rc"] == 0 and r["changed"] == 0 else f"  INVALID (rc {r['rc']}, changed {r['changed']})"
    split = ""
    if r["hosts_cpu"] is not None:
        # Lab hosts share the controller's CPUs; on a real fleet each school runs its modules on its own.
        ctl = max(r["cpu"] - r["hosts_cpu"], 0.0)
        per = ctl / max(r["hosts"], 1)
        split = f"  (in the schools {r['hosts_cpu']:6.1f} s, controller {ctl:6.1f} s = {per:.2f} s/school)"
    print(
        f"{label:<42} {r['wall']:7.1f} s wall  {r['cpu']:7.1f} s CPU{split}  {r['hosts']:3d} hosts{valid}",
        flush=True,
    )
    if valid:
        print(r["tail"])


def measure(args, inventory: Path, schools: list[str], label: str) -> dict:
    """1 school and N schools tuned, N schools with Ansible defaults (and strategy free if asked)."""
    one = best(args.lab, inventory, schools[:1], args.stages, {}, args.repeat)
    show(f"{label}: tuned, 1 school", one)
    many = best(args.lab, inventory, schools, args.stages, {}, args.repeat)
    show(f"{label}: tuned, {len(schools)} schools", many)
    dflt = best(args.lab, inventory, schools, args.stages, DEFAULTS, args.repeat)
    show(f"{label}: Ansible defaults, {len(schools)}", dflt)
    print(
        f"{label}: ratio {len(schools)} schools / 1 school (tuned): {many['wall'] / one['wall']:.2f}x wall "
        " (goal <= 2x)"
    )
    print(
        f"{label}: ratio defaults / tuned ({len(schools)} schools): {dflt['wall'] / many['wall']:.2f}x wall, "
        f"{dflt['cpu'] / max(many['cpu'], 0.01):.2f}x CPU"
    )
    if args.strategy_free:
        free = best(args.lab, inventory, schools, args.stages, {"ANSIBLE_STRATEGY": "free"}, args.repeat)
        show(f"{label}: tuned + strategy free, {len(schools)}", free)
        print(f"{label}: ratio free / linear: {free['wall'] / many['wall']:.2f}x wall")
    return {"one": one, "many": many, "defaults": dflt}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lab", default=os.environ.get("SCHOOLGATE_LAB", "flt"))
    p.add_argument("--schools", type=int, default=20)
    p.add_argument("--stages", default="base")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--hosts", choices=["shared", "sliced", "both"], default="both")
    p.add_argument(
        "--strategy-free", action="store_true", help="also measure strategy=free (tuned otherwise)"
    )
    p.add_argument("--no-warmup", action="store_true")
    args = p.parse_args()
    inventory = lab_cli.inventory_path(args.lab)
    schools = [topology.school_name(i) for i in range(1, args.schools + 1)]
    cpus = os.cpu_count() or 1
    print(f"machine: {machine()}")
    conn = next(
        (
            ln.split("=", 1)[1]
            for ln in inventory.read_text().splitlines()
            if ln.startswith("ansible_connection=")
        ),
        "?",
    )
    print(f"lab {args.lab}: {len(schools)} schools, stages {args.stages}, rollout.yml, connection {conn}")
    set_cpu_slice(args.lab, schools, None)
    if not args.no_warmup:
        warm = run(args.lab, inventory, schools, args.stages, {})
        print(
            f"warm-up (converge, not timed): {warm['wall']:.1f} s, changed {warm['changed']}, rc {warm['rc']}"
        )
        if warm["failed"]:
            print(warm["tail"])
            return 1
    if args.hosts in ("shared", "both"):
        r = measure(args, inventory, schools, "shared")
        floor = r["many"]["cpu"] / cpus / r["one"]["wall"]
        print(
            f"shared: CPU floor of the ratio on this machine: {floor:.2f}x "
            f"({r['many']['cpu']:.1f} s CPU for {len(schools)} schools / {cpus} CPUs / "
            f"{r['one']['wall']:.1f} s for one school)"
        )
    if args.hosts in ("sliced", "both"):
        share = max(cpus - 1, 1) / len(schools)
        kept = max(cpus - 1, 1)
        print(f"sliced: every school container limited to {share:.3f} CPU ({kept} CPUs / {len(schools)})")
        set_cpu_slice(args.lab, schools, share)
        try:
            measure(args, inventory, schools, "sliced")
        finally:
            set_cpu_slice(args.lab, schools, None)
    load = os.getloadavg()
    print(f"loadavg after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
