"""Marts: the dbt-duckdb project over the gold tables, built into a new warehouse file and
published atomically (warehouse/publish.py), so analysts never wait for or see a half-built
warehouse. dbt tests appear as asset checks on the marts."""

import contextlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets
from pydantic import Field

from orchestration.defs.marts.project import dbt_project
from orchestration.defs.marts.resources import WarehouseResource
from orchestration.defs.resources import LakeResource
from warehouse.marts import dbt_variables

PROGRESS_EVERY_SECONDS = 5.0


class MartsTranslator(DagsterDbtTranslator):
    """Models and seeds are `marts/<name>` in the `marts` group; the `gold` source tables are
    the gold assets (`gold/<table>`), so the marts hang off the Spark graph."""

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: Any):
        spec = super().get_asset_spec(manifest, unique_id, project)
        if unique_id.startswith(("model.", "seed.", "snapshot.")):
            name = manifest["nodes"][unique_id]["name"]
            spec = spec.replace_attributes(key=dg.AssetKey(["marts", name]), group_name="marts")
            spec = spec.merge_attributes(kinds={"duckdb"}, owners=["team:analytics"])
        return spec


class MartsConfig(dg.Config):
    as_of_date: str | None = Field(
        default=None, description="RFM run date (YYYY-MM-DD); default: the latest sale."
    )
    full_refresh: bool = Field(
        default=False, description="Rebuild the incremental models from scratch."
    )


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """dagster-dbt passes the process environment to dbt: set the build's for the call."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _dbt_args(config: MartsConfig) -> list[str]:
    args = ["build"]
    if config.full_refresh:
        args.append("--full-refresh")
    if config.as_of_date:
        args += ["--vars", json.dumps({"as_of_date": config.as_of_date})]
    return args


class _Tally:
    """Models built and tests passed/failed so far, logged every few seconds: the progress of
    a build whose every line goes to the log file."""

    def __init__(self, context: dg.AssetExecutionContext):
        self.context = context
        self.models = self.passed = self.failed = 0
        self.started = self.logged = time.monotonic()

    def count(self, event: Any) -> None:
        if isinstance(event, dg.Output | dg.AssetMaterialization):
            self.models += 1
        elif isinstance(event, dg.AssetCheckResult):
            if event.passed:
                self.passed += 1
            else:
                self.failed += 1
        if time.monotonic() - self.logged >= PROGRESS_EVERY_SECONDS:
            self.logged = time.monotonic()
            self.context.log.info(f"dbt build: {self.summary()}")

    def summary(self) -> str:
        return (
            f"{self.models} models, {self.passed} tests passed, {self.failed} failed "
            f"in {time.monotonic() - self.started:.1f}s"
        )


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=MartsTranslator(),
    name="dbt_marts",
)
def dbt_marts(
    context: dg.AssetExecutionContext,
    config: MartsConfig,
    dbt: DbtCliResource,
    lake: LakeResource,
    warehouse: WarehouseResource,
):
    """`dbt build` into a new warehouse file, published only if every model and test passed.
    dbt's own output goes to a log file; the run log shows the progress and a summary."""
    log_file = Path(warehouse.path) / "dbt" / f"build-{context.run.run_id}.log"
    log_file.parent.mkdir(parents=True, exist_ok=True)
    tally = _Tally(context)
    context.log.info(f"dbt build: parsing and compiling; dbt's output goes to {log_file}")
    with warehouse.publishing(lake.lake) as pending:
        # a subset build runs only the tests whose every parent is built (a test reaching an
        # unselected model would find it missing from a first build)
        variables = dbt_variables(lake.lake, pending.build) | {"DBT_INDIRECT_SELECTION": "cautious"}
        with (
            _environment(variables),
            open(log_file, "w") as log,
            contextlib.redirect_stdout(log),
        ):
            invocation = dbt.cli(_dbt_args(config), context=context, raise_on_error=False)
            events = []
            for event in invocation.stream():
                tally.count(event)
                events.append(event)
        if not invocation.is_successful():
            # report the failing tests, publish nothing, and fail the step
            yield from (e for e in events if isinstance(e, dg.AssetCheckResult))
            raise dg.Failure(
                f"dbt build failed ({tally.summary()}); the published warehouse is unchanged. "
                f"{invocation.get_error()} Full log: {log_file}",
                allow_retries=False,
            )
        pending.target = invocation.target_path
        context.log.info(f"dbt build: {tally.summary()}; publishing")
    build_id = pending.build.build_id
    context.log.info(f"published warehouse build {build_id} ({tally.summary()})")
    stamp = {"warehouse_build": build_id}
    summary = {
        "warehouse_build": build_id,
        "build_file": str(pending.build.path),
        "models": tally.models,
        "tests_passed": tally.passed,
        "tests_failed": tally.failed,
        "gold_versions": pending.gold_versions,
        "log": str(log_file),
    }
    for event in events:
        if isinstance(event, dg.Output | dg.AssetMaterialization):
            yield event.with_metadata(
                {**event.metadata, **stamp, "build": dg.MetadataValue.json(summary)}
            )
        else:
            yield event
