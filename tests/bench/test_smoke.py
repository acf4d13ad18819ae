"""A quick pass of every benchmark: each runs end to end and yields finite, positive figures."""

from __future__ import annotations

import math

import pytest

from bench.run import BENCHMARKS, table

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("name", sorted(BENCHMARKS))
def test_benchmark_runs_and_reports(name: str) -> None:
    figures = BENCHMARKS[name](quick=True)
    assert figures
    for figure in figures:
        assert math.isfinite(figure.value), figure
        assert figure.value > 0, figure
        assert math.isfinite(figure.baseline), figure
        assert figure.baseline > 0, figure
    assert all(f.name in table(figures) for f in figures)
