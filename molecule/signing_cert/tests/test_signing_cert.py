"""Testinfra checks for the signing_cert role on Debian 12 and 13 containers (molecule verify)."""

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

DIR = "/etc/schoolgate/signing"
PROJECT = Path(os.environ.get("MOLECULE_PROJECT_DIRECTORY", Path(__file__).resolve().parents[3]))
STATE = PROJECT / "lab" / "state" / "molecule-signing-cert"
SCENARIO = Path(__file__).resolve().parents[1]


def ossl(host, cmd):
    return host.check_output(f"openssl {cmd}")


def key_lines(host):
    """Base64 lines of the host's private key (read over the container connection, never written anywhere)."""
    text = host.file(f"{DIR}/key.pem").content_string
    return [line for line in text.splitlines() if line and not line.startswith("-----")]


def playbook(name, *extra):
    """Run a scenario playbook with molecule's inventory and ansible.cfg; return the full output."""
    cmd = ["ansible-playbook", "-i", os.environ["MOLECULE_INVENTORY_FILE"], str(SCENARIO / name), *extra]
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def reconverge_log():
    """A third converge at -vvv (Ansible's most verbose output), captured for leak and change checks."""
    rc, out = playbook("converge.yml", "-vvv")
    STATE.mkdir(parents=True, exist_ok=True)
    (STATE / "converge-vvv.log").write_text(out)
    return rc, out


@pytest.fixture(scope="session")
def negative_log():
    rc, out = playbook("negative.yml")
    STATE.mkdir(parents=True, exist_ok=True)
    (STATE / "negative.log").write_text(out)
    return rc, out


def test_packages_and_agent_user(host):
    assert host.package("libengine-gost-openssl").is_installed
    assert "available" in ossl(host, "engine -t gost")
    user = host.user("schoolgate")
    assert user.exists and user.group == "schoolgate"
    assert user.shell == "/usr/sbin/nologin"
    assert user.uid < 1000  # system user


def test_key_generated_on_host_gost_paramset_a(host):
    key = host.file(f"{DIR}/key.pem")
    assert key.user == "schoolgate" and key.group == "schoolgate" and key.mode == 0o600
    dirf = host.file(DIR)
    assert dirf.user == "root" and dirf.group == "schoolgate" and dirf.mode == 0o750
    text = ossl(host, f"pkey -engine gost -in {DIR}/key.pem -pubout -noout -text_pub 2>/dev/null || true")
    pub = ossl(host, f"pkey -engine gost -in {DIR}/key.pem -pubout 2>/dev/null")
    parsed = host.check_output(f"echo '{pub}' | openssl asn1parse")
    assert "GOST R 34.10-2012 with 256 bit modulus" in parsed, text
    assert "CryptoPro-A-ParamSet" in parsed


def test_csr_has_school_subject_and_only_csr_reached_controller(host):
    name = host.backend.get_hostname()
    csr_host = host.file(f"{DIR}/csr.pem").content_string
    fetched = (STATE / "csr" / f"{name}.csr").read_text()
    assert fetched.strip() == csr_host.strip()  # the ansible backend strips the trailing newline
    parsed = host.check_output(f"openssl asn1parse -in {DIR}/csr.pem")
    assert ":OGRN" in parsed and "1027700132195" in parsed
    assert ":1.2.643.100.4" in parsed and "7701234567" in parsed
    # No line of this host's private key exists anywhere in the controller's lab state.
    lines = key_lines(host)
    for path in STATE.rglob("*"):
        if path.is_file():
            content = path.read_text(errors="replace")
            assert not any(line in content for line in lines), f"key material found in {path}"


