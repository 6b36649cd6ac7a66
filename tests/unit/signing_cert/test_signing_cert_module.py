"""The `signing_cert` module, run for real (ansible, local connection, openssl + gost engine, lab CA)."""

from __future__ import annotations

import base64
import re
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schoolgate import pki

SUBJECT = {
    "C": "RU",
    "ST": "77 г. Москва",
    "O": "МБОУ «Школа № 1»",
    "CN": "МБОУ «Школа № 1» / портал",
    "OGRN": "1027700132195",
    "INNLE": "7701234567",
}

pytestmark = [
    pytest.mark.skipif(
        subprocess.run(["openssl", "engine", "-t", "gost"], capture_output=True).returncode != 0,
        reason="openssl gost engine (libengine-gost-openssl) not installed",
    ),
    pytest.mark.slow,
]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def listing(directory: Path) -> dict[str, bytes]:
    if not directory.exists():
        return {}
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


def openssl(*args: str, stdin: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], input=stdin, capture_output=True, check=True).stdout


def key_body_lines(key_path: Path) -> list[str]:
    """Base64 lines of the private key PEM: none of them may ever appear in output."""
    return [line for line in key_path.read_text().splitlines() if line and not line.startswith("-----")]


def issue(ca: tuple[Path, Path], csr: Path, **kwargs) -> bytes:
    return pki.issue_certificate(csr.read_bytes(), ca_cert=ca[0], ca_key=ca[1], **kwargs)


def prepared(run, hostdir: Path) -> dict:
    result = run(path=str(hostdir), subject=SUBJECT)
    assert not result.get("failed"), result.get("msg")
    return result


def install(run, hostdir: Path, cert: bytes, anchors: list[Path], **extra) -> dict:
    return run(
        path=str(hostdir),
        subject=SUBJECT,
        certificate=b64(cert),
        trust_anchors=[b64(a.read_bytes()) for a in anchors],
        **extra,
    )


def test_key_and_csr_generated_on_host(run, hostdir):
    result = prepared(run, hostdir)
    assert result["changed"] is True
    assert result["status"] == "awaiting_certificate"
    assert result["key_algorithm"] == "gost2012_256"
    key = hostdir / "key.pem"
    assert key.stat().st_mode & 0o777 == 0o600
    assert (hostdir / "csr.pem").stat().st_mode & 0o777 == 0o640
    parsed = openssl("asn1parse", "-in", str(hostdir / "csr.pem")).decode()
    assert ":OGRN" in parsed and "1027700132195" in parsed
    assert ":1.2.643.100.4" in parsed and "7701234567" in parsed  # ИНН ЮЛ
    # Fixed conventional order whatever order the keys came in (module arguments arrive sorted).
    subject = openssl(
        "req",
        "-in",
        str(hostdir / "csr.pem"),
        "-noout",
        "-subject",
        "-nameopt",
        "oid,utf8,sep_multiline,-esc_msb",
    ).decode()
    oids = [line.strip().split("=")[0] for line in subject.splitlines()[1:]]
    assert oids == ["2.5.4.6", "2.5.4.8", "2.5.4.10", "2.5.4.3", "1.2.643.100.1", "1.2.643.100.4"]
    text = openssl("req", "-engine", "gost", "-in", str(hostdir / "csr.pem"), "-noout", "-text").decode()
    assert "GOST R 34.10-2012 with 256 bit modulus" in text
    assert "CryptoPro-A-ParamSet" in text
    again = run(path=str(hostdir), subject=SUBJECT)
    assert again["changed"] is False, again["plan"]
    for output in run.outputs:
        for line in key_body_lines(key):
            assert line not in output


