"""Building the dbt marts into a new warehouse file and publishing it (warehouse/publish.py):
what the Dagster marts asset (orchestration/defs/marts) wraps around its `dbt build`."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from lakehouse.core.lake import Lake
from warehouse.publish import Build, Warehouse, WarehouseError, build_lock

DBT_PROJECT_DIR = Path(__file__).resolve().parents[1] / "dbt_project"
GOLD_SOURCES = "gold"  # the dbt source whose tables are the gold Delta tables


def dbt_executable() -> str:
    return str(Path(sys.executable).with_name("dbt"))


def dbt_variables(lake: Lake, build: Build) -> dict[str, str]:
    """What dbt's environment needs on top of ours: the profile writes `build`, the sources
    read LAKE_URI, and delta-rs takes an S3 lake's endpoint and options from AWS_* variables."""
    variables = {"DBT_DUCKDB_PATH": str(build.path), "LAKE_URI": lake.uri}
    return variables | {k: v for k, v in lake.options.items() if k.startswith("AWS_")}


PREPARED_MANIFEST = DBT_PROJECT_DIR / "target" / "manifest.json"  # `./run` prepares it


def prepared_manifest() -> dict:
    if not PREPARED_MANIFEST.exists():
        raise WarehouseError(f"no dbt manifest at {PREPARED_MANIFEST}: run ./run (it prepares it)")
    return json.loads(PREPARED_MANIFEST.read_text())


def gold_versions(lake: Lake, manifest: dict) -> dict[str, int]:
    """The Delta version of every gold table the project reads (its `gold` source), recorded in
    the build it is read into."""
    names = sorted(
        s["name"] for s in manifest["sources"].values() if s["source_name"] == GOLD_SOURCES
    )
    versions = {name: lake.version(f"gold.{name}") for name in names}
    return {name: v for name, v in versions.items() if v is not None}


def incremental_tables(manifest: dict) -> list[tuple[str, str]]:
    """(schema, table) of the incremental models."""
    return [
        (node["schema"], node["alias"] or node["name"])
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["config"]["materialized"] == "incremental"
    ]


def built_tables(target: Path) -> list[str]:
    """Models dbt materialised as tables in this build (from its run results and manifest)."""
    manifest = json.loads((target / "manifest.json").read_text())
    results = json.loads((target / "run_results.json").read_text())["results"]
    done = {r["unique_id"] for r in results if r["status"] == "success"}
    return sorted(
        node["alias"] or node["name"]
        for uid, node in manifest["nodes"].items()
        if uid in done
        and node["resource_type"] == "model"
        and node["config"]["materialized"] in ("table", "incremental")
    )


@dataclass
class PendingBuild:
    """A build in progress: dbt writes `build.path` and leaves its artefacts in `target`."""

    build: Build
    gold_versions: dict[str, int]
    target: Path | None = None
    tables: list[str] = field(default_factory=list)


@contextmanager
def publishing(lake: Lake, warehouse_path: Path) -> Iterator[PendingBuild]:
    """A new warehouse version: run dbt into `pending.build.path` inside the block (and set
    `pending.target`); on leaving it the build is stamped, checked, published and old builds
    pruned. If the block raises, the build is deleted and the published warehouse untouched."""
    warehouse = Warehouse(Path(warehouse_path))
    with build_lock(warehouse.root):
        manifest = prepared_manifest()
        pending = PendingBuild(
            warehouse.new_build(incremental_tables(manifest)), gold_versions(lake, manifest)
        )
        try:
            yield pending
            if pending.target is None:
                raise WarehouseError("no dbt artefacts to check the build against")
            pending.tables = built_tables(pending.target)
            facts = {f"gold.{k}": str(v) for k, v in pending.gold_versions.items()}
            warehouse.stamp(pending.build, **facts)
            warehouse.check(pending.build, pending.tables)
            pending.build = warehouse.seal(pending.build)
            warehouse.publish(pending.build.build_id)
        except BaseException:
            warehouse.discard(pending.build)
            raise
        warehouse.prune()
