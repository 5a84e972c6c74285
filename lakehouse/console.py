"""What the `lakehouse` CLI shows: errors, progress, status tables and the reports of runs.

Data commands run their steps through Dagster (orchestration/lib/runs.py); `run` here shows a
run's progress on stderr and turns a failed run into red lines and exit code 1.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from lakehouse.core.settings import Settings

if TYPE_CHECKING:
    import dagster as dg

    from lakehouse.devstack.services import ServiceStatus
    from orchestration.lib.runs import RunOutcome

out = Console(soft_wrap=True)  # paths and messages stay whole lines
err = Console(stderr=True, soft_wrap=True)


def fail(message: str, code: int = 1) -> NoReturn:
    """One red line on stderr, then exit with `code` (1: a failure, 2: bad input)."""
    err.print(f"[red]error:[/red] {message}", highlight=False, markup=True)
    raise typer.Exit(code)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def dim(message: str) -> None:
    out.print(f"      {message}…", style="dim", highlight=False)


def progress_lines(quiet: bool) -> Callable[[str], None]:
    """Dim progress lines on stderr, none when quiet (--json)."""
    return (lambda _: None) if quiet else (lambda msg: err.print(f"[dim]{msg}…[/dim]"))


def progress_bar(quiet: bool, unit: str = "events", *fields: str) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        *(TextColumn(f) for f in fields),
        TimeElapsedColumn(),
        console=err,
        disable=quiet,
    )


@contextlib.contextmanager
def day_progress(total_days: int, quiet: bool) -> Iterator[Callable[[int], None]]:
    """A bar of simulated days; the callable advances it by a day of `n_events`."""
    progress = progress_bar(quiet, "days", "{task.fields[events]:,} events")
    task = progress.add_task("simulating", total=total_days, events=0)
    counted = [0]

    def advance(n_events: int) -> None:
        counted[0] += n_events
        progress.update(task, advance=1, events=counted[0])

    with progress:
        yield advance


def run(
    settings: Settings,
    keys: Iterable[dg.AssetKey],
    title: str,
    *,
    quiet: bool = False,
    check: bool = True,
    **options: Any,
) -> RunOutcome:
    """Run these assets through Dagster with a progress bar (steps done, the latest line of the
    run's log). A failed run exits 1 with what failed, unless `check` is off (the caller reports
    it, e.g. after printing what did succeed)."""
    from orchestration.lib.runs import run_assets

    progress = progress_bar(quiet, "steps", "{task.fields[latest]}")
    task = progress.add_task(title, total=None, latest="")

    def show(event: Any) -> None:
        latest = event.message if len(event.message) <= 90 else event.message[:89] + "…"
        progress.update(task, total=event.steps, completed=event.steps_done, latest=latest)
        if event.notice:  # a retry or a warning stays on screen, not only in the bar
            err.print(f"[yellow]{event.message}[/yellow]", highlight=False, soft_wrap=True)

    with progress:
        outcome = run_assets(settings, keys, on_progress=show, **options)
    if check:
        require_success(outcome, title)
    return outcome


def require_success(outcome: RunOutcome, title: str) -> None:
    """Exit 1 naming the failed steps and their errors if the run failed."""
    if not outcome.success:
        message = "\n  ".join(outcome.failures or ["the run failed"])
        fail(f"{title} failed (Dagster run {outcome.run_id}):\n  {message}")


# -- services ----------------------------------------------------------------------------------


def print_statuses(statuses: list[ServiceStatus], as_json: bool) -> None:
    if as_json:
        print_json({"services": [s.to_dict() for s in statuses]})
        return
    table = Table(box=None, pad_edge=False)
    for column in ("service", "endpoint", "mode", "pid", "rss", "health", "detail"):
        table.add_column(column)
    for s in statuses:
        table.add_row(
            s.title,
            s.endpoint,
            "embedded" if s.embedded else "external",
            str(s.pid or "-"),
            f"{s.rss_mb:.0f} MB" if s.rss_mb is not None else "-",
            "[green]healthy[/green]" if s.healthy else "[red]down[/red]",
            s.detail + (f" in {s.startup_seconds:.1f}s" if s.started else ""),
        )
    out.print(table)
    logs = [s.log for s in statuses if s.log]
    if logs:
        out.print(f"logs: {', '.join(logs)}", highlight=False)


def print_health(statuses: list[ServiceStatus], as_json: bool) -> None:
    """Print the statuses; exit 1 if any service is not healthy."""
    print_statuses(statuses, as_json)
    if not all(s.healthy for s in statuses):
        raise typer.Exit(1)


# -- reports of data commands ------------------------------------------------------------------


def print_ingest_status(status: dict, as_json: bool) -> None:
    if as_json:
        print_json(status)
        return
    table = Table(title=f"{status['topic']} → bronze.events (version {status['events_version']})")
    for column in ("partition", "next offset", "log start", "log end", "lag"):
        table.add_column(column, justify="right")
    for row in status["partitions"]:
        cells = (row["partition"], row["next_offset"], row["log_start"], row["log_end"], row["lag"])
        table.add_row(*("?" if c is None else f"{c:,}" for c in cells))
    out.print(table)
    for follower in status["followers"]:
        out.print(
            f"follower pid {follower['pid']}: {follower['events_written']:,} events, "
            f"{follower['events_per_second']:,.0f} msgs/s, last commit {follower['last_batch_at']}",
            highlight=False,
        )
    if not status["followers"]:
        out.print("no `lakehouse ingest --follow` is running for this topic", style="dim")
    for problem in status["problems"]:
        out.print(f"✗ {problem}", style="red", highlight=False)
    if status["problems"]:
        out.print(
            "ingestion stops here: the broker lost or recreated the topic, so messages may be "
            f"missing. To go on from the topic as it is now: `{status['recovery']}`",
            style="red",
            highlight=False,
        )


def print_offsets_reset(done: dict, as_json: bool) -> None:
    if as_json:
        print_json(done)
        return
    for partition, (old, new) in sorted(done["partitions"].items()):
        out.print(
            f"{done['topic']} partition {partition}: next offset {old:,} → {new:,}",
            highlight=False,
        )
    out.print(
        f"reason: {done['reason']}; recorded in bronze.events_offset_resets. "
        "`lakehouse ingest` reads the topic again from these offsets.",
        highlight=False,
    )


def print_ingested(report: dict) -> None:
    out.print(
        f"ingested {report['messages']:,} messages from {report['topic']} in "
        f"{report['seconds']:.1f}s ({report['events_per_second']:,.0f} msgs/s after joining the "
        f"group in {report['joined_after'] or 0:.1f}s): {report['events_written']:,} events, "
        f"{report['dead_letters_written']:,} dead letters, {report['batches']} commits; "
        f"bronze.events at version {report['events_version']}",
        highlight=False,
    )


def print_extracted(reports: list[dict], full: bool) -> None:
    summary = Table(title=f"ERP → bronze ({'full snapshot' if full else 'incremental'})")
    for column in ("table", "read", "written", "quarantined", "watermark", "seconds"):
        summary.add_column(column, justify="left" if column in ("table", "watermark") else "right")
    for r in reports:
        summary.add_row(
            r["bronze_table"],
            f"{r['rows_read']:,}",
            f"{r['rows_written']:,}",
            f"{r['rows_quarantined']:,}",
            r["watermark_after"] or "-",
            f"{r['seconds']:.2f}",
        )
    out.print(summary)


def print_transformed(results: list[dict]) -> None:
    summary = Table(title="silver / gold")
    for column in ("table", "status", "partitions", "rows", "quarantined", "checks", "s"):
        summary.add_column(
            column, justify="left" if column in ("table", "status", "checks") else "right"
        )
    for r in results:
        status = "skipped" if r["skipped"] else "published" if r["published"] else "[red]FAILED[/]"
        summary.add_row(
            r["table"],
            status,
            "all" if r["partitions"] is None else str(r["partitions"]),
            f"{r['rows']:,}",
            f"{r['quarantined']:,}",
            r["validation"]["summary"] if r["validation"] else "-",
            f"{r['seconds']:.1f}",
        )
    out.print(summary)
    for r in results:
        if r.get("note"):
            out.print(f"note {r['table']}: {r['note']}", soft_wrap=True)
        # published, but outside a distribution check's bounds: worth a look
        if r["validation"] and r["validation"].get("warnings"):
            warned = ", ".join(r["validation"]["warnings"])
            out.print(f"[yellow]quality warning[/] {r['table']}: {warned}", soft_wrap=True)


def print_feedback(feedback: dict[str, dict[str, dict[str, float]]]) -> None:
    """What learning from the shown lists adds (ml.feedback.evaluate): NDCG of the held-out
    answers re-ordered by each model, per target."""
    if not feedback:
        return
    targets = list(feedback)
    first = next(iter(feedback[targets[0]].values()))
    table = Table(
        title=f"feedback: the latest {first['answers']:,.0f} answers shoppers acted on, held "
        f"out, re-ordered by each model (trained on {first['training_answers']:,.0f} earlier)"
    )
    table.add_column("model", no_wrap=True)
    for target in targets:
        table.add_column(f"NDCG@10 by {target}", justify="right")
    for model in feedback[targets[0]]:
        values = [feedback[t][model].get("ndcg@10", float("nan")) for t in targets]
        table.add_row(model, *(f"{v:.4f}" for v in values))
    out.print(table)


def print_trained(reports: dict[str, dict], metric: str) -> None:
    from ml.evaluation import by_model

    if "recommenders" in reports:
        r = reports["recommenders"]
        windows = r["windows"]
        table = Table(
            title=f"recommenders, {metric}: validation window after {windows['validation_start']}, "
            f"test window after {windows['test_start']} ({windows['window_days']} days each); "
            "future = the generator's held-out weeks"
        )
        rows = by_model(r["evaluations"], metric)
        columns = [c for c in rows[0] if c != "model"] if rows else []
        table.add_column("model", no_wrap=True)
        for column in columns:
            table.add_column(column.replace("validation", "val."), justify="right")
        for row in rows:
            name = str(row["model"]) + (" (champion)" if row["model"] == r["champion"] else "")
            table.add_row(name, *(f"{row.get(c, float('nan')):.4f}" for c in columns))
        out.print(table)
        cold = {
            e["model"]: e
            for e in r["evaluations"]
            if e["split"] == "test" and e["target"] == "all" and "cold_start users" in e
        }
        if r["champion"] in cold:
            mine, popular = cold[r["champion"]], cold.get("popularity_28d", {})
            out.print(
                f"cold-start buyers of the test window (no history before it): "
                f"{mine['cold_start users']:,}; {metric} on all: {r['champion']} "
                f"{mine[f'cold_start {metric}']:.4f}, popularity_28d "
                f"{popular.get(f'cold_start {metric}', float('nan')):.4f}",
                highlight=False,
            )
        print_feedback(r.get("feedback") or {})
    if "intent" in reports:
        r = reports["intent"]
        if "skipped" in r:
            out.print(f"purchase intent: not trained: {r['skipped']}", highlight=False)
        else:
            table = Table(title="purchase intent (does the session end in a purchase?)")
            for column in ("model", "split", "roc_auc", "pr_auc", "f1", "sessions"):
                table.add_column(
                    column, justify="left" if column in ("model", "split") else "right"
                )
            for e in r["evaluations"]:
                table.add_row(
                    e["model"],
                    e["split"],
                    f"{e['roc_auc']:.4f}",
                    f"{e['pr_auc']:.4f}",
                    f"{e['f1']:.4f}",
                    f"{e['sessions']:,.0f}",
                )
            out.print(table)
            top = ", ".join(
                f"{k} {v:.3f}" for k, v in list(r["windows"]["shap_mean_abs"].items())[:4]
            )
            out.print(f"mean |SHAP| (log-odds): {top}", highlight=False)
    if "customers" in reports:
        r = reports["customers"]
        for e in r["evaluations"]:
            if e["task"] == "clv":
                better = "better" if e["mae_improvement"] >= 0 else "worse"
                out.print(
                    f"clv: MAE {e['mae']:,.0f} vs baseline {e['mae_baseline']:,.0f} "
                    f"({abs(e['mae_improvement']):.1%} {better}), "
                    f"window {r['windows']['churn_days']} days",
                    highlight=False,
                )
            else:
                out.print(
                    f"{e['task']}: ROC-AUC {e['roc_auc']:.3f} vs baseline "
                    f"{e['baseline_roc_auc']:.3f}, PR-AUC {e['pr_auc']:.3f}, F1 {e['f1']:.3f}",
                    highlight=False,
                )
    for r in reports.values():
        written = r.get("tables", {})  # a skipped part wrote nothing
        if written:
            out.print(", ".join(f"{t} {n:,} rows" for t, n in written.items()), style="dim")


def print_superset(report: dict) -> None:
    provisioned = report["provisioned"]
    url = report["url"]
    out.print(f"Superset: [bold]{url}[/bold]  user [bold]{report['username']}[/bold]")
    if report["new_password"]:
        out.print(
            f"  password (generated, shown once): [bold]{report['new_password']}[/bold]",
            highlight=False,
        )
    if report["password_file"]:
        out.print(f"  password kept in {report['password_file']}", highlight=False)
    out.print(
        f"  {len(provisioned['dashboards'])} dashboards, {provisioned['charts']} charts, "
        f"{provisioned['datasets']} datasets, {provisioned['saved_queries']} saved queries",
        highlight=False,
    )
    for dashboard in provisioned["dashboards"]:
        out.print(f"  {url}/superset/dashboard/{dashboard['slug']}/", highlight=False)
    for missing in provisioned["datasets_without_table"]:
        err.print(f"[yellow]not built yet:[/yellow] {missing}", highlight=False)
    steps = ", ".join(f"{name} {sec:.1f}s" for name, sec in report["steps"].items())
    out.print(f"[dim]{steps}[/dim]", highlight=False)


def date_range(
    start: dt.datetime | None, end: dt.datetime | None
) -> tuple[dt.date, dt.date] | None:
    """--from/--to as a partition range (both or neither; --to not before --from)."""
    if (start is None) != (end is None):
        raise typer.BadParameter("--from and --to go together", param_hint="--from/--to")
    if start is None or end is None:
        return None
    if end < start:
        raise typer.BadParameter(f"--to {end:%Y-%m-%d} is before --from", param_hint="--to")
    return start.date(), end.date()


@contextlib.contextmanager
def kafka_errors(settings: Settings) -> Iterator[None]:
    """A Kafka failure is one red line naming the brokers, and exit code 1."""
    from confluent_kafka import KafkaException

    from streaming.ingest import TopicNotFound, TopicReset

    try:
        yield
    except (KafkaException, TopicNotFound, TopicReset) as exc:
        fail(f"Kafka at {settings.kafka_bootstrap_servers}: {exc}")


@contextlib.contextmanager
def redis_errors(settings: Settings) -> Iterator[None]:
    """A Redis failure is one red line naming the online store, and exit code 1."""
    import redis

    from lakehouse.core.settings import mask_password

    try:
        yield
    except redis.RedisError as exc:
        fail(
            f"online store (Redis) at {mask_password(settings.online_store_url)}: {exc}; start "
            "the embedded one with `lakehouse services up` or set REDIS_URL"
        )


def print_traffic(report: dict) -> None:
    """`lakehouse simulate-traffic`: what the simulated audience did, per experiment variant."""
    table = Table(title="Simulated audience, per variant", title_justify="left")
    for column in ("variant", "sessions", "pages", "clicks", "carts", "purchases", "revenue",
                   "clicks/page", "purchases/session"):  # fmt: skip
        table.add_column(column, justify="left" if column == "variant" else "right")
    for name, t in report["variants"].items():
        table.add_row(
            name,
            f"{t['sessions']:,}",
            f"{t['pages']:,}",
            f"{t['clicks']:,}",
            f"{t['carts']:,}",
            f"{t['purchases']:,}",
            f"{t['revenue']:,.0f}",
            f"{t['clicks'] / t['pages']:.3f}" if t["pages"] else "–",
            f"{t['purchases'] / t['sessions']:.3f}" if t["sessions"] else "–",
        )
    out.print(table)
    out.print(
        f"{report['sessions']:,} sessions ({report['sessions_per_second']:g}/s), "
        f"{report['requests']:,} requests in {report['seconds']:.1f} s; "
        f"{report['failed_sessions']:,} failed {report['errors'] or ''}; "
        f"{report['behind']:,} starts waited for a free worker",
        highlight=False,
    )


def print_experiment_results(report: dict) -> None:
    """`lakehouse ml experiments --evaluate`: each experiment as of its newest day."""
    if "skipped" in report:
        out.print(f"no results: {report['skipped']}", highlight=False)
        return
    if not report:
        out.print("no experiment has exposures yet", highlight=False)
    for name, found in report.items():
        metric = found["variants"][0]["primary_metric"]
        table = Table(title=f"{name}, as of {found['day']}: {metric}", title_justify="left")
        for column in ("variant", "units", "exposures", "ctr", "conversion", "revenue/unit",
                       "difference", "interval", "p", "always-valid p"):  # fmt: skip
            table.add_column(column, justify="left" if column == "variant" else "right")
        for row in found["variants"]:
            control = row["is_control"]
            interval = "" if control else f"{row['ci_low']:+.4f} .. {row['ci_high']:+.4f}"
            table.add_row(
                row["variant"] + (" (control)" if control else ""),
                f"{row['units']:,}",
                f"{row['exposures']:,}",
                f"{row['ctr']:.4f}",
                f"{row['conversion']:.4f}",
                f"{row['revenue_per_unit']:,.1f}",
                "" if control else f"{row['difference']:+.4f}",
                interval,
                "" if control else f"{row['p_value']:.3g}",
                "" if control else f"{row['always_valid_p']:.3g}",
            )
        out.print(table)
        srm = found["variants"][0]["srm_p"]
        out.print(
            f"{found['status']}: {found['reason']} (sample ratio p = {srm:.3g}; "
            f"{found['units_in_several_variants']:,} units saw several variants)",
            highlight=False,
        )
        if found.get("decided"):
            decided = found["decided"]
            out.print(
                f"decided {decided['decided_at']}: {decided['status']} {decided['winner'] or ''}",
                highlight=False,
            )


def print_drift(report: dict) -> None:
    """`lakehouse ml drift`: every input and score, largest PSI first."""
    table = Table(title="Drift against the training data (PSI)", title_justify="left")
    for column in ("model", "version", "data", "input", "PSI", "status"):
        table.add_column(column, justify="right" if column == "PSI" else "left")
    for row in sorted(report["rows"], key=lambda r: (r["model"], -r["psi"])):
        table.add_row(
            row["model"],
            row["model_version"],
            row["data_window"],
            row["feature"],
            f"{row['psi']:.3f}",
            row["status"],
        )
    out.print(table)
    for model, why in report["skipped"].items():
        out.print(f"{model}: skipped, {why}", highlight=False)
    for check in report["checks"]:
        verdict = "passed" if check["passed"] else "failed"
        out.print(f"check {check['check']} {verdict}: {check['description']}", highlight=False)