def test_subject_change_regenerates_csr_not_key(run, hostdir):
    prepared(run, hostdir)
    key_before = (hostdir / "key.pem").read_bytes()
    result = run(path=str(hostdir), subject={**SUBJECT, "CN": "Школа № 1 (новое имя)"})
    assert result["changed"] is True
    assert (hostdir / "key.pem").read_bytes() == key_before
    subject = openssl(
        "req", "-in", str(hostdir / "csr.pem"), "-noout", "-subject", "-nameopt", "utf8,-esc_msb"
    )
    assert "Школа № 1 (новое имя)" in subject.decode()


def test_check_mode_on_fresh_host_creates_nothing(run, hostdir):
    result = run(check=True, diff=True, path=str(hostdir), subject=SUBJECT)
    assert result["changed"] is True
    assert any("закрытый ключ" in line for line in result["plan"])
    assert not hostdir.exists()


def test_install_issued_certificate_and_facts(run, hostdir, ca):
    prepared(run, hostdir)
    cert = issue(ca, hostdir / "csr.pem")
    result = install(run, hostdir, cert, [ca[0]])
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True
    assert result["status"] == "installed"
    facts = result["certificate"]
    der = openssl("x509", "-in", "/dev/stdin", "-outform", "DER", stdin=cert)
    # Independent computation of the ESIA hash: Streebog-256 over the DER (not the PEM).
    expected_hash = openssl("dgst", "-engine", "gost", "-md_gost12_256", "-r", stdin=der).decode().split()[0]
    assert facts["client_certificate_hash"] == expected_hash
    assert re.fullmatch(r"[0-9a-f]{64}", facts["client_certificate_hash"])
    serial = openssl("x509", "-noout", "-serial", stdin=cert).decode().strip().split("=")[1]
    assert int(facts["serial"], 16) == int(serial, 16)
    sha1 = openssl("x509", "-noout", "-fingerprint", "-sha1", stdin=cert).decode().strip().split("=")[1]
    assert facts["thumbprint"] == sha1.replace(":", "")
    assert facts["algorithm"] == "GOST3410_2012_256"
    assert facts["key_algorithm"] == "gost2012_256"
    assert 363 <= facts["days_left"] <= 365
    assert "OGRN=1027700132195" in facts["subject"]
    assert "test УЦ" in facts["issuer"]
    assert "Digital Signature" in facts["key_usage"]
    assert (hostdir / "cert.pem").read_bytes().strip() == cert.strip()
    assert (hostdir / "trust.pem").read_bytes().strip() == ca[0].read_bytes().strip()
    # Second run: nothing to do; check+diff run: nothing to do either.
    again = install(run, hostdir, cert, [ca[0]])
    assert again["changed"] is False, again["plan"]
    checked = run(
        check=True,
        diff=True,
        path=str(hostdir),
        subject=SUBJECT,
        certificate=b64(cert),
        trust_anchors=[b64(ca[0].read_bytes())],
    )
    assert checked["changed"] is False
    for output in run.outputs:
        for line in key_body_lines(hostdir / "key.pem"):
            assert line not in output


def test_check_mode_shows_certificate_install_without_writing(run, hostdir, ca):
    prepared(run, hostdir)
    cert = issue(ca, hostdir / "csr.pem")
    before = listing(hostdir)
    result = run(
        check=True,
        diff=True,
        path=str(hostdir),
        subject=SUBJECT,
        certificate=b64(cert),
        trust_anchors=[b64(ca[0].read_bytes())],
    )
    assert result["changed"] is True
    assert any("cert.pem" in line for line in result["plan"])
    assert listing(hostdir) == before


def test_der_certificate_and_separate_chain_file(run, hostdir, ca):
    prepared(run, hostdir)
    der = openssl("x509", "-outform", "DER", stdin=issue(ca, hostdir / "csr.pem"))
    result = run(
        path=str(hostdir), subject=SUBJECT, certificate=b64(der), trust_anchors=[b64(ca[0].read_bytes())]
    )
    assert not result.get("failed"), result.get("msg")
    assert result["status"] == "installed"


# ------------------------------------------------------- refusals: each its own code, nothing installed


