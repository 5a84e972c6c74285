"""Dashboards as code: the YAML under warehouse/superset/dashboards rendered as a Superset bundle.

The files in the repository are short and reviewable (datasets with their metrics, dashboards
with their filters, rows of charts, saved queries); Superset's own import format (one YAML per
database, dataset, chart and dashboard, linked by UUID) is verbose and full of ids. This module
turns the first into the second. UUIDs are derived from names, so importing again updates the
same objects instead of adding copies.

Pure Python (PyYAML only): it runs in the project's environment (tests) and in Superset's
(`provision.py`, which imports the bundle).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SPEC_DIR = Path(__file__).resolve().parent / "dashboards"
NAMESPACE = uuid.UUID("6f1c2e0a-51f4-4d8e-9a43-7c4b5a9e1d20")  # Retail Lakehouse objects
VERSION = "1.0.0"
DATABASES = {
    "warehouse": "Warehouse (marts, nightly)",
    "live": "Live (real-time KPIs, data quality)",
    "stream": "Stream (the online store's counters, seconds old)",
}
GRID_COLUMNS = 12
TIME_GRAINS = {"minute": "PT1M", "hour": "PT1H", "day": "P1D", "week": "P1W", "month": "P1M"}


def database_uris(warehouse_path: str | Path) -> dict[str, str]:
    """The DuckDB files the databases read, all under WAREHOUSE_PATH: the published warehouse
    (warehouse/publish.py), the live file (warehouse/live.py) and the stream file
    (warehouse/stream_kpis.py)."""
    root = Path(warehouse_path).resolve()
    return {
        "warehouse": f"duckdb:///{root / 'warehouse.duckdb'}",
        "live": f"duckdb:///{root / 'live' / 'warehouse.duckdb'}",
        "stream": f"duckdb:///{root / 'stream' / 'warehouse.duckdb'}",
    }


class BundleError(ValueError):
    """The dashboards-as-code YAML is inconsistent; the message names the file and the key."""


def object_uuid(kind: str, name: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"{kind}:{name}"))


@dataclass
class Bundle:
    """Superset import files ({path: parsed YAML}) and the saved queries to upsert."""

    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    saved_queries: list[dict[str, Any]] = field(default_factory=list)
    dashboards: list[dict[str, str]] = field(default_factory=list)  # title, slug, uuid

    def of_kind(self, kind: str) -> dict[str, dict[str, Any]]:
        return {path: c for path, c in self.files.items() if path.startswith(f"{kind}/")}

    def contents(self, model: str, kinds: list[str]) -> dict[str, str]:
        """Import-command contents: the files of `kinds` plus a metadata.yaml for `model`."""
        contents = {"metadata.yaml": yaml.safe_dump({"version": VERSION, "type": model})}
        for kind in kinds:
            contents |= {p: yaml.safe_dump(c) for p, c in self.of_kind(kind).items()}
        return contents


def _load(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise BundleError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{path}: expected a mapping at the top level")
    return data


def tables_read(spec_dir: Path = SPEC_DIR) -> dict[str, set[str]]:
    """{database: tables its datasets read}: a dataset's table, or the `main.<table>` its SQL
    names (so SQL datasets must qualify their tables)."""
    read: dict[str, set[str]] = {key: set() for key in DATABASES}
    for spec in _load(spec_dir / "datasets.yaml").values():
        tables = [spec["table"]] if spec.get("table") else re.findall(r"\bmain\.(\w+)", spec["sql"])
        read[spec.get("database", "warehouse")].update(tables)
    return read


def render(database_uris: dict[str, str], spec_dir: Path = SPEC_DIR) -> Bundle:
    """The bundle for databases at `database_uris` ({"warehouse": "duckdb:///…", "live": …})."""
    bundle = Bundle()
    for key, title in DATABASES.items():
        bundle.files[f"databases/{key}.yaml"] = _database(key, title, database_uris[key])
    datasets = _load(spec_dir / "datasets.yaml")
    for name, spec in datasets.items():
        bundle.files[f"datasets/{spec.get('database', 'warehouse')}/{name}.yaml"] = _dataset(
            name, spec
        )
    for path in sorted(spec_dir.glob("[0-9]*.yaml")):
        _dashboard(bundle, path, _load(path), datasets)
    queries = _load(spec_dir / "saved_queries.yaml")
    for label, spec in queries.items():
        if spec.get("database") not in DATABASES:
            raise BundleError(f"saved query {label!r}: database must be one of {list(DATABASES)}")
        bundle.saved_queries.append({"label": label, **spec})
    return bundle


def _database(key: str, title: str, uri: str) -> dict[str, Any]:
    return {
        "database_name": title,
        "sqlalchemy_uri": uri,
        "cache_timeout": None,
        "expose_in_sqllab": True,
        "allow_run_async": False,
        "allow_ctas": False,
        "allow_cvas": False,
        "allow_dml": False,
        "allow_file_upload": False,
        # A published warehouse is never written in place, so read-only is all anyone needs,
        # and it lets any number of readers share the file.
        "extra": {"engine_params": {"connect_args": {"read_only": True}}},
        "uuid": object_uuid("database", key),
        "version": VERSION,
    }


def _dataset(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    database = spec.get("database", "warehouse")
    if database not in DATABASES:
        raise BundleError(f"dataset {name!r}: database must be one of {list(DATABASES)}")
    if bool(spec.get("table")) == bool(spec.get("sql")):
        raise BundleError(f"dataset {name!r}: give exactly one of `table` or `sql`")
    for metric, m in (spec.get("metrics") or {}).items():
        if m["sql"].count("(") != m["sql"].count(")"):  # e.g. a YAML flow mapping cut at a comma
            raise BundleError(f"dataset {name!r}: metric {metric!r} has unbalanced parentheses")
    metrics = [
        {
            "metric_name": metric,
            "verbose_name": m.get("label", metric.replace("_", " ").capitalize()),
            "metric_type": None,
            "expression": m["sql"],
            "description": m.get("description"),
            "d3format": m.get("format"),
            "currency": None,
            "extra": None,
            "warning_text": None,
        }
        for metric, m in (spec.get("metrics") or {}).items()
    ]
    return {
        "table_name": spec.get("table") or name,
        "main_dttm_col": spec.get("time_column"),
        "description": spec.get("description"),
        "default_endpoint": None,
        "offset": 0,
        "cache_timeout": spec.get("cache_seconds"),
        "catalog": None,
        "schema": "main" if spec.get("table") else None,
        "sql": spec.get("sql"),
        "params": None,
        "template_params": None,
        "filter_select_enabled": True,
        "fetch_values_predicate": None,
        "extra": None,
        "normalize_columns": False,
        "uuid": object_uuid("dataset", name),
        "metrics": metrics,
        "columns": [],  # read from the database after import (provision.py)
        "version": VERSION,
        "database_uuid": object_uuid("database", database),
    }


def _metric_names(spec: dict[str, Any], chart: str, datasets: dict[str, Any]) -> list[str]:
    dataset = datasets[spec["dataset"]]
    names = spec.get("metrics") or ([spec["metric"]] if spec.get("metric") else [])
    unknown = [m for m in names if m not in (dataset.get("metrics") or {})]
    if unknown:
        raise BundleError(
            f"chart {chart!r}: metrics {unknown} are not defined on {spec['dataset']}"
        )
    return names


def form_data(chart: str, spec: dict[str, Any], datasets: dict[str, Any]) -> dict[str, Any]:
    """Superset's form data (chart `params`) for one chart of the compact spec."""
    if spec.get("dataset") not in datasets:
        raise BundleError(f"chart {chart!r}: unknown dataset {spec.get('dataset')!r}")
    dataset = datasets[spec["dataset"]]
    time_column = dataset.get("time_column")
    metrics = _metric_names(spec, chart, datasets)
    kind = spec.get("type")
    data: dict[str, Any] = {
        "datasource": "",  # set to the imported dataset's id by Superset's importer
        "adhoc_filters": [
            {
                "expressionType": "SQL",
                "clause": "WHERE",
                "sqlExpression": where,
                "subject": None,
                "operator": None,
                "comparator": None,
            }
            for where in ([spec["where"]] if spec.get("where") else [])
        ],
        "row_limit": spec.get("limit", 10000),
        "extra_form_data": {},
    }
    if time_column:
        data["granularity_sqla"] = time_column
        data["time_range"] = "No filter"
    if kind == "number":
        data |= {"viz_type": "big_number_total", "metric": metrics[0], "subheader": ""}
        data["y_axis_format"] = spec.get("format", "SMART_NUMBER")
    elif kind == "trend_number":
        data |= {
            "viz_type": "big_number",
            "metric": metrics[0],
            "x_axis": spec.get("x", time_column),
            "time_grain_sqla": TIME_GRAINS[spec.get("grain", "day")],
            "show_trend_line": True,
            "start_y_axis_at_zero": True,
            "y_axis_format": spec.get("format", "SMART_NUMBER"),
        }
    elif kind in ("line", "bar", "area"):
        data |= {
            "viz_type": {
                "line": "echarts_timeseries_line",
                "bar": "echarts_timeseries_bar",
                "area": "echarts_area",
            }[kind],
            "x_axis": spec.get("x", time_column),
            "metrics": metrics,
            "groupby": spec.get("by", []),
            "show_legend": True,
            "rich_tooltip": True,
            "y_axis_format": spec.get("format", "SMART_NUMBER"),
            "truncate_metric": True,
            "stack": spec.get("stack"),
        }
        if spec.get("grain"):
            data["time_grain_sqla"] = TIME_GRAINS[spec["grain"]]
        if spec.get("series_limit"):
            data["series_limit"] = spec["series_limit"]
            data["series_limit_metric"] = metrics[0]
        if spec.get("sort"):  # a categorical x axis, sorted by the first metric
            data |= {"x_axis_sort": metrics[0], "x_axis_sort_asc": spec["sort"] == "asc"}
        if spec.get("horizontal"):
            data["orientation"] = "horizontal"
    elif kind == "table":
        columns = spec.get("columns", [])
        if metrics:
            data |= {"query_mode": "aggregate", "groupby": columns, "metrics": metrics}
            data |= {"timeseries_limit_metric": metrics[0], "order_desc": True}
        else:
            data |= {"query_mode": "raw", "all_columns": columns}
            data["order_by_cols"] = [f'["{c}", {str(a).lower()}]' for c, a in spec.get("order", [])]
        data |= {"viz_type": "table", "include_search": True, "server_pagination": False}
    elif kind == "pie":
        data |= {"viz_type": "pie", "groupby": spec["by"], "metric": metrics[0]}
        data |= {"donut": True, "show_labels": True, "label_type": "key_percent"}
    elif kind == "pivot":
        data |= {
            "viz_type": "pivot_table_v2",
            "groupbyRows": spec["rows"],
            "groupbyColumns": spec.get("columns", []),
            "metrics": metrics,
            "aggregateFunction": "Sum",
            "valueFormat": spec.get("format", "SMART_NUMBER"),
            "metricsLayout": "COLUMNS",
        }
    elif kind == "sankey":
        data |= {"viz_type": "sankey_v2", "source": spec["source"], "target": spec["target"]}
        data["metric"] = metrics[0]
    else:
        raise BundleError(f"chart {chart!r}: unknown type {kind!r}")
    return data | (spec.get("options") or {})


