"""`schoolgate lab ...`: images, apt cache, up/down/status of the podman lab."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from schoolgate.lab import aptcache, hosts, images, podman, site, testrun, topology

DEFAULT_INVENTORY = podman.PROJECT_DIR / "inventory.lab.ini"


def _log(msg: str) -> None:
    print(msg, flush=True)


def _warn(msg: str) -> None:
    print(f"WARNING: {msg}", file=sys.stderr, flush=True)


def _ensure_images(suites: list[str], force: bool = False) -> None:
    for suite in suites:
        res = images.ensure_image(suite, force=force, log=_log)
        _log(f"{res.image}: {res.action} in {res.seconds:.1f}s")


def _ensure_aptcache(enabled: bool) -> None:
    if not enabled:
        return
    try:
        state = aptcache.ensure(log=_log)
        _log(f"apt cache {aptcache.NAME}: {state} (http://{aptcache.NAME}:{images.APT_CACHE_PORT})")
    except (podman.PodmanError, RuntimeError) as exc:
        # Containers fall back to the mirror directly, so a missing cache only costs download time.
        _warn(f"apt cache unavailable, containers will download directly: {exc}")


def cmd_images(args: argparse.Namespace) -> int:
    started = time.monotonic()
    _ensure_images(args.suite or list(images.SUITES), args.force)
    created = podman.ensure_network()
    _log(f"network {podman.NETWORK}: {'created' if created else 'exists'}")
    _ensure_aptcache(not args.no_aptcache)
    _log(f"lab images ready in {time.monotonic() - started:.1f}s")
    return 0


def cmd_aptcache(args: argparse.Namespace) -> int:
    if args.stop:
        _log(f"{aptcache.NAME}: {'removed' if aptcache.stop() else 'not running'}")
        return 0
    _ensure_aptcache(True)
    return 0 if podman.container_state(aptcache.NAME) == "running" else 1


def _topology(args: argparse.Namespace) -> list[topology.LabHost]:
    infra = tuple(h for h in ("provider", "monitor", "backup") if h not in (args.without or []))
    return topology.build_topology(args.schools, suite=args.suite, infra=infra)


def cmd_inventory(args: argparse.Namespace) -> int:
    sys.stdout.write(topology.render_inventory(_topology(args)))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    lab_hosts = _topology(args)
    _ensure_images(sorted({h.suite for h in lab_hosts}))
    podman.ensure_network()
    _ensure_aptcache(not args.no_aptcache)
    wanted = {h.name for h in lab_hosts}
    for extra in sorted(set(hosts.lab_containers()) - wanted):
        podman.remove_container(extra)  # e.g. school-005 from an earlier `--schools 5`
        _log(f"{extra}: removed (not in this topology)")
    try:
        hosts.up(lab_hosts, log=_log)
    except hosts.HostStartError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    inventory = Path(args.inventory)
    inventory.write_text(topology.render_inventory(lab_hosts))
    hosts.save_topology(lab_hosts, inventory)
    _log(f"inventory: {inventory}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    rc = cmd_up(args)
    if rc != 0:
        return rc
    inventory = Path(args.inventory)
    stages = site.site_stages(podman.PROJECT_DIR / "site.yml")
    _log(f"running site.yml (stages: {', '.join(stages) or 'none'}) against {inventory} ...")
    _log("  (progress: tail -f reports/lab-site-*.log)")
    rc, recaps, log = site.run_site(inventory, podman.PROJECT_DIR / "reports")
    _log("")
    failed = site.failures(log.read_text(errors="replace"))
    if failed:
        _log("Failed tasks:")
        for line in failed:
            _log(f"  {line}")
    _log("PLAY RECAP summary:")
    for rec in recaps.values():
        _log(
            f"  {rec.host:<12} ok={rec.ok:<4} changed={rec.changed:<4} failed={rec.failed} "
            f"unreachable={rec.unreachable} skipped={rec.skipped}"
        )
    schools = [r for r in recaps.values() if r.host.startswith("school-")]
    for rec in schools:
        if rec.failed or rec.unreachable:
            verdict = f"FAILED ({rec.failed} failed, {rec.unreachable} unreachable) - see the log"
        elif rec.changed == 0:
            verdict = "idempotent (0 changed)"
        else:
            verdict = f"{rec.changed} changed (run again: must be 0)"
        _log(f"{rec.host}: {verdict}")
    _log(f"site.yml imports: {', '.join(stages)}; stages not written yet are simply not run.")
    _log(f"inventory: {inventory}")
    _log(f"log:       {log}")
    _log("status:    schoolgate lab status   |   shell: podman exec -it school-001 bash")
    _log(f"lab run finished in {time.monotonic() - started:.0f}s, ansible-playbook exit code {rc}")
    if not recaps:
        _log("ERROR: no PLAY RECAP in the output; see the log")
        return rc or 1
    return rc


def cmd_down(args: argparse.Namespace) -> int:
    removed = hosts.down(log=_log)
    if args.all:
        if aptcache.stop():
            _log(f"{aptcache.NAME}: removed")
        proc = podman.run(["network", "rm", podman.NETWORK], subject=podman.NETWORK, action="rm", check=False)
        if proc.returncode == 0:
            _log(f"network {podman.NETWORK}: removed")
        else:
            _log(f"network {podman.NETWORK}: kept ({proc.stderr.strip().splitlines()[-1:] or 'absent'})")
    if hosts.TOPOLOGY_FILE.exists():
        hosts.TOPOLOGY_FILE.unlink()
    _log(f"lab down: {len(removed)} host container(s) removed")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    names = hosts.lab_containers()
    if not names:
        _log("no lab hosts (run `schoolgate lab up`)")
    for st in hosts.status(names):
        _log(f"{st.name:<14} {st.state:<10} systemd={st.systemd:<10} {st.image}")
    cache = podman.container_state(aptcache.NAME) or "absent"
    _log(f"{aptcache.NAME:<14} {cache}")
    if DEFAULT_INVENTORY.exists():
        _log(f"inventory: {DEFAULT_INVENTORY}")
    bad = [s for s in hosts.status(names) if s.state != "running"]
    return 1 if bad else 0


def _add_topology_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--schools", type=int, default=1, help="number of school hosts (school-001..)")
    p.add_argument("--suite", default="bookworm", choices=images.SUITES, help="Debian release of lab hosts")
    p.add_argument(
        "--without",
        action="append",
        choices=("provider", "monitor", "backup"),
        help="leave out an infra host",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    lab = subparsers.add_parser("lab", help="the podman lab (images, hosts, inventory)")
    sub = lab.add_subparsers(dest="lab_command", metavar="ACTION")
    sub.required = True

    p = sub.add_parser("images", help="build (or reuse) the Debian base images, network and apt cache")
    p.add_argument("--suite", action="append", choices=images.SUITES, help="only this release (repeatable)")
    p.add_argument("--force", action="store_true", help="re-import even if the recipe is unchanged")
    p.add_argument("--no-aptcache", action="store_true", help="do not start the shared apt cache")
    p.set_defaults(handler=cmd_images)

    p = sub.add_parser("aptcache", help="start (or --stop) the shared apt cache container")
    p.add_argument("--stop", action="store_true")
    p.set_defaults(handler=cmd_aptcache)

    p = sub.add_parser("up", help="start the lab hosts and write the Ansible inventory")
    _add_topology_args(p)
    p.add_argument("--inventory", default=str(DEFAULT_INVENTORY), help="where to write the inventory")
    p.add_argument("--no-aptcache", action="store_true")
    p.set_defaults(handler=cmd_up)

    p = sub.add_parser("run", help="lab up, then site.yml against the lab inventory (make lab)")
    _add_topology_args(p)
    p.add_argument("--inventory", default=str(DEFAULT_INVENTORY), help="where to write the inventory")
    p.add_argument("--no-aptcache", action="store_true")
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("down", help="remove the lab hosts")
    p.add_argument("--all", action="store_true", help="also the apt cache container and the network")
    p.set_defaults(handler=cmd_down)

    p = sub.add_parser("status", help="show lab hosts and their systemd state")
    p.set_defaults(handler=cmd_status)

    testrun.register_test(sub)

    p = sub.add_parser("inventory", help="print the inventory for a topology (no containers)")
    _add_topology_args(p)
    p.set_defaults(handler=cmd_inventory)