def assert_refused(result: dict, code: str, variable: str, hostdir: Path, before: dict[str, bytes]) -> None:
    assert result.get("failed") is True, result
    assert result["error_code"] == code, result["msg"]
    assert variable in result["msg"]
    assert re.search("[а-яА-Я]", result["msg"]), "the school admin's message is Russian"
    assert listing(hostdir) == before, "nothing may be installed or changed on refusal"
    assert not (hostdir / "cert.pem").exists()


def test_refuses_expired_certificate(run, hostdir, ca):
    prepared(run, hostdir)
    now = datetime.now(UTC)
    cert = issue(
        ca, hostdir / "csr.pem", not_before=now - timedelta(days=400), not_after=now - timedelta(days=2)
    )
    before = listing(hostdir)
    result = install(run, hostdir, cert, [ca[0]])
    assert_refused(result, "SC-EXPIRED", "signing_cert_certificate_src", hostdir, before)
    assert "истёк" in result["msg"]


def test_refuses_certificate_for_another_key(run, hostdir, ca, tmp_path):
    prepared(run, hostdir)
    other_key = pki.generate_key(tmp_path / "other.key")
    other_csr = tmp_path / "other.csr"
    openssl(
        "req", "-engine", "gost", "-new", "-key", str(other_key), "-subj", "/CN=other", "-out", str(other_csr)
    )
    cert = issue(ca, other_csr)
    before = listing(hostdir)
    result = install(run, hostdir, cert, [ca[0]])
    assert_refused(result, "SC-KEY-MISMATCH", "signing_cert_certificate_src", hostdir, before)
    assert "другого ключа" in result["msg"]


def test_refuses_certificate_without_digital_signature(run, hostdir, ca):
    prepared(run, hostdir)
    cert = issue(ca, hostdir / "csr.pem", key_usage=("critical", "keyEncipherment"))
    before = listing(hostdir)
    result = install(run, hostdir, cert, [ca[0]])
    assert_refused(result, "SC-KEY-USAGE", "signing_cert_certificate_src", hostdir, before)
    assert "digitalSignature" in result["msg"]


def test_refuses_certificate_without_key_usage_extension(run, hostdir, ca):
    prepared(run, hostdir)
    cert = issue(ca, hostdir / "csr.pem", key_usage=None)
    before = listing(hostdir)
    result = install(run, hostdir, cert, [ca[0]])
    assert_refused(result, "SC-KEY-USAGE", "signing_cert_certificate_src", hostdir, before)


def test_refuses_untrusted_chain(run, hostdir, ca, other_ca):
    prepared(run, hostdir)
    cert = issue(other_ca, hostdir / "csr.pem")
    before = listing(hostdir)
    result = install(run, hostdir, cert, [ca[0]])
    assert_refused(result, "SC-UNTRUSTED", "signing_cert_trust_anchors", hostdir, before)
    assert "не доверена" in result["msg"]


def test_refuses_without_trust_anchors(run, hostdir, ca):
    prepared(run, hostdir)
    cert = issue(ca, hostdir / "csr.pem")
    before = listing(hostdir)
    result = install(run, hostdir, cert, [])
    assert_refused(result, "SC-NO-ANCHORS", "signing_cert_trust_anchors", hostdir, before)


def test_refuses_wrong_algorithm(run, hostdir, ca):
    prepared(run, hostdir)
    cert = issue(ca, hostdir / "csr.pem")
    before = listing(hostdir)
    result = install(run, hostdir, cert, [ca[0]], algorithm="rsa")
    assert_refused(result, "SC-ALGORITHM", "signing_cert_algorithm", hostdir, before)


def test_refuses_without_gost_engine(run, hostdir, tmp_path):
    empty = tmp_path / "no-engines"
    empty.mkdir()
    result = run(path=str(hostdir), subject=SUBJECT, env={"OPENSSL_ENGINES": str(empty)})
    assert_refused(result, "SC-NO-GOST-ENGINE", "signing_cert_packages", hostdir, {})
    assert "libengine-gost-openssl" in result["msg"]
    assert not hostdir.exists()


