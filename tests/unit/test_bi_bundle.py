"""The dashboards-as-code YAML renders into a consistent Superset bundle whose datasets read
tables that exist: dbt models (the prepared manifest) or the live and stream files' tables."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import duckdb
import pytest
import yaml

from lakehouse.core.settings import PROJECT_ROOT, Settings
from warehouse.live import TABLES as LIVE_TABLES
from warehouse.live import live_path
from warehouse.marts import prepared_manifest
from warehouse.publish import Warehouse
from warehouse.stream_kpis import TABLES as STREAM_TABLES
from warehouse.stream_kpis import ensure_stream_file, stream_path
from warehouse.superset.bundle import (
    SPEC_DIR,
    BundleError,
    database_uris,
    object_uuid,
    render,
    tables_read,
)

URIS = {
    "warehouse": "duckdb:////w/warehouse.duckdb",
    "live": "duckdb:////w/live/warehouse.duckdb",
    "stream": "duckdb:////w/stream/warehouse.duckdb",
}


@pytest.fixture(scope="module")
def bundle():
    return render(URIS)


def test_eight_dashboards_with_charts_and_filters(bundle) -> None:
    dashboards = bundle.of_kind("dashboards")
    assert len(dashboards) == 8
    for dashboard in dashboards.values():
        charts = [v for v in dashboard["position"].values() if isinstance(v, dict)]
        assert sum(1 for c in charts if c.get("type") == "CHART") >= 4
        assert dashboard["metadata"]["native_filter_configuration"], dashboard["slug"]
    realtime = next(d for d in dashboards.values() if d["slug"] == "realtime")
    assert realtime["metadata"]["refresh_frequency"] == 5


def test_every_chart_points_at_a_dataset_of_the_bundle(bundle) -> None:
    datasets = {c["uuid"] for c in bundle.of_kind("datasets").values()}
    databases = {c["uuid"] for c in bundle.of_kind("databases").values()}
    for chart in bundle.of_kind("charts").values():
        assert chart["dataset_uuid"] in datasets
        assert chart["viz_type"] == chart["params"]["viz_type"]
    for dataset in bundle.of_kind("datasets").values():
        assert dataset["database_uuid"] in databases


def test_connections_are_read_only_and_allow_no_writes(bundle) -> None:
    for database in bundle.of_kind("databases").values():
        assert database["extra"]["engine_params"]["connect_args"] == {"read_only": True}
        assert not database["allow_dml"] and not database["allow_ctas"]
        assert database["sqlalchemy_uri"] in URIS.values()


def test_datasets_read_tables_that_the_builds_create() -> None:
    models = {
        n["alias"] or n["name"]
        for n in prepared_manifest()["nodes"].values()
        if n["resource_type"] == "model"
    }
    read = tables_read()
    assert read["warehouse"] and read["warehouse"] <= models
    assert read["live"] and read["live"] <= set(LIVE_TABLES)
    assert read["stream"] and read["stream"] <= set(STREAM_TABLES)
    assert "mart_rfm_segment_movement" in read["warehouse"]  # named in a SQL dataset


def test_rendering_twice_gives_the_same_uuids(bundle) -> None:
    again = render(URIS)
    assert {p: c["uuid"] for p, c in again.files.items()} == {
        p: c["uuid"] for p, c in bundle.files.items()
    }
    assert bundle.files["dashboards/realtime.yaml"]["uuid"] == object_uuid("dashboard", "realtime")


def test_a_filter_skips_charts_whose_dataset_lacks_its_column(bundle) -> None:
    geography = bundle.files["dashboards/geography.yaml"]
    filters = {f["name"]: f for f in geography["metadata"]["native_filter_configuration"]}
    charts = {
        v["meta"]["sliceName"]: v["meta"]["chartId"]
        for v in geography["position"].values()
        if isinstance(v, dict) and v.get("type") == "CHART"
    }
    index_chart = charts["Regional category preference (index, 100 = national share)"]
    assert index_chart in filters["City"]["scope"]["excluded"]  # no city in that mart
    assert index_chart not in filters["Category"]["scope"]["excluded"]
    assert charts["Net revenue by city"] not in filters["City"]["scope"]["excluded"]


def _spec_copy(tmp_path: Path) -> Path:
    target = tmp_path / "dashboards"
    shutil.copytree(SPEC_DIR, target)
    return target


def test_a_metric_cut_at_a_comma_is_refused(tmp_path: Path) -> None:
    spec = _spec_copy(tmp_path)
    text = (spec / "datasets.yaml").read_text()
    quoted = '{sql: "SUM(net_revenue) / NULLIF(SUM(orders), 0)",'
    assert quoted in text
    # unquoted in a YAML flow mapping, the comma splits the expression
    (spec / "datasets.yaml").write_text(
        text.replace(quoted, "{sql: SUM(net_revenue) / NULLIF(SUM(orders), 0),")
    )
    with pytest.raises(BundleError, match="aov.*unbalanced parentheses"):
        render(URIS, spec)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["charts"]["aov"].update(dataset="nope"), "unknown dataset 'nope'"),
        (lambda d: d["charts"]["aov"].update(metric="nope"), r"metrics \['nope'\]"),
        (lambda d: d["charts"]["aov"].update(type="radar"), "unknown type 'radar'"),
        (lambda d: d["rows"][0]["charts"].remove("aov"), r"charts \['aov'\] are in no row"),
        (lambda d: d["rows"][0]["charts"].append("ghost"), "names 'ghost'"),
    ],
)
def test_inconsistent_yaml_is_refused_with_the_key(tmp_path: Path, edit, message: str) -> None:
    spec = _spec_copy(tmp_path)
    path = spec / "1_executive_sales.yaml"
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(BundleError, match=message):
        render(URIS, spec)


def test_no_secret_is_kept_in_the_repository() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert not [name for name in tracked if name.endswith("secrets.json")]
    config = (PROJECT_ROOT / "warehouse" / "superset" / "superset_config.py").read_text()
    assert 'SECRET_KEY = os.environ["SUPERSET_SECRET_KEY"]' in config
    assert "SUPERSET_ADMIN_PASSWORD" not in config


def test_the_databases_read_the_files_the_builds_publish(tmp_path: Path) -> None:
    settings = Settings(data_root=tmp_path)
    uris = database_uris(settings.warehouse_path)
    assert uris["warehouse"] == f"duckdb:///{Warehouse(settings.warehouse_path).current}"
    assert uris["live"] == f"duckdb:///{live_path(settings.warehouse_path)}"
    assert uris["stream"] == f"duckdb:///{stream_path(settings.warehouse_path)}"


def test_an_empty_stream_file_is_published_before_the_processor_runs(tmp_path: Path) -> None:
    """`bi up` needs the stream datasets' tables before any processor ran: empty, typed."""
    path = ensure_stream_file(tmp_path)
    assert path == stream_path(tmp_path) and ensure_stream_file(tmp_path) == path
    with duckdb.connect(str(path), read_only=True) as con:
        refresh = con.execute("SELECT newest_event_at, events_applied FROM stream_refresh")
        assert refresh.fetchall() == [(None, 0)]
        for table, columns in STREAM_TABLES.items():
            rows = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            assert rows == (table == "stream_refresh")
            described = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
            assert described == list(columns)