def test_certificate_issued_by_lab_ca_and_chain_verifies(host):
    cert = host.file(f"{DIR}/cert.pem")
    assert cert.mode == 0o640 and cert.group == "schoolgate"
    issuer = ossl(host, f"x509 -in {DIR}/cert.pem -noout -issuer -nameopt utf8,-esc_msb")
    assert "schoolgate lab" in issuer
    assert host.run(f"openssl verify -engine gost -CAfile {DIR}/trust.pem {DIR}/cert.pem").rc == 0
    ca = (STATE / "ca" / "ca.crt").read_text()
    assert host.file(f"{DIR}/trust.pem").content_string.strip() == ca.strip()
    assert "Digital Signature" in ossl(host, f"x509 -in {DIR}/cert.pem -noout -ext keyUsage")


def test_facts_are_correct(host):
    data = json.loads(host.file("/root/signing_cert_facts.json").content_string)
    facts = data["facts"]
    assert data["status"] == "installed"
    # Streebog-256 over the DER certificate, computed independently on the host.
    expected = host.check_output(
        f"openssl x509 -in {DIR}/cert.pem -outform DER"
        " | openssl dgst -engine gost -md_gost12_256 -r 2>/dev/null"
    ).split()[0]
    assert facts["client_certificate_hash"] == expected
    serial = ossl(host, f"x509 -in {DIR}/cert.pem -noout -serial").split("=")[1]
    assert int(facts["serial"], 16) == int(serial, 16)
    sha1 = ossl(host, f"x509 -in {DIR}/cert.pem -noout -fingerprint -sha1").split("=")[1].replace(":", "")
    assert facts["thumbprint"] == sha1
    assert facts["algorithm"] == "GOST3410_2012_256"
    assert 360 <= facts["days_left"] <= 365
    assert "OGRN=1027700132195" in facts["subject"] and "INNLE=7701234567" in facts["subject"]
    assert re.match(r"\d{4}-\d\d-\d\dT", facts["not_after"])


def test_signer_config_and_agent_user_can_sign(host):
    conf = host.file("/etc/schoolgate/signer.json")
    assert conf.user == "root" and conf.group == "schoolgate" and conf.mode == 0o640
    config = json.loads(conf.content_string)
    assert config["type"] == "openssl-gost"
    assert config["key"] == f"{DIR}/key.pem" and config["cert"] == f"{DIR}/cert.pem"
    # The agent's user (not root) can sign with the key; the signature verifies with the certificate.
    probe = "/tmp/signing-cert-probe"
    host.check_output(f"echo probe > {probe}")
    host.check_output(f"openssl x509 -engine gost -in {DIR}/cert.pem -pubkey -noout > {probe}.pub")
    sign = host.run(
        "runuser -u schoolgate -- openssl dgst -engine gost -md_gost12_256"
        f" -sign {DIR}/key.pem -out {probe}.sig {probe}"
    )
    assert sign.rc == 0, sign.stderr
    verify = host.run(
        f"openssl dgst -engine gost -md_gost12_256 -verify {probe}.pub -signature {probe}.sig {probe}"
    )
    assert "Verified OK" in verify.stdout
    host.run(f"rm -f {probe} {probe}.pub {probe}.sig")


def test_reconverge_is_idempotent_and_never_prints_the_key(host, reconverge_log):
    rc, out = reconverge_log
    assert rc == 0, out[-3000:]
    name = host.backend.get_hostname()
    recap = re.search(rf"^{re.escape(name)}\s*:.*$", out, re.M)
    assert recap and "changed=0" in recap.group(0), recap.group(0) if recap else out[-2000:]
    assert "PRIVATE KEY" not in out
    for line in key_lines(host):
        assert line not in out


def test_refusals_on_the_target(host, negative_log):
    rc, out = negative_log
    assert rc == 0, out[-4000:]
    for code in (
        "SC-EXPIRED",
        "SC-KEY-MISMATCH",
        "SC-KEY-USAGE",
        "SC-UNTRUSTED",
        "SC-P12-PASSWORD",
        "SC-NO-GOST-ENGINE",
    ):
        assert code in out
    assert "правильный-пароль" not in out and "неправильный-пароль" not in out
    assert not host.file("/root/signing-cert-negative").exists
