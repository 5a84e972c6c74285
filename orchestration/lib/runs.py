"""Runs of the code location's assets from Python: how the CLI, the demo and the tests execute
data steps. A run goes through Dagster exactly like one launched from the UI (same assets,
resources, checks, retries and concurrency pools, recorded in the instance under DAGSTER_HOME,
so it shows in the run history, the partitions and the staleness), executed in this process.

While it runs, a thread follows the run's event log and reports progress (steps started and
finished, the steps' own log lines) to a callback.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from lakehouse.core.settings import Settings
from orchestration.lib.instance import write_instance_config
from orchestration.lib.spark_steps import refresh_request

# The run's log is in the instance (the UI shows it); callers print progress and failures.
# The tags of a single-run backfill of a partition range, as the UI launches one.
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
POLL_SECONDS = 0.5
GRPC_DETAILS = re.compile(r'details = "([^"]*)"')


@dataclass(frozen=True)
class Progress:
    """One thing that happened in a run: `steps_done` of `steps` finished so far."""

    message: str
    steps_done: int
    steps: int
    step: str | None = None
    notice: bool = False  # worth a line of its own: a warning, a retry


@dataclass
class RunOutcome:
    """What a run did: its materialisations' and checks' metadata, and what failed."""

    run_id: str
    success: bool
    materialized: dict[str, dict[str, Any]] = field(default_factory=dict)  # table -> metadata
    checks: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)  # "<step>: <error>"
    seconds: float = 0.0

    def failed_checks(self) -> list[dict[str, Any]]:
        return [c for c in self.checks if not c["passed"]]

    def values(self, name: str) -> list[Any]:
        """Every materialisation's metadata entry `name` (tables without it left out)."""
        return [m[name] for m in self.materialized.values() if name in m]


def table_name(key: dg.AssetKey) -> str:
    return ".".join(key.path)


def run_assets(
    settings: Settings,
    selection: dg.AssetSelection | Iterable[dg.AssetKey],
    *,
    config: Mapping[str, Mapping[str, Any]] | None = None,
    resources: Mapping[str, Mapping[str, Any]] | None = None,
    partition_range: tuple[dt.date, dt.date] | None = None,
    tags: Mapping[str, str] | None = None,
    on_progress: Callable[[Progress], None] = lambda _: None,
) -> RunOutcome:
    """Materialise the selected assets in one run in this process, against the instance in
    DAGSTER_HOME. `config` is the run config of the assets' steps, by table (`layer.table`) or
    by step name; `resources` overrides resources' config (e.g. another Kafka topic).

    With `partition_range` the partitioned assets backfill exactly those days (a single-run
    backfill, as the UI launches one); without it the run is a refresh (filed under today's
    partition; partitioned steps rebuild what changed upstream)."""
    from orchestration.definitions import build_definitions

    write_instance_config(settings)
    defs = build_definitions(settings)
    graph = defs.resolve_asset_graph()
    if not isinstance(selection, dg.AssetSelection):
        selection = dg.AssetSelection.assets(*selection)
    keys = sorted(selection.resolve(graph), key=lambda k: k.to_user_string())
    steps = {id(graph.get(k).assets_def) for k in keys}
    run_config: dict[str, Any] = dict(QUIET)
    run_config["ops"] = {
        _op_name(graph, name): {"config": dict(values)} for name, values in (config or {}).items()
    }
    run_config["resources"] = {
        name: {"config": _resource_config(defs.resources[name]) | dict(values)}
        for name, values in (resources or {}).items()
    }
    run_tags = dict(tags or {})
    partition_key = None
    if partition_range is not None:
        run_tags[RANGE_START] = partition_range[0].isoformat()
        run_tags[RANGE_END] = partition_range[1].isoformat()
    elif any(graph.get(k).partitions_def for k in keys):
        refresh = refresh_request()
        partition_key = refresh["partition_key"]
        run_tags |= refresh["tags"]
    run_id = str(uuid.uuid4())
    started = dt.datetime.now(dt.UTC)
    with dg.DagsterInstance.from_config(str(settings.dagster_home)) as instance:
        follower = _Follower(instance, run_id, len(steps), on_progress)
        follower.start()
        try:
            result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
                run_config=run_config,
                instance=instance,
                asset_selection=keys,
                partition_key=partition_key,
                raise_on_error=False,
                run_id=run_id,
                tags=run_tags,
            )
        finally:
            follower.stop()
    outcome = _outcome(result)
    outcome.seconds = (dt.datetime.now(dt.UTC) - started).total_seconds()
    return outcome


