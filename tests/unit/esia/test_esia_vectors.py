"""Known-answer vectors, checked in and produced by the openssl CLI (tests/data/esia/vectors/make_vectors.sh).

Verify-only: certificate + data + signature. No private key is stored anywhere in the repository.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from schoolgate.esia.certhash import client_certificate_hash, streebog256
from schoolgate.esia.encoding import b64url_encode
from schoolgate.esia.errors import EsiaError
from schoolgate.esia.secret import verify_client_secret
from schoolgate.esia.tokens import verify_token
from schoolgate.esia.verify import signature_matches, verify_cms_detached, verify_raw

VECTORS = Path(__file__).resolve().parents[2] / "data" / "esia" / "vectors"
NAMES = ["gost2012-256", "gost2012-512", "rsa2048", "ecdsa-p256"]
V2 = {
    "client_id": "SCHOOL-001",
    "scope": "openid fullname",
    "timestamp": "2026.12.04 10:00:00 +0000",
    "state": "c0a8f5d2-1111-4222-8333-444455556666",
    "redirect_uri": "https://school.example/esia/cb",
}


def _read(name: str, file: str) -> bytes:
    return (VECTORS / name / file).read_bytes()


def test_no_private_keys_checked_in():
    for path in VECTORS.rglob("*"):
        if path.is_file():
            assert b"PRIVATE KEY" not in path.read_bytes(), path


def test_streebog_standard_vector():
    # GOST R 34.11-2012 / RFC 6986 example M1, 256-bit digest as printed by OpenSSL
    m1 = b"012345678901234567890123456789012345678901234567890123456789012"
    assert streebog256(m1) == "9d151eefd8590b89daa6ba6cb74af9275dd051026bb149a452fd84e5e57b5500"


@pytest.mark.parametrize("name", NAMES)
def test_vector_cert_hash(name):
    expected = _read(name, "cert_hash_gost12_256.txt").decode().strip()
    assert client_certificate_hash(_read(name, "cert.pem")) == expected


@pytest.mark.parametrize("name", NAMES)
def test_vector_raw_signature(name):
    cert, message = _read(name, "cert.pem"), _read(name, "message.txt")
    verify_raw(cert, message, _read(name, "raw.sig"), check_dates=False)
    assert not signature_matches(cert, message + b" ", _read(name, "raw.sig"))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("variant", ["cms-noattr.p7s", "cms-attr.p7s"])
def test_vector_cms(name, variant):
    cert, message = _read(name, "cert.pem"), _read(name, "message.txt")
    verify_cms_detached(_read(name, variant), message, expected_cert=cert, check_dates=False)
    with pytest.raises(EsiaError):
        verify_cms_detached(_read(name, variant), message[:-1], check_dates=False)


def test_vector_cryptopro_byte_order():
    cert, message = _read("gost2012-256", "cert.pem"), _read("gost2012-256", "message.txt")
    reversed_sig = _read("gost2012-256", "raw-cryptopro-order.sig")
    assert not signature_matches(cert, message, reversed_sig)
    assert signature_matches(cert, message, reversed_sig, byte_order="reverse")


@pytest.mark.parametrize("name", ["gost2012-256", "rsa2048"])
def test_vector_as_v2_client_secret(name):
    cert = _read(name, "cert.pem")
    assert _read(name, "message.txt").decode() == "".join(V2.values())
    check = verify_client_secret(
        "v2",
        b64url_encode(_read(name, "raw.sig")),
        certificate=cert,
        client_certificate_hash=_read(name, "cert_hash_gost12_256.txt").decode().strip(),
        max_skew_s=10**9,
        check_dates=False,
        **V2,
    )
    assert check.ok, check


@pytest.mark.parametrize("name", ["gost2012-256", "gost2012-512", "rsa2048"])
def test_vector_tokens(name):
    token = _read(name, "token.jwt").decode().strip()
    claims = verify_token(
        token,
        [_read(n, "cert.pem") for n in NAMES],
        issuer="http://esia-portal1.test.gosuslugi.ru/",
        client_id="SCHOOL-001",
        now=1798761660,
    )
    assert claims["urn:esia:sbj_id"] == "1000299654"
    with pytest.raises(EsiaError, match="expired"):
        verify_token(token, [_read(name, "cert.pem")], issuer=None, now=1798765200 + 31)
