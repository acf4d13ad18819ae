"""`make bench`: run every benchmark, write docs/benchmarks.md, fail when a target is missed."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bench import (
    apigateway_fanout,
    auth,
    cold_start,
    local_fanout,
    memory,
    package_size,
    plots,
    pusher_publish,
    scaling,
    sse,
)

if TYPE_CHECKING:
    from bench.figures import Figure

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = {
    "cold_start": cold_start.run,
    "auth": auth.run,
    "pusher_publish": pusher_publish.run,
    "local_fanout": local_fanout.run,
    "memory": memory.run,
    "scaling": scaling.run,
    "sse": sse.run,
    "apigateway_fanout": apigateway_fanout.run,
    "package_size": package_size.run,
}


def machine() -> str:
    """The machine the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    ).stdout.strip()
    return (
        f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()}, commit {commit or 'unknown'}"
    )


def table(figures: list[Figure]) -> str:
    """The figures as a Markdown table."""
    rows = [
        "| figure | relay | baseline | ratio | target | met | notes |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in figures:
        met = {True: "yes", False: "**no**", None: "-"}[f.met]
        rows.append(
            f"| {f.name} | {f.value:.2f} {f.unit} | {f.baseline:.2f} {f.unit} ({f.baseline_name}) "
            f"| {f.ratio:.2f}x | {f.target or '-'} | {met} | {f.note} |"
        )
    return "\n".join(rows)


def main() -> int:
    """Run, write, and exit non-zero on a missed target."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sample sizes (smoke run)")
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    figures: list[Figure] = []
    for name, run in BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        print(f"bench: {name} ...", flush=True)
        figures.extend(run(quick=args.quick))
    report = table(figures)
    print(report)
    if not args.quick:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        header = (ROOT / "bench" / "README.md").read_text()
        images = plots.render(figures, ROOT / "docs" / "bench")
        links = plots.markdown(images, args.out.parent)
        args.out.write_text(
            f"{header}\n## Results\n\nMeasured {stamp} on {machine()}.\n\n{report}\n\n{links}\n"
        )
    missed = [f.name for f in figures if f.met is False]
    for name in missed:
        print(f"bench: target missed: {name}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
