"""Prometheus text exposition for the simulator (no client library needed for a few counters)."""

from __future__ import annotations

from collections import defaultdict

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    inner = ",".join(f'{k}="{v.replace(chr(92), "/").replace(chr(34), "")}"' for k, v in pairs)
    return "{" + inner + "}"


class Metrics:
    def __init__(self) -> None:
        self.counters: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(
            lambda: defaultdict(float)
        )
        self.help: dict[str, str] = {}
        self.hist_counts: dict[str, list[int]] = defaultdict(lambda: [0] * (len(_BUCKETS) + 1))
        self.hist_sum: dict[str, float] = defaultdict(float)

    def inc(self, name: str, value: float = 1.0, help_text: str = "", **labels: str) -> None:
        if help_text:
            self.help.setdefault(name, help_text)
        self.counters[name][tuple(sorted(labels.items()))] += value

    def observe(self, route: str, seconds: float) -> None:
        counts = self.hist_counts[route]
        for i, bound in enumerate(_BUCKETS):
            if seconds <= bound:
                counts[i] += 1
                break
        else:
            counts[-1] += 1
        self.hist_sum[route] += seconds

    def render(self) -> str:
        lines: list[str] = []
        for name in sorted(self.counters):
            lines.append(f"# HELP {name} {self.help.get(name, name)}")
            lines.append(f"# TYPE {name} counter")
            for labels, value in sorted(self.counters[name].items()):
                lines.append(f"{name}{_labels(labels)} {value:g}")
        hname = "schoolgate_sim_request_duration_seconds"
        lines.append(f"# HELP {hname} Time to answer a request, by route.")
        lines.append(f"# TYPE {hname} histogram")
        for route in sorted(self.hist_counts):
            counts = self.hist_counts[route]
            cumulative = 0
            for bound, count in zip(_BUCKETS, counts, strict=False):
                cumulative += count
                lines.append(f'{hname}_bucket{{route="{route}",le="{bound}"}} {cumulative}')
            cumulative += counts[-1]
            lines.append(f'{hname}_bucket{{route="{route}",le="+Inf"}} {cumulative}')
            lines.append(f'{hname}_sum{{route="{route}"}} {self.hist_sum[route]:.6f}')
            lines.append(f'{hname}_count{{route="{route}"}} {cumulative}')
        return "\n".join(lines) + "\n"
