"""playbooks/onboard.yml against a real simulator: document checks, submission, code in Ansible Vault."""

from __future__ import annotations

import subprocess
from pathlib import Path

import requests
from sim.simclient import SimProcess

from .conftest import BIN, ROOT, run_playbook

PLAYBOOK = ROOT / "playbooks" / "onboard.yml"
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\ntrailer\n<<>>\n%%EOF\n"


def _school(tmp: Path, sim: SimProcess, docs: dict[str, Path | None]) -> tuple[str, Path]:
    inv_dir = tmp / "inventory"
    inv_dir.mkdir()
    (inv_dir / "hosts.ini").write_text(
        "[schools]\nschool-017 ansible_connection=local ansible_python_interpreter="
        + str(BIN / "python")
        + "\n"
    )
    documents = {k: str(v) for k, v in docs.items() if v is not None}
    (tmp / "vault-pass").write_text("test-vault-password\n")
    (tmp / "vault-pass").chmod(0o600)
    extra = {"onboard_documents": documents, "onboard_region_url": sim.base, "onboard_retry_delay_s": 0}
    return str(inv_dir / "hosts.ini"), extra  # type: ignore[return-value]


def _docs(tmp: Path) -> dict[str, Path | None]:
    out: dict[str, Path | None] = {}
    for name in ("charter", "connection_decision", "parent_committee_consent", "license"):
        path = tmp / f"{name}.pdf"
        path.write_bytes(PDF + name.encode())
        out[name] = path
    return out


def _env(tmp: Path) -> dict[str, str]:
    return {"ANSIBLE_VAULT_PASSWORD_FILE": str(tmp / "vault-pass")}


def test_missing_and_invalid_documents_are_listed(sim, tmp_path):
    docs = _docs(tmp_path)
    docs["parent_committee_consent"] = None  # not given at all
    docs["license"] = tmp_path / "license.docx"
    docs["license"].write_bytes(b"PK\x03\x04 not a pdf")
    docs["charter"] = tmp_path / "absent" / "ustav.pdf"
    inventory, extra = _school(tmp_path, sim, docs)
    run = run_playbook(PLAYBOOK, extra, tmp_path, inventory=inventory, env=_env(tmp_path))
    assert run.rc != 0
    out = run.stdout
    assert "Согласие родительского комитета" in out and "onboard_documents.parent_committee_consent" in out
    assert "Лицензия" in out and "не в формате PDF" in out
    assert "Устав" in out and "не найден" in out
    assert "Решение о подключении" not in out.split("пакет документов не готов", 1)[1].split("PLAY RECAP")[0]
    assert not (tmp_path / "inventory" / "host_vars" / "school-017" / "registration_vault.yml").exists()


def test_onboarding_stores_the_access_code_only_in_vault(sim, tmp_path):
    inventory, extra = _school(tmp_path, sim, _docs(tmp_path))
    vault = tmp_path / "inventory" / "host_vars" / "school-017" / "registration_vault.yml"
    plan = run_playbook(PLAYBOOK, extra, tmp_path, "--check", inventory=inventory, env=_env(tmp_path))
    assert plan.rc == 0, plan.output[-3000:]
    assert "будет отправлен" in plan.stdout and not vault.exists()
    run = run_playbook(PLAYBOOK, extra, tmp_path, "-vvv", inventory=inventory, env=_env(tmp_path))
    assert run.rc == 0, run.output[-3000:]
    vault = tmp_path / "inventory" / "host_vars" / "school-017" / "registration_vault.yml"
    assert vault.read_text().startswith("$ANSIBLE_VAULT;")
    assert vault.stat().st_mode & 0o077 == 0
    plain = subprocess.run(
        [
            str(BIN / "ansible-vault"),
            "view",
            "--vault-password-file",
            str(tmp_path / "vault-pass"),
            str(vault),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    code = plain.split("registration_access_code:", 1)[1].strip().strip('"')
    assert code.startswith("SGAC-")
    assert code not in run.output
    # the code really opens the provider cabinet
    resp = requests.get(sim.base + "/cabinet/v1/services", headers={"X-Access-Code": code}, timeout=10)
    assert resp.status_code == 200
    # rerun: already onboarded, nothing submitted again
    again = run_playbook(PLAYBOOK, extra, tmp_path, inventory=inventory, env=_env(tmp_path))
    assert again.rc == 0, again.output[-3000:]
    assert "changed=0" in again.stdout
    assert vault.read_text().startswith("$ANSIBLE_VAULT;")
    assert (
        code
        in subprocess.run(
            [
                str(BIN / "ansible-vault"),
                "view",
                "--vault-password-file",
                str(tmp_path / "vault-pass"),
                str(vault),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
