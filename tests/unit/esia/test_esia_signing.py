"""Signers and verification, including interoperability with the real openssl binary."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from schoolgate.esia import openssl as ossl
from schoolgate.esia.der import certificate_to_pem
from schoolgate.esia.errors import EsiaError
from schoolgate.esia.signing import CommandSigner, CryptographySigner, OpenSSLGostSigner, Signer, make_signer
from schoolgate.esia.verify import signature_matches, verify_cms_detached, verify_raw

DATA = b"openid fullname2026.12.04 10:00:00 +0000SCHOOL-001c0a8f5d2-1111-4222-8333-444455556666"


def test_every_signer_satisfies_the_protocol(signers):
    for signer in signers.values():
        assert isinstance(signer, Signer)
        assert signer.algorithm in ("RS256", "ES256", "GOST3410_2012_256", "GOST3410_2012_512")


@pytest.mark.parametrize(
    "name",
    [
        "cryptography-rsa",
        "cryptography-ec",
        "openssl-gost256",
        "openssl-gost512",
        "command-cryptopro-reversed",
    ],
)
def test_raw_and_cms_round_trip(signers, name):
    signer = signers[name]
    raw = signer.sign_raw(DATA)
    verify_raw(signer.certificate_der, DATA, raw)
    assert not signature_matches(signer.certificate_der, DATA + b"x", raw)
    cms = signer.sign_cms_detached(DATA)
    assert verify_cms_detached(cms, DATA, expected_cert=signer.certificate_der) == signer.certificate_der
    with pytest.raises(EsiaError) as info:
        verify_cms_detached(cms, DATA + b"x")
    assert info.value.code == "SG-ESIA-107"


def _openssl(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, check=False)


@pytest.mark.parametrize("pair_name,md", [("gost256", "md_gost12_256"), ("gost512", "md_gost12_512")])
def test_gost_raw_interop_with_openssl_dgst_both_ways(pairs, tmp_path, pair_name, md):
    pair = pairs[pair_name]
    signer = OpenSSLGostSigner(pair.key, pair.cert)
    data_file = tmp_path / "data"
    data_file.write_bytes(DATA)
    pub = _openssl("x509", "-engine", "gost", "-in", str(pair.cert), "-pubkey", "-noout").stdout
    (tmp_path / "pub.pem").write_bytes(pub)
    # ours -> openssl dgst -verify
    (tmp_path / "ours.sig").write_bytes(signer.sign_raw(DATA))
    result = _openssl(
        "dgst",
        "-engine",
        "gost",
        f"-{md}",
        "-verify",
        str(tmp_path / "pub.pem"),
        "-signature",
        str(tmp_path / "ours.sig"),
        str(data_file),
    )
    assert result.returncode == 0, result.stderr
    assert b"Verified OK" in result.stdout
    # openssl dgst -sign -> ours
    theirs = _openssl("dgst", "-engine", "gost", f"-{md}", "-sign", str(pair.key), str(data_file)).stdout
    verify_raw(pair.cert_pem, DATA, theirs)
    # the CryptoPro order is recognised only when asked for
    assert not signature_matches(pair.cert_pem, DATA, theirs[::-1])
    assert signature_matches(pair.cert_pem, DATA, theirs[::-1], byte_order="reverse")


@pytest.mark.parametrize("name", ["openssl-gost256", "cryptography-rsa", "cryptography-ec"])
def test_cms_interop_with_openssl_cms_both_ways(signers, pairs, tmp_path, name):
    signer = signers[name]
    pair = {
        "openssl-gost256": pairs["gost256"],
        "cryptography-rsa": pairs["rsa"],
        "cryptography-ec": pairs["ec"],
    }[name]
    engine = ["-engine", "gost"] if "gost" in name else []
    data_file = tmp_path / "data"
    data_file.write_bytes(DATA)
    # ours -> openssl cms -verify
    (tmp_path / "ours.p7s").write_bytes(signer.sign_cms_detached(DATA))
    result = _openssl(
        "cms",
        *engine,
        "-verify",
        "-binary",
        "-inform",
        "DER",
        "-in",
        str(tmp_path / "ours.p7s"),
        "-content",
        str(data_file),
        "-noverify",
        "-out",
        os.devnull,
    )
    assert result.returncode == 0, result.stderr
    assert b"Verification successful" in result.stderr
    # openssl cms -sign (with signed attributes, as PHP/CryptoPro clients do) -> ours
    md = "md_gost12_256" if "gost" in name else "sha256"
    theirs = _openssl(
        "cms",
        *engine,
        "-sign",
        "-binary",
        "-outform",
        "DER",
        "-md",
        md,
        "-signer",
        str(pair.cert),
        "-inkey",
        str(pair.key),
        "-in",
        str(data_file),
    ).stdout
    assert verify_cms_detached(theirs, DATA, expected_cert=pair.cert_pem) == signer.certificate_der


def test_wrong_key_for_certificate_is_refused_clearly(pairs):
    with pytest.raises(EsiaError) as info:
        OpenSSLGostSigner(pairs["gost256b"].key, pairs["gost256"].cert)
    assert info.value.code == "SG-ESIA-105"
    with pytest.raises(EsiaError) as info:
        CryptographySigner(pairs["rsa_expired"].key, pairs["rsa"].cert)
    assert info.value.code == "SG-ESIA-105"
    assert "openssl pkey -pubout" in info.value.hint


def test_expired_and_not_yet_valid_certificates(pairs):
    expired = CryptographySigner(pairs["rsa_expired"].key, pairs["rsa_expired"].cert)
    with pytest.raises(EsiaError) as info:
        expired.sign_raw(DATA)
    assert info.value.code == "SG-ESIA-106" and "expired on" in info.value.detail
    lenient = CryptographySigner(pairs["rsa_expired"].key, pairs["rsa_expired"].cert, allow_expired=True)
    signature = lenient.sign_raw(DATA)
    with pytest.raises(EsiaError) as info:
        verify_raw(pairs["rsa_expired"].cert_pem, DATA, signature)
    assert info.value.code == "SG-ESIA-106"
    verify_raw(pairs["rsa_expired"].cert_pem, DATA, signature, check_dates=False)
    future = CryptographySigner(pairs["ec_future"].key, pairs["ec_future"].cert)
    with pytest.raises(EsiaError, match="valid only from"):
        future.sign_cms_detached(DATA)


def test_missing_engine_names_the_debian_package(pairs):
    signer = OpenSSLGostSigner(pairs["gost256"].key, pairs["gost256"].cert)
    signer.engine = "gost-not-installed"
    with pytest.raises(EsiaError) as info:
        signer.sign_raw(DATA)
    assert info.value.code == "SG-ESIA-101"
    assert "libengine-gost-openssl" in str(info.value) and "libengine-gost-openssl" in info.value.hint


def test_missing_openssl_binary_names_the_setting(pairs):
    with pytest.raises(EsiaError) as info:
        OpenSSLGostSigner(pairs["gost256"].key, pairs["gost256"].cert, openssl_path="/nonexistent/openssl")
    assert info.value.code == "SG-ESIA-102" and "SCHOOLGATE_OPENSSL" in info.value.hint


def test_command_signer_errors_name_the_setting(pairs, tmp_path):
    signer = CommandSigner(pairs["gost256"].cert, raw_command=["/nonexistent/cryptcp", "-sign", "{in}"])
    with pytest.raises(EsiaError, match="raw_command") as info:
        signer.sign_raw(DATA)
    assert info.value.code == "SG-ESIA-103"
    with pytest.raises(EsiaError, match="cms_command"):
        signer.sign_cms_detached(DATA)
    failing = CommandSigner(
        pairs["gost256"].cert, raw_command=["sh", "-c", "echo 'PIN неверный' >&2; exit 3"]
    )
    with pytest.raises(EsiaError, match="rc=3"):
        failing.sign_raw(DATA)
    with pytest.raises(EsiaError, match="byte_order"):
        CommandSigner(pairs["gost256"].cert, byte_order="little")


def test_command_signer_base64_output_over_stdin(pairs):
    # a tool that reads stdin and prints base64: openssl dgst piped through base64
    cmd = [
        "sh",
        "-c",
        f"openssl dgst -engine gost -md_gost12_256 -sign {pairs['gost256'].key} 2>/dev/null | base64",
    ]
    signer = CommandSigner(pairs["gost256"].cert, raw_command=cmd, output="base64")
    verify_raw(signer.certificate_der, DATA, signer.sign_raw(DATA))


def test_make_signer_config_errors(pairs):
    with pytest.raises(EsiaError, match="'type' must be"):
        make_signer({"type": "hsm", "cert": str(pairs["rsa"].cert)})
    with pytest.raises(EsiaError, match="'key'"):
        make_signer({"type": "openssl-gost", "cert": str(pairs["gost256"].cert)})
    with pytest.raises(EsiaError, match="'cert'"):
        make_signer({"type": "cryptography", "key": str(pairs["rsa"].key)})
    with pytest.raises(EsiaError) as info:
        make_signer({"type": "openssl-gost", "key": str(pairs["rsa"].key), "cert": str(pairs["rsa"].cert)})
    assert info.value.code == "SG-ESIA-109"
    signer = make_signer({"type": "cryptography", "key": str(pairs["ec"].key), "cert": str(pairs["ec"].cert)})
    assert signer.algorithm == "ES256"


def test_key_given_as_bytes_is_written_0600_and_removed(pairs, monkeypatch, tmp_path):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    seen: list[tuple[int, int]] = []
    original = ossl.run_openssl

    def spy(args, **kwargs):
        for directory in tmp_path.iterdir():
            seen.append((stat.S_IMODE(directory.stat().st_mode), -1))
            for item in directory.iterdir():
                seen.append((stat.S_IMODE(directory.stat().st_mode), stat.S_IMODE(item.stat().st_mode)))
        return original(args, **kwargs)

    monkeypatch.setattr(ossl, "run_openssl", spy)
    signer = OpenSSLGostSigner(pairs["gost256"].key.read_bytes(), pairs["gost256"].cert)
    verify_raw(signer.certificate_der, DATA, signer.sign_raw(DATA))
    assert seen and all(dir_mode == 0o700 and file_mode in (-1, 0o600) for dir_mode, file_mode in seen)
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_key_password_is_not_on_the_command_line(pairs, tmp_path, monkeypatch):
    encrypted = tmp_path / "enc.key"
    subprocess.run(
        [
            "openssl",
            "pkey",
            "-engine",
            "gost",
            "-in",
            str(pairs["gost256"].key),
            "-aes256",
            "-passout",
            "pass:секрет-1",
            "-out",
            str(encrypted),
        ],
        check=True,
        capture_output=True,
    )
    calls = []
    original = subprocess.run

    def spy(argv, *args, **kwargs):
        calls.append(list(argv))
        return original(argv, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", spy)
    signer = OpenSSLGostSigner(encrypted, pairs["gost256"].cert, password="секрет-1")
    verify_raw(signer.certificate_der, DATA, signer.sign_raw(DATA))
    assert calls and not any("секрет-1" in " ".join(argv) for argv in calls)
    assert "SCHOOLGATE_ESIA_KEYPASS" not in os.environ


def test_certificate_to_pem_round_trip(pairs):
    from schoolgate.esia.der import certificate_der

    der = certificate_der(pairs["gost512"].cert_pem)
    assert certificate_der(certificate_to_pem(der)) == der


@pytest.mark.parametrize("name", ["openssl-gost256", "cryptography-rsa"])
def test_parent_signs_a_document_signature_result(signers, name):
    import uuid

    from schoolgate.esia.contracts import validate
    from schoolgate.esia.encoding import b64url_encode
    from schoolgate.esia.verify import document_digest, verify_signature_result

    document = "Согласие на обработку персональных данных, документ doc-77".encode()
    alg = "gost12_256" if "gost" in name else "sha256"
    request = {
        "request_id": str(uuid.uuid4()),
        "school_id": "school-001",
        "document_id": "doc-77",
        "document_hash": document_digest(document, alg),
        "hash_alg": alg,
        "signer_role": "parent",
        "signer_id": "u-555",
        "created_at": "2026-09-16T09:00:00Z",
    }
    assert validate("signature_request", request) == []
    signer = signers[name]
    result = {
        "request_id": request["request_id"],
        "status": "signed",
        "signature": b64url_encode(signer.sign_cms_detached(document)),
        "certificate": b64url_encode(signer.certificate_der),
        "signed_at": "2026-09-16T09:05:00Z",
    }
    assert validate("signature_result", result) == []
    info = verify_signature_result(result, document, request=request)
    assert info["algorithm"] == signer.algorithm
    with pytest.raises(EsiaError, match="not the one whose hash"):
        verify_signature_result(result, document + b".", request=request)
    with pytest.raises(EsiaError):
        verify_signature_result(result, document + b".")
    with pytest.raises(EsiaError, match="another request_id"):
        verify_signature_result(result, document, request={**request, "request_id": str(uuid.uuid4())})
    with pytest.raises(EsiaError, match="not 'signed'"):
        verify_signature_result({**result, "status": "declined"}, document)


@pytest.mark.parametrize("name", ["cryptography-rsa", "cryptography-ec"])
def test_rsa_ecdsa_verification_without_cryptography_uses_openssl(signers, name, monkeypatch):
    # target hosts may lack python3-cryptography: verification must still work (via the openssl binary)
    from schoolgate.esia import verify

    monkeypatch.setattr(verify, "_verify_with_cryptography", lambda *args: None)
    signer = signers[name]
    signature = signer.sign_raw(DATA)
    verify_raw(signer.certificate_der, DATA, signature)
    assert not signature_matches(signer.certificate_der, DATA + b"!", signature)
