"""What the benchmarks collect (latency distributions, curves) and PNG plots of it and of ratios.

A benchmark hands its latency distributions to `collect` and its curves (a rate by load, say) to
`collect_curve`; `render` draws, after the run, one chart of every figure's ratio against its
target, one chart of cumulative latency per group of distributions and one chart per group of
curves. Distributions are kept as log-spaced histograms (the layout the Node load clients in
bench/clients/histogram.mjs produce), so clients in several processes merge by addition.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from pathlib import Path

    from bench.figures import Figure

# Keep equal to bench/clients/histogram.mjs.
LOW_MS = 0.01
GROWTH = 1.02
BUCKETS = 1200


def bucket_of(ms: float) -> int:
    """The bucket a latency in milliseconds falls in."""
    if ms <= LOW_MS:
        return 0
    return min(BUCKETS - 1, math.ceil(math.log(ms / LOW_MS) / math.log(GROWTH)))


def bucket_value(k: int) -> float:
    """The value a bucket stands for: the geometric middle of its range (LOW_MS for bucket 0)."""
    return LOW_MS if k == 0 else LOW_MS * GROWTH ** (k - 0.5)


@dataclass(slots=True)
class Histogram:
    """Counts per log-spaced latency bucket (milliseconds)."""

    counts: dict[int, float] = field(default_factory=dict)

    @classmethod
    def from_pairs(cls, pairs: Iterable[Sequence[float]]) -> Histogram:
        """Read the sparse `[[bucket, count], ...]` a Node client prints."""
        hist = cls()
        for k, n in pairs:
            bucket = int(k)
            if not 0 <= bucket < BUCKETS or n < 0:
                raise ValueError(f"not a histogram bucket: {k!r}, {n!r}")
            hist.counts[bucket] = hist.counts.get(bucket, 0.0) + float(n)
        return hist

    @classmethod
    def from_samples(cls, samples_ms: Iterable[float]) -> Histogram:
        """Bucket raw samples (milliseconds)."""
        hist = cls()
        for ms in samples_ms:
            k = bucket_of(ms)
            hist.counts[k] = hist.counts.get(k, 0.0) + 1.0
        return hist

    @property
    def total(self) -> float:
        """How many samples."""
        return sum(self.counts.values())

    def merge(self, other: Histogram) -> Histogram:
        """A new histogram holding both."""
        merged = dict(self.counts)
        for k, n in other.counts.items():
            merged[k] = merged.get(k, 0.0) + n
        return Histogram(merged)

    def percentile(self, q: float) -> float:
        """The q-th percentile (0-100] in milliseconds, within one bucket (2%)."""
        if not 0 < q <= 100:
            raise ValueError("q must be in (0, 100]")
        total = self.total
        if total <= 0:
            raise ValueError("no samples")
        rank = q / 100 * total
        seen = 0.0
        for k in sorted(self.counts):
            seen += self.counts[k]
            if seen >= rank - 1e-9:
                return bucket_value(k)
        return bucket_value(max(self.counts))  # pragma: no cover - float rounding only

    def cdf(self) -> tuple[list[float], list[float]]:
        """(latency ms, fraction of samples at or below it), one point per occupied bucket."""
        total = self.total
        xs: list[float] = []
        ys: list[float] = []
        seen = 0.0
        for k in sorted(self.counts):
            seen += self.counts[k]
            xs.append(bucket_value(k))
            ys.append(seen / total)
        return xs, ys


@dataclass(frozen=True, slots=True)
class Distribution:
    """One latency distribution, drawn on the chart of its group."""

    group: str
    label: str
    histogram: Histogram


@dataclass(frozen=True, slots=True)
class Curve:
    """One line of (x, y) points, drawn on the chart of its group."""

    group: str
    label: str
    points: tuple[tuple[float, float], ...]


_collected: list[Distribution] = []
_curves: list[Curve] = []


def collect(group: str, label: str, histogram: Histogram) -> None:
    """Keep a distribution for the latency charts (a later one with the same names replaces it)."""
    _collected[:] = [d for d in _collected if (d.group, d.label) != (group, label)]
    if histogram.total > 0:
        _collected.append(Distribution(group, label, histogram))


def collect_curve(group: str, label: str, points: Iterable[tuple[float, float]]) -> None:
    """Keep a curve for the curve charts (a later one with the same names replaces it)."""
    _curves[:] = [c for c in _curves if (c.group, c.label) != (group, label)]
    kept = tuple(sorted(points))
    if kept:
        _curves.append(Curve(group, label, kept))


def curves() -> list[Curve]:
    """The curves collected so far."""
    return list(_curves)


def collected() -> list[Distribution]:
    """The distributions collected so far."""
    return list(_collected)


def clear() -> None:
    """Forget every collected distribution and curve."""
    _collected.clear()
    _curves.clear()


def slug(text: str) -> str:
    """A file-name-safe form of a title."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "plot"


