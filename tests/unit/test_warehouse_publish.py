"""Publishing warehouse builds: atomic switch, readers keep their version, prune and rollback,
and a build that never finished is never listed nor published."""

from pathlib import Path

import duckdb
import pytest

from warehouse.publish import Warehouse, WarehouseError


def _build(warehouse: Warehouse, value: int) -> str:
    build = warehouse.new_build()
    with duckdb.connect(str(build.path)) as con:
        con.execute("CREATE OR REPLACE TABLE mart AS SELECT ? AS v", [value])
    warehouse.stamp(build, note=str(value))
    warehouse.check(build, ["mart", "warehouse_build"])
    warehouse.publish(warehouse.seal(build).build_id)
    return build.build_id


def _read(path: Path) -> int:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute("SELECT v FROM mart").fetchone()[0]


def test_a_reader_keeps_its_version_while_the_next_one_is_published(tmp_path: Path) -> None:
    warehouse = Warehouse(tmp_path)
    first = _build(warehouse, 1)
    reader = duckdb.connect(str(warehouse.current), read_only=True)
    second = _build(warehouse, 2)  # the reader holds the published file meanwhile
    assert reader.execute("SELECT v FROM mart").fetchone()[0] == 1
    # DuckDB shares one open database per path within a process: new connections see the new
    # build once this process's last connection to the old one is closed
    reader.close()
    assert _read(warehouse.current) == 2
    assert warehouse.published().build_id == second != first


def test_a_new_build_carries_only_the_incremental_tables_over(tmp_path: Path) -> None:
    warehouse = Warehouse(tmp_path)
    _build(warehouse, 1)
    build = warehouse.new_build(carry=[("main", "mart"), ("main", "not_built_yet")])
    with duckdb.connect(str(build.path), read_only=True) as con:
        assert con.execute("SELECT v FROM mart").fetchone()[0] == 1
        tables = con.execute("SELECT table_name FROM duckdb_tables()").fetchall()
    assert tables == [("mart",)]  # not warehouse_build, nor what was not asked for
    warehouse.discard(build)
    assert not build.path.exists()
    assert not warehouse.new_build().path.exists()  # nothing to carry: dbt starts from empty


def test_prune_keeps_the_newest_builds_and_rollback_republishes_one(tmp_path: Path) -> None:
    warehouse = Warehouse(tmp_path)
    ids = [_build(warehouse, v) for v in range(5)]
    assert warehouse.prune(keep=2) == ids[:3]
    assert [b.build_id for b in warehouse.builds()] == ids[3:]
    warehouse.publish(ids[3])
    assert _read(warehouse.current) == 3
    assert warehouse.prune(keep=1) == []  # the only older build is the published one
    with pytest.raises(WarehouseError, match="no build 'nope'.*kept"):
        warehouse.publish("nope")


def test_check_names_the_missing_marts(tmp_path: Path) -> None:
    warehouse = Warehouse(tmp_path)
    build = warehouse.new_build()
    with duckdb.connect(str(build.path)) as con:
        con.execute("CREATE TABLE mart AS SELECT 1 AS v")
    with pytest.raises(WarehouseError, match="lacks mart_customer_rfm"):
        warehouse.check(build, ["mart", "mart_customer_rfm"])


def test_an_unfinished_build_is_never_listed_and_the_next_build_deletes_it(
    tmp_path: Path,
) -> None:
    warehouse = Warehouse(tmp_path)
    first = _build(warehouse, 1)
    killed = warehouse.new_build()  # its process dies before sealing
    with duckdb.connect(str(killed.path)) as con:
        con.execute("CREATE TABLE mart AS SELECT 2 AS v")
    assert [b.build_id for b in warehouse.builds()] == [first]
    with pytest.raises(WarehouseError, match="no build"):
        warehouse.publish(killed.build_id)
    second = _build(warehouse, 3)
    assert not killed.path.exists()
    assert [b.build_id for b in warehouse.builds()] == [first, second]
    assert _read(warehouse.current) == 3
