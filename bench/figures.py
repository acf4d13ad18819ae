"""A measured figure, its baseline, and the target the ratio must meet."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Figure:
    """One comparison: `value` against `baseline`, with a target on their ratio."""

    name: str
    unit: str
    value: float
    baseline: float
    baseline_name: str
    target: str  # e.g. ">= 2.0" or "<= 1.2"; empty when the figure is only reported
    note: str = ""

    @property
    def ratio(self) -> float:
        """value / baseline."""
        return self.value / self.baseline if self.baseline else float("inf")

    @property
    def met(self) -> bool | None:
        """Whether the ratio meets the target (None when there is none)."""
        if not self.target:
            return None
        op, _, bound = self.target.partition(" ")
        limit = float(bound)
        return self.ratio >= limit if op == ">=" else self.ratio <= limit


def percentile(samples: list[float], q: float) -> float:
    """The q-th percentile (0-100) of the samples."""
    if len(samples) == 1:
        return samples[0]
    return statistics.quantiles(samples, n=100, method="inclusive")[int(q) - 1]
