"""Signature verification: raw signatures and detached CMS, for RSA, ECDSA and GOST certificates.

RSA/ECDSA use ``cryptography`` when importable (fast, in-process) and fall back to ``openssl``; GOST always
uses ``openssl`` with the gost engine. Certificates' validity periods are checked unless told otherwise.
"""

from __future__ import annotations

import functools
from datetime import datetime
from pathlib import Path

from . import openssl
from .certhash import signature_algorithm_for
from .der import certificate_der, parse_certificate, pem_blocks
from .errors import EsiaError
from .signing import GOST_DIGESTS, check_validity

_SHA256_ALGS = {"RS256": "sha256", "ES256": "sha256"}


def _verify_with_cryptography(cert_der: bytes, data: bytes, signature: bytes, algorithm: str) -> bool | None:
    """True/False, or None when ``cryptography`` is not installed."""
    try:
        from cryptography import x509
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, padding
    except ImportError:
        return None
    key = x509.load_der_x509_certificate(cert_der).public_key()
    try:
        if algorithm == "RS256":
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[call-arg,union-attr]
        else:
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg,union-attr]
    except InvalidSignature:
        return False
    except (ValueError, TypeError):
        return False
    return True


@functools.lru_cache(maxsize=64)
def _public_key_pem(cert_der: bytes, engine: str | None, openssl_path: str | None) -> bytes:
    """The certificate's public key as PEM; cached, as many tokens/secrets are verified per certificate."""
    return openssl.run_openssl(
        ["x509", "-inform", "DER", "-pubkey", "-noout"],
        stdin=cert_der,
        engine=engine,
        openssl=openssl_path,
        what="extract public key",
    )


def _verify_with_openssl(
    cert_der: bytes,
    data: bytes,
    signature: bytes,
    algorithm: str,
    *,
    engine: str | None,
    openssl_path: str | None,
) -> bool:
    md = GOST_DIGESTS.get(algorithm) or _SHA256_ALGS.get(algorithm)
    if md is None:
        raise EsiaError.local("SG-ESIA-109", detail=algorithm)
    use_engine = engine if algorithm in GOST_DIGESTS else None
    pub = _public_key_pem(cert_der, use_engine, openssl_path)
    with openssl.private_dir() as tmp:
        pub_path = openssl.write_private(tmp / "pub.pem", pub)
        sig_path = openssl.write_private(tmp / "sig.bin", signature)
        try:
            openssl.run_openssl(
                ["dgst", f"-{md}", "-verify", str(pub_path), "-signature", str(sig_path)],
                stdin=data,
                engine=use_engine,
                openssl=openssl_path,
                what="verify signature",
            )
        except EsiaError as exc:
            if exc.code == "SG-ESIA-101":
                raise
            return False
    return True


def signature_matches(
    cert: bytes | str,
    data: bytes,
    signature: bytes,
    *,
    byte_order: str = "as-is",
    engine: str = openssl.DEFAULT_ENGINE,
    openssl_path: str | None = None,
) -> bool:
    """Whether ``signature`` over ``data`` verifies with the certificate's key (no validity check)."""
    der = certificate_der(cert)
    algorithm = signature_algorithm_for(der)
    if byte_order == "reverse":
        signature = signature[::-1]
    if algorithm in _SHA256_ALGS:
        result = _verify_with_cryptography(der, data, signature, algorithm)
        if result is not None:
            return result
    return _verify_with_openssl(der, data, signature, algorithm, engine=engine, openssl_path=openssl_path)


def verify_raw(
    cert_der: bytes | str,
    data: bytes,
    signature: bytes,
    *,
    byte_order: str = "as-is",
    now: datetime | None = None,
    check_dates: bool = True,
    engine: str = openssl.DEFAULT_ENGINE,
    openssl_path: str | None = None,
) -> None:
    """Raise ``EsiaError`` (SG-ESIA-106/107) unless the raw signature verifies with a valid certificate."""
    der = certificate_der(cert_der)
    if check_dates:
        check_validity(parse_certificate(der), now)
    if not signature_matches(
        der, data, signature, byte_order=byte_order, engine=engine, openssl_path=openssl_path
    ):
        raise EsiaError.local(
            "SG-ESIA-107",
            detail=f"raw {signature_algorithm_for(der)} signature does not verify with this certificate",
        )


