"""A complete school on 127.0.0.1 for the acceptance runner: the real simulator over verified TLS (the agent
tests' fixtures), a registered school, and a real agent with delivery, services and ESIA login switched on."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

# Fixtures of the agent tests (a TLS simulator and its test PKI), reused rather than copied.
from agent.conftest import delivery_config, pki, tls_sim  # noqa: F401
from sim.simclient import onboard

from schoolgate.acceptance.target import Target
from schoolgate.agent.harness import AgentProcess, free_port


@dataclass
class LocalSchool:
    agent: AgentProcess
    sim: Any
    target: Target

    def faults(self, **cfg: Any) -> None:
        r = requests.put(self.sim.base + "/admin/v1/faults", json=cfg, timeout=10)
        assert r.status_code == 200, r.text

    def clear_faults(self) -> None:
        requests.delete(self.sim.base + "/admin/v1/faults", timeout=10)


@pytest.fixture(scope="module")
def local_school(
    tmp_path_factory: pytest.TempPathFactory,
    tls_sim: Any,  # noqa: F811
    pki: dict[str, Path],  # noqa: F811
) -> Iterator[LocalSchool]:
    tmp = tmp_path_factory.mktemp("acceptance-school")
    port = free_port()
    school = onboard(tls_sim.base, tmp / "school", redirect_base=f"http://127.0.0.1:{port}")
    token = requests.post(
        tls_sim.base + f"/cabinet/v1/services/{school.service_id}/tokens",
        json={"lifetime_s": 3600},
        headers={"X-Access-Code": school.access_code},
        timeout=30,
    )
    assert token.status_code == 201, token.text
    token_file = tmp / "provider-token"
    token_file.write_text(token.json()["access_token"])
    token_file.chmod(0o600)
    certs = requests.get(tls_sim.base + "/aas/oauth2/certs", timeout=10).json()["certificates"]
    cert_files = []
    for i, pem in enumerate(certs):
        p = tmp / f"esia-{i}.pem"
        p.write_text(pem)
        cert_files.append(str(p))
    cfg = delivery_config(tls_sim, school, pki["ca"])
    cfg["listen"] = {"host": "127.0.0.1", "port": port}
    cfg["esia"].update(
        verify_certificates=cert_files,
        issuer="http://esia-sim.schoolgate.test/",
        redirect_uri=f"http://127.0.0.1:{port}/esia/callback",
    )
    cfg["services"] = {"poll_s": 0.2, "refresh_s": 10}
    agent = AgentProcess(tmp / "agent", cfg)
    agent.port = port
    agent.config["listen"]["port"] = port
    agent.start()
    target = Target.from_dict(
        {
            "school": "school-local",
            "portal_url": agent.url,
            "api_prefix": "",
            "hmac_secret_file": str(agent.secret_path),
            "provider_url": tls_sim.base,
            "ca_file": str(pki["ca"]),
            "provider_token_file": str(token_file),
            "school_id": "school-001",
            "timeout_s": 60,
        }
    )
    yield LocalSchool(agent, tls_sim, target)
    agent.stop()
