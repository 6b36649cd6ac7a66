"""`schoolgate lab ...`: images, apt cache, up/down/status of the podman lab."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from schoolgate.lab import aptcache, hosts, images, podman, site, testrun, topology

DEFAULT_INVENTORY = podman.PROJECT_DIR / "inventory.lab.ini"


def inventory_path(ns: str = "") -> Path:
    """Inventory of a lab namespace; it sits in the project root so `inventory_dir` finds lab/state."""
    return podman.PROJECT_DIR / f"inventory.lab-{ns}.ini" if ns else DEFAULT_INVENTORY


def _ns() -> str:
    return podman.lab_namespace()


def _inventory(args: argparse.Namespace) -> Path:
    return Path(args.inventory) if getattr(args, "inventory", None) else inventory_path(_ns())


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
    hosts.ensure_inotify(_log)  # Molecule scenarios start their containers after this
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
    return topology.build_topology(args.schools, suite=args.suite, infra=infra, ns=_ns())


def cmd_inventory(args: argparse.Namespace) -> int:
    sys.stdout.write(topology.render_inventory(_topology(args)))
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    ns = _ns()
    lab_hosts = _topology(args)
    _ensure_images(sorted({h.suite for h in lab_hosts}))
    network = podman.network_name(ns)
    podman.ensure_network(network)
    _ensure_aptcache(not args.no_aptcache)
    if not args.no_aptcache:
        try:
            aptcache.attach(network)
        except podman.PodmanError as exc:
            _warn(f"apt cache not reachable from {network}, containers will download directly: {exc}")
    wanted = {h.container for h in lab_hosts}
    for extra in sorted(set(hosts.lab_containers(ns)) - wanted):
        podman.remove_container(extra)  # e.g. school-005 from an earlier `--schools 5`
        _log(f"{extra}: removed (not in this topology)")
    try:
        started = hosts.up(lab_hosts, log=_log)
    except hosts.HostStartError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    if started.get("provider", "reused") != "reused":
        _forget_wiring(ns, "the provider container is new")
    inventory = _inventory(args)
    inventory.write_text(topology.render_inventory(lab_hosts))
    hosts.save_topology(lab_hosts, inventory, ns)
    _log(f"inventory: {inventory}" + (f" (lab namespace {ns!r})" if ns else ""))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    rc = cmd_up(args)
    if rc != 0:
        return rc
    ns = _ns()
    inventory = _inventory(args)
    stages = site.site_stages(podman.PROJECT_DIR / "site.yml")
    _log(f"running site.yml (stages: {', '.join(stages) or 'none'}) against {inventory} ...")
    _log(f"  (progress: tail -f reports/lab-{ns + '-' if ns else ''}site-*.log)")
    rc, recaps, log = site.run_site(inventory, podman.PROJECT_DIR / "reports", ns=ns)
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
    _log(
        "status:    schoolgate lab status   |   shell: podman exec -it "
        f"{topology.container_name('school-001', ns)} bash"
    )
    _log(f"lab run finished in {time.monotonic() - started:.0f}s, ansible-playbook exit code {rc}")
    if not recaps:
        _log("ERROR: no PLAY RECAP in the output; see the log")
        return rc or 1
    if rc == 0 and (args.acceptance if args.acceptance is not None else not ns):
        from schoolgate.acceptance.lab import run_integration_test  # make lab ends with the integration test

        rc = run_integration_test(inventory, ns, _log)
    return rc


def _forget_wiring(ns: str, why: str) -> None:
    """The controller's record of the lab provider (access codes in Vault, what its УЦ issued) describes one
    provider container's database; a new provider knows none of it, so a stale record would make site.yml
    present an unknown access code."""
    wiring = podman.PROJECT_DIR / "lab" / "state" / f"wiring-{ns or 'default'}"
    if wiring.exists():
        shutil.rmtree(wiring)
        _log(f"{wiring.relative_to(podman.PROJECT_DIR)}: removed ({why})")


def cmd_down(args: argparse.Namespace) -> int:
    ns = _ns()
    removed = hosts.down(log=_log, ns=ns)
    _forget_wiring(ns, "lab down")
    if args.all:
        # The apt cache is shared by every namespace: only the default lab's `down --all` removes it.
        if not ns and aptcache.stop():
            _log(f"{aptcache.NAME}: removed")
        network = podman.network_name(ns)
        if ns:
            podman.run(
                ["network", "disconnect", network, aptcache.NAME],
                subject=network,
                action="disconnect",
                check=False,
            )
        proc = podman.run(["network", "rm", network], subject=network, action="rm", check=False)
        if proc.returncode == 0:
            _log(f"network {network}: removed")
        else:
            _log(f"network {network}: kept ({proc.stderr.strip().splitlines()[-1:] or 'absent'})")
    hosts.topology_file(ns).unlink(missing_ok=True)
    _log(f"lab down{f' (namespace {ns})' if ns else ''}: {len(removed)} host container(s) removed")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    ns = _ns()
    names = hosts.lab_containers(ns)
    if not names:
        _log("no lab hosts (run `schoolgate lab up`)" + (f" in namespace {ns!r}" if ns else ""))
    for st in hosts.status(names):
        _log(f"{st.name:<14} {st.state:<10} systemd={st.systemd:<10} {st.image}")
    cache = podman.container_state(aptcache.NAME) or "absent"
    _log(f"{aptcache.NAME:<14} {cache}")
    if inventory_path(ns).exists():
        _log(f"inventory: {inventory_path(ns)}")
    bad = [s for s in hosts.status(names) if s.state != "running"]
    return 1 if bad else 0


def cmd_playbook(args: argparse.Namespace) -> int:
    """ansible-playbook against this namespace's inventory, with its own fact cache."""
    ns = _ns()
    inventory = inventory_path(ns)
    if not inventory.exists():
        print(f"ERROR: no inventory {inventory}: run `schoolgate lab up` first", file=sys.stderr)
        return 2
    extra = list(args.ansible_args)
    if extra[:1] == ["--"]:
        extra = extra[1:]
    cmd = [site.ansible_playbook(), "-i", str(inventory), args.playbook, *extra]
    return subprocess.run(cmd, cwd=podman.PROJECT_DIR, env=site.ansible_env(ns), check=False).returncode


