"""The audit_facts module's readers (stdlib, run on the target) against real files."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_prometheus_text_parsing(af) -> None:
    text = (
        "# HELP schoolgate_cert_days_left days\n# TYPE schoolgate_cert_days_left gauge\n"
        'schoolgate_cert_days_left{kind="tls"} 120.5\nschoolgate_cert_days_left{kind="signing"} -1\n'
        "schoolgate_backup_last_status 1 1700000000000\nbroken line here\n"
        'schoolgate_x{a="q\\"uote",b="2"} NaN\n'
    )
    samples = af.parse_prometheus_text(text)
    assert samples["schoolgate_cert_days_left"] == [
        {"labels": {"kind": "tls"}, "value": 120.5},
        {"labels": {"kind": "signing"}, "value": -1.0},
    ]
    assert samples["schoolgate_backup_last_status"][0]["value"] == 1.0
    assert samples["schoolgate_x"][0]["labels"] == {"a": 'q\\"uote', "b": "2"}


def test_textfile_dir_reads_only_prom_files(af, tmp_path: Path) -> None:
    (tmp_path / "schoolgate_backup.prom").write_text("schoolgate_backup_last_status 0\n")
    (tmp_path / "half.prom.tmp").write_text("schoolgate_backup_last_status 1\n")
    got = af.textfile_metrics(str(tmp_path))
    assert list(got["files"]) == ["schoolgate_backup.prom"]
    assert got["samples"]["schoolgate_backup_last_status"] == [{"labels": {}, "value": 0.0}]
    assert "error" in af.textfile_metrics(str(tmp_path / "absent"))


def test_file_modes_are_reported_not_contents(af, tmp_path: Path) -> None:
    key = tmp_path / "key.pem"
    pem = _throwaway_key_pem()  # generated here: no key material in the repository
    key.write_text(pem)
    os.chmod(key, 0o644)
    facts = af.file_facts([str(key), str(tmp_path / "absent")])
    assert facts[0]["mode"] == "0644" and facts[0]["exists"] is True
    assert facts[1] == {"path": str(tmp_path / "absent"), "exists": False}
    body = pem.splitlines()[1]
    assert body not in json.dumps(facts) and "PRIVATE" not in json.dumps(facts)


def _throwaway_key_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    return (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        .decode()
    )


def test_token_meta_expiry(af, tmp_path: Path) -> None:
    meta = tmp_path / "provider-token.json"
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3 * 86400))
    meta.write_text(json.dumps({"token_id": "t1", "expires_at": expires}))
    got = af.token_facts(str(meta))
    assert 2.9 < got["days_left"] <= 3.0
    meta.write_text("{not json")
    assert "error" in af.token_facts(str(meta))
    assert af.token_facts(str(tmp_path / "none.json"))["exists"] is False


def test_signing_cert_expiry_read_with_openssl(af, tmp_path: Path) -> None:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "school-001")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=10))
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / "cert.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    got = af.cert_facts(str(path), 10.0)
    assert 9.9 < got["days_left"] <= 10.0, got
    path.write_text("garbage")
    assert "error" in af.cert_facts(str(path), 10.0)
