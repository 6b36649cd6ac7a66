"""A small Prometheus text-format registry (stdlib only: the agent's host has no PyPI access)."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    if not names:
        return ""
    inner = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True))
    return "{" + inner + "}"


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class Counter:
    def __init__(self, name: str, help_: str, labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.labels = name, help_, tuple(labels)
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1.0, *labels: str) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def get(self, *labels: str) -> float:
        return self.values.get(labels, 0.0)

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        if not self.values and not self.labels:
            out.append(f"{self.name} 0")
        for key, v in sorted(self.values.items()):
            out.append(f"{self.name}{_labels(self.labels, key)} {v:g}")
        return out


class Gauge:
    def __init__(self, name: str, help_: str, fn: Callable[[], float] | None = None) -> None:
        self.name, self.help, self.fn = name, help_, fn
        self.value = 0.0

    def set(self, v: float) -> None:
        self.value = v

    def render(self) -> list[str]:
        v = self.fn() if self.fn else self.value
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} gauge", f"{self.name} {v:g}"]


class Histogram:
    def __init__(
        self, name: str, help_: str, labels: Sequence[str] = (), buckets: Sequence[float] = LATENCY_BUCKETS
    ) -> None:
        self.name, self.help, self.labels = name, help_, tuple(labels)
        self.buckets = tuple(buckets)
        self.series: dict[tuple[str, ...], list[float]] = {}  # per-bucket counts + [sum, count]

    def observe(self, value: float, *labels: str) -> None:
        s = self.series.get(labels)
        if s is None:
            s = self.series[labels] = [0.0] * (len(self.buckets) + 2)
        i = bisect.bisect_left(self.buckets, value)
        if i < len(self.buckets):
            s[i] += 1
        s[-2] += value
        s[-1] += 1

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for key, s in sorted(self.series.items()):
            cum = 0.0
            for b, n in zip(self.buckets, s, strict=False):
                cum += n
                out.append(f"{self.name}_bucket{_labels((*self.labels, 'le'), (*key, f'{b:g}'))} {cum:g}")
            out.append(f"{self.name}_bucket{_labels((*self.labels, 'le'), (*key, '+Inf'))} {s[-1]:g}")
            out.append(f"{self.name}_sum{_labels(self.labels, key)} {s[-2]:.6f}")
            out.append(f"{self.name}_count{_labels(self.labels, key)} {s[-1]:g}")
        return out


class Registry:
    def __init__(self) -> None:
        self.items: list[Counter | Gauge | Histogram] = []

    def counter(self, name: str, help_: str, labels: Sequence[str] = ()) -> Counter:
        c = Counter(name, help_, labels)
        self.items.append(c)
        return c

    def gauge(self, name: str, help_: str, fn: Callable[[], float] | None = None) -> Gauge:
        g = Gauge(name, help_, fn)
        self.items.append(g)
        return g

    def histogram(self, name: str, help_: str, labels: Sequence[str] = ()) -> Histogram:
        h = Histogram(name, help_, labels)
        self.items.append(h)
        return h

    def render(self) -> str:
        lines: list[str] = []
        for item in self.items:
            lines.extend(item.render())
        return "\n".join(lines) + "\n"
