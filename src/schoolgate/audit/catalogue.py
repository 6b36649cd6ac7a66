"""The check catalogue (checks.yml): what is checked, which measures it proves, what fixes it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_CATALOGUE = Path(__file__).with_name("checks.yml")


class CatalogueError(ValueError):
    """The catalogue file is unusable; the message names the entry and the field."""


@dataclass(frozen=True)
class Check:
    id: str
    title_ru: str
    title_en: str
    measures: tuple[str, ...]
    evaluator: str
    params: dict[str, Any] = field(default_factory=dict)
    remediation: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": {"ru": self.title_ru, "en": self.title_en},
            "measures": list(self.measures),
            "remediation": dict(self.remediation),
        }


def load_catalogue(path: Path = DEFAULT_CATALOGUE) -> list[Check]:
    from schoolgate.audit.evaluate import EVALUATORS

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogueError(f"{path}: cannot read the check catalogue: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("checks"), list):
        raise CatalogueError(f"{path}: expected a mapping with a 'checks' list")
    checks: list[Check] = []
    seen: set[str] = set()
    for i, raw in enumerate(data["checks"]):
        where = f"{path}: checks[{i}]"
        if not isinstance(raw, dict):
            raise CatalogueError(f"{where}: not a mapping")
        for key in ("id", "title", "measures", "evaluator", "remediation"):
            if key not in raw:
                raise CatalogueError(f"{where}: missing '{key}'")
        cid = str(raw["id"])
        if cid in seen:
            raise CatalogueError(f"{where}: duplicate id {cid}")
        seen.add(cid)
        if raw["evaluator"] not in EVALUATORS:
            raise CatalogueError(f"{where} ({cid}): unknown evaluator {raw['evaluator']!r}")
        title = raw["title"]
        if not isinstance(title, dict) or not title.get("ru") or not title.get("en"):
            raise CatalogueError(f"{where} ({cid}): title needs 'ru' and 'en'")
        measures = raw["measures"]
        if not isinstance(measures, list) or not measures:
            raise CatalogueError(f"{where} ({cid}): 'measures' must be a non-empty list")
        rem = raw["remediation"]
        if not isinstance(rem, dict) or not rem.get("playbook"):
            raise CatalogueError(f"{where} ({cid}): remediation needs a 'playbook'")
        checks.append(
            Check(
                id=cid,
                title_ru=str(title["ru"]),
                title_en=str(title["en"]),
                measures=tuple(str(m) for m in measures),
                evaluator=str(raw["evaluator"]),
                params=dict(raw.get("params") or {}),
                remediation={str(k): str(v) for k, v in rem.items()},
            )
        )
    return checks