def _dashboard(bundle: Bundle, path: Path, spec: dict[str, Any], datasets: dict[str, Any]) -> None:
    slug = spec.get("slug") or path.stem
    charts: dict[str, Any] = spec.get("charts") or {}
    chart_ids = {key: i + 1 for i, key in enumerate(charts)}  # placeholders the importer remaps
    position: dict[str, Any] = {
        "DASHBOARD_VERSION_KEY": "v2",
        "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
        "GRID_ID": {"type": "GRID", "id": "GRID_ID", "children": [], "parents": ["ROOT_ID"]},
        "HEADER_ID": {"id": "HEADER_ID", "type": "HEADER", "meta": {"text": spec["title"]}},
    }
    placed: set[str] = set()
    for r, row in enumerate(spec.get("rows") or []):
        row_id = f"ROW-{r}"
        position["GRID_ID"]["children"].append(row_id)
        position[row_id] = {
            "type": "ROW",
            "id": row_id,
            "children": [],
            "parents": ["ROOT_ID", "GRID_ID"],
            "meta": {"background": "BACKGROUND_TRANSPARENT"},
        }
        height = row.get("height", 50)
        items = row["charts"]
        for key in items:
            if key not in charts:
                raise BundleError(f"{path.name}: row {r} names {key!r}, which is not in charts")
            placed.add(key)
            item_id = f"CHART-{key}"
            position[row_id]["children"].append(item_id)
            position[item_id] = {
                "type": "CHART",
                "id": item_id,
                "children": [],
                "parents": ["ROOT_ID", "GRID_ID", row_id],
                "meta": {
                    "width": GRID_COLUMNS // len(items),
                    "height": height,
                    "chartId": chart_ids[key],
                    "uuid": object_uuid("chart", f"{slug}/{key}"),
                    "sliceName": charts[key]["title"],
                },
            }
    unplaced = sorted(set(charts) - placed)
    if unplaced:
        raise BundleError(f"{path.name}: charts {unplaced} are in no row")
    dashboard_uuid = object_uuid("dashboard", slug)
    for key, chart in charts.items():
        bundle.files[f"charts/{slug}/{key}.yaml"] = {
            "slice_name": chart["title"],
            "description": chart.get("description"),
            "certified_by": None,
            "certification_details": None,
            "viz_type": "",  # from form data below
            "params": form_data(f"{path.name}:{key}", chart, datasets),
            "query_context": None,
            "cache_timeout": None,
            "uuid": object_uuid("chart", f"{slug}/{key}"),
            "version": VERSION,
            "dataset_uuid": object_uuid("dataset", chart["dataset"]),
        }
        params = bundle.files[f"charts/{slug}/{key}.yaml"]["params"]
        bundle.files[f"charts/{slug}/{key}.yaml"]["viz_type"] = params["viz_type"]
    filters = [
        _native_filter(path.name, f, charts, chart_ids, datasets) for f in spec.get("filters") or []
    ]
    bundle.files[f"dashboards/{slug}.yaml"] = {
        "dashboard_title": spec["title"],
        "description": spec.get("description"),
        "css": "",
        "slug": slug,
        "certified_by": None,
        "certification_details": None,
        "published": True,
        "uuid": dashboard_uuid,
        "position": position,
        "metadata": {
            "native_filter_configuration": filters,
            "refresh_frequency": spec.get("refresh_seconds", 0),
            "timed_refresh_immune_slices": [],
            "expanded_slices": {},
            "color_scheme": "supersetColors",
            "label_colors": {},
            "shared_label_colors": [],
            "cross_filters_enabled": False,
            "chart_configuration": {},
        },
        "version": VERSION,
    }
    bundle.dashboards.append({"title": spec["title"], "slug": slug, "uuid": dashboard_uuid})


