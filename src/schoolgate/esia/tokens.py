"""JWT access tokens: issue (simulator side) and verify (client side).

Algorithms: RS256, ES256 (signature is r||s, RFC 7518 §3.4) and GOST3410_2012_256/512 (raw GOST signature;
byte order configurable because ESIA-side tooling is CryptoPro-based: ``gost_byte_order='reverse'``).
Verification tries the configured *set* of provider certificates (ESIA rotates them); the header's
``x5t#S256`` (when present) selects the certificate directly.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from .der import certificate_der, children, read_tlv
from .encoding import b64url_decode, b64url_encode
from .errors import EsiaError
from .signing import Signer

SUPPORTED_ALGS = ("RS256", "ES256", "GOST3410_2012_256", "GOST3410_2012_512")


def _fail(detail: str) -> EsiaError:
    return EsiaError.local("SG-ESIA-110", detail=detail)


def _epoch(now: float | datetime | None) -> float:
    if now is None:
        return time.time()
    if isinstance(now, datetime):
        return now.timestamp()
    return float(now)


def cert_thumbprint(cert: bytes | str) -> str:
    return b64url_encode(hashlib.sha256(certificate_der(cert)).digest())


def _ecdsa_der_to_raw(sig: bytes, size: int = 32) -> bytes:
    ints = children(read_tlv(sig).value)
    return b"".join(int.from_bytes(i.value, "big").to_bytes(size, "big") for i in ints[:2])


def _ecdsa_raw_to_der(sig: bytes) -> bytes:
    half = len(sig) // 2

    def der_int(value: bytes) -> bytes:
        value = value.lstrip(b"\x00") or b"\x00"
        if value[0] & 0x80:
            value = b"\x00" + value
        return b"\x02" + bytes([len(value)]) + value

    body = der_int(sig[:half]) + der_int(sig[half:])
    return b"\x30" + bytes([len(body)]) + body


def issue_token(
    signer: Signer,
    claims: Mapping[str, Any],
    *,
    header_extra: Mapping[str, Any] | None = None,
    gost_byte_order: str = "as-is",
) -> str:
    alg = signer.algorithm
    if alg not in SUPPORTED_ALGS:
        raise EsiaError.local("SG-ESIA-109", detail=f"cannot issue JWT with {alg}")
    header = {"alg": alg, "typ": "JWT", "x5t#S256": cert_thumbprint(signer.certificate_der)}
    header.update(header_extra or {})
    signing_input = (
        b64url_encode(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url_encode(json.dumps(dict(claims), separators=(",", ":"), ensure_ascii=False).encode())
    )
    signature = signer.sign_raw(signing_input.encode("ascii"))
    if alg == "ES256":
        signature = _ecdsa_der_to_raw(signature)
    elif alg.startswith("GOST") and gost_byte_order == "reverse":
        signature = signature[::-1]
    return signing_input + "." + b64url_encode(signature)


def decode_token(token: str) -> tuple[dict[str, Any], dict[str, Any], bytes]:
    """Split and decode a JWT without verifying it: (header, claims, signature)."""
    if not isinstance(token, str):
        raise _fail("token is not a string")
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise _fail(f"malformed: expected 3 dot-separated parts, got {len(parts)}")
    try:
        header = json.loads(b64url_decode(parts[0], what="JWT header"))
        claims = json.loads(b64url_decode(parts[1], what="JWT payload"))
        signature = b64url_decode(parts[2], what="JWT signature")
    except (ValueError, EsiaError) as exc:
        raise _fail(f"malformed: {exc}") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise _fail("malformed: header and payload must be JSON objects")
    return header, claims, signature


def verify_token(
    token: str,
    certificates: Iterable[bytes | str],
    *,
    issuer: str | Iterable[str] | None,
    client_id: str | None = None,
    now: float | datetime | None = None,
    leeway: int = 30,
    gost_byte_order: str = "as-is",
    check_cert_dates: bool = True,
) -> dict[str, Any]:
    """Verify signature (against any configured certificate), ``exp``/``nbf``/``iss``/``client_id``.

    Returns the claims; raises ``EsiaError`` SG-ESIA-110 with the reason otherwise.
    """
    from .certhash import signature_algorithm_for
    from .signing import check_validity
    from .verify import signature_matches

    header, claims, signature = decode_token(token)
    alg = header.get("alg")
    if alg not in SUPPORTED_ALGS:
        raise _fail(f"unsupported alg {alg!r} (accepted: {', '.join(SUPPORTED_ALGS)})")
    certs = [certificate_der(c) for c in certificates]
    if not certs:
        raise _fail("no provider certificates configured to verify against")
    candidates = [c for c in certs if signature_algorithm_for(c) == alg]
    thumb = header.get("x5t#S256")
    if thumb:
        pinned = [c for c in candidates if cert_thumbprint(c) == thumb]
        if not pinned:
            raise _fail(
                f"signed with a certificate that is not configured (x5t#S256={thumb}); if ESIA rotated its "
                "certificate, add the new one to the trusted set"
            )
        candidates = pinned
    if not candidates:
        raise _fail(f"no configured certificate has algorithm {alg}")
    signing_input = token.strip().rsplit(".", 1)[0].encode("ascii")
    if alg == "ES256":
        if len(signature) != 64:
            raise _fail("malformed: ES256 signature must be 64 bytes (r||s)")
        signature = _ecdsa_raw_to_der(signature)
    elif alg.startswith("GOST") and gost_byte_order == "reverse":
        signature = signature[::-1]
    signer_cert = next((c for c in candidates if signature_matches(c, signing_input, signature)), None)
    if signer_cert is None:
        raise _fail(
            f"{alg} signature does not verify with any of {len(candidates)} configured certificate(s)"
        )
    at = _epoch(now)
    if check_cert_dates:
        from datetime import UTC

        try:
            from .der import parse_certificate

            check_validity(parse_certificate(signer_cert), datetime.fromtimestamp(at, UTC))
        except EsiaError as exc:
            raise _fail(f"provider certificate: {exc.detail}") from exc
    for name in ("exp", "nbf", "iat"):
        if name in claims and not isinstance(claims[name], int | float):
            raise _fail(f"claim {name!r} must be a number")
    if "exp" not in claims:
        raise _fail("claim 'exp' is missing")
    if at > claims["exp"] + leeway:
        raise _fail(f"expired {int(at - claims['exp'])} s ago")
    if "nbf" in claims and at + leeway < claims["nbf"]:
        raise _fail(f"not valid for another {int(claims['nbf'] - at)} s (nbf); check the clock")
    if issuer is not None:
        allowed = {issuer} if isinstance(issuer, str) else set(issuer)
        if claims.get("iss") not in allowed:
            raise _fail(f"issuer {claims.get('iss')!r} is not {' or '.join(sorted(allowed))!r}")
    if client_id is not None and claims.get("client_id") != client_id:
        raise _fail(f"client_id {claims.get('client_id')!r} is not ours ({client_id!r})")
    return claims


def access_token_claims(
    *,
    issuer: str,
    client_id: str,
    scope: str,
    subject: str | None = None,
    session_id: str | None = None,
    lifetime_s: int = 3600,
    now: float | datetime | None = None,
) -> dict[str, Any]:
    """Claims shaped like an ESIA access token."""
    at = int(_epoch(now))
    claims: dict[str, Any] = {
        "nbf": at,
        "iat": at,
        "exp": at + lifetime_s,
        "iss": issuer,
        "client_id": client_id,
        "scope": scope,
    }
    if session_id:
        claims["urn:esia:sid"] = session_id
    if subject:
        claims["urn:esia:sbj_id"] = subject
    return claims


def seconds_left(claims: Mapping[str, Any], now: float | datetime | None = None) -> float:
    return float(claims["exp"]) - _epoch(now)


def refresh_due(claims: Mapping[str, Any], margin_s: float, now: float | datetime | None = None) -> bool:
    """True when the token expires within ``margin_s`` seconds (or already has)."""
    return seconds_left(claims, now) <= margin_s


def refresh_at(claims: Mapping[str, Any], *, fraction: float = 0.8) -> float:
    """Epoch time to refresh at: ``fraction`` of the way from ``iat``/``nbf`` to ``exp``."""
    start = float(claims.get("iat", claims.get("nbf", claims["exp"])))
    return start + (float(claims["exp"]) - start) * fraction
