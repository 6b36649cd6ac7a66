"""Waves of a rollout: the canary school(s) first, then a percentage, then the rest.

Pure functions (no Ansible here) so the wave arithmetic is unit-tested on its own.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

DEFAULT_SIZES: tuple[str, ...] = ("1", "10%", "100%")
DEFAULT_MAX_FAIL: tuple[int, ...] = (0, 10, 20)
DEFAULT_NAMES: tuple[str, ...] = ("canary", "early", "rest")
_SIZE_RE = re.compile(r"^(?:[1-9][0-9]{0,5}|(?:[1-9][0-9]?|100)%)$")


class WaveSpecError(ValueError):
    """The wave specification is unusable; the message names the setting and the fix."""


@dataclass(frozen=True)
class WaveSpec:
    name: str
    size: str  # "N" schools or "P%" of the schools of this rollout
    max_fail_percentage: int


@dataclass
class Wave:
    name: str
    hosts: list[str]
    max_fail_percentage: int
    status: str = "pending"  # pending | running | passed | stopped | not_started
    failed: list[str] = field(default_factory=list)
    rc: int | None = None


def parse_specs(
    sizes: Sequence[str] | str = DEFAULT_SIZES,
    max_fail: Sequence[int | str] | str = DEFAULT_MAX_FAIL,
    names: Sequence[str] | None = None,
) -> list[WaveSpec]:
    """Wave specs from `--waves 1,10%,100%` and `--max-fail 0,10,20` (the last max-fail value repeats)."""
    size_list = [s.strip() for s in (sizes.split(",") if isinstance(sizes, str) else sizes) if str(s).strip()]
    fail_list = [str(m).strip() for m in (max_fail.split(",") if isinstance(max_fail, str) else max_fail)]
    fail_list = [m for m in fail_list if m]
    if not size_list:
        raise WaveSpecError("--waves is empty. Fix: e.g. --waves 1,10%,100% (canary school, 10%, the rest)")
    for s in size_list:
        if not _SIZE_RE.match(s):
            raise WaveSpecError(f"--waves: {s!r} is neither a number of schools nor a percentage 1%-100%")
    if not fail_list:
        raise WaveSpecError("--max-fail is empty. Fix: e.g. --max-fail 0,10,20 (percent per wave)")
    fails: list[int] = []
    for m in fail_list:
        if not m.isdigit() or int(m) > 100:
            raise WaveSpecError(f"--max-fail: {m!r} is not a percentage 0-100")
        fails.append(int(m))
    if names is None:
        names = _default_names(len(size_list))
    elif len(names) != len(size_list):
        raise WaveSpecError(f"{len(names)} wave names for {len(size_list)} waves")
    return [WaveSpec(names[i], size_list[i], fails[min(i, len(fails) - 1)]) for i in range(len(size_list))]


def _default_names(n: int) -> list[str]:
    if n == len(DEFAULT_NAMES):
        return list(DEFAULT_NAMES)
    if n == 1:
        return ["all"]
    return ["canary", *[f"wave{i}" for i in range(2, n)], "rest"]


def plan_waves(schools: Sequence[str], specs: Sequence[WaveSpec], first: Sequence[str] = ()) -> list[Wave]:
    """Split `schools` (rollout order) into waves; `first` (e.g. the inventory's canary group) go first.

    Percentages are of the whole rollout, counted cumulatively: `1,10%,100%` over 200 schools gives
    1, then up to 10% of 200 = 20 schools in total (19 more), then the remaining 180. The last wave always
    takes whatever is left, so no school is ever silently dropped. Empty waves are left out.
    """
    ordered = [s for s in first if s in schools] + [s for s in schools if s not in first]
    if len(set(ordered)) != len(ordered):
        raise WaveSpecError("a school is listed twice in the inventory")
    total = len(ordered)
    waves: list[Wave] = []
    taken = 0
    for i, spec in enumerate(specs):
        if i == len(specs) - 1:
            upto = total
        elif spec.size.endswith("%"):
            upto = max(taken + 1, math.ceil(total * int(spec.size[:-1]) / 100))
        else:
            upto = taken + int(spec.size)
        upto = min(upto, total)
        if upto > taken:
            waves.append(Wave(spec.name, ordered[taken:upto], spec.max_fail_percentage))
        taken = upto
    return waves
