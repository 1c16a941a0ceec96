"""The benchmark's PostgreSQL profile: counters between two snapshots, per portfolio."""

from __future__ import annotations

from bench.compare import parse
from bench.pg_profile import (
    StatementUse,
    TableWrites,
    statements_since,
    statements_table,
    table_writes_since,
    table_writes_table,
)


def test_table_writes_are_the_difference_most_rows_first_unwritten_left_out() -> None:
    before = {
        "orders": TableWrites("orders", 100, 0, 0, 0, 4),
        "order_intents": TableWrites("order_intents", 100, 100, 0, 0, 3),
        "users": TableWrites("users", 10, 0, 0, 0, 3),
    }
    after = {
        "orders": TableWrites("orders", 300, 0, 0, 0, 4),
        "order_intents": TableWrites("order_intents", 300, 300, 50, 0, 3),
        "users": TableWrites("users", 10, 0, 0, 0, 3),
        "outbox": TableWrites("outbox", 20, 20, 0, 5, 3),  # created between the snapshots
    }
    spent = table_writes_since(before, after)
    assert [t.table for t in spent] == ["order_intents", "orders", "outbox"]
    intents = spent[0]
    assert (intents.inserted, intents.updated, intents.hot_updated) == (200, 200, 50)
    # A HOT update writes no index entry; every other write one per index.
    assert intents.index_entries == (200 + 200 - 50) * 3
    assert spent[2].rows_written == 45


def test_table_writes_table_per_portfolio_with_a_total() -> None:
    writes = [TableWrites("orders", 2000, 0, 0, 0, 4), TableWrites("order_intents", 2000, 2000, 500, 0, 3)]
    lines = table_writes_table(writes, portfolios=100)
    assert lines[0].split()[:4] == ["table", "(per", "portfolio)", "inserted"]
    assert lines[2].split() == ["orders", "20.0", "0.0", "0.0", "0.0", "4", "80.0"]
    assert lines[3].split() == ["order_intents", "20.0", "20.0", "5.0", "0.0", "3", "105.0"]
    assert lines[4].split() == ["all", "40.0", "20.0", "5.0", "0.0", "185.0"]


def test_statements_by_time_with_the_rest_summed() -> None:
    before = {1: StatementUse(1, 10, 5.0, 10, 100, "INSERT INTO orders ...")}
    after = {
        1: StatementUse(1, 110, 105.0, 2010, 3100, "INSERT INTO orders\n    (a, b) VALUES ..."),
        2: StatementUse(2, 100, 300.0, 100, 1000, "WITH outcomes AS (...) UPDATE order_intents ..."),
        3: StatementUse(3, 50, 20.0, 50, 0, "SELECT 1"),
        4: StatementUse(4, 5, 1.0, 5, 0, "SELECT 2"),
        5: StatementUse(5, 7, 2.0, 7, 0, "not run since"),
    }
    after[5] = before[5] = after[5]
    spent = statements_since(before, after)
    assert [s.query_id for s in spent] == [2, 1, 3, 4]
    assert (spent[1].calls, spent[1].exec_ms, spent[1].rows, spent[1].wal_records) == (100, 100.0, 2000, 3000)
    lines = statements_table(spent, portfolios=100, top=2)
    assert lines[2].split()[:5] == ["1.00", "3.000", "71%", "1.0", "10.0"]
    assert lines[3].endswith("INSERT INTO orders (a, b) VALUES ...")  # on one line
    assert lines[4].split()[:5] == ["0.55", "0.210", "5%", "0.6", "0.0"] and "(2 other statements)" in lines[4]
    assert lines[5].split()[:2] == ["4.210", "100%"]


def test_the_profile_tables_are_not_read_as_processes() -> None:
    output = "\n".join([
        "throughput                             54 portfolios/s",
        "",
        "process                   CPU s  CPU ms/portfolio  RSS start MB   peak MB   end MB",
        "----------------------------------------------------------------------------------",
        "executor#1                10.04             10.04         134.4     195.9    195.9",
        "",
        *table_writes_table([TableWrites("orders", 2000, 0, 0, 0, 4)], portfolios=100),
        "",
    ])
    assert parse(output).cpu_ms == {"executor#1": 10.04}
