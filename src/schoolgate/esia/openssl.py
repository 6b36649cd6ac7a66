"""Running the ``openssl`` binary (with the GOST engine) as a subprocess.

Rules kept here so every caller gets them: data goes through stdin or files in a private 0700 directory
(``private_dir``); key material is only ever referenced by the caller's path or written 0600 into that
directory and removed afterwards; stderr is summarised in errors but never echoes key bytes (openssl does
not print keys, and we never pass them on the command line).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from .errors import EsiaError

DEFAULT_ENGINE = "gost"
DEFAULT_TIMEOUT_S = 30.0


def openssl_binary(configured: str | None = None) -> str:
    name = configured or os.environ.get("SCHOOLGATE_OPENSSL") or "openssl"
    found = shutil.which(name)
    if not found:
        raise EsiaError.local("SG-ESIA-102", detail=f"looked for {name!r} on PATH")
    return found


@contextlib.contextmanager
def private_dir() -> Iterator[Path]:
    """A temporary directory only the current user can enter (mkdtemp creates it 0700)."""
    path = Path(tempfile.mkdtemp(prefix="schoolgate-esia-"))
    try:
        os.chmod(path, 0o700)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def write_private(path: Path, data: bytes) -> Path:
    """Create ``path`` with mode 0600 from the start (no window where it is readable by others)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path


def _summarise(stderr: bytes) -> str:
    lines = [line.strip() for line in stderr.decode("utf-8", "replace").splitlines()]
    lines = [line for line in lines if line and not line.startswith('Engine "')]
    return "; ".join(lines[:4])[:600]


def run_openssl(
    args: Sequence[str],
    *,
    stdin: bytes | None = None,
    engine: str | None = None,
    openssl: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    what: str = "openssl",
    error_code: str = "SG-ESIA-103",
    env: dict[str, str] | None = None,
) -> bytes:
    """Run ``openssl <args>`` (inserting ``-engine`` after the subcommand) and return stdout."""
    argv = [openssl_binary(openssl), args[0]]
    if engine:
        argv += ["-engine", engine]
    argv += list(args[1:])
    try:
        proc = subprocess.run(argv, input=stdin, capture_output=True, timeout=timeout, check=False, env=env)
    except subprocess.TimeoutExpired as exc:
        raise EsiaError.local(error_code, detail=f"{what}: timed out after {timeout:.0f} s") from exc
    err = proc.stderr.decode("utf-8", "replace")
    if engine and ("Invalid engine" in err or "no such engine" in err or "could not load the shared" in err):
        raise EsiaError.local(
            "SG-ESIA-101",
            detail=f"engine {engine!r} could not be loaded; Debian package: libengine-gost-openssl",
        )
    if proc.returncode != 0:
        raise EsiaError.local(
            error_code, detail=f"{what} failed (rc={proc.returncode}): {_summarise(proc.stderr)}"
        )
    return proc.stdout


@functools.lru_cache(maxsize=8)
def gost_engine_available(engine: str = DEFAULT_ENGINE, openssl: str | None = None) -> bool:
    try:
        run_openssl(["engine", "-t", engine], openssl=openssl, what="engine check")
    except EsiaError:
        return False
    return True


def digest(data: bytes, md: str, *, engine: str | None = None, openssl: str | None = None) -> bytes:
    """Binary digest of ``data`` by openssl (e.g. md='md_gost12_256' with engine='gost')."""
    return run_openssl(
        ["dgst", f"-{md}", "-binary"], stdin=data, engine=engine, openssl=openssl, what=f"digest {md}"
    )
