"""The lab CA (schoolgate.pki): issuance keeps the subject, honours dates/usages, and `sign` is idempotent."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schoolgate import pki

pytestmark = pytest.mark.skipif(
    subprocess.run(["openssl", "engine", "-t", "gost"], capture_output=True).returncode != 0,
    reason="openssl gost engine (libengine-gost-openssl) not installed",
)


def text(cert: bytes) -> str:
    out = subprocess.run(
        ["openssl", "x509", "-engine", "gost", "-noout", "-text", "-nameopt", "utf8,-esc_msb"],
        input=cert,
        capture_output=True,
        check=True,
    )
    return out.stdout.decode()


def test_issue_keeps_subject_and_sets_usages(tmp_path: Path) -> None:
    ca_cert, ca_key = pki.init_ca(tmp_path / "ca")
    assert (tmp_path / "ca" / "ca.key").stat().st_mode & 0o777 == 0o600
    key = pki.generate_key(tmp_path / "k.pem")
    csr = pki.create_csr(key, "/C=RU/O=Школа/CN=Школа/OGRN=1027700132195")
    cert = pki.issue_certificate(
        csr, ca_cert=ca_cert, ca_key=ca_key, extended_key_usage=("clientAuth", "emailProtection")
    )
    t = text(cert)
    assert "OGRN=1027700132195" in t and "CN=Школа" in t
    assert "Digital Signature, Non Repudiation" in t
    assert "TLS Web Client Authentication, E-mail Protection" in t
    assert "GOST R 34.10-2012 with 256 bit modulus" in t
    verify = subprocess.run(
        ["openssl", "verify", "-engine", "gost", "-CAfile", str(ca_cert), "/dev/stdin"],
        input=cert,
        capture_output=True,
    )
    assert verify.returncode == 0, verify.stderr


def test_back_dated_and_no_key_usage(tmp_path: Path) -> None:
    ca_cert, ca_key = pki.init_ca(tmp_path / "ca")
    csr = pki.create_csr(pki.generate_key(tmp_path / "k.pem"), "/CN=x")
    now = datetime.now(UTC)
    cert = pki.issue_certificate(
        csr,
        ca_cert=ca_cert,
        ca_key=ca_key,
        not_before=now - timedelta(days=10),
        not_after=now - timedelta(days=1),
        key_usage=None,
    )
    t = text(cert)
    assert "Key Usage" not in t
    assert subprocess.run(["openssl", "x509", "-noout", "-checkend", "0"], input=cert).returncode == 1


def test_sign_cli_is_idempotent(tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    run = [sys.executable, "-m", "schoolgate.pki"]
    subprocess.run([*run, "init-ca", "--dir", str(ca_dir)], check=True, capture_output=True)
    csr = tmp_path / "h.csr"
    csr.write_bytes(pki.create_csr(pki.generate_key(tmp_path / "k.pem"), "/CN=host"))
    out = tmp_path / "issued" / "h.crt"
    first = subprocess.run(
        [*run, "sign", "--dir", str(ca_dir), "--csr", str(csr), "--out", str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    assert first.stdout.startswith("issued serial")
    again = subprocess.run(
        [*run, "sign", "--dir", str(ca_dir), "--csr", str(csr), "--out", str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    assert again.stdout.strip() == "unchanged"
    # A new CSR (new key) must be re-issued.
    csr.write_bytes(pki.create_csr(pki.generate_key(tmp_path / "k2.pem"), "/CN=host"))
    third = subprocess.run(
        [*run, "sign", "--dir", str(ca_dir), "--csr", str(csr), "--out", str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    assert third.stdout.startswith("issued serial")


def test_check_cli_tells_whether_a_certificate_still_fits_the_csr(tmp_path: Path) -> None:
    """`check` decides whether the role asks the УЦ's API again: 0 only for this CA's current certificate."""
    ca_cert, ca_key = pki.init_ca(tmp_path / "ca")
    other_ca, _ = pki.init_ca(tmp_path / "other")
    csr = tmp_path / "h.csr"
    csr.write_bytes(pki.create_csr(pki.generate_key(tmp_path / "k.pem"), "/O=Школа/CN=host"))
    crt = tmp_path / "h.crt"

    def check(ca: Path, *extra: str) -> tuple[int, str]:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "schoolgate.pki",
                "check",
                "--cert",
                str(crt),
                "--csr",
                str(csr),
                "--ca",
                str(ca),
                *extra,
            ],
            capture_output=True,
            text=True,
        )
        return proc.returncode, proc.stdout.strip()

    assert check(ca_cert) == (1, "missing")
    crt.write_bytes(pki.issue_certificate(csr.read_bytes(), ca_cert=ca_cert, ca_key=ca_key, days=90))
    assert check(ca_cert) == (0, "current")
    assert check(other_ca) == (1, "outdated")  # does not chain to the given root
    assert check(ca_cert, "--renew-days", "100") == (1, "outdated")  # expires within the renewal margin
    csr.write_bytes(pki.create_csr(pki.generate_key(tmp_path / "k2.pem"), "/O=Школа/CN=host"))
    assert check(ca_cert) == (1, "outdated")  # new key
