"""The session recommenders' runner: next-item models on the clickstream's sessions, evaluated on
a time split, the best one versioned for the recommendation API (ml/session.py).

Sessions of the newest `HISTORY_DAYS` days of `gold.fact_events` (product views, carts and
purchases), ordered by their first event. The newest `WINDOW_DAYS` days of sessions are the test
window, the `WINDOW_DAYS` before them the validation window, everything earlier the training
sessions. Every model is fitted on the training sessions and scored on validation (the champion
is picked there, by HR@20), then fitted on training + validation and scored on test (reported,
never used to choose). The champion is refitted on every session and saved in the registry as
`session_recommender`; the rows go to gold.model_evaluations with task `next_item`.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable

import pandas as pd
import pyarrow.compute as pc

from lakehouse.core.lake import Lake
from ml.session import K, evaluate_next_item, models, sessions_of
from spark_jobs.training import NotEnoughData, Report, Tables, params_of, registry

HISTORY_DAYS = 60  # bounds what is read: sessions older than this say little about tomorrow's
WINDOW_DAYS = 7
EVENTS = "gold.fact_events"
CHAMPION_METRIC = f"hr@{K}"
MODEL_NAME = "session_recommender"


def load_session_events(tables: Tables) -> pd.DataFrame:
    """Product events of the newest HISTORY_DAYS days (session, time, product)."""
    events = tables.require(EVENTS).to_pyarrow_dataset()
    newest = pc.max(events.to_table(columns=["event_date"])["event_date"]).as_py()
    if newest is None:
        raise NotEnoughData(f"{EVENTS} is empty: nothing to learn sessions from")
    since = newest - dt.timedelta(days=HISTORY_DAYS)
    where = (pc.field("event_date") >= since) & pc.field("product_id").is_valid()
    table = events.to_table(columns=["session_id", "event_time", "product_id"], filter=where)
    return table.to_pandas()


def train_session_models(lake: Lake, progress: Callable[[str], None] = lambda _: None) -> Report:
    tables = Tables(lake)
    started = time.monotonic()
    inputs = tables.versions(EVENTS)
    events = load_session_events(tables)
    first = events.groupby("session_id")["event_time"].transform("min")
    end = events["event_time"].max()
    test_start = end - dt.timedelta(days=WINDOW_DAYS)
    validation_start = test_start - dt.timedelta(days=WINDOW_DAYS)
    train = sessions_of(events[first < validation_start])
    validation = sessions_of(events[(first >= validation_start) & (first < test_start)])
    test = sessions_of(events[first >= test_start])
    if not train or not any(len(s) > 1 for s in validation):
        raise NotEnoughData(
            f"{EVENTS} holds too few sessions for a time split ({len(train)} training, "
            f"{len(validation)} validation sessions in the newest {HISTORY_DAYS} days)"
        )
    report = Report(run_id=uuid.uuid4().hex[:12])
    report.windows = {
        "validation_start": str(validation_start),
        "test_start": str(test_start),
        "end": str(end),
        "sessions": {"train": len(train), "validation": len(validation), "test": len(test)},
    }
    scores = {}
    for model in models():
        progress(f"session model {model.name}: validation, then test")
        validation_score = evaluate_next_item(model.fit(train), validation)
        test_score = evaluate_next_item(model.fit(train + validation), test)
        scores[model.name] = (model, validation_score, test_score)
    champion = max(scores, key=lambda name: scores[name][1].hr)
    model = scores[champion][0].fit(train + validation + test)
    test_score = scores[champion][2]
    saved = registry(lake).save(
        MODEL_NAME,
        model,
        params={"algorithm": champion, **params_of(model)},
        metrics={"hr@20": test_score.hr, "mrr@20": test_score.mrr},
        inputs=inputs,
        extra={"run_id": report.run_id, "champion_metric": CHAMPION_METRIC},
    )
    report.champion, report.champion_version = champion, saved.version
    run = {
        "run_id": report.run_id,
        "evaluated_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
        "task": "next_item",
        "test_days": WINDOW_DAYS,
        "inputs": json.dumps(inputs, sort_keys=True),
        "population": "sessions",
        "target": "next",
        "champion_metric": CHAMPION_METRIC,
    }
    rows = []
    for name, (fitted, on_validation, on_test) in scores.items():
        for split, score, train_end in (
            ("validation", on_validation, validation_start),
            ("test", on_test, test_start),
        ):
            for metric, value in (
                (f"hr@{K}", score.hr),
                (f"mrr@{K}", score.mrr),
                ("predictions", score.predictions),
            ):
                rows.append(
                    {
                        **run,
                        "train_end": train_end.date(),
                        "split": split,
                        "model": name,
                        "model_version": saved.version if name == champion else None,
                        "is_champion": name == champion,
                        "metric": metric,
                        "value": float(value),
                        "params": json.dumps(params_of(fitted), sort_keys=True),
                    }
                )
            report.evaluations.append(
                {"model": name, "split": split, f"hr@{K}": score.hr, f"mrr@{K}": score.mrr}
            )
    report.tables["gold.model_evaluations"] = tables.write(
        "gold.model_evaluations", pd.DataFrame(rows), append=True
    )
    report.seconds["session_models"] = time.monotonic() - started
    return report
