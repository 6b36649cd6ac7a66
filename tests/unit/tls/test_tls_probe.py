"""tls_probe against a real nginx on 127.0.0.1, cross-checked with `openssl s_client`."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess

import pytest
from conftest import INTERMEDIATE_CIPHERS, PROJECT, SERVER_NAME

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
S_CLIENT_FLAG = {"TLSv1": "-tls1", "TLSv1.1": "-tls1_1", "TLSv1.2": "-tls1_2", "TLSv1.3": "-tls1_3"}

# What each nginx variant is configured to accept (the configuration, not a probe result).
CONFIGURED = {
    "intermediate": {"TLSv1.2", "TLSv1.3"},
    "legacy": {"TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"},
    "tls10_only": {"TLSv1"},
    "tls11_12": {"TLSv1.1", "TLSv1.2"},
    "tls13_only": {"TLSv1.3"},
}


def s_client_accepts(port: int, version: str, cipher: str | None = None) -> bool:
    """Independent verdict: does `openssl s_client` complete a handshake with exactly this version?"""
    args = [
        OPENSSL,
        "s_client",
        "-connect",
        f"127.0.0.1:{port}",
        "-servername",
        SERVER_NAME,
        S_CLIENT_FLAG[version],
        "-cipher",
        cipher or "DEFAULT@SECLEVEL=0",
    ]
    proc = subprocess.run(args, input="", capture_output=True, text=True, timeout=20)
    negotiated = [
        line.split(":", 1)[1].strip()
        for line in proc.stdout.splitlines()
        if line.strip().startswith("Protocol") and ":" in line
    ]
    ok = proc.returncode == 0 and "Cipher is (NONE)" not in proc.stdout and "New, " in proc.stdout
    if ok and negotiated:
        assert negotiated[0] == version, f"s_client asked for {version} got {negotiated[0]}"
    return ok


@pytest.fixture(scope="module")
def results(tls_probe, nginx_lab):
    cache = {}

    def get(variant: str, **kwargs):
        key = (variant, tuple(sorted(kwargs.items())))
        if key not in cache:
            cache[key] = tls_probe.probe(
                "127.0.0.1", nginx_lab.ports[variant], server_name=SERVER_NAME, **kwargs
            )
        return cache[key]

    return get


@pytest.mark.parametrize("variant", sorted(CONFIGURED))
@pytest.mark.parametrize("version", ["TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3"])
def test_probe_agrees_with_s_client(results, nginx_lab, variant, version):
    facts = results(variant, ca_path=str(nginx_lab.pki.root))
    status = facts["protocols"][version]["status"]
    openssl_says = s_client_accepts(nginx_lab.ports[variant], version)
    assert status in ("accepted", "refused"), facts["protocols"][version]
    assert (status == "accepted") == openssl_says, (variant, version, facts["protocols"][version])
    # And both agree with what nginx was configured to do, so neither tool is lying.
    assert openssl_says == (version in CONFIGURED[variant])


def test_sslv3_is_reported_honestly(results):
    entry = results("legacy")["protocols"]["SSLv3"]
    if not ssl.HAS_SSLv3:
        assert entry["status"] == "unsupported_by_probe"
        assert "SSLv3" in entry["detail"]
    else:
        assert entry["status"] in ("accepted", "refused")


def test_without_seclevel0_old_versions_would_look_disabled(nginx_lab):
    """The trap the probe avoids: a default-security client cannot offer TLS 1.0 to a server accepting it."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1
    import socket

    port = nginx_lab.ports["tls10_only"]
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock, pytest.raises(ssl.SSLError):
        ctx.wrap_socket(sock, server_hostname=SERVER_NAME).close()
    assert s_client_accepts(nginx_lab.ports["tls10_only"], "TLSv1")


def test_intermediate_profile_cipher_enumeration(results, nginx_lab):
    facts = results("intermediate", ca_path=str(nginx_lab.pki.root))
    profile = INTERMEDIATE_CIPHERS.split(":")
    rsa_profile = {c for c in profile if "ECDSA" not in c}
    assert set(facts["tls12_ciphers"]) == rsa_profile
    assert facts["probe"]["tls12_ciphers_offerable"] > 50
    # Cross-check every profile suite and a few classic weak ones with s_client.
    weak = ["ECDHE-RSA-AES128-SHA", "AES128-SHA", "AES256-GCM-SHA384", "ECDHE-RSA-AES256-SHA384"]
    for cipher in [*profile, *weak]:
        assert s_client_accepts(nginx_lab.ports["intermediate"], "TLSv1.2", cipher + ":@SECLEVEL=0") == (
            cipher in facts["tls12_ciphers"]
        ), cipher


