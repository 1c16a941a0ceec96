"""The pipeline benchmark side by side: this tree against another git revision, alternately.

On a shared or noisy machine the same commit's throughput varies by a third from one run to the
next, so a change is only measured against its baseline run in the same minutes. This checks the
other revision out in a temporary git worktree, runs ``bench.bench_pipeline`` with the same
arguments in each tree in turn (A B, B A, A B, ...), and prints each pair and the medians: throughput,
CPU milliseconds per portfolio of each process, and WAL per portfolio. Both sides run this tree's
benchmark code (``bench/``, copied over the other tree's), so only the system differs; with
``--their-bench`` the other revision keeps its own.

    .venv/bin/python -m bench.compare --against HEAD~1 --pairs 3 -- --portfolios 1000 --assets 20
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_THROUGHPUT = re.compile(r"^throughput\s+([\d.]+) portfolios/s", re.M)
# "latency due -> recorded  p50 12924 ms, p99 18167 ms" (or "one portfolio alone ..." in single mode)
_LATENCY = re.compile(r"^(?:latency due -> recorded|one portfolio alone)\s+p50 (\d+) ms, p99 (\d+) ms", re.M)
_WAL = re.compile(r"^WAL per portfolio\s+(\d+) records", re.M)
# "executor#1    10.04    10.04    134.4 ..." : process, CPU s, CPU ms/portfolio; read only in the
# process table (from its header to the next blank line), not in the tables printed after it.
_PROCESS = re.compile(r"^(\S[^\n]*?)\s{2,}([\d.]+)\s+([\d.]+)\s+[\d.]+\s+[\d.]+\s+[\d.]+\s*$", re.M)
_PROCESS_TABLE = re.compile(r"^process\s+CPU s[^\n]*\n(.*?)(?:\n\s*\n|\Z)", re.M | re.S)


@dataclass
class Figures:
    throughput: float | None  # none in single mode
    wal_records: float | None
    cpu_ms: dict[str, float] = field(default_factory=dict)
    p50_ms: float | None = None
    p99_ms: float | None = None

    @property
    def pipeline_cpu_ms(self) -> float:
        """CPU per portfolio of the system itself: services, NATS and PostgreSQL."""
        return sum(v for k, v in self.cpu_ms.items() if not k.startswith(("bench", "(other")))


def parse(output: str) -> Figures:
    """The figures of one ``bench.bench_pipeline`` table."""
    throughput = _THROUGHPUT.search(output)
    latency = _LATENCY.search(output)
    if throughput is None and latency is None:
        raise ValueError(f"no throughput or latency in the benchmark's output:\n{output[-2000:]}")
    wal = _WAL.search(output)
    return Figures(
        throughput=float(throughput.group(1)) if throughput else None,
        wal_records=float(wal.group(1)) if wal else None,
        cpu_ms={m.group(1).strip(): float(m.group(3)) for m in _PROCESS.finditer(_process_table(output))},
        p50_ms=float(latency.group(1)) if latency else None,
        p99_ms=float(latency.group(2)) if latency else None,
    )


def _process_table(output: str) -> str:
    table = _PROCESS_TABLE.search(output)
    return table.group(1) if table else ""


def run_bench(tree: Path, bench_args: Sequence[str]) -> Figures:
    done = subprocess.run(
        [sys.executable, "-m", "bench.bench_pipeline", *bench_args],
        cwd=tree, capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"the benchmark failed in {tree}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return parse(done.stdout)


def _median(values: Sequence[float | None]) -> float | None:
    """The median, or None unless every run has the figure."""
    known = [v for v in values if v is not None]
    return statistics.median(known) if known and len(known) == len(values) else None


def median_figures(runs: Sequence[Figures]) -> Figures:
    names = [name for name in runs[0].cpu_ms if all(name in r.cpu_ms for r in runs)]
    return Figures(
        throughput=_median([r.throughput for r in runs]),
        wal_records=_median([r.wal_records for r in runs]),
        cpu_ms={name: statistics.median(r.cpu_ms[name] for r in runs) for name in names},
        p50_ms=_median([r.p50_ms for r in runs]),
        p99_ms=_median([r.p99_ms for r in runs]),
    )


def render(label_a: str, label_b: str, a: Figures, b: Figures) -> str:
    """Two builds' figures, one line per measure, with B's change against A."""

    def line(name: str, x: float | None, y: float | None) -> str | None:
        if x is None and y is None:
            return None  # not a figure of this mode
        change = f"{(y - x) / x:+.0%}" if x and y is not None else ""
        show = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
        return f"  {name:<24} {show(x):>12} {show(y):>12} {change:>7}"

    rows = [f"  {'':<24} {label_a[:12]:>12} {label_b[:12]:>12} {'change':>7}",
            line("portfolios/s", a.throughput, b.throughput),
            line("latency p50 ms", a.p50_ms, b.p50_ms),
            line("latency p99 ms", a.p99_ms, b.p99_ms),
            line("WAL records/portfolio", a.wal_records, b.wal_records),
            line("CPU ms/portfolio (all)", a.pipeline_cpu_ms, b.pipeline_cpu_ms)]
    rows += [line(f"  {name}", a.cpu_ms[name], b.cpu_ms.get(name)) for name in a.cpu_ms
             if not name.startswith(("bench", "(other"))]
    return "\n".join(row for row in rows if row is not None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--against", required=True, help="the git revision to compare this tree with (A)")
    parser.add_argument("--pairs", type=int, default=3, help="A/B runs, alternating (default 3)")
    parser.add_argument("--their-bench", action="store_true",
                        help="run the other revision's own bench/ code instead of this tree's")
    parser.add_argument("bench_args", nargs=argparse.REMAINDER, help="-- then bench.bench_pipeline's arguments")
    args = parser.parse_args(argv)
    bench_args = [a for a in args.bench_args if a != "--"] or ["--portfolios", "1000", "--assets", "20"]
    revision = subprocess.run(["git", "rev-parse", "--short", args.against], cwd=ROOT, capture_output=True,
                              text=True, check=False)
    if revision.returncode != 0:
        print(f"error: --against {args.against!r} is not a git revision here", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as scratch:
        other = Path(scratch) / "tree"
        subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(other), args.against],
                       cwd=ROOT, check=True)
        if not args.their_bench:
            for source in (ROOT / "bench").glob("*.py"):
                shutil.copy2(source, other / "bench" / source.name)
        try:
            runs: dict[str, list[Figures]] = {"A": [], "B": []}
            trees = {"A": other, "B": ROOT}
            for pair in range(1, args.pairs + 1):
                # Which goes first alternates too: the first of two back-to-back runs fares differently.
                for label in ("A", "B") if pair % 2 else ("B", "A"):
                    runs[label].append(run_bench(trees[label], bench_args))
                print(f"pair {pair} done", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=ROOT, check=False)
    label_a, label_b = f"A {revision.stdout.strip()}", "B this tree"
    print(f"\nbench.bench_pipeline {' '.join(bench_args)}; medians of {args.pairs} pairs")
    print(render(label_a, label_b, median_figures(runs["A"]), median_figures(runs["B"])))
    for pair, (a, b) in enumerate(zip(runs["A"], runs["B"], strict=True), start=1):
        print(f"\npair {pair}")
        print(render(label_a, label_b, a, b))
    return 0


if __name__ == "__main__":
    sys.exit(main())
