"""Authentication of the portal's requests to the agent.

HMAC scheme (the portal and the agent share a secret file, mode 0600/0640):

    X-Schoolgate-Timestamp: <unix seconds>
    X-Schoolgate-Signature: v1=<hex HMAC-SHA256(secret, canonical)>
    canonical = "v1\\n" + timestamp + "\\n" + METHOD + "\\n" + path_with_query + "\\n" + hex(SHA-256(body))

A request outside the replay window (default ±300 s) is refused. Replays
inside the window are harmless for data pushes: records are idempotent by
record_id. mTLS (client certificate verified against a CA) is the
alternative, configured in the TLS settings of the listener.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import time
from pathlib import Path

TS_HEADER = "X-Schoolgate-Timestamp"
SIG_HEADER = "X-Schoolgate-Signature"
MIN_SECRET_BYTES = 32


class AuthError(Exception):
    """Why a request was not authenticated (safe to show: never contains the secret)."""


def canonical(timestamp: str, method: str, path_qs: str, body: bytes) -> bytes:
    digest = hashlib.sha256(body).hexdigest()
    return f"v1\n{timestamp}\n{method.upper()}\n{path_qs}\n{digest}".encode()


def sign(
    secret: bytes, method: str, path_qs: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """Headers a portal adds to a request (also used by tests, the CLI and the benchmark)."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    mac = hmac.digest(secret, canonical(ts, method, path_qs, body), "sha256").hex()
    return {TS_HEADER: ts, SIG_HEADER: f"v1={mac}"}


def verify(
    secret: bytes,
    method: str,
    path_qs: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    *,
    window_s: int,
    now: float | None = None,
) -> None:
    if not timestamp or not signature:
        raise AuthError(f"missing {TS_HEADER} or {SIG_HEADER} header (requests must be HMAC-signed)")
    try:
        ts = int(timestamp)
    except ValueError:
        raise AuthError(f"{TS_HEADER} must be unix seconds") from None
    now = time.time() if now is None else now
    if abs(now - ts) > window_s:
        raise AuthError(
            f"{TS_HEADER} is outside the allowed window of ±{window_s} s (check the portal's clock)"
        )
    if not signature.startswith("v1="):
        raise AuthError(f"{SIG_HEADER} must look like v1=<hex>")
    # hmac.digest: OpenSSL's one-shot HMAC, a third of hmac.new()'s cost per request.
    expected = hmac.digest(secret, canonical(timestamp, method, path_qs, body), "sha256").hex()
    if not hmac.compare_digest(expected, signature[3:]):
        raise AuthError("signature mismatch (wrong secret, or the body/path changed after signing)")


def load_secret(
    path: str | Path, *, key: str = "auth.hmac_secret_file", min_bytes: int = MIN_SECRET_BYTES
) -> bytes:
    """Read a secret file, refusing files other local users could read."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ValueError(f"{key}: {p} does not exist") from None
    if st.st_mode & (stat.S_IRWXO | stat.S_IWGRP):
        raise ValueError(
            f"{key}: {p} has mode {stat.S_IMODE(st.st_mode):04o}; it must be 0600 or 0640 "
            f"(fix: chmod 0600 {p})"
        )
    data = p.read_bytes().strip()
    if len(data) < min_bytes:
        raise ValueError(f"{key}: {p} holds {len(data)} bytes; at least {min_bytes} needed")
    return data


def generate_secret_file(path: str | Path) -> None:
    """Create a new random secret (hex) with mode 0600, atomically."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, os.urandom(32).hex().encode() + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, p)