def test_ecdsa_server_accepts_only_ecdsa_suites(results):
    facts = results("ecdsa")
    assert facts["tls12_ciphers"]
    assert all("ECDSA" in c for c in facts["tls12_ciphers"])
    assert facts["certificate"]["key_type"] == "EC"
    assert facts["certificate"]["curve"] == "secp384r1"
    assert facts["certificate"]["key_size"] == 384


def test_legacy_server_accepts_weak_suites(results):
    facts = results("legacy")
    assert any(c.endswith("-SHA") for c in facts["tls12_ciphers"])
    assert facts["lowest_version"] == "TLSv1"


def test_full_chain_trusted(results, nginx_lab):
    facts = results("intermediate", ca_path=str(nginx_lab.pki.root))
    assert facts["chain_length"] == 2
    assert facts["chain_source"] == "peer_chain"
    assert facts["chain_complete"] is True
    assert facts["chain_trusted"] is True, facts["chain_error"]
    assert facts["chain"][1]["is_ca"] is True
    leaf = facts["certificate"]
    assert leaf["common_name"] == SERVER_NAME
    assert leaf["key_type"] == "RSA" and leaf["key_size"] == 2048
    assert leaf["serial"] == format(nginx_lab.pki.leaf_cert.serial_number, "X")
    assert leaf["not_after"] == nginx_lab.pki.leaf_cert.not_valid_after_utc.isoformat()
    assert 363 <= leaf["days_left"] <= 365
    assert leaf["signature_algorithm"] == "sha256WithRSAEncryption"
    assert facts["hostname_match"] is True


def test_leaf_only_server_is_not_trusted(results, nginx_lab):
    facts = results("leaf_only", ca_path=str(nginx_lab.pki.root))
    assert facts["chain_length"] == 1
    assert facts["chain_complete"] is False
    assert facts["chain_trusted"] is False
    assert "issuer" in facts["chain_error"]


def test_wrong_trust_store_is_not_trusted(results, nginx_lab):
    facts = results("intermediate", ca_path=str(nginx_lab.pki.other_root))
    assert facts["chain_trusted"] is False
    # System store does not know the test root either: verification is never skipped.
    assert results("intermediate")["chain_trusted"] is False


def test_hostname_mismatch(tls_probe, nginx_lab):
    facts = tls_probe.probe(
        "127.0.0.1",
        nginx_lab.ports["intermediate"],
        server_name="other.example.test",
        enumerate_ciphers=False,
    )
    assert facts["hostname_match"] is False
    wildcard = tls_probe.probe(
        "127.0.0.1", nginx_lab.ports["intermediate"], server_name="www.school.test", enumerate_ciphers=False
    )
    assert wildcard["hostname_match"] is True


@pytest.mark.parametrize(
    ("name", "sans", "expected"),
    [
        ("a.example.ru", ["a.example.ru"], True),
        ("A.Example.RU.", ["a.example.ru"], True),
        ("b.a.example.ru", ["*.example.ru"], False),
        ("a.example.ru", ["*.example.ru"], True),
        ("example.ru", ["*.example.ru"], False),
        ("x.ru", ["*.ru"], False),
        ("a.example.ru", [], False),
    ],
)
def test_hostname_rules(tls_probe, name, sans, expected):
    assert tls_probe.hostname_matches(name, sans, []) is expected


def test_hostname_ip(tls_probe):
    assert tls_probe.hostname_matches("127.0.0.1", [], ["127.0.0.1"])
    assert not tls_probe.hostname_matches("127.0.0.2", ["127.0.0.2"], [])


def test_hsts_and_redirect(tls_probe, results, nginx_lab):
    hsts = results("intermediate", ca_path=str(nginx_lab.pki.root))["hsts"]
    assert hsts["present"] and hsts["max_age"] == 63072000
    assert not hsts["include_subdomains"] and not hsts["preload"]
    preload = results("tls13_only")["hsts"]
    assert preload["include_subdomains"] and preload["preload"] and preload["max_age"] == 600
    assert results("legacy")["hsts"]["present"] is False
    facts = tls_probe.probe(
        "127.0.0.1",
        nginx_lab.ports["intermediate"],
        server_name=SERVER_NAME,
        enumerate_ciphers=False,
        http_port=nginx_lab.http_port,
    )
    assert facts["http_redirect"]["status"] == 301
    assert facts["http_redirect"]["location"].startswith(f"https://{SERVER_NAME}/")
    assert facts["http_redirect"]["to_https"] is True


