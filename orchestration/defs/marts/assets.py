"""Marts: the dbt-duckdb project over the gold tables, built into a new warehouse file and
published atomically (warehouse/publish.py), so analysts never wait for or see a half-built
warehouse. dbt tests appear as asset checks on the marts."""

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from orchestration.defs.marts.project import dbt_project
from orchestration.defs.marts.resources import WarehouseResource
from orchestration.defs.resources import LakeResource, platform_settings
from warehouse.marts import dbt_variables, publishing


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


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    dagster_dbt_translator=MartsTranslator(),
    name="dbt_marts",
)
def dbt_marts(
    context: dg.AssetExecutionContext,
    dbt: DbtCliResource,
    lake: LakeResource,
    warehouse: WarehouseResource,
):
    settings = platform_settings(lake=lake).model_copy(update={"warehouse_path": warehouse.path})
    with publishing(settings) as pending:
        with _environment(dbt_variables(settings, pending.build)):
            invocation = dbt.cli(["build"], context=context, raise_on_error=False)
            events = list(invocation.stream())
        if not invocation.is_successful():
            # report the failing tests, publish nothing, and fail the step
            yield from (e for e in events if isinstance(e, dg.AssetCheckResult))
            raise dg.Failure(
                f"dbt build failed; the published warehouse is unchanged. {invocation.get_error()}"
            )
        pending.target = invocation.target_path
    context.log.info(f"published warehouse build {pending.build.build_id}")
    stamp = {"warehouse_build": pending.build.build_id}
    for event in events:
        if isinstance(event, dg.Output | dg.AssetMaterialization):
            yield event.with_metadata({**event.metadata, **stamp})
        else:
            yield event