def render(
    figures: Sequence[Figure],
    out_dir: Path,
    distributions: Sequence[Distribution] | None = None,
) -> list[Path]:
    """Write ratios.png, one latency-<group>.png and one curve-<group>.png per group; return the
    paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if figures:
        written.append(_ratio_chart(figures, out_dir / "ratios.png"))
    groups: dict[str, list[Distribution]] = {}
    for d in collected() if distributions is None else distributions:
        groups.setdefault(d.group, []).append(d)
    for group, members in groups.items():
        written.append(_latency_chart(group, members, out_dir / f"latency-{slug(group)}.png"))
    lines: dict[str, list[Curve]] = {}
    for c in _curves:
        lines.setdefault(c.group, []).append(c)
    for group, line in lines.items():
        written.append(_curve_chart(group, line, out_dir / f"curve-{slug(group)}.png"))
    return written


def markdown(paths: Sequence[Path], relative_to: Path) -> str:
    """Image links to the plots, relative to the directory of the page that shows them."""
    lines = []
    for path in paths:
        link = path.resolve().relative_to(relative_to.resolve()).as_posix()
        lines.append(f"![{path.stem}]({link})")
    return "\n\n".join(lines)


def _ratio_chart(figures: Sequence[Figure], path: Path) -> Path:
    # matplotlib's object API, not pyplot: no global figure state, nothing to close.
    from matplotlib.figure import Figure as Canvas

    fig = Canvas(figsize=(10, max(2.5, 0.42 * len(figures) + 1.2)))
    ax = fig.subplots()
    names = [f.name for f in figures][::-1]
    ratios = [f.ratio for f in figures][::-1]
    colours = [{True: "#2e7d32", False: "#c62828", None: "#9e9e9e"}[f.met] for f in figures][::-1]
    positions = list(range(len(figures)))
    ax.barh(positions, ratios, color=colours, height=0.6)
    for y, f in zip(positions, figures[::-1], strict=True):
        if f.target:
            bound = float(f.target.split(" ", 1)[1])
            ax.plot([bound, bound], [y - 0.4, y + 0.4], color="black", linewidth=2)
        ax.annotate(
            f"{f.ratio:.2f}x" + (f" (target {f.target})" if f.target else ""),
            (f.ratio, y),
            xytext=(4, 0),
            textcoords="offset points",
            va="center",
            fontsize=8,
        )
    ax.axvline(1.0, color="#616161", linewidth=0.8, linestyle=":")
    ax.set_yticks(positions, [_short(n) for n in names], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("ratio to baseline (log scale); black tick: target; green met, red missed")
    ax.set_title("Every figure against its baseline")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _latency_chart(group: str, members: Sequence[Distribution], path: Path) -> Path:
    from matplotlib.figure import Figure as Canvas

    fig = Canvas(figsize=(8, 4.5))
    ax = fig.subplots()
    for d in members:
        xs, ys = d.histogram.cdf()
        p50, p99 = d.histogram.percentile(50), d.histogram.percentile(99)
        ax.step(xs, ys, where="post", label=f"{d.label} (p50 {p50:.2f}, p99 {p99:.2f} ms)")
    ax.set_xscale("log")
    ax.set_xlabel("latency, ms (log scale)")
    ax.set_ylabel("fraction at or below")
    ax.set_ylim(0, 1.01)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(group)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _curve_chart(group: str, members: Sequence[Curve], path: Path) -> Path:
    from matplotlib.figure import Figure as Canvas

    fig = Canvas(figsize=(8, 4.5))
    ax = fig.subplots()
    for c in members:
        xs, ys = zip(*c.points, strict=True)
        ax.plot(xs, ys, marker="o", label=c.label)
        for x, y in c.points:
            ax.annotate(f"{y:,.0f}", (x, y), xytext=(3, 4), textcoords="offset points", fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("subscribers (log scale)")
    ax.set_ylabel("delivered messages/s")
    ax.set_ylim(bottom=0)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(group)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _short(name: str, width: int = 70) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"
