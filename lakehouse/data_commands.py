"""The bodies of the data commands: each runs its assets through Dagster (lakehouse.console.run,
a run of the code location in this process, recorded in the instance the UI reads) and prints
what the run's materialisations report. Same assets, checks, pools and retries as a run from
the UI, the schedule or a sensor."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from lakehouse import console
from lakehouse.console import err, fail, out, print_json
from lakehouse.core.settings import Settings

if TYPE_CHECKING:
    import dagster as dg


def key(table: str) -> dg.AssetKey:
    import dagster as dg

    return dg.AssetKey(table.split("."))


def choices(given: list[str] | None, known: list[str], what: str, hint: str) -> list[str]:
    """`given` (default: all of `known`), refusing what is not known."""
    unknown = [g for g in given or [] if g not in known]
    if unknown:
        raise typer.BadParameter(
            f"unknown {what} {', '.join(unknown)}; expected {', '.join(known)}", param_hint=hint
        )
    return given or known


def reachable(settings: Settings, service: str) -> None:
    """Fail at once, saying what to do, when the broker or Spark Connect does not answer
    (instead of a run that retries its steps for minutes)."""
    from lakehouse.devstack.services import ServiceManager, tcp_reachable

    target = ServiceManager(settings).get(service)
    if not tcp_reachable(target.host, target.port):
        fail(
            f"no {target.title} at {target.endpoint}; start the embedded one with "
            f"`lakehouse services up` or set {target.env_var}"
        )


def ingest(
    settings: Settings,
    *,
    topic: str,
    group: str,
    session_timeout_ms: int,
    follow: bool,
    status: bool,
    as_json: bool,
    reset: bool = False,
    **limits: Any,
) -> None:
    from streaming.ingest import (
        DEAD_LETTER_TABLE,
        EVENTS_TABLE,
        IngestOptions,
        ingest_status,
        reset_offsets,
    )

    if sum((status, follow, reset)) > 1:
        raise typer.BadParameter("--status, --follow and --reset-offsets cannot be combined")
    with console.kafka_errors(settings):
        if reset:
            try:
                done = reset_offsets(settings.lake, settings.kafka_bootstrap_servers, topic)
            except ValueError as exc:
                fail(str(exc))
            console.print_offsets_reset(done, as_json)
            return
        if status:
            report = ingest_status(
                settings.lake, settings.kafka_bootstrap_servers, topic, run_dir=settings.run_dir
            )
            console.print_ingest_status(report, as_json)
            return
        if follow:
            from lakehouse.devstack.follow import follow_topic

            batches = {k: v for k, v in limits.items() if k.startswith("batch_")}
            options = IngestOptions(topic, group, session_timeout_ms=session_timeout_ms, **batches)
            report = follow_topic(settings, options, quiet=as_json)
        else:
            reachable(settings, "broker")
            kafka = {"events_topic": topic, "consumer_group": group}
            outcome = console.run(
                settings,
                [key(EVENTS_TABLE), key(DEAD_LETTER_TABLE)],
                f"ingesting {topic}",
                quiet=as_json,
                config={EVENTS_TABLE: {k: v for k, v in limits.items() if v is not None}},
                resources={"kafka": {**kafka, "session_timeout_ms": session_timeout_ms}},
            )
            report = outcome.materialized[EVENTS_TABLE]["ingest_report"]
    if as_json:
        print_json(report)
    else:
        console.print_ingested(report)


def extract(settings: Settings, tables: list[str] | None, *, full: bool, as_json: bool) -> None:
    from ingestion.erp import ERP_TABLES, ErpSourceError, bronze_name, check_connection

    names = choices(tables, list(ERP_TABLES), "ERP table(s)", "--table")
    bronze = [f"bronze.{bronze_name(t)}" for t in names]
    # one bounded wait for the database up front, instead of every table's step retrying it
    # for minutes
    try:
        check_connection(
            str(settings.erp_db_url),
            on_retry=lambda attempt, wait, error: err.print(
                f"the ERP database did not answer (attempt {attempt}: {error}); "
                f"trying again in {wait:.0f}s",
                highlight=False,
            ),
        )
    except ErpSourceError as exc:
        fail(f"{exc}. Nothing was extracted; bronze is unchanged.")
    outcome = console.run(
        settings,
        [key(t) for t in bronze],
        "extracting the ERP tables",
        quiet=as_json,
        config={t: {"full_snapshot": full} for t in bronze},
    )
    reports = [outcome.materialized[t]["extract_report"] for t in bronze]
    if as_json:
        print_json(reports)
    else:
        console.print_extracted(reports, full)


def transform(
    settings: Settings,
    layers: list[str] | None,
    names: list[str] | None,
    *,
    days: tuple[dt.date, dt.date] | None,
    full: bool,
    as_json: bool,
) -> None:
    from spark_jobs.steps import STEPS, in_dependency_order

    layers = choices(layers, ["silver", "gold"], "layer", "--layer")
    known = [s.name for s in STEPS]
    chosen = set(choices(names, known, "step(s)", "--step") if names else [])
    steps = [
        s for s in in_dependency_order() if s.name in chosen or (not chosen and s.group in layers)
    ]
    reachable(settings, "spark")
    outcome = console.run(
        settings,
        [key(t.name) for s in steps for t in s.tables],
        "transforming",
        quiet=as_json,
        check=False,
        config={s.name: {"full_rebuild": full} for s in steps},
        partition_range=days,
    )
    failed = [c["metadata"].get("step_result") for c in outcome.failed_checks()]
    order = [t.name for s in steps for t in s.outputs]
    results = sorted(
        outcome.values("step_result") + [r for r in failed if r],
        key=lambda r: order.index(r["table"]),
    )
    if as_json:
        print_json(results)
    else:
        console.print_transformed(results)
    for r in results:
        if not r["published"] and not r["skipped"]:
            err.print(
                f"[red]error:[/red] {r['table']}: {r['validation']['summary']}; the batch stays "
                f"in staging at {r['validation']['staging_uri']}",
                highlight=False,
            )
    console.require_success(outcome, "transforming")


def marts_build(
    settings: Settings,
    select: str | None,
    *,
    as_of: dt.datetime | None,
    full_refresh: bool,
    as_json: bool,
) -> None:
    import dagster as dg
    from dagster_dbt import build_dbt_asset_selection

    from orchestration.defs.marts.assets import dbt_marts
    from warehouse.publish import Warehouse

    selection = (
        build_dbt_asset_selection([dbt_marts], dbt_select=select)
        if select
        else dg.AssetSelection.groups("marts")
    )
    config = {"full_refresh": full_refresh, "as_of_date": as_of and f"{as_of:%Y-%m-%d}"}
    outcome = console.run(
        settings, selection, "building the marts", quiet=as_json, config={"dbt_marts": config}
    )
    build = outcome.values("build")[0]
    result = {
        "build_id": build["warehouse_build"],
        "path": build["build_file"],
        "published": str(Warehouse(Path(settings.warehouse_path)).current),
        "seconds": round(outcome.seconds, 2),
        **{k: build[k] for k in ("models", "tests_passed", "tests_failed", "gold_versions", "log")},
    }
    if as_json:
        print_json(result)
        return
    out.print(
        f"[green]published[/green] build {result['build_id']}: {result['models']} models, "
        f"{result['tests_passed']} tests passed, {result['seconds']:.1f}s → {result['published']}"
        f" (dbt log: {result['log']})",
        highlight=False,
    )


def marts_status(settings: Settings, as_json: bool) -> None:
    from warehouse.publish import Warehouse

    warehouse = Warehouse(Path(settings.warehouse_path))
    published = warehouse.published()
    status = {
        "warehouse": str(warehouse.current),
        "published": published.build_id if published else None,
        "kept": [b.build_id for b in warehouse.builds()],
    }
    if as_json:
        print_json(status)
        return
    out.print(f"warehouse  {status['warehouse']}", highlight=False)
    out.print(f"published  {status['published'] or '(nothing yet)'}", highlight=False)
    out.print(f"kept       {', '.join(status['kept']) or '-'}", highlight=False)


def marts_publish(settings: Settings, build_id: str) -> None:
    from warehouse.publish import Warehouse, WarehouseError

    try:
        build = Warehouse(Path(settings.warehouse_path)).publish(build_id)
    except WarehouseError as exc:
        fail(str(exc), code=2)
    out.print(f"published build {build.build_id}", highlight=False)


# the report of each part of training is on one of its tables
SNAPSHOT = "serving.snapshot"
SESSION_MODEL = "ml.session_recommender"
INTENT_MODEL = "ml.purchase_intent"
TRAINING_REPORTS = {
    "customers": "gold.customer_scores",
    "intent": INTENT_MODEL,
}


def ml_train(settings: Settings, parts: list[str] | None, *, as_json: bool) -> None:
    from orchestration.defs.ml.assets import (
        CUSTOMER_OUTPUTS,
        RECOMMENDER_OUTPUTS,
        RECOMMENDER_STEP_TABLES,
        recommender_report,
    )

    outputs = {
        # the API serves what the recommenders wrote once the snapshot is published
        "recommenders": [
            *RECOMMENDER_STEP_TABLES,
            *RECOMMENDER_OUTPUTS,
            SESSION_MODEL,
            # the snapshot carries the experiments' decisions (and the marts read the results)
            "gold.experiment_results",
            "gold.experiment_history",
            SNAPSHOT,
        ],
        "customers": list(CUSTOMER_OUTPUTS),
        "intent": [INTENT_MODEL],
    }
    parts = choices(parts, list(outputs), "part(s)", "--part")
    reachable(settings, "spark")
    keys = [key(t) for p in parts for t in outputs[p]]
    outcome = console.run(settings, keys, "training", quiet=as_json)
    # a part with too little data says why instead of a report (the intent model without sessions)
    reports = {
        p: recommender_report(outcome.materialized)
        if p == "recommenders"
        else outcome.materialized[TRAINING_REPORTS[p]].get("training_report")
        or {"skipped": outcome.materialized[TRAINING_REPORTS[p]].get("skipped")}
        for p in parts
    }
    if as_json:
        print_json(reports)
    else:
        console.print_trained(reports, settings.ml_champion_metric)


def ml_experiments(settings: Settings, as_json: bool, evaluate: bool = False) -> None:
    from ml.experiments import ExperimentError, load_experiments

    folder = Path(settings.experiments_dir)
    if not folder.is_dir():
        fail(f"EXPERIMENTS_DIR {folder} is not a folder", code=2)
    try:
        specs = load_experiments(folder)
    except ExperimentError as exc:
        fail(str(exc), code=2)
    if evaluate:
        selection = [key("gold.experiment_results"), key("gold.experiment_history"), key(SNAPSHOT)]
        outcome = console.run(settings, selection, "evaluating", quiet=as_json)
        found = outcome.materialized["gold.experiment_results"]
        report = found.get("experiments_report") or {"skipped": found.get("skipped")}
        if as_json:
            print_json(report)
        else:
            console.print_experiment_results(report)
        return
    if as_json:
        print_json([spec.model_dump(mode="json") for spec in specs])
        return
    if not specs:
        out.print(f"no experiments in {folder}", highlight=False)
    for spec in specs:
        split = ", ".join(f"{v.name} {v.weight:.0%} ({v.recommender})" for v in spec.variants)
        guards = ", ".join(spec.guardrails) or "none"
        stop = spec.stop.isoformat() if spec.stop else "open"
        out.print(
            f"{spec.name}: {split}; control {spec.control}; by {spec.unit}; "
            f"{spec.primary_metric} at {spec.alpha} (guardrails: {guards}); at least "
            f"{spec.minimum_sample:,} units per variant; {spec.start.isoformat()} .. {stop}",
            highlight=False,
        )


def ml_drift(settings: Settings, as_json: bool) -> None:
    outcome = console.run(settings, [key("gold.model_drift")], "drift report", check=False)
    found = outcome.materialized.get("gold.model_drift", {})
    report = {
        "rows": found.get("drift_report", []),
        "skipped": found.get("skipped", {}),
        "checks": [c for c in outcome.checks if c["check"] == "psi_below_threshold"],
        "failures": outcome.failures,
    }
    if as_json:
        print_json(report)
    else:
        console.print_drift(report)
    if not outcome.success:
        fail("drift report failed:\n  " + "\n  ".join(outcome.failures or ["the run failed"]))


def ml_publish(settings: Settings, as_json: bool) -> None:
    outcome = console.run(settings, [key(SNAPSHOT)], "publishing", quiet=as_json)
    manifest = outcome.materialized[SNAPSHOT]["manifest"]
    if as_json:
        print_json(manifest)
        return
    rows = ", ".join(f"{part} {n:,}" for part, n in manifest["rows"].items())
    champion = manifest["champion"]
    out.print(
        f"serving snapshot {manifest['version']} published ({champion['model']} version "
        f"{champion['model_version']}): {rows}",
        highlight=False,
    )


def bi_refresh(settings: Settings, as_json: bool) -> None:
    outcome = console.run(settings, [key("bi.live_warehouse")], "refreshing", quiet=as_json)
    result = outcome.materialized["bi.live_warehouse"]["refresh"]
    if as_json:
        print_json(result)
        return
    rows = ", ".join(f"{table} {n:,}" for table, n in result["rows"].items())
    out.print(
        f"live file {result['path']} refreshed in {result['seconds']:.1f}s: {rows}",
        highlight=False,
    )
