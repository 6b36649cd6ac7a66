"""ESIA ``client_secret``: timestamp, state, the signed string per version, builders and verifiers.

Signed strings (concatenated without separators):

* v1 (``/aas/oauth2/ac`` and ``/te``): ``scope + timestamp + client_id + state``, signed as a *detached CMS*
  (PKCS#7) with the certificate embedded;
* v2 (``/aas/oauth2/v2/ac``): ``client_id + scope + timestamp + state + redirect_uri``, *raw* signature;
* v3 (``/aas/oauth2/v3/te``): the v2 string ``+ code`` (code exchange) or ``+ refresh_token`` (refresh);
  neither for ``client_credentials``.

The secret is base64url **without padding**; verifiers accept padded and standard base64 too.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from .certhash import client_certificate_hash as compute_cert_hash
from .certhash import wrong_hash_candidates
from .der import certificate_der
from .encoding import b64url_decode, b64url_encode
from .errors import EsiaError
from .signing import Signer

VERSIONS = ("v1", "v2", "v3")
TIMESTAMP_FORMAT = "%Y.%m.%d %H:%M:%S %z"
_TIMESTAMP_RE = re.compile(r"^\d{4}\.\d{2}\.\d{2} \d{2}:\d{2}:\d{2} [+-]\d{4}$")
# DER of OID 1.2.840.113549.1.7.2 (CMS SignedData)
_SIGNED_DATA_OID = bytes.fromhex("06092a864886f70d010702")
_UUID4_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def esia_timestamp(dt: datetime | None = None) -> str:
    """``yyyy.MM.dd HH:mm:ss +0000``; naive datetimes are taken as UTC, aware ones keep their offset."""
    dt = dt or datetime.now(UTC)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.strftime(TIMESTAMP_FORMAT)


def parse_esia_timestamp(text: str) -> datetime:
    if not _TIMESTAMP_RE.match(text or ""):
        raise EsiaError.from_code(
            "ESIA-007015", detail=f"timestamp {text!r} is not 'yyyy.MM.dd HH:mm:ss +0000'"
        )
    try:
        return datetime.strptime(text, TIMESTAMP_FORMAT)
    except ValueError as exc:
        raise EsiaError.from_code("ESIA-007015", detail=f"timestamp {text!r}: {exc}") from exc


def new_state() -> str:
    return str(uuid.uuid4())


def is_uuid4(text: str) -> bool:
    return bool(_UUID4_RE.match(text or ""))


def secret_message(
    version: str,
    *,
    client_id: str,
    scope: str,
    timestamp: str,
    state: str,
    redirect_uri: str | None = None,
    code: str | None = None,
    refresh_token: str | None = None,
) -> str:
    """The exact string that is signed for ``version``."""
    if version == "v1":
        return scope + timestamp + client_id + state
    if version not in ("v2", "v3"):
        raise EsiaError.local("SG-ESIA-111", detail=f"version must be v1, v2 or v3, not {version!r}")
    if redirect_uri is None:
        raise EsiaError.from_code("ESIA-007014", detail=f"{version} signs redirect_uri; it is missing")
    if code is not None and refresh_token is not None:
        raise EsiaError.local(
            "SG-ESIA-111", detail="give code (code exchange) or refresh_token (refresh), not both"
        )
    if version == "v2" and (code or refresh_token):
        raise EsiaError.local(
            "SG-ESIA-111", detail="v2 (/v2/ac) signs no code/refresh_token; use v3 for /v3/te"
        )
    return client_id + scope + timestamp + state + redirect_uri + (code or refresh_token or "")


def _check_params(client_id: str, scope: str, timestamp: str, state: str) -> None:
    missing = [
        name
        for name, value in (
            ("client_id", client_id),
            ("scope", scope),
            ("timestamp", timestamp),
            ("state", state),
        )
        if not value
    ]
    if missing:
        raise EsiaError.from_code("ESIA-007014", detail="missing: " + ", ".join(missing))
    parse_esia_timestamp(timestamp)
    if not is_uuid4(state):
        raise EsiaError.local("SG-ESIA-111", detail=f"state {state!r} is not a lower-case UUIDv4")


def client_secret(
    version: str,
    signer: Signer,
    *,
    client_id: str,
    scope: str,
    timestamp: str,
    state: str,
    redirect_uri: str | None = None,
    code: str | None = None,
    refresh_token: str | None = None,
) -> str:
    _check_params(client_id, scope, timestamp, state)
    message = secret_message(
        version,
        client_id=client_id,
        scope=scope,
        timestamp=timestamp,
        state=state,
        redirect_uri=redirect_uri,
        code=code,
        refresh_token=refresh_token,
    ).encode("utf-8")
    signature = signer.sign_cms_detached(message) if version == "v1" else signer.sign_raw(message)
    return b64url_encode(signature)


def client_secret_v1(signer: Signer, *, client_id: str, scope: str, timestamp: str, state: str) -> str:
    return client_secret("v1", signer, client_id=client_id, scope=scope, timestamp=timestamp, state=state)


def client_secret_v2(signer: Signer, **params: str | None) -> str:
    """v2 string for ``/v2/ac`` (client_id, scope, timestamp, state, redirect_uri); with ``code`` or
    ``refresh_token`` it is the v3 (``/v3/te``) string — the same call site serves both steps of a login."""
    version = "v3" if (params.get("code") or params.get("refresh_token")) else "v2"
    return client_secret(version, signer, **params)  # type: ignore[arg-type]


def client_secret_v3(signer: Signer, **params: str | None) -> str:
    """v3 string for ``/v3/te``: the v2 fields plus ``code`` or ``refresh_token``."""
    return client_secret("v3", signer, **params)  # type: ignore[arg-type]


@dataclass
class SecretCheck:
    """Outcome of a verification: ``ok`` and, when not, every problem found and likely causes."""

    ok: bool
    version: str
    certificate_hash: str | None = None
    problems: list[str] = field(default_factory=list)
    likely_causes: list[str] = field(default_factory=list)

    def raise_for_problems(self) -> None:
        if not self.ok:
            detail = "; ".join(self.problems)
            if self.likely_causes:
                detail += " — likely: " + "; ".join(self.likely_causes)
            raise EsiaError.from_code("ESIA-007053", detail=detail)


def _variants(version: str, params: dict[str, str | None]) -> list[tuple[str, str]]:
    """Strings other clients sign by mistake, with a description of the mistake."""
    p = {k: v or "" for k, v in params.items()}
    v1 = p["scope"] + p["timestamp"] + p["client_id"] + p["state"]
    v2 = p["client_id"] + p["scope"] + p["timestamp"] + p["state"] + p["redirect_uri"]
    extra = p["code"] or p["refresh_token"]
    out = [
        ("the v1 order scope+timestamp+client_id+state was signed", v1),
        ("the v2 order client_id+scope+timestamp+state+redirect_uri was signed (no code/refresh_token)", v2),
        (
            "redirect_uri was left out of the signed string",
            p["client_id"] + p["scope"] + p["timestamp"] + p["state"] + extra,
        ),
    ]
    if p["code"] or p["refresh_token"]:
        out.append(("code/refresh_token was appended, but this version does not sign it", v2 + extra))
    out.append(
        (
            "scope items were joined with ',' instead of a space in the signed string",
            v2.replace(p["scope"], p["scope"].replace(" ", ",")),
        )
    )
    if p["timestamp"]:
        try:
            ts = parse_esia_timestamp(p["timestamp"])
            for hours in (3, -3):
                shifted = ts.astimezone(UTC) + timedelta(hours=hours)
                wrong = shifted.strftime("%Y.%m.%d %H:%M:%S ") + p["timestamp"][-5:]
                out.append(
                    (
                        f"a timestamp shifted by {hours:+d} h (time zone mix-up) was signed",
                        (v1 if version == "v1" else v2 + (extra if version == "v3" else "")).replace(
                            p["timestamp"], wrong
                        ),
                    )
                )
        except EsiaError:
            pass
    expected = secret_message(version, **params) if version == "v1" or p["redirect_uri"] else ""
    return [(desc, msg) for desc, msg in out if msg != expected]


def verify_client_secret(
    version: str,
    secret: str,
    *,
    certificate: bytes | str,
    client_id: str,
    scope: str,
    timestamp: str,
    state: str,
    redirect_uri: str | None = None,
    code: str | None = None,
    refresh_token: str | None = None,
    client_certificate_hash: str | None = None,
    hash_alg: str = "gost12_256",
    now: datetime | None = None,
    max_skew_s: int = 3600,
    accept_reversed: bool = False,
    diagnose: bool = True,
    check_dates: bool = True,
) -> SecretCheck:
    """Verify a client_secret against the *registered* certificate; never raises for a wrong secret.

    Returns a ``SecretCheck``; call ``raise_for_problems()`` to turn problems into ESIA-007053. Missing
    parameters raise ESIA-007014, a malformed timestamp ESIA-007015 (as the provider would).
    """
    from .verify import signature_matches, verify_cms_detached

    _check_params(client_id, scope, timestamp, state)
    cert_der = certificate_der(certificate)
    params = {
        "client_id": client_id,
        "scope": scope,
        "timestamp": timestamp,
        "state": state,
        "redirect_uri": redirect_uri,
        "code": code,
        "refresh_token": refresh_token,
    }
    if version in ("v2", "v3") and not client_certificate_hash:
        raise EsiaError.from_code("ESIA-007014", detail=f"{version} needs client_certificate_hash")
    check = SecretCheck(ok=True, version=version)
    now = now or datetime.now(UTC)
    skew = abs((now - parse_esia_timestamp(timestamp)).total_seconds())
    if skew > max_skew_s:
        check.problems.append(f"timestamp is {skew:.0f} s away from server time (max {max_skew_s} s)")
        check.likely_causes.append("clock not synchronised (chrony) or local time sent with +0000")
    if check_dates:
        from .der import parse_certificate
        from .signing import check_validity

        try:
            check_validity(parse_certificate(cert_der), now)
        except EsiaError as exc:
            check.problems.append(f"registered certificate: {exc.detail}")
    if client_certificate_hash:
        correct = compute_cert_hash(cert_der, hash_alg=hash_alg)
        check.certificate_hash = correct
        given = client_certificate_hash.strip().lower()
        if given != correct:
            check.problems.append(
                f"client_certificate_hash {given[:16]}… does not match the registered "
                f"certificate's {correct[:16]}…"
            )
            from .der import certificate_to_pem

            for mistake, value in wrong_hash_candidates(cert_der, certificate_to_pem(cert_der)).items():
                if value == given:
                    check.likely_causes.append(mistake)
            if not check.likely_causes:
                check.likely_causes.append("hash of another certificate, or hash over PEM / with SHA-1")
    try:
        raw = b64url_decode(secret, what="client_secret")
    except EsiaError as exc:
        check.problems.append(f"client_secret is not base64url: {exc.detail}")
        check.ok = False
        return check
    message = secret_message(version, **params).encode("utf-8")

    def matches(data: bytes, sig: bytes = raw) -> bool:
        if version == "v1":
            try:
                verify_cms_detached(sig, data, expected_cert=cert_der, check_dates=False)
            except EsiaError as exc:
                if exc.code == "SG-ESIA-101":
                    raise
                return False
            return True
        return signature_matches(cert_der, data, sig)

    if not matches(message):
        if version != "v1" and accept_reversed and matches(message, raw[::-1]):
            pass
        else:
            check.problems.append(
                f"signature over the {version} string does not verify with the registered certificate"
            )
            if diagnose:
                check.likely_causes.extend(_diagnose(version, raw, params, cert_der, matches))
    check.ok = not check.problems
    return check


def _diagnose(
    version: str,
    raw: bytes,
    params: dict[str, str | None],
    cert_der: bytes,
    check: Callable[..., bool],
) -> list[str]:
    message = secret_message(version, **params).encode("utf-8")
    if version != "v1" and check(message, raw[::-1]):
        return [
            "signature bytes are reversed (CryptoPro order): set the command signer's byte_order: reverse"
        ]
    if version == "v1":
        causes = _cms_signer_mismatch(raw, message, cert_der)
        if causes:
            return causes
    elif raw[:1] == b"\x30" and _SIGNED_DATA_OID in raw[:32]:
        return ["a detached CMS (v1 style) was sent where v2/v3 expect a raw signature"]
    for description, variant in _variants(version, params):
        if check(variant.encode("utf-8")):
            return [description]
    return [
        "different values were signed than were sent (compare client_id, scope, timestamp, state, "
        "redirect_uri byte for byte), or the signing key is not the registered certificate's key"
    ]


def _cms_signer_mismatch(raw: bytes, message: bytes, cert_der: bytes) -> list[str]:
    from .verify import verify_cms_detached

    try:
        signer = verify_cms_detached(raw, message, check_dates=False)
    except EsiaError:
        return []
    if signer != cert_der:
        return ["signed with a certificate that is not the registered one"]
    return []
