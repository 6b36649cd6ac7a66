"""Fixtures for the TLS unit tests: a throw-away PKI and a real nginx on 127.0.0.1 high ports."""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

PROJECT = Path(__file__).resolve().parents[3]
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
SERVER_NAME = "portal.school.test"

INTERMEDIATE_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)


def load_path(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tls_probe():
    return load_path("schoolgate_tls_probe_under_test", PROJECT / "modules" / "tls_probe.py")


@pytest.fixture(scope="session")
def tls_filters():
    return load_path("schoolgate_tls_filters_under_test", PROJECT / "filter_plugins" / "tls.py")


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "schoolgate test"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _cert(subject_cn, subject_key, issuer_cert, issuer_key, *, ca, days=365, sans=(), not_before=None):
    now = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject_cn))
        .issuer_name(issuer_cert.subject if issuer_cert else _name(subject_cn))
        .public_key(subject_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False
        )
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
    return builder.sign(issuer_key or subject_key, hashes.SHA256())


def _pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class Pki:
    root: Path
    other_root: Path
    fullchain: Path
    leaf_only: Path
    key: Path
    short_chain: Path
    short_key: Path
    ec_chain: Path
    ec_key: Path
    leaf_cert: x509.Certificate
    intermediate_cert: x509.Certificate


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    root = _cert("schoolgate test root", root_key, None, None, ca=True, days=3650)
    inter_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    inter = _cert("schoolgate test intermediate", inter_key, root, root_key, ca=True, days=1825)
    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf = _cert(SERVER_NAME, leaf_key, inter, inter_key, ca=False, sans=[SERVER_NAME, "*.school.test"])
    short_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    short = _cert(
        "short.school.test", short_key, inter, inter_key, ca=False, days=3, sans=["short.school.test"]
    )
    ec_key = ec.generate_private_key(ec.SECP384R1())
    ec_leaf = _cert(SERVER_NAME, ec_key, inter, inter_key, ca=False, sans=[SERVER_NAME])
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = _cert("unrelated root", other_key, None, None, ca=True)

    files = {
        "root.pem": _pem(root),
        "other-root.pem": _pem(other),
        "fullchain.pem": _pem(leaf) + _pem(inter),
        "leaf-only.pem": _pem(leaf),
        "leaf.key": _key_pem(leaf_key),
        "short-chain.pem": _pem(short) + _pem(inter),
        "short.key": _key_pem(short_key),
        "ec-chain.pem": _pem(ec_leaf) + _pem(inter),
        "ec.key": _key_pem(ec_key),
    }
    for name, data in files.items():
        (d / name).write_bytes(data)
        os.chmod(d / name, 0o600 if name.endswith(".key") else 0o644)
    return Pki(
        d / "root.pem",
        d / "other-root.pem",
        d / "fullchain.pem",
        d / "leaf-only.pem",
        d / "leaf.key",
        d / "short-chain.pem",
        d / "short.key",
        d / "ec-chain.pem",
        d / "ec.key",
        leaf,
        inter,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# name -> (ssl_protocols, ssl_ciphers, cert, key, extra directives)
SERVER_VARIANTS = {
    "intermediate": (
        "TLSv1.2 TLSv1.3",
        INTERMEDIATE_CIPHERS,
        "fullchain",
        "key",
        'add_header Strict-Transport-Security "max-age=63072000" always;',
    ),
    "legacy": ("TLSv1 TLSv1.1 TLSv1.2 TLSv1.3", "DEFAULT:@SECLEVEL=0", "fullchain", "key", ""),
    "tls10_only": ("TLSv1", "DEFAULT:@SECLEVEL=0", "fullchain", "key", ""),
    "tls11_12": ("TLSv1.1 TLSv1.2", "DEFAULT:@SECLEVEL=0", "fullchain", "key", ""),
    "tls13_only": (
        "TLSv1.3",
        "DEFAULT",
        "fullchain",
        "key",
        'add_header Strict-Transport-Security "max-age=600; includeSubDomains; preload" always;',
    ),
    "leaf_only": ("TLSv1.2 TLSv1.3", INTERMEDIATE_CIPHERS, "leaf_only", "key", ""),
    "short_lived": ("TLSv1.2 TLSv1.3", INTERMEDIATE_CIPHERS, "short_chain", "short_key", ""),
    "ecdsa": ("TLSv1.2 TLSv1.3", INTERMEDIATE_CIPHERS, "ec_chain", "ec_key", ""),
}


@dataclass
class NginxLab:
    ports: dict[str, int]
    http_port: int
    pki: Pki
    root: Path


@pytest.fixture(scope="session")
def nginx_lab(pki, tmp_path_factory):
    if not os.path.exists(NGINX):
        pytest.fail("nginx is not installed on this machine (apt-get install nginx-light)")
    d = tmp_path_factory.mktemp("nginx")
    (d / "www").mkdir()
    (d / "www" / "index.html").write_text("schoolgate tls test\n")
    dhparam = PROJECT / "roles" / "tls" / "files" / "host" / "ffdhe2048.pem"
    ports = {name: free_port() for name in SERVER_VARIANTS}
    http_port = free_port()
    servers = []
    for name, (protocols, ciphers, cert, key, extra) in SERVER_VARIANTS.items():
        servers.append(f"""
    server {{
        listen 127.0.0.1:{ports[name]} ssl;
        server_name {SERVER_NAME};
        ssl_certificate {getattr(pki, cert)};
        ssl_certificate_key {getattr(pki, key)};
        ssl_protocols {protocols};
        ssl_ciphers {ciphers};
        ssl_prefer_server_ciphers off;
        ssl_dhparam {dhparam};
        ssl_ecdh_curve X25519:prime256v1:secp384r1;
        ssl_session_tickets off;
        {extra}
        root {d / "www"};
    }}""")
    conf = f"""
daemon off;
master_process off;
pid {d / "nginx.pid"};
error_log {d / "error.log"} info;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {d / "body"};
    proxy_temp_path {d / "proxy"};
    fastcgi_temp_path {d / "fastcgi"};
    uwsgi_temp_path {d / "uwsgi"};
    scgi_temp_path {d / "scgi"};
    server {{
        listen 127.0.0.1:{http_port};
        location / {{ return 301 https://$host$request_uri; }}
    }}
    {"".join(servers)}
}}
"""
    (d / "nginx.conf").write_text(conf)
    check = subprocess.run(
        [NGINX, "-t", "-p", str(d), "-c", str(d / "nginx.conf")], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stderr
    proc = subprocess.Popen(
        [NGINX, "-p", str(d), "-c", str(d / "nginx.conf")], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", ports["intermediate"]), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"nginx exited: {proc.stderr.read().decode()}")
            time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("nginx did not start listening")
    yield NginxLab(ports, http_port, pki, d)
    proc.send_signal(signal.SIGQUIT)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