def _resource_config(resource: Any) -> dict[str, Any]:
    """A resource's configured values (run config replaces a resource's config whole)."""
    return {name: getattr(resource, name) for name in type(resource).model_fields}


def _op_name(graph: Any, name: str) -> str:
    """The step that materialises table `name` (`layer.table`), or `name` itself."""
    key = dg.AssetKey(name.split("."))
    return graph.get(key).assets_def.op.name if graph.has(key) else name


def _outcome(result: dg.ExecuteInProcessResult) -> RunOutcome:
    outcome = RunOutcome(run_id=result.run_id, success=result.success)
    for event in result.all_events:
        if event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.event_specific_data.materialization
            # one entry per table: a backfill materialises each day with the step's facts, a
            # table two steps write (the model logs) keeps both steps' facts
            outcome.materialized.setdefault(table_name(materialization.asset_key), {}).update(
                {k: v.value for k, v in materialization.metadata.items()}
            )
        elif event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            check = event.event_specific_data
            outcome.checks.append(
                {
                    "table": table_name(check.asset_key),
                    "check": check.check_name,
                    "passed": check.passed,
                    "description": check.description or "",
                    "metadata": {k: v.value for k, v in check.metadata.items()},
                }
            )
        elif event.event_type == dg.DagsterEventType.STEP_FAILURE:
            outcome.failures.append(f"{event.step_key}: {failure_message(event)}")
    return outcome


def failure_message(event: dg.DagsterEvent) -> str:
    """What a failed step says: a `dg.Failure`'s description, else the innermost error."""
    data = event.event_specific_data
    if getattr(data, "user_failure_data", None) and data.user_failure_data.description:
        return data.user_failure_data.description.strip()
    return error_message(data.error)


def error_message(error: Any) -> str:
    """The innermost error of a serialised Dagster error chain, without its class path."""
    while error.cause is not None:
        error = error.cause
    text = error.message.strip()
    if grpc := GRPC_DETAILS.search(text):  # "<_InactiveRpcError of RPC …" says it on a later line
        return grpc.group(1)
    kind, _, message = text.partition(": ")
    # "package.module.SomeError: what happened" -> "what happened"
    class_like = kind.replace(".", "").replace("_", "").isalnum()
    return message if message and class_like else text


class _Follower(threading.Thread):
    """Reads a run's event log while it executes and reports progress."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        run_id: str,
        steps: int,
        on_progress: Callable[[Progress], None],
    ):
        super().__init__(daemon=True, name=f"follow-{run_id[:8]}")
        self.instance, self.run_id, self.steps = instance, run_id, steps
        self.on_progress = on_progress
        self.done = 0
        self.cursor: str | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(POLL_SECONDS):
            self._read()
        self._read()

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=10)

    def _read(self) -> None:
        try:
            connection = self.instance.get_records_for_run(self.run_id, cursor=self.cursor)
        except Exception:  # noqa: BLE001 - the run record may not exist yet
            return
        self.cursor = connection.cursor
        for record in connection.records:
            entry = record.event_log_entry
            message = self._describe(entry)
            if message is not None:
                notice = entry.level >= logging.WARNING or _is_retry(entry)
                self.on_progress(Progress(message, self.done, self.steps, entry.step_key, notice))

    def _describe(self, entry: Any) -> str | None:
        event = entry.dagster_event
        if event is None:  # a step's own log line
            return entry.user_message if entry.level >= logging.INFO else None
        kind = event.event_type
        if kind == dg.DagsterEventType.STEP_UP_FOR_RETRY:
            data = event.event_specific_data
            wait = f" in {data.seconds_to_wait:.0f}s" if data.seconds_to_wait else ""
            error = error_message(data.error).splitlines()[0] if data.error else "it failed"
            return f"{event.step_key}: failed ({error[:200]}); Dagster retries it{wait}"
        if kind == dg.DagsterEventType.STEP_START:
            return f"{event.step_key}: started"
        if kind in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            self.done += 1
            status = "done" if kind == dg.DagsterEventType.STEP_SUCCESS else "failed"
            return f"{event.step_key}: {status}"
        if kind == dg.DagsterEventType.STEP_SKIPPED:
            self.done += 1
            return f"{event.step_key}: skipped (an upstream step or check failed)"
        return None


def _is_retry(entry: Any) -> bool:
    event = entry.dagster_event
    return event is not None and event.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY
