"""Build the dbt marts into a new warehouse file and publish it (see warehouse/publish.py).

Used by `lakehouse marts build`, the demo and the benchmark; the Dagster assets run the same
dbt project through dagster-dbt and publish with the same `Warehouse`.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from lakehouse.lake import open_table, storage_options
from lakehouse.settings import Settings
from warehouse.publish import Build, Warehouse, WarehouseError

DBT_PROJECT_DIR = Path(__file__).resolve().parents[1] / "dbt_project"
GOLD_SOURCES = "gold"  # the dbt source whose tables are the gold Delta tables


@dataclass
class MartsBuild:
    build_id: str
    path: Path
    published: Path
    seconds: float
    models: list[str] = field(default_factory=list)
    tests_passed: int = 0
    gold_versions: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "build_id": self.build_id,
            "path": str(self.path),
            "published": str(self.published),
            "seconds": round(self.seconds, 2),
            "models": len(self.models),
            "tests_passed": self.tests_passed,
            "gold_versions": self.gold_versions,
        }


def dbt_executable() -> str:
    return str(Path(sys.executable).with_name("dbt"))


def dbt_variables(settings: Settings, build: Build) -> dict[str, str]:
    """What dbt's environment needs on top of ours: the profile writes `build`, the sources
    read LAKE_URI, and delta-rs takes an S3 lake's endpoint and options from AWS_* variables."""
    variables = {"DBT_DUCKDB_PATH": str(build.path), "LAKE_URI": str(settings.lake_uri)}
    return variables | {k: v for k, v in storage_options(settings).items() if k.startswith("AWS_")}


def dbt_dirs(settings: Settings) -> list[str]:
    """Where dbt keeps its target and logs: under the warehouse, not in the source tree."""
    work = Path(settings.warehouse_path) / "dbt"
    return [
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target-path",
        str(work / "target"),
        "--log-path",
        str(work / "logs"),
    ]


PREPARED_MANIFEST = DBT_PROJECT_DIR / "target" / "manifest.json"  # `./run` prepares it


def prepared_manifest() -> dict:
    if not PREPARED_MANIFEST.exists():
        raise WarehouseError(f"no dbt manifest at {PREPARED_MANIFEST}: run ./run (it prepares it)")
    return json.loads(PREPARED_MANIFEST.read_text())


def gold_versions(settings: Settings, manifest: dict) -> dict[str, int]:
    """The Delta version of every gold table the project reads (its `gold` source), recorded in
    the build it is read into."""
    options = storage_options(settings)
    names = sorted(
        s["name"] for s in manifest["sources"].values() if s["source_name"] == GOLD_SOURCES
    )
    versions = {}
    for name in names:
        table = open_table(settings.table_uri("gold", name), options)
        if table is not None:
            versions[name] = table.version()
    return versions


def incremental_tables(manifest: dict) -> list[tuple[str, str]]:
    """(schema, table) of the incremental models."""
    return [
        (node["schema"], node["alias"] or node["name"])
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["config"]["materialized"] == "incremental"
    ]


@contextmanager
def build_lock(settings: Settings) -> Iterator[None]:
    """One build at a time per warehouse: the second waits (readers never do)."""
    root = Path(settings.warehouse_path)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "build.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
def publishing(settings: Settings) -> Iterator[PendingBuild]:
    """A new warehouse version: run dbt into `pending.build.path` inside the block (and set
    `pending.target`); on leaving it the build is stamped, checked, published and old builds
    pruned. If the block raises, the build is deleted and the published warehouse untouched."""
    warehouse = Warehouse(Path(settings.warehouse_path))
    with build_lock(settings):
        manifest = prepared_manifest()
        pending = PendingBuild(
            warehouse.new_build(incremental_tables(manifest)), gold_versions(settings, manifest)
        )
        try:
            yield pending
            if pending.target is None:
                raise WarehouseError("no dbt artefacts to check the build against")
            pending.tables = built_tables(pending.target)
            facts = {f"gold.{k}": str(v) for k, v in pending.gold_versions.items()}
            warehouse.stamp(pending.build, **facts)
            warehouse.check(pending.build, pending.tables)
            warehouse.publish(pending.build.build_id)
        except BaseException:
            warehouse.discard(pending.build)
            raise
        warehouse.prune()


def build_marts(
    settings: Settings,
    *,
    dbt_args: list[str] | None = None,
    echo: Callable[[str], None] = lambda _line: None,
) -> MartsBuild:
    """`dbt build` into a new warehouse version and publish it.

    Raises WarehouseError (the build discarded, the published warehouse untouched) when dbt
    fails, a model or a test included."""
    started = time.monotonic()
    with publishing(settings) as pending:
        command = [dbt_executable(), *(dbt_args or ["build"]), *dbt_dirs(settings)]
        tail = _run(command, os.environ | dbt_variables(settings, pending.build), echo)
        if tail.returncode != 0:
            raise WarehouseError(
                f"dbt exited {tail.returncode}; the published warehouse is unchanged. "
                "Last lines:\n" + "\n".join(tail.lines)
            )
        pending.target = Path(settings.warehouse_path) / "dbt" / "target"
    results = json.loads((pending.target / "run_results.json").read_text())["results"]
    return MartsBuild(
        build_id=pending.build.build_id,
        path=pending.build.path,
        published=Warehouse(Path(settings.warehouse_path)).current,
        seconds=time.monotonic() - started,
        models=pending.tables,
        tests_passed=sum(
            1 for r in results if r["unique_id"].startswith("test.") and r["status"] == "pass"
        ),
        gold_versions=pending.gold_versions,
    )


@dataclass
class _Tail:
    returncode: int
    lines: list[str]


def _run(command: list[str], env: dict[str, str], echo: Callable[[str], None]) -> _Tail:
    """Run dbt, passing each output line to `echo`; keep the last lines for an error."""
    lines: list[str] = []
    with subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            echo(line.rstrip())
            lines = [*lines[-29:], line.rstrip()]
    return _Tail(proc.returncode, lines)
