"""Role `tls` preflight on this machine (connection local, `--tags tls_preflight`): bad variables fail
with a message naming the variable, before any install/configure task exists in the run."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from conftest import PROJECT

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  roles:
    - role: tls
"""


@pytest.fixture(scope="module")
def playbook(tmp_path_factory):
    path = tmp_path_factory.mktemp("preflight") / "play.yml"
    path.write_text(PLAYBOOK)
    return path


def run_preflight(playbook, **variables):
    env = dict(os.environ, PATH=f"{PROJECT / '.venv' / 'bin'}:{os.environ['PATH']}", ANSIBLE_NOCOLOR="1")
    proc = subprocess.run(
        [
            str(PROJECT / ".venv" / "bin" / "ansible-playbook"),
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            "ansible_python_interpreter=/usr/bin/python3",
            "-e",
            json.dumps(variables),
            "--tags",
            "tls_preflight",
            str(playbook),
        ],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout + proc.stderr
    # Nothing beyond preflight may have run.
    assert "Install nginx" not in out and "Render nginx.conf" not in out
    return proc.returncode, out


@pytest.fixture(scope="module")
def pair(pki, tmp_path_factory):
    d = tmp_path_factory.mktemp("pair")
    cert = d / "chain.pem"
    key = d / "key.pem"
    other = d / "other.pem"
    cert.write_bytes(pki.fullchain.read_bytes())
    key.write_bytes(pki.key.read_bytes())
    other.write_bytes(pki.short_key.read_bytes())
    for k in (key, other):
        os.chmod(k, 0o600)
    return cert, key, other


def test_good_pair_passes(playbook, pair):
    cert, key, _ = pair
    rc, out = run_preflight(playbook, tls_cert_file=str(cert), tls_key_file=str(key))
    assert rc == 0, out[-2000:]


def test_unknown_profile(playbook, pair):
    cert, key, _ = pair
    rc, out = run_preflight(playbook, tls_profile="old", tls_cert_file=str(cert), tls_key_file=str(key))
    assert rc != 0
    assert "tls_profile" in out and "intermediate" in out and "modern" in out


def test_missing_certificate(playbook, pair, tmp_path):
    _, key, _ = pair
    missing = tmp_path / "nope.pem"
    rc, out = run_preflight(playbook, tls_cert_file=str(missing), tls_key_file=str(key))
    assert rc != 0
    assert f"tls_cert_file: {missing} does not exist" in out


def test_key_not_matching_certificate(playbook, pair):
    cert, _, other = pair
    rc, out = run_preflight(playbook, tls_cert_file=str(cert), tls_key_file=str(other))
    assert rc != 0
    assert f"tls_key_file: {other} does not match the certificate in tls_cert_file" in out


def test_key_readable_by_others(playbook, pair, tmp_path):
    cert, key, _ = pair
    loose = tmp_path / "loose.key"
    loose.write_bytes(key.read_bytes())
    os.chmod(loose, 0o644)
    rc, out = run_preflight(playbook, tls_cert_file=str(cert), tls_key_file=str(loose))
    assert rc != 0
    assert "mode 0644" in out and "chmod 600" in out


def test_preload_needs_include_subdomains(playbook, pair):
    cert, key, _ = pair
    rc, out = run_preflight(playbook, tls_cert_file=str(cert), tls_key_file=str(key), tls_hsts_preload=True)
    assert rc != 0
    assert "tls_hsts_preload" in out and "tls_hsts_include_subdomains" in out


def test_agent_path_must_be_a_prefix(playbook, pair):
    cert, key, _ = pair
    rc, out = run_preflight(playbook, tls_cert_file=str(cert), tls_key_file=str(key), tls_agent_path="api")
    assert rc != 0
    assert "tls_agent_path ('api'" in out


def test_agent_keepalive_out_of_range(playbook, pair):
    cert, key, _ = pair
    rc, out = run_preflight(playbook, tls_cert_file=str(cert), tls_key_file=str(key), tls_agent_keepalive=-1)
    assert rc != 0
    assert "tls_agent_keepalive 0-1024 (is -1)" in out
