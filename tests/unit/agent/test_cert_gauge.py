"""The signing-certificate gauge follows the certificate file: a renewal shows at the next scrape."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from schoolgate.agent.delivery import Delivery


def _cert_pem(days: int) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "school-001")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _days(delivery: Delivery, path: Path) -> float | None:
    expiry = delivery._cert_expiry(str(path))
    return None if expiry is None else (expiry - time.time()) / 86400


def test_renewed_certificate_shows_at_the_next_scrape(tmp_path: Path) -> None:
    delivery = Delivery.__new__(Delivery)  # the gauge needs no queue, session or provider
    cert = tmp_path / "signer.crt"
    cert.write_bytes(_cert_pem(5))
    first = _days(delivery, cert)
    assert first is not None and 4.9 < first <= 5
    parsed = delivery._cert_cache
    assert _days(delivery, cert) is not None and delivery._cert_cache is parsed  # same file: not parsed again

    renewed = tmp_path / "signer.crt.new"
    renewed.write_bytes(_cert_pem(365))
    os.replace(renewed, cert)  # how the renewal installs it: a new file under the same name
    second = _days(delivery, cert)
    assert second is not None and 364.9 < second <= 365


def test_missing_or_broken_certificate_reads_as_unknown(tmp_path: Path) -> None:
    delivery = Delivery.__new__(Delivery)
    assert delivery._cert_expiry(str(tmp_path / "absent.crt")) is None
    broken = tmp_path / "broken.crt"
    broken.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    assert delivery._cert_expiry(str(broken)) is None
