"""Session-scoped key material for the ESIA core tests.

Keys are generated at test time into a private temporary directory (never checked in): RSA and EC with
``cryptography``, GOST 2012-256/512 with ``openssl req -engine gost``.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from schoolgate.esia.signing import CommandSigner, CryptographySigner, OpenSSLGostSigner


@dataclass
class KeyPair:
    name: str
    key: Path
    cert: Path

    @property
    def cert_pem(self) -> bytes:
        return self.cert.read_bytes()


def _write_private(path: Path, data: bytes) -> Path:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    return path


def _crypto_pair(directory: Path, name: str, key, *, days_from: int = -1, days_to: int = 365) -> KeyPair:
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"schoolgate test {name}"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Школа № 1"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=days_from))
        .not_valid_after(now + dt.timedelta(days=days_to))
        .sign(key, hashes.SHA256())
    )
    key_path = _write_private(
        directory / f"{name}.key",
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )
    cert_path = directory / f"{name}.crt"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return KeyPair(name, key_path, cert_path)


def _gost_pair(directory: Path, name: str, algorithm: str, paramset: str) -> KeyPair:
    key_path, cert_path = directory / f"{name}.key", directory / f"{name}.crt"
    subprocess.run(
        [
            "openssl",
            "req",
            "-engine",
            "gost",
            "-x509",
            "-newkey",
            algorithm,
            "-pkeyopt",
            f"paramset:{paramset}",
            "-nodes",
            "-keyout",
            str(key_path),
            "-out",
            str(cert_path),
            "-subj",
            f"/CN=schoolgate test {name}/O=School",
            "-days",
            "365",
        ],
        check=True,
        capture_output=True,
    )
    os.chmod(key_path, 0o600)
    return KeyPair(name, key_path, cert_path)


@pytest.fixture(scope="session")
def keydir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("esia-keys")
    os.chmod(path, 0o700)
    return path


@pytest.fixture(scope="session")
def pairs(keydir) -> dict[str, KeyPair]:
    return {
        "rsa": _crypto_pair(keydir, "rsa", rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        "ec": _crypto_pair(keydir, "ec", ec.generate_private_key(ec.SECP256R1())),
        "gost256": _gost_pair(keydir, "gost256", "gost2012_256", "A"),
        "gost512": _gost_pair(keydir, "gost512", "gost2012_512", "A"),
        "gost256b": _gost_pair(keydir, "gost256b", "gost2012_256", "B"),
        "rsa_expired": _crypto_pair(
            keydir,
            "rsa_expired",
            rsa.generate_private_key(public_exponent=65537, key_size=2048),
            days_from=-30,
            days_to=-1,
        ),
        "ec_future": _crypto_pair(
            keydir, "ec_future", ec.generate_private_key(ec.SECP256R1()), days_from=10, days_to=20
        ),
    }


@pytest.fixture(scope="session")
def reverse_tool(keydir) -> Path:
    """A stand-in for a CryptoPro-style tool: signs with openssl, emits the bytes reversed, via files."""
    script = keydir / "cryptopro-like.sh"
    script.write_text(
        "#!/bin/sh\nset -e\n# usage: KEY IN OUT\n"
        'openssl dgst -engine gost -md_gost12_256 -sign "$1" -out "$3.tmp" "$2" 2>/dev/null\n'
        'python3 -c \'import sys; d=open(sys.argv[1],"rb").read(); open(sys.argv[2],"wb").write(d[::-1])\' '
        '"$3.tmp" "$3"\nrm -f "$3.tmp"\n'
    )
    script.chmod(0o700)
    return script


@pytest.fixture(scope="session")
def signers(pairs, reverse_tool) -> dict:
    gost = pairs["gost256"]
    return {
        "cryptography-rsa": CryptographySigner(pairs["rsa"].key, pairs["rsa"].cert),
        "cryptography-ec": CryptographySigner(pairs["ec"].key, pairs["ec"].cert),
        "openssl-gost256": OpenSSLGostSigner(gost.key, gost.cert),
        "openssl-gost512": OpenSSLGostSigner(pairs["gost512"].key, pairs["gost512"].cert),
        "command-cryptopro-reversed": CommandSigner(
            gost.cert,
            raw_command=[str(reverse_tool), str(gost.key), "{in}", "{out}"],
            cms_command=[
                "openssl",
                "cms",
                "-engine",
                "gost",
                "-sign",
                "-binary",
                "-noattr",
                "-outform",
                "DER",
                "-md",
                "md_gost12_256",
                "-signer",
                "{cert}",
                "-inkey",
                str(gost.key),
            ],
            byte_order="reverse",
        ),
    }
