"""auth.mode = mtls: the listener requires a client certificate from listen.client_ca."""

from __future__ import annotations

import datetime as dt
import ssl
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from schoolgate.agent.harness import AgentProcess

from .conftest import grade


def _client_cert(directory: Path, ca_pem: Path, ca_key_pem: bytes | None = None) -> tuple[Path, Path, Path]:
    """A CA of portal clients and one client certificate (clientAuth)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "portal clients CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "portal")]))
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    paths = (directory / "clients-ca.pem", directory / "portal.pem", directory / "portal.key")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


def test_mtls_requires_a_client_certificate_from_the_configured_ca(
    tmp_path: Path, pki: dict[str, Path]
) -> None:
    clients_ca, cert, key = _client_cert(tmp_path / "clients", pki["ca"])
    agent = AgentProcess(
        tmp_path / "agent",
        {
            "auth": {"mode": "mtls"},
            "listen": {
                "tls_cert": str(pki["cert"]),
                "tls_key": str(pki["key"]),
                "client_ca": str(clients_ca),
            },
        },
    ).start()
    try:
        import json

        url = f"https://127.0.0.1:{agent.port}/v1/records/grade"
        body = json.dumps(grade()).encode()
        good = ssl.create_default_context(cafile=str(pki["ca"]))
        good.load_cert_chain(str(cert), str(key))
        req = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(req, context=good, timeout=10) as resp:
            assert resp.status == 202
        anonymous = ssl.create_default_context(cafile=str(pki["ca"]))
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            urllib.request.urlopen(
                urllib.request.Request(url, data=body, method="POST"), context=anonymous, timeout=10
            )
    finally:
        agent.stop()