def _native_filter(
    where: str,
    spec: dict[str, Any],
    charts: dict[str, Any],
    chart_ids: dict[str, int],
    datasets: dict[str, Any],
) -> dict[str, Any]:
    """A dashboard filter scoped to the charts whose dataset has its column (a chart without
    the column would fail on it)."""
    column = spec.get("column")
    if column is None:  # the date range: charts whose dataset has a time column
        applies = {k for k, c in charts.items() if datasets[c["dataset"]].get("time_column")}
        kind, targets = "filter_time", [{}]
    else:
        applies = {
            k for k, c in charts.items() if column in (datasets[c["dataset"]].get("filters") or [])
        }
        source = spec.get("dataset") or next(
            (charts[k]["dataset"] for k in charts if k in applies), None
        )
        if source is None:
            raise BundleError(f"{where}: filter {spec['name']!r}: no chart has column {column!r}")
        kind = "filter_select"
        targets = [{"column": {"name": column}, "datasetUuid": object_uuid("dataset", source)}]
    excluded = [chart_ids[k] for k in charts if k not in applies]
    return {
        "id": f"NATIVE_FILTER-{object_uuid('filter', where + spec['name'])[:12]}",
        "name": spec["name"],
        "filterType": kind,
        "targets": targets,
        "controlValues": (
            {"multiSelect": True, "enableEmptyFilter": False, "searchAllOptions": False}
            if column
            else {}
        ),
        "defaultDataMask": {"extraFormData": {}, "filterState": {}, "ownState": {}},
        "cascadeParentIds": [],
        "scope": {"rootPath": ["ROOT_ID"], "excluded": excluded},
        "type": "NATIVE_FILTER",
        "description": spec.get("description", ""),
    }
