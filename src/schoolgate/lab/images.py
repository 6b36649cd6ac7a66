"""Debian base images for the lab: debootstrap a rootfs once, then `podman import` it.

Both steps are cached. The rootfs lives under the cache dir (outside the project, so a fresh clone
reuses it); the image carries the recipe hash as a label, so changing the recipe rebuilds it and an
unchanged recipe is reused in seconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from schoolgate.lab import podman

SUITES: tuple[str, ...] = ("bookworm", "trixie")
IMAGE_REPO = "localhost/schoolgate-base"
RECIPE_LABEL = "org.schoolgate.recipe"
# Bump when the customisation below changes in a way the file contents do not capture.
RECIPE_VERSION = 2
# python3-apt: Ansible's apt module needs it in check mode; iproute2/procps: testinfra (ss, ps).
INCLUDE = (
    "python3",
    "python3-apt",
    "systemd",
    "systemd-sysv",
    "dbus",
    "sudo",
    "ca-certificates",
    "iproute2",
    "procps",
)
APT_CACHE_HOST = "schoolgate-aptcache"
APT_CACHE_PORT = 3142

PROXY_DETECT_PATH = "usr/local/lib/schoolgate/apt-proxy-detect"
# apt runs this before each download host: use the lab's apt cache when it answers, else go direct,
# so containers keep working when the cache container is absent (e.g. a bare `podman run`).
PROXY_DETECT_SCRIPT = f"""#!/bin/bash
# schoolgate lab image only (not installed on real servers): apt proxy auto-detection.
if timeout 2 bash -c '</dev/tcp/{APT_CACHE_HOST}/{APT_CACHE_PORT}' 2>/dev/null; then
    echo "http://{APT_CACHE_HOST}:{APT_CACHE_PORT}"
else
    echo DIRECT
