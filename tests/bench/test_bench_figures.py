"""The benchmarks' own arithmetic: latency histograms, /proc parsing, import profiles, plots."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from typing import TYPE_CHECKING, Any

import pytest

from bench import plots
from bench.cold_start import EVENT, added_imports, package_times, probe_program
from bench.figures import Figure
from bench.memory import Footprint
from bench.nodeclients import CLIENTS
from bench.plots import Histogram, bucket_of, bucket_value
from bench.servers import children, parse_vmrss, process_cpu_seconds, rss_bytes

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def no_collected() -> Iterator[None]:
    plots.clear()
    yield
    plots.clear()


def test_buckets_hold_their_values_within_two_percent() -> None:
    for ms in (0.02, 0.5, 1.0, 3.7, 12.0, 250.0, 9_000.0):
        k = bucket_of(ms)
        assert plots.LOW_MS * plots.GROWTH ** (k - 1) < ms <= plots.LOW_MS * plots.GROWTH**k
        assert abs(bucket_value(k) - ms) / ms < 0.02


def test_tiny_negative_and_huge_latencies_are_clamped() -> None:
    assert bucket_of(0.0) == 0
    assert bucket_of(-3.0) == 0  # clocks of two processes may disagree by a hair
    assert bucket_of(1e12) == plots.BUCKETS - 1


def test_percentiles_of_a_known_distribution() -> None:
    hist = Histogram.from_samples([float(ms) for ms in range(1, 101)])  # 1..100 ms
    assert hist.total == 100
    assert hist.percentile(50) == pytest.approx(50, rel=0.02)
    assert hist.percentile(99) == pytest.approx(99, rel=0.02)
    assert hist.percentile(100) == pytest.approx(100, rel=0.02)


def test_percentile_rejects_empty_and_out_of_range() -> None:
    with pytest.raises(ValueError, match="no samples"):
        Histogram().percentile(50)
    with pytest.raises(ValueError, match="q must be"):
        Histogram.from_samples([1.0]).percentile(0)


def test_histograms_from_several_processes_merge_by_addition() -> None:
    a = Histogram.from_pairs([[10, 3], [200, 1]])
    b = Histogram.from_pairs([[10, 1], [400, 4]])
    merged = a.merge(b)
    assert merged.counts == {10: 4.0, 200: 1.0, 400: 4.0}
    assert a.counts == {10: 3.0, 200: 1.0}  # the parts are unchanged
    xs, ys = merged.cdf()
    assert xs == sorted(xs)
    assert ys[-1] == pytest.approx(1.0)
    assert ys == sorted(ys)


def test_from_pairs_refuses_what_is_not_a_bucket() -> None:
    with pytest.raises(ValueError, match="not a histogram bucket"):
        Histogram.from_pairs([[plots.BUCKETS, 1]])
    with pytest.raises(ValueError, match="not a histogram bucket"):
        Histogram.from_pairs([[3, -1]])


def test_the_node_clients_use_the_same_buckets() -> None:
    source = (CLIENTS / "histogram.mjs").read_text()
    for name in ("LOW_MS", "GROWTH", "BUCKETS"):
        m = re.search(rf"export const {name} = ([0-9.]+);", source)
        assert m is not None, name
        assert float(m.group(1)) == getattr(plots, name)


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js")
def test_node_buckets_agree_with_python() -> None:
    values = [0.001, 0.05, 0.73, 1.0, 4.2, 18.5, 333.0, 70_000.0]
    program = (
        f"import {{ Histogram }} from {json.dumps((CLIENTS / 'histogram.mjs').as_uri())};"
        "const h = new Histogram();"
        f"for (const v of {json.dumps(values)}) h.add(v);"
        "console.log(JSON.stringify(h.toJSON()));"
    )
    done = subprocess.run(
        ["node", "--input-type=module", "-e", program],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    from_node = Histogram.from_pairs(json.loads(done.stdout))
    assert from_node.counts == Histogram.from_samples(values).counts


STATUS = """Name:\tpython3
VmPeak:\t  200000 kB
VmRSS:\t   51234 kB
RssAnon:\t   40000 kB
"""


def test_vmrss_is_read_in_bytes() -> None:
    assert parse_vmrss(STATUS) == 51234 * 1024


def test_vmrss_missing_is_an_error() -> None:
    with pytest.raises(ValueError, match="no VmRSS"):
        parse_vmrss("Name:\tkthreadd\n")


def test_this_process_has_memory_and_cpu() -> None:
    assert rss_bytes(os.getpid()) > 1_000_000
    assert process_cpu_seconds(os.getpid()) > 0


def test_footprint_per_thousand() -> None:
    grown = Footprint(before=50_000_000, after=62_000_000, connections=2000)
    assert grown.mb_per_1000 == pytest.approx(6.0)


IMPORTTIME = """\
import time: self [us] | cumulative | imported package
import time:       100 |        100 |     pydantic_core
import time:      2000 |       2100 |   pydantic
import time:       300 |        300 |     jwt.utils
import time:       700 |       1000 |   jwt
import time:      5000 |       8100 | fastapi
import time:       400 |        400 | app.main
"""


def test_import_time_is_charged_to_each_top_level_package_once() -> None:
    times = package_times(IMPORTTIME)
    assert times == {
        "pydantic_core": pytest.approx(0.1),
        "pydantic": pytest.approx(2.0),
        "jwt": pytest.approx(1.0),
        "fastapi": pytest.approx(5.0),
        "app": pytest.approx(0.4),
    }
    assert sum(times.values()) == pytest.approx(8.5)  # the root imports' cumulative total


def test_added_imports_are_the_differences_largest_first() -> None:
    relay = {"fastapi": 5.0, "jwt": 3.0, "app": 1.0, "mangum": 1.0}
    bare = {"fastapi": 5.2, "mangum": 1.0}
    assert added_imports(relay, bare) == [("jwt", 3.0), ("app", 1.0)]


def test_the_cold_start_probe_is_a_valid_program() -> None:
    program = probe_program("handler = None\nhow = 'x'")
    compile(program, "<probe>", "exec")
    assert repr(EVENT["rawPath"]) in program


def _figure(name: str, value: float, baseline: float, target: str) -> Figure:
    return Figure(name, "x", value, baseline, "base", target)


def test_plots_render_pngs_and_link_them(tmp_path: Path, no_collected: None) -> None:
    pytest.importorskip("matplotlib")
    plots.collect("Group A", "one", Histogram.from_samples([1.0, 2.0, 3.0]))
    plots.collect("Group A", "two", Histogram.from_samples([2.0, 4.0]))
    plots.collect("Group A", "two", Histogram.from_samples([5.0]))  # replaces the earlier one
    plots.collect("Empty", "none", Histogram())  # nothing to draw: left out
    plots.collect_curve("Rate by size", "relay", [(1000, 30.0), (100, 10.0)])
    plots.collect_curve("Rate by size", "soketi", [(100, 12.0), (1000, 35.0)])
    plots.collect_curve("Empty curve", "none", [])  # nothing to draw: left out
    figures = [
        _figure("met", 2.0, 1.0, ">= 1.5"),
        _figure("missed", 3.0, 1.0, "<= 1.15"),
        _figure("report only", 0.5, 1.0, ""),
    ]
    out = tmp_path / "docs" / "bench"
    paths = plots.render(figures, out)
    assert [p.name for p in paths] == [
        "ratios.png",
        "latency-group-a.png",
        "curve-rate-by-size.png",
    ]
    assert plots.curves()[0].points == ((100, 10.0), (1000, 30.0))  # sorted by x
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [d.label for d in plots.collected()] == ["one", "two"]
    links = plots.markdown(paths, tmp_path / "docs")
    assert "![ratios](bench/ratios.png)" in links
    assert "(bench/latency-group-a.png)" in links


def test_slug_is_file_name_safe() -> None:
    assert plots.slug("Auth: POST /auth/channel, 16 connections") == (
        "auth-post-auth-channel-16-connections"
    )
    assert plots.slug("!!!") == "plot"


def test_percentile_matches_the_figures_module_on_raw_samples() -> None:
    from bench.figures import percentile

    samples = [math.exp(i / 40) for i in range(400)]
    hist = Histogram.from_samples(samples)
    for q in (50, 90, 99):
        assert hist.percentile(q) == pytest.approx(percentile(samples, q), rel=0.03)


def test_a_process_tree_is_found_from_its_root() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        assert child.pid in children(os.getpid())
        assert children(child.pid) == []
    finally:
        child.kill()
        child.wait()


def test_rounds_rotate_which_server_goes_first() -> None:
    from bench.deliveries import rounds

    servers: list[Any] = ["a", "b", "c"]
    order: list[Any] = list(rounds(servers, 3))
    assert order == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
