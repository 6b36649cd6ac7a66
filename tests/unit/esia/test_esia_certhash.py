"""client_certificate_hash and the stdlib certificate reader."""

from __future__ import annotations

import hashlib
import subprocess

import pytest
from cryptography import x509

from schoolgate.cli import main
from schoolgate.esia.certhash import certificate_info, client_certificate_hash, wrong_hash_candidates
from schoolgate.esia.der import certificate_der, parse_certificate
from schoolgate.esia.errors import EsiaError


@pytest.mark.parametrize("name", ["gost256", "gost512"])
def test_cert_hash_equals_openssl_pipeline(pairs, name, capsys):
    cert = pairs[name].cert
    der = subprocess.run(
        ["openssl", "x509", "-in", str(cert), "-outform", "der"], capture_output=True, check=True
    ).stdout
    out = subprocess.run(
        ["openssl", "dgst", "-engine", "gost", "-md_gost12_256"], input=der, capture_output=True, check=True
    ).stdout.decode()
    expected = out.split("= ")[-1].strip()
    assert len(expected) == 64
    assert client_certificate_hash(cert.read_bytes()) == expected
    assert client_certificate_hash(der) == expected  # DER input gives the same
    assert main(["esia", "cert-hash", str(cert)]) == 0
    assert capsys.readouterr().out.strip() == expected


def test_hash_is_over_der_not_pem(pairs):
    pem = pairs["gost256"].cert_pem
    good = client_certificate_hash(pem)
    candidates = wrong_hash_candidates(pem, pem)
    assert good not in candidates.values()
    assert (
        candidates["SHA-1 over DER (certificate thumbprint)"]
        == hashlib.sha1(certificate_der(pem)).hexdigest()
    )
    assert len(candidates["GOST over the PEM file instead of DER"]) == 64
    assert client_certificate_hash(pem, hash_alg="sha256") == hashlib.sha256(certificate_der(pem)).hexdigest()
    with pytest.raises(ValueError):
        client_certificate_hash(pem, hash_alg="sha1")


@pytest.mark.parametrize("name", ["rsa", "ec", "rsa_expired"])
def test_stdlib_reader_agrees_with_cryptography(pairs, name):
    pem = pairs[name].cert_pem
    ref = x509.load_pem_x509_certificate(pem)
    parsed = parse_certificate(pem)
    assert parsed.serial == ref.serial_number
    assert parsed.not_after == ref.not_valid_after_utc
    assert parsed.not_before == ref.not_valid_before_utc
    assert dict(parsed.subject)["CN"] == f"schoolgate test {name}"
    assert dict(parsed.subject)["O"] == "Школа № 1"


def test_certificate_info_for_gost(pairs):
    info = certificate_info(pairs["gost512"].cert_pem)
    assert info["algorithm"] == "GOST3410_2012_512" and info["is_gost"]
    assert info["subject_fields"]["CN"] == "schoolgate test gost512"
    assert not info["expired"] and info["days_left"] >= 364
    assert certificate_info(pairs["rsa_expired"].cert_pem)["expired"] is True


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"hello",
        b"-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        b"\x30\x82\xff\xff\x01",
        b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ],
)
def test_garbage_certificates_give_clear_errors(bad):
    with pytest.raises(EsiaError) as info:
        client_certificate_hash(bad)
    assert info.value.code == "SG-ESIA-108"


def test_cli_cert_hash_missing_file(tmp_path, capsys):
    assert main(["esia", "cert-hash", str(tmp_path / "nope.crt")]) == 1
    assert "cannot read" in capsys.readouterr().err
