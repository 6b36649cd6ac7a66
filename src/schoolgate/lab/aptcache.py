"""A shared apt cache for lab containers: one apt-cacher-ng container on the lab network.

One cache process serves every container, so concurrent scenarios never fight over apt's archive
lock (which is what happens when many containers mount one host archive directory). Lab images
probe for it before each download and fall back to the mirror directly when it is absent.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable

from schoolgate.lab import images, podman

NAME = images.APT_CACHE_HOST
IMAGE = "localhost/schoolgate-aptcache:latest"
BUILDER = "schoolgate-aptcache-build"
RECIPE_VERSION = 1
ACNG_CONF = """# managed by schoolgate lab
CacheDir: /var/cache/apt-cacher-ng
LogDir: /var/log/apt-cacher-ng
Port: 3142
ForeGround: 1
# plain http proxying of the Debian mirror only; no CONNECT tunnels
PassThroughPattern: ^$
ExThreshold: 4
"""


def recipe_hash() -> str:
    return images._sha({"v": RECIPE_VERSION, "conf": ACNG_CONF, "base": images.recipe_for("bookworm").hash()})


def _build_image(log: Callable[[str], None]) -> None:
    base = images.image_name("bookworm")
    podman.remove_container(BUILDER)
    script = (
        "set -e; export DEBIAN_FRONTEND=noninteractive; apt-get update -qq --error-on=any; "
        "apt-get install -y -qq --no-install-recommends apt-cacher-ng >/dev/null; "
        "cat > /etc/apt-cacher-ng/zz-schoolgate.conf; "
        "rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb"
    )
    log(f"aptcache: building {IMAGE} from {base} ...")
    try:
        podman.run(
            ["run", "-i", "--name", BUILDER, "--network", podman.NETWORK, base, "bash", "-c", script],
            subject=BUILDER,
            action="install apt-cacher-ng",
            input_bytes=ACNG_CONF.encode(),
            timeout=900,
        )
        podman.run(
            [
                "commit",
                "--change",
                'CMD ["/usr/sbin/apt-cacher-ng", "-c", "/etc/apt-cacher-ng"]',
                "--change",
                f"LABEL {images.RECIPE_LABEL}={recipe_hash()}",
                BUILDER,
                IMAGE,
            ],
            subject=IMAGE,
            action="commit apt cache image",
        )
    finally:
        podman.remove_container(BUILDER)


def ensure(log: Callable[[str], None] = print) -> str:
    """Make sure the cache container runs. Returns what was done: 'running', 'started'."""
    images.ensure_image("bookworm", log=log)
    podman.ensure_network(podman.NETWORK)
    with images._locked("aptcache"):
        labels = podman.image_labels(IMAGE)
        rebuilt = False
        if labels is None or labels.get(images.RECIPE_LABEL) != recipe_hash():
            _build_image(log)
            rebuilt = True
        state = podman.container_state(NAME)
        if state == "running" and not rebuilt:
            if _answers_soon():
                return "running"
            # Stale: "running" in podman's records while its processes are gone (seen in a lab: every
            # container then silently went DIRECT to the mirror). Said aloud: it cuts downloads in flight.
            log(f"aptcache: {NAME} runs but did not answer {PROBES} probes on its port; replacing it")
        # Otherwise exited or from an older image.
        podman.remove_container(NAME)
        store = images.cache_dir() / "apt-cacher-ng"
        store.mkdir(parents=True, exist_ok=True)
        # The cache's own log outlives the container, so a failed download can be traced afterwards.
        logs = images.cache_dir() / "apt-cacher-ng-log"
        logs.mkdir(parents=True, exist_ok=True)
        podman.run(
            [
                "run",
                "-d",
                "--name",
                NAME,
                "--hostname",
                NAME,
                "--network",
                podman.NETWORK,
                "--label",
                "org.schoolgate.lab=aptcache",
                "-v",
                f"{store}:/var/cache/apt-cacher-ng",
                "-v",
                f"{logs}:/var/log/apt-cacher-ng",
                IMAGE,
            ],
            subject=NAME,
            action="start apt cache container",
        )
        for _ in range(40):
            if podman.container_state(NAME) == "running" and answers():
                return "started"
            time.sleep(0.5)
        raise podman.PodmanError(NAME, "start apt cache container", podman.container_logs(NAME))


_ADDRESSES_FORMAT = "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}"


def _addresses() -> list[str]:
    proc = podman.run(
        ["container", "inspect", "--format", _ADDRESSES_FORMAT, NAME],
        subject=NAME,
        action="inspect addresses",
        check=False,
    )
    return proc.stdout.split() if proc.returncode == 0 else []


# A busy machine can leave one probe unanswered; replacing the cache then would cut every download in
# flight (other scenarios and lab groups use it at the same time), so it takes several misses in a row.
# A probe where podman could not even say the container's address is no miss: that is podman busy, not
# the cache gone.
PROBES = 3
PROBE_PAUSE_S = 3.0
MAX_PROBE_ROUNDS = 3 * PROBES


def _answers_soon() -> bool:
    misses = 0
    for attempt in range(MAX_PROBE_ROUNDS):
        if attempt:
            time.sleep(PROBE_PAUSE_S)
        result = probe()
        if result:
            return True
        if result is False:
            misses += 1
            if misses >= PROBES:
                return False
    return False


def probe(timeout: float = 2.0) -> bool | None:
    """True: the cache accepts connections; False: it refused or timed out; None: no address known."""
    addresses = _addresses()
    if not addresses:
        return None
    for address in addresses:
        try:
            with socket.create_connection((address, images.APT_CACHE_PORT), timeout=timeout):
                return True
        except OSError:
            continue
    return False


def answers(timeout: float = 2.0) -> bool:
    """The cache accepts connections on its port (the host reaches lab addresses over the bridge)."""
    return bool(probe(timeout))


def attach(network: str) -> None:
    """Make the cache reachable (as `schoolgate-aptcache`) from a namespaced lab network too."""
    if network == podman.NETWORK or podman.container_state(NAME) != "running":
        return
    proc = podman.run(
        [
            "container",
            "inspect",
            "--format",
            "{{range $k, $v := .NetworkSettings.Networks}}{{$k}} {{end}}",
            NAME,
        ],
        subject=NAME,
        action="inspect networks",
        check=False,
    )
    if network in proc.stdout.split():
        return
    podman.run(["network", "connect", network, NAME], subject=NAME, action=f"connect to {network}")


def stop() -> bool:
    return podman.remove_container(NAME)