def verify_cms_detached(
    cms_der: bytes,
    data: bytes,
    *,
    expected_cert: bytes | str | None = None,
    trusted_ca_file: str | Path | None = None,
    now: datetime | None = None,
    check_dates: bool = True,
    engine: str = openssl.DEFAULT_ENGINE,
    openssl_path: str | None = None,
) -> bytes:
    """Verify a detached CMS/PKCS#7 signature over ``data`` with ``openssl cms -verify``.

    Returns the signer certificate (DER). Without ``trusted_ca_file`` only the signature is checked
    (``-noverify``: ESIA trusts the *registered* certificate, which ``expected_cert`` pins).
    """
    use_engine = engine if openssl.gost_engine_available(engine, openssl_path) else None
    with openssl.private_dir() as tmp:
        cms_path = openssl.write_private(tmp / "sig.p7s", cms_der)
        data_path = openssl.write_private(tmp / "data.bin", data)
        certs_path = tmp / "signer.pem"
        args = [
            "cms",
            "-verify",
            "-binary",
            "-inform",
            "DER",
            "-in",
            str(cms_path),
            "-content",
            str(data_path),
            "-out",
            str(tmp / "content.out"),
            "-certsout",
            str(certs_path),
        ]
        args += ["-CAfile", str(trusted_ca_file)] if trusted_ca_file else ["-noverify"]
        try:
            openssl.run_openssl(
                args, engine=use_engine, openssl=openssl_path, what="cms verify", error_code="SG-ESIA-107"
            )
        except EsiaError as exc:
            if exc.code == "SG-ESIA-107" and use_engine is None:
                exc.detail += "; if the signature is GOST install libengine-gost-openssl"
            raise
        blocks = pem_blocks(certs_path.read_bytes(), "CERTIFICATE") if certs_path.exists() else []
    if not blocks:
        raise EsiaError.local("SG-ESIA-107", detail="CMS carries no signer certificate")
    signer = blocks[0]
    if expected_cert is not None and certificate_der(expected_cert) not in blocks:
        raise EsiaError.local(
            "SG-ESIA-107", detail="CMS was signed with a different certificate than the registered one"
        )
    if expected_cert is not None:
        signer = certificate_der(expected_cert)
    if check_dates:
        check_validity(parse_certificate(signer), now)
    return signer


def document_digest(data: bytes, hash_alg: str) -> str:
    """Hex digest of a document as ``signature_request.document_hash`` carries it."""
    import hashlib

    if hash_alg == "sha256":
        return hashlib.sha256(data).hexdigest()
    if hash_alg in ("gost12_256", "gost12_512"):
        md = "md_gost12_256" if hash_alg == "gost12_256" else "md_gost12_512"
        return openssl.digest(data, md, engine=openssl.DEFAULT_ENGINE).hex()
    raise EsiaError.local("SG-ESIA-109", detail=f"hash_alg {hash_alg!r}")


def verify_signature_result(
    result: dict,
    document: bytes,
    *,
    request: dict | None = None,
    trusted_ca_file: str | Path | None = None,
    now: datetime | None = None,
) -> dict:
    """Check a ``signature_result`` (a parent signed a document): the detached CMS in ``signature`` verifies
    over ``document`` with the certificate in ``certificate``, which must be valid; with ``request`` also
    that the document matches the requested hash and the request ids agree. Returns the signer's facts."""
    from .certhash import certificate_info
    from .encoding import b64url_decode

    if result.get("status") != "signed":
        raise EsiaError.local("SG-ESIA-107", detail=f"status is {result.get('status')!r}, not 'signed'")
    if request is not None:
        if request.get("request_id") != result.get("request_id"):
            raise EsiaError.local("SG-ESIA-107", detail="result belongs to another request_id")
        digest = document_digest(document, str(request.get("hash_alg")))
        if digest != request.get("document_hash"):
            raise EsiaError.local(
                "SG-ESIA-107", detail="the document is not the one whose hash was requested"
            )
    cms = b64url_decode(str(result.get("signature", "")), what="signature")
    cert = b64url_decode(str(result.get("certificate", "")), what="certificate")
    signer = verify_cms_detached(cms, document, expected_cert=cert, trusted_ca_file=trusted_ca_file, now=now)
    return certificate_info(signer)