# ---------------------------------------------------------------- PKCS#12


def make_p12(tmp_path: Path, ca, passphrase: str) -> bytes:
    key = pki.generate_key(tmp_path / "p12.key")
    csr = tmp_path / "p12.csr"
    openssl(
        "req",
        "-engine",
        "gost",
        "-new",
        "-key",
        str(key),
        "-subj",
        "/C=RU/CN=Школа из PKCS12",
        "-utf8",
        "-out",
        str(csr),
    )
    cert = tmp_path / "p12.crt"
    cert.write_bytes(issue(ca, csr))
    return pki.pkcs12_export(key, cert, passphrase)


def test_pkcs12_wrong_passphrase_refused(run, hostdir, ca, tmp_path):
    p12 = make_p12(tmp_path, ca, "верный-пароль")
    result = run(
        path=str(hostdir), pkcs12=b64(p12), pkcs12_passphrase="wrong", trust_anchors=[b64(ca[0].read_bytes())]
    )
    assert result.get("failed") is True
    assert result["error_code"] == "SC-P12-PASSWORD", result["msg"]
    assert "signing_cert_pkcs12_passphrase" in result["msg"]
    assert listing(hostdir) == {}
    for output in run.outputs:
        assert "верный-пароль" not in output


def test_pkcs12_installed_with_right_passphrase(run, hostdir, ca, tmp_path):
    p12 = make_p12(tmp_path, ca, "верный-пароль")
    params = dict(
        path=str(hostdir),
        pkcs12=b64(p12),
        pkcs12_passphrase="верный-пароль",
        trust_anchors=[b64(ca[0].read_bytes())],
    )
    result = run(**params)
    assert not result.get("failed"), result.get("msg")
    assert result["status"] == "installed"
    assert (hostdir / "key.pem").stat().st_mode & 0o777 == 0o600
    assert "Школа из PKCS12" in result["certificate"]["subject"]
    assert run(**params)["changed"] is False
    for output in run.outputs:
        assert "верный-пароль" not in output
        for line in key_body_lines(hostdir / "key.pem"):
            assert line not in output


# ---------------------------------------------------------------- renewal and removal


def test_renewal_keeps_old_certificate_until_new_one_installed(run, hostdir, ca):
    prepared(run, hostdir)
    old_cert = issue(ca, hostdir / "csr.pem")
    assert not install(run, hostdir, old_cert, [ca[0]]).get("failed")
    old_key = (hostdir / "key.pem").read_bytes()

    renew = install(run, hostdir, old_cert, [ca[0]], renew=True)
    assert renew["changed"] is True
    assert renew["renewal"]["pending"] is True
    assert (hostdir / "key.next.pem").stat().st_mode & 0o777 == 0o600
    assert (hostdir / "key.pem").read_bytes() == old_key  # old pair keeps working
    assert (hostdir / "cert.pem").read_bytes().strip() == old_cert.strip()
    assert install(run, hostdir, old_cert, [ca[0]], renew=True)["changed"] is False

    new_cert = issue(ca, hostdir / "csr.next.pem")
    done = install(run, hostdir, new_cert, [ca[0]])
    assert not done.get("failed"), done.get("msg")
    assert done["changed"] is True
    assert done["renewal"]["pending"] is False
    assert not (hostdir / "key.next.pem").exists()
    assert (hostdir / "key.pem").read_bytes() != old_key
    assert (hostdir / "cert.pem").read_bytes().strip() == new_cert.strip()
    assert install(run, hostdir, new_cert, [ca[0]])["changed"] is False


def test_absent_removes_key_material(run, hostdir, ca):
    prepared(run, hostdir)
    result = run(path=str(hostdir), state="absent", diff=True)
    assert result["changed"] is True
    assert not (hostdir / "key.pem").exists()
    assert run(path=str(hostdir), state="absent")["changed"] is False
