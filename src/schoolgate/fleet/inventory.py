"""The fleet as Ansible sees it: schools (group `schools`, any depth), their region and municipality.

Read through `ansible-inventory --list`, so group_vars/host_vars (and Vault, with the usual
ANSIBLE_VAULT_PASSWORD_FILE) resolve exactly as in a playbook run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHOOLS_GROUP = "schools"
CANARY_GROUP = "canary"


class InventoryError(RuntimeError):
    """The inventory cannot be read; the message says which file and why."""


@dataclass(frozen=True)
class School:
    name: str
    school_id: str
    region: str
    municipality: str


@dataclass(frozen=True)
class Fleet:
    inventory: str
    schools: list[School]
    canary: list[str]
    waves_var: Any  # rollout_waves from the inventory (group_vars), if any

    def names(self) -> list[str]:
        return [s.name for s in self.schools]

    def by_name(self) -> dict[str, School]:
        return {s.name: s for s in self.schools}


def ansible_bin(name: str) -> str:
    """The tool next to the running interpreter (the venv) first, then PATH."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise InventoryError(f"{name} not found (install ansible-core into the venv: make venv)")
    return found


def _members(groups: dict[str, Any], group: str, seen: set[str] | None = None) -> list[tuple[str, list[str]]]:
    """(host, group path below `group`) for every host under `group`, in inventory order."""
    seen = seen if seen is not None else set()
    if group in seen:
        return []
    seen.add(group)
    node = groups.get(group, {})
    out: list[tuple[str, list[str]]] = [(h, [group]) for h in node.get("hosts", [])]
    for child in node.get("children", []):
        out += [(h, [group, *path]) for h, path in _members(groups, child, seen)]
    return out


def parse_inventory_list(data: dict[str, Any], inventory: str) -> Fleet:
    hostvars: dict[str, dict[str, Any]] = data.get("_meta", {}).get("hostvars", {})
    if SCHOOLS_GROUP not in data:
        raise InventoryError(f"{inventory}: no group '{SCHOOLS_GROUP}' (every school must be under it)")
    schools: list[School] = []
    seen: set[str] = set()
    region_default = Path(inventory).name.removesuffix(".ini").removesuffix(".yml") or "region"
    for host, path in _members(data, SCHOOLS_GROUP):
        if host in seen:
            continue
        seen.add(host)
        # ansible-inventory does not template: a "{{ ... }}" value is not a name to show in a report.
        hv = {k: v for k, v in hostvars.get(host, {}).items() if not (isinstance(v, str) and "{{" in v)}
        municipality = str(hv.get("municipality_name") or (path[-1] if len(path) > 1 else "—"))
        schools.append(
            School(
                name=host,
                school_id=str(hv.get("school_id") or host),
                region=str(hv.get("region_name") or region_default),
                municipality=municipality,
            )
        )
    canary = [h for h, _ in _members(data, CANARY_GROUP)] if CANARY_GROUP in data else []
    waves_var = None
    for s in schools:
        if "rollout_waves" in hostvars.get(s.name, {}):
            waves_var = hostvars[s.name]["rollout_waves"]
            break
    return Fleet(inventory, schools, canary, waves_var)


def load_fleet(inventory: str, env: dict[str, str] | None = None) -> Fleet:
    cmd = [ansible_bin("ansible-inventory"), "-i", inventory, "--list"]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env=env or dict(os.environ), check=False, timeout=600
    )
    if proc.returncode != 0:
        raise InventoryError(f"{inventory}: ansible-inventory failed: {proc.stderr.strip()[-800:]}")
    try:
        data = json.loads(proc.stdout)
    except ValueError as exc:
        raise InventoryError(f"{inventory}: ansible-inventory printed no JSON: {exc}") from exc
    return parse_inventory_list(data, inventory)
