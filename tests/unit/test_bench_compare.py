"""bench.compare reads the pipeline benchmark's table: a change to that table's format must show
here, not as a comparison that silently reads nothing."""

from __future__ import annotations

import pytest

from bench.compare import Figures, median_figures, parse, render

TABLE = """\
mode                                   throughput
per portfolio                          5.9 PostgreSQL transactions, 5.0 stream messages
WAL per portfolio                      123 records, 41.5 KiB (0.4 full-page images; the whole server's WAL)
throughput                             54 portfolios/s
latency due -> recorded                p50 12924 ms, p99 18167 ms, max 18222 ms (n=1000)

process                   CPU s  CPU ms/portfolio  RSS start MB   peak MB   end MB
----------------------------------------------------------------------------------
ledger#1                   4.65              4.65          64.8      88.7     88.7
executor#1                10.04             10.04         134.4     195.9    195.9
nats-server                1.73              1.73          19.3      84.0     84.0
postgresql                 9.60              9.60         208.6    1075.9   1075.9
bench (publish/poll)       1.30              1.30         136.6     139.7    139.7
(other processes)          1.87              1.87           0.0       0.0      0.0
"""


def test_the_benchmark_table_is_read_whole() -> None:
    figures = parse(TABLE)
    assert figures.throughput == 54
    assert (figures.p50_ms, figures.p99_ms) == (12924, 18167)
    assert figures.wal_records == 123
    assert figures.cpu_ms == {"ledger#1": 4.65, "executor#1": 10.04, "nats-server": 1.73, "postgresql": 9.60,
                              "bench (publish/poll)": 1.30, "(other processes)": 1.87}
    # The system's own CPU: not the benchmark's polling, not other jobs on the machine.
    assert figures.pipeline_cpu_ms == pytest.approx(4.65 + 10.04 + 1.73 + 9.60)


def test_an_older_table_without_wal_still_compares() -> None:
    figures = parse(TABLE.replace("WAL per portfolio", "something else"))
    assert figures.wal_records is None and figures.throughput == 54


def test_single_mode_is_compared_by_latency() -> None:
    figures = parse("mode   single\none portfolio alone             p50 48 ms, p99 68 ms, max 68 ms (n=50)\n")
    assert (figures.throughput, figures.p50_ms, figures.p99_ms) == (None, 48, 68)
    text = render("A", "B", figures, parse("one portfolio alone  p50 36 ms, p99 68 ms, max 70 ms (n=50)"))
    assert "portfolios/s" not in text and "-25%" in text and "+0%" in text


def test_a_failed_run_is_an_error_not_a_zero() -> None:
    with pytest.raises(ValueError, match="no throughput or latency"):
        parse("Traceback (most recent call last): ...")


def test_medians_and_changes() -> None:
    runs = [Figures(100, 120, {"executor#1": 5.0}), Figures(80, 120, {"executor#1": 7.0}),
            Figures(90, 130, {"executor#1": 6.0})]
    median = median_figures(runs)
    assert (median.throughput, median.wal_records, median.cpu_ms) == (90, 120, {"executor#1": 6.0})
    text = render("A", "B", median, Figures(99, 108, {"executor#1": 4.5}))
    assert "+10%" in text and "-10%" in text and "-25%" in text