def _set_namespace(ns: str | None) -> None:
    if ns is not None:
        os.environ[podman.NAMESPACE_ENV] = ns
    podman.lab_namespace()  # validate early, with a message naming the variable


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
    lab.add_argument(
        "--lab",
        dest="lab_namespace",
        metavar="NS",
        help=f"lab namespace (default ${podman.NAMESPACE_ENV} or the default lab): containers <NS>-<host> on "
        "network schoolgate-<NS>, so several labs run side by side",
    )
    lab.set_defaults(prepare=lambda a: _set_namespace(a.lab_namespace))
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
    p.add_argument("--inventory", default=None, help="where to write the inventory (default per namespace)")
    p.add_argument("--no-aptcache", action="store_true")
    p.set_defaults(handler=cmd_up)

    p = sub.add_parser("run", help="lab up, then site.yml against the lab inventory (make lab)")
    _add_topology_args(p)
    p.add_argument("--inventory", default=None, help="where to write the inventory (default per namespace)")
    p.add_argument("--no-aptcache", action="store_true")
    p.add_argument(
        "--acceptance",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="end with playbooks/integration_test.yml (default: only in the default lab, i.e. make lab)",
    )
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("down", help="remove the lab hosts")
    p.add_argument("--all", action="store_true", help="also the apt cache container and the network")
    p.set_defaults(handler=cmd_down)

    p = sub.add_parser("status", help="show lab hosts and their systemd state")
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser(
        "playbook", help="ansible-playbook PLAYBOOK against this lab namespace (own fact cache)"
    )
    p.add_argument("playbook")
    p.add_argument("ansible_args", nargs=argparse.REMAINDER, help="passed to ansible-playbook")
    p.set_defaults(handler=cmd_playbook)

    testrun.register_test(sub)

    p = sub.add_parser("inventory", help="print the inventory for a topology (no containers)")
    _add_topology_args(p)
    p.set_defaults(handler=cmd_inventory)