fi
"""
APT_PROXY_CONF = (
    "// schoolgate lab image only (not installed on real servers)\n"
    f'Acquire::http::Proxy-Auto-Detect "/{PROXY_DETECT_PATH}";\n'
    # A rollout's apt acquire hung for the whole task timeout with its http method idle on a connection the
    # cache had closed (seen twice: session 4 here, and in CI) while other schools downloaded the same files.
    # One request per connection takes pipelining (which a proxy closing mid-queue can derail) out of the
    # picture; the cache is on the same bridge, so the cost is a local TCP handshake per file.
    'Acquire::http::Pipeline-Depth "0";\n'
    # A stalled transfer fails (and apt retries it, Acquire::Retries) after 60 s instead of apt's default.
    'Acquire::http::Timeout "60";\n'
    'Acquire::Retries "3";\n'
)
# Lab containers are thrown away, so dpkg need not fsync every unpacked file: package installs in the lab
# (Molecule, make test) take ~20 % less time. Real servers keep dpkg's default.
DPKG_UNSAFE_IO = "# schoolgate lab image only (throwaway containers): no fsync per file\nforce-unsafe-io\n"
# Every Ansible task recompiles module_utils from its zip payload; the lab images cache the compiled code
# (schoolgate.lab.zipcode, about half of a task's CPU in a container). Real servers keep the default.
# Read, not imported: importing it would install the finder in this (controller) process.
ZIPCODE_SOURCE = Path(__file__).with_name("zipcode.py")
ZIPCODE_DIR = "usr/lib/python3/dist-packages"
ZIPCODE_PTH = (
    "# schoolgate lab image only: compiled-code cache for Ansible payloads\nimport schoolgate_lab_zipcode\n"
)


def cache_dir() -> Path:
    return Path(os.environ.get("SCHOOLGATE_CACHE_DIR", "/var/cache/schoolgate"))


def mirror() -> str:
    return os.environ.get("SCHOOLGATE_DEBIAN_MIRROR", "http://deb.debian.org/debian")


def image_name(suite: str) -> str:
    return f"{IMAGE_REPO}:{suite}"


def sources_list(suite: str, mirror_url: str) -> str:
    security = mirror_url.rstrip("/").rsplit("/", 1)[0] + "/debian-security"
    return (
        f"deb {mirror_url} {suite} main\n"
        f"deb {mirror_url} {suite}-updates main\n"
        # unattended-upgrades needs the security origin; served by the same mirror host.
        f"deb {security} {suite}-security main\n"
    )


@dataclass(frozen=True)
class Recipe:
    suite: str
    mirror: str
    variant: str = "minbase"
    include: tuple[str, ...] = INCLUDE
    files: dict[str, tuple[str, int]] = field(default_factory=dict)

    def debootstrap_hash(self) -> str:
        data = {"suite": self.suite, "mirror": self.mirror, "variant": self.variant, "include": self.include}
        return _sha(data)

    def hash(self) -> str:
        data = {
            "version": RECIPE_VERSION,
            "debootstrap": self.debootstrap_hash(),
            "files": {k: list(v) for k, v in sorted(self.files.items())},
        }
        return _sha(data)


def _sha(data: object) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def recipe_for(suite: str) -> Recipe:
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; known: {', '.join(SUITES)}")
    m = mirror()
    files = {
        "etc/apt/sources.list": (sources_list(suite, m), 0o644),
        "etc/apt/apt.conf.d/00schoolgate-lab-proxy": (APT_PROXY_CONF, 0o644),
        "etc/dpkg/dpkg.cfg.d/schoolgate-lab-unsafe-io": (DPKG_UNSAFE_IO, 0o644),
        PROXY_DETECT_PATH: (PROXY_DETECT_SCRIPT, 0o755),
        f"{ZIPCODE_DIR}/schoolgate_lab_zipcode.py": (ZIPCODE_SOURCE.read_text(encoding="utf-8"), 0o644),
        f"{ZIPCODE_DIR}/schoolgate-lab-zipcode.pth": (ZIPCODE_PTH, 0o644),
        # Empty machine-id: systemd generates a unique one per container at boot.
        "etc/machine-id": ("", 0o444),
    }
    return Recipe(suite=suite, mirror=m, files=files)


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """Serialise builds of the same thing across concurrent processes (parallel scenarios)."""
    cache_dir().mkdir(parents=True, exist_ok=True)
    with open(cache_dir() / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _rootfs_usable(rootfs: Path, recipe: Recipe) -> bool:
    """A rootfs without our marker (e.g. debootstrapped by hand) is adopted if it is complete."""
    if not (rootfs / "sbin" / "init").exists() or (rootfs / "debootstrap").exists():
        return False  # debootstrap leaves /debootstrap behind when it did not finish
    os_release = (
        (rootfs / "etc" / "os-release").read_text(errors="replace")
        if (rootfs / "etc" / "os-release").exists()
        else ""
    )
    if f"VERSION_CODENAME={recipe.suite}" not in os_release:
        return False
    status = (rootfs / "var" / "lib" / "dpkg" / "status").read_text(errors="replace")
    installed = set()
    for block in status.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != " ")
        if lines.get("Status") == "install ok installed":
            installed.add(lines.get("Package"))
    return all(pkg in installed for pkg in recipe.include)


def ensure_rootfs(recipe: Recipe, log: Callable[[str], None] = print) -> tuple[Path, bool]:
    """Return (rootfs, built_now)."""
    rootfs = cache_dir() / f"rootfs-{recipe.suite}"
    marker = cache_dir() / f"rootfs-{recipe.suite}.recipe"
    want = recipe.debootstrap_hash()
    if rootfs.is_dir():
        if marker.exists() and marker.read_text().strip() == want:
            return rootfs, False
        if not marker.exists() and _rootfs_usable(rootfs, recipe):
            marker.write_text(want + "\n")
            log(f"{recipe.suite}: adopted existing rootfs {rootfs}")
            return rootfs, False
        log(f"{recipe.suite}: rootfs {rootfs} is stale or incomplete, rebuilding")
        shutil.rmtree(rootfs)
    if shutil.which("debootstrap") is None:
        raise RuntimeError(
            "debootstrap is not installed: apt-get install -y debootstrap (or run `make deps`)"
        )
    tmp = cache_dir() / f"rootfs-{recipe.suite}.tmp"
    if tmp.exists():
        shutil.rmtree(tmp)
    log_path = cache_dir() / f"debootstrap-{recipe.suite}.log"
    log(f"{recipe.suite}: debootstrap from {recipe.mirror} (log {log_path}) ...")
    with open(log_path, "w") as out:
        proc = subprocess.run(
            [
                "debootstrap",
                f"--variant={recipe.variant}",
                f"--include={','.join(recipe.include)}",
                recipe.suite,
                str(tmp),
                recipe.mirror,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if proc.returncode != 0:
        tail = "".join(log_path.read_text(errors="replace").splitlines(keepends=True)[-15:])
        raise RuntimeError(
            f"{recipe.suite}: debootstrap failed (exit {proc.returncode}); last lines:\n{tail}"
        )
    tmp.rename(rootfs)
    marker.write_text(want + "\n")
    return rootfs, True


def customise(rootfs: Path, recipe: Recipe) -> None:
    for rel, (content, mode) in recipe.files.items():
        path = rootfs / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            path.unlink()
        path.write_text(content)
        path.chmod(mode)
    # Keep the image small and make roles fetch fresh package lists.
    for stale in (rootfs / "var/lib/apt/lists").glob("*_*"):
        stale.unlink()
    for stale in (rootfs / "var/cache/apt").glob("*.bin"):
        stale.unlink()
    for stale in (rootfs / "var/cache/apt/archives").glob("*.deb"):
        stale.unlink()
    # Ansible's apt `cache_valid_time` judges freshness by these mtimes: make the empty lists look old,
    # or the first `update_cache` is skipped and every package is "not available".
    (rootfs / "var/lib/apt/periodic/update-success-stamp").unlink(missing_ok=True)
    (rootfs / "var/lib/apt/lists").mkdir(parents=True, exist_ok=True)
    os.utime(rootfs / "var/lib/apt/lists", (0, 0))
    hostname = rootfs / "etc/hostname"
    if hostname.exists():
        hostname.unlink()


def import_image(rootfs: Path, recipe: Recipe) -> None:
    name = image_name(recipe.suite)
    tar = subprocess.Popen(["tar", "--numeric-owner", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    proc = subprocess.run(
        [
            "podman",
            "import",
            "--change",
            'CMD ["/sbin/init"]',
            "--change",
            f"LABEL {RECIPE_LABEL}={recipe.hash()}",
            "--change",
            f"LABEL org.schoolgate.suite={recipe.suite}",
            "-",
            name,
        ],
        stdin=tar.stdout,
        env=podman.podman_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert tar.stdout is not None
    tar.stdout.close()
    tar_rc = tar.wait()
    if tar_rc != 0 or proc.returncode != 0:
        raise podman.PodmanError(name, "import image", proc.stderr or f"tar exit {tar_rc}")


@dataclass
class ImageResult:
    suite: str
    image: str
    action: str  # "reused" | "built"
    seconds: float


def ensure_image(suite: str, *, force: bool = False, log: Callable[[str], None] = print) -> ImageResult:
    started = time.monotonic()
    recipe = recipe_for(suite)
    name = image_name(suite)
    with _locked(f"image-{suite}"):
        labels = podman.image_labels(name)
        if not force and labels is not None and labels.get(RECIPE_LABEL) == recipe.hash():
            return ImageResult(suite, name, "reused", time.monotonic() - started)
        if labels is not None:
            old = labels.get(RECIPE_LABEL)
            log(f"{suite}: image {name} has recipe {old!r}, want {recipe.hash()}: rebuilding")
        old_id = podman.image_id(name) if labels is not None else None
        rootfs, _built = ensure_rootfs(recipe, log)
        customise(rootfs, recipe)
        import_image(rootfs, recipe)
        if old_id:
            # Drop the superseded image unless a container still uses it (then podman refuses; fine).
            podman.run(["rmi", old_id], subject=name, action="remove old image", check=False)
    return ImageResult(suite, name, "built", time.monotonic() - started)
