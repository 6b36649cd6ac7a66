"""``client_certificate_hash`` and certificate facts.

ESIA wants GOST R 34.11-2012-256 (Streebog) over the *DER* certificate, as 64 lower-case hex chars
(``openssl x509 -outform der | openssl dgst -engine gost -md_gost12_256``). The classic mistakes — hashing
the PEM file, or using SHA-1/SHA-256 fingerprints — give ESIA-007053; ``wrong_hash_candidates`` computes
those mistakes so diagnostics can recognise them.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
from datetime import UTC, datetime
from typing import Any

from . import openssl
from .der import certificate_der, format_name, parse_certificate
from .errors import EsiaError

GOST_KEY_ALGORITHMS = frozenset({"gost2012_256", "gost2012_512", "gost2001"})


def streebog256(data: bytes, *, engine: str = openssl.DEFAULT_ENGINE, openssl_path: str | None = None) -> str:
    return openssl.digest(data, "md_gost12_256", engine=engine, openssl=openssl_path).hex()


@functools.lru_cache(maxsize=256)
def _cached_streebog(der: bytes, engine: str, openssl_path: str | None) -> str:
    # one openssl process per distinct certificate, not per request (the simulator hashes on every call)
    return streebog256(der, engine=engine, openssl_path=openssl_path)


def client_certificate_hash(
    cert: bytes | str,
    *,
    hash_alg: str = "gost12_256",
    engine: str = openssl.DEFAULT_ENGINE,
    openssl_path: str | None = None,
) -> str:
    """Hash of the DER certificate (PEM or DER accepted as input), 64 hex chars.

    ``hash_alg='gost12_256'`` (default, what ESIA specifies for every certificate type) needs the OpenSSL
    GOST engine; ``'sha256'`` exists for lab systems configured to expect it.
    """
    der = certificate_der(cert)
    if hash_alg == "gost12_256":
        return _cached_streebog(der, engine, openssl_path)
    if hash_alg == "sha256":
        return hashlib.sha256(der).hexdigest()
    raise ValueError(f"hash_alg must be 'gost12_256' or 'sha256', not {hash_alg!r}")


def wrong_hash_candidates(cert: bytes | str, pem_text: bytes | None = None) -> dict[str, str]:
    """Hashes people compute by mistake, keyed by a description of the mistake."""
    der = certificate_der(cert)
    out = {
        "SHA-1 over DER (certificate thumbprint)": hashlib.sha1(der).hexdigest(),  # noqa: S324 - diagnosis only
        "SHA-256 over DER": hashlib.sha256(der).hexdigest(),
    }
    if pem_text:
        with contextlib.suppress(EsiaError):  # engine missing: just skip this candidate
            out["GOST over the PEM file instead of DER"] = streebog256(pem_text)
        out["SHA-256 over the PEM file"] = hashlib.sha256(pem_text).hexdigest()
    return out


def is_gost(cert: bytes | str) -> bool:
    return parse_certificate(cert).key_algorithm in GOST_KEY_ALGORITHMS


def signature_algorithm_for(cert: bytes | str) -> str:
    """The JWT/ESIA algorithm name matching a certificate's key."""
    parsed = parse_certificate(cert)
    return {
        "rsaEncryption": "RS256",
        "ecPublicKey": "ES256",
        "gost2012_256": "GOST3410_2012_256",
        "gost2012_512": "GOST3410_2012_512",
    }.get(parsed.key_algorithm, parsed.key_algorithm)


def certificate_info(cert: bytes | str, *, now: datetime | None = None) -> dict[str, Any]:
    parsed = parse_certificate(cert)
    now = now or datetime.now(UTC)
    return {
        "subject": format_name(parsed.subject),
        "issuer": format_name(parsed.issuer),
        "subject_fields": dict(parsed.subject),
        "serial": format(parsed.serial, "x"),
        "not_before": parsed.not_before.isoformat(),
        "not_after": parsed.not_after.isoformat(),
        "days_left": int((parsed.not_after - now).total_seconds() // 86400),
        "expired": now > parsed.not_after,
        "not_yet_valid": now < parsed.not_before,
        "key_algorithm": parsed.key_algorithm,
        "key_parameters": parsed.key_parameters,
        "signature_algorithm": parsed.signature_algorithm,
        "algorithm": signature_algorithm_for(parsed.der),
        "is_gost": parsed.key_algorithm in GOST_KEY_ALGORITHMS,
        "sha256_fingerprint": hashlib.sha256(parsed.der).hexdigest(),
    }


__all__ = [
    "certificate_der",
    "certificate_info",
    "client_certificate_hash",
    "is_gost",
    "signature_algorithm_for",
    "streebog256",
    "wrong_hash_candidates",
]