def test_tls13_only_chain_still_read(results, nginx_lab):
    facts = results("tls13_only", ca_path=str(nginx_lab.pki.root))
    assert facts["accepted_versions"] == ["TLSv1.3"]
    assert facts["tls12_ciphers"] == []
    assert facts["tls13_cipher"].startswith("TLS_")
    assert facts["chain_length"] == 2 and facts["chain_trusted"] is True


def test_policy(tls_probe, results, nginx_lab):
    good = results("intermediate", ca_path=str(nginx_lab.pki.root))
    assert (
        tls_probe.check_policy(
            good,
            min_version="TLSv1.2",
            forbid_ciphers=["*-SHA", "*CBC*", "RC4*"],
            allowed_ciphers=INTERMEDIATE_CIPHERS.split(":"),
            min_days_valid=30,
            require_trusted=True,
            require_hsts=True,
            require_hostname_match=True,
        )
        == []
    )
    legacy = results("legacy")
    violations = tls_probe.check_policy(
        legacy,
        min_version="TLSv1.2",
        forbid_ciphers=["*-SHA"],
        allowed_ciphers=INTERMEDIATE_CIPHERS.split(":"),
        require_trusted=True,
        require_hsts=True,
    )
    text = "\n".join(violations)
    assert "TLSv1, TLSv1.1" in text and "min_version TLSv1.2" in text
    assert "forbid_ciphers" in text and "allowed_ciphers" in text
    assert "chain not trusted" in text and "Strict-Transport-Security" in text
    short = results("short_lived", ca_path=str(nginx_lab.pki.root))
    [expiry] = tls_probe.check_policy(short, min_days_valid=30)
    assert "min_days_valid 30" in expiry and "expires in 2 days" in expiry


def test_nothing_listening(tls_probe):
    from conftest import free_port

    with pytest.raises(tls_probe.ProbeError, match="cannot connect"):
        tls_probe.probe("127.0.0.1", free_port(), timeout=2)


def _ansible(*args):
    env = dict(
        os.environ,
        ANSIBLE_STDOUT_CALLBACK="json",
        ANSIBLE_LOAD_CALLBACK_PLUGINS="1",
        PATH=f"{PROJECT / '.venv' / 'bin'}:{os.environ['PATH']}",
    )
    return subprocess.run(
        [
            str(PROJECT / ".venv" / "bin" / "ansible"),
            "localhost",
            "-c",
            "local",
            "-i",
            "localhost,",
            "-m",
            "tls_probe",
            # The Debian interpreter, as on a target host: the module needs only the stdlib.
            "-e",
            "ansible_python_interpreter=/usr/bin/python3",
            *args,
        ],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _task_result(proc):
    data = json.loads(proc.stdout[proc.stdout.index("{") :])
    return data["plays"][0]["tasks"][0]["hosts"]["localhost"]


def test_as_ansible_module_in_check_mode(nginx_lab):
    proc = _ansible(
        "--check",
        "-a",
        json.dumps(
            {
                "host": "127.0.0.1",
                "port": nginx_lab.ports["intermediate"],
                "server_name": SERVER_NAME,
                "ca_path": str(nginx_lab.pki.root),
                "min_version": "TLSv1.2",
                "require_trusted": True,
                "http_port": nginx_lab.http_port,
            }
        ),
    )
    result = _task_result(proc)
    assert proc.returncode == 0, result
    assert result["changed"] is False
    assert result["accepted_versions"] == ["TLSv1.2", "TLSv1.3"]
    assert result["http_redirect"]["to_https"] is True


def test_as_ansible_module_policy_failure(nginx_lab):
    proc = _ansible(
        "-a",
        json.dumps(
            {
                "host": "127.0.0.1",
                "port": nginx_lab.ports["tls11_12"],
                "server_name": SERVER_NAME,
                "min_version": "TLSv1.2",
                "enumerate_ciphers": False,
            }
        ),
    )
    result = _task_result(proc)
    assert proc.returncode != 0
    assert result["failed"] is True
    assert "accepts TLSv1.1 (policy min_version TLSv1.2)" in result["msg"]
    assert result["violations"]


def test_ansible_doc_renders():
    proc = subprocess.run(
        [str(PROJECT / ".venv" / "bin" / "ansible-doc"), "-M", "modules", "tls_probe"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "min_version" in proc.stdout and "EXAMPLES" in proc.stdout and "RETURN VALUES" in proc.stdout
