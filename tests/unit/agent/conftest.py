"""Fixtures for the agent tests: a real agent process, a real simulator over TLS, a test PKI."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

# The simulator's scripted client (onboarding through the ESIA core) is the sim area's; reuse it.
from sim.simclient import School, SimProcess, onboard

from schoolgate.agent.harness import AgentProcess


def _write_pki(directory: Path, name: str) -> dict[str, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"ca": directory / "ca.pem", "cert": directory / "server.pem", "key": directory / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    paths["key"].chmod(0o600)
    return paths


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _write_pki(tmp_path_factory.mktemp("pki"), "schoolgate-lab")


@pytest.fixture(scope="session")
def rogue_pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _write_pki(tmp_path_factory.mktemp("rogue-pki"), "rogue")


@pytest.fixture(scope="session")
def tls_sim(tmp_path_factory: pytest.TempPathFactory, pki: dict[str, Path]) -> Iterator[SimProcess]:
    """The provider simulator serving HTTPS with a certificate from the test CA."""
    old = os.environ.get("REQUESTS_CA_BUNDLE")
    os.environ["REQUESTS_CA_BUNDLE"] = str(pki["ca"])  # the sim's scripted client verifies against our CA
    state = tmp_path_factory.mktemp("agent-sim") / "state"
    sim = SimProcess(
        state, "--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"]), "--log-level", "warning"
    )
    sim.base = f"https://127.0.0.1:{sim.port}"
    sim.start()
    yield sim
    sim.stop()
    if old is None:
        os.environ.pop("REQUESTS_CA_BUNDLE", None)
    else:
        os.environ["REQUESTS_CA_BUNDLE"] = old


@pytest.fixture(scope="session")
def school(tls_sim: SimProcess, tmp_path_factory: pytest.TempPathFactory) -> School:
    return onboard(tls_sim.base, tmp_path_factory.mktemp("agent-school"))


def delivery_config(sim: SimProcess, school: School, ca_file: Path, **delivery: Any) -> dict[str, Any]:
    return {
        "provider": {"base_url": sim.base, "ca_file": str(ca_file), "timeout_s": 10},
        "esia": {
            "base_url": sim.base,
            "client_id": school.client_id,
            "scope": "edu_intake",
            "redirect_uri": school.redirect_base + "/esia/callback",
            "signer": {
                "type": "openssl-gost",
                "key": str(school.key_dir / "school.key"),
                "cert": str(school.key_dir / "school.crt"),
            },
        },
        "delivery": {
            "enabled": True,
            "batch_size": 500,
            "backoff_base_s": 0.05,
            "backoff_max_s": 0.5,
            "breaker_failures": 3,
            "breaker_reset_s": 0.5,
            "idle_poll_s": 0.2,
            **delivery,
        },
    }


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    """An agent with delivery off: API and outbox only."""
    a = AgentProcess(tmp_path / "agent").start()
    yield a
    a.stop()


class SimAdmin:
    def __init__(self, sim: SimProcess, school: School) -> None:
        self.base, self.school = sim.base, school
        self._token: str | None = None

    def faults(self, **cfg: Any) -> None:
        r = requests.put(self.base + "/admin/v1/faults", json=cfg, timeout=10)
        assert r.status_code == 200, r.text

    def clear_faults(self) -> None:
        requests.delete(self.base + "/admin/v1/faults", timeout=10)

    def stored(self, record_ids: list[str]) -> dict[str, dict[str, Any]]:
        """record_id → the simulator's stored row, for the ids given (the intake's own query)."""
        if self._token is None:
            self._token = self.school.service_token()
        out: dict[str, dict[str, Any]] = {}
        for i in range(0, len(record_ids), 100):
            chunk = record_ids[i : i + 100]
            r = requests.get(
                self.base + "/edu/v1/records",
                params=[("record_id", x) for x in chunk] + [("limit", "10000")],
                headers={"Authorization": f"Bearer {self._token}"},
                timeout=30,
            )
            assert r.status_code == 200, r.text
            for row in r.json()["records"]:
                assert row["record_id"] not in out, "the intake returned a record twice"
                out[row["record_id"]] = row
        return out

    def stats(self) -> dict[str, Any]:
        return requests.get(self.base + "/admin/v1/intake/stats", timeout=10).json()


@pytest.fixture
def sim_admin(tls_sim: SimProcess, school: School) -> Iterator[SimAdmin]:
    admin = SimAdmin(tls_sim, school)
    admin.clear_faults()
    yield admin
    admin.clear_faults()


def grade(pupil: str | None = None, **override: Any) -> dict[str, Any]:
    rec = {
        "record_id": str(uuid.uuid4()),
        "school_id": "school-001",
        "pupil_id": pupil or "p-" + uuid.uuid4().hex[:8],
        "subject": "Математика",
        "grade": 5,
        "date": "2026-11-20",
        "teacher_id": "t-1",
    }
    rec.update(override)
    return rec
