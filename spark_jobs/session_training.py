"""The session recommenders' runner: next-item models on the clickstream's sessions, evaluated on
a time split, the best one versioned for the recommendation API (ml/session.py).

Sessions of the newest `HISTORY_DAYS` days of `gold.fact_events` (product views, carts and
purchases), ordered by their first event. The newest `WINDOW_DAYS` days of sessions are the test
window, the `WINDOW_DAYS` before them the validation window, everything earlier the training
sessions. Every model is fitted on the training sessions and scored on validation (the champion
is picked there, by HR@20), then fitted on training + validation and scored on test (reported,
never used to choose). The champion is refitted on every session and saved in the registry as
`session_recommender`; the rows go to gold.model_evaluations with task `next_item`.

Then the live blend's session share (ml/blend.py) is tuned on the recommenders' validation
window and scored on their test window, with their backtest lists and the champion's algorithm
refitted before each window; it is saved with the model, the rows with task `session_blend`.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from lakehouse.core.lake import Lake
from ml.blend import SESSION_CANDIDATES, ShareScores, best_share, points_of, score_shares
from ml.blend import K as BLEND_K
from ml.session import K, Popular, evaluate_next_item, keyed_sessions, models, sessions_of
from spark_jobs.training import (
    NotEnoughData,
    Report,
    Tables,
    params_of,
    registry,
    write_model_log,
)

HISTORY_DAYS = 60  # bounds what is read: sessions older than this say little about tomorrow's
WINDOW_DAYS = 7
EVENTS = "gold.fact_events"
CHAMPION_METRIC = f"hr@{K}"
MODEL_NAME = "session_recommender"


def load_session_events(
    tables: Tables, columns: tuple[str, ...] = ("session_id", "event_time", "product_id")
) -> pd.DataFrame:
    """Product events of the newest HISTORY_DAYS days (session, time, product by default)."""
    events = tables.require(EVENTS).to_pyarrow_dataset()
    newest = pc.max(events.to_table(columns=["event_date"])["event_date"]).as_py()
    if newest is None:
        raise NotEnoughData(f"{EVENTS} is empty: nothing to learn sessions from")
    return product_events(tables, since=newest - dt.timedelta(days=HISTORY_DAYS), columns=columns)


def product_events(
    tables: Tables,
    since: dt.date,
    until: dt.date | None = None,
    columns: tuple[str, ...] = ("session_id", "event_time", "product_id"),
) -> pd.DataFrame:
    """Product events of the days from `since` up to `until` (both included; no end: all)."""
    where = (pc.field("event_date") >= since) & pc.field("product_id").is_valid()
    if until is not None:
        where &= pc.field("event_date") <= until
    events = tables.require(EVENTS).to_pyarrow_dataset()
    return events.to_table(columns=list(columns), filter=where).to_pandas()


def train_session_models(lake: Lake, progress: Callable[[str], None] = lambda _: None) -> Report:
    tables = Tables(lake)
    started = time.monotonic()
    inputs = tables.versions(EVENTS, BACKTESTS)
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
    progress(f"session share of the live blend: {champion} against the batch lists")
    blend = tune_blend(tables, champion)
    model = scores[champion][0].fit(train + validation + test)
    test_score = scores[champion][2]
    tuned = {"session_share": blend.share} if blend else {}
    stored = registry(lake)
    saved = stored.save(
        MODEL_NAME,
        model,
        params={"algorithm": champion, **params_of(model), **tuned},
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
                {
                    "task": "next_item",
                    "model": name,
                    "split": split,
                    f"hr@{K}": score.hr,
                    f"mrr@{K}": score.mrr,
                }
            )
    if blend is None:
        report.windows["session_share"] = f"not tuned: no {BACKTESTS} (train the recommenders)"
    else:
        report.windows["session_share"] = blend.share
        report.windows["blend"] = blend.windows
        rows += blend.rows({**run, "task": "session_blend", "population": "customer_sessions"})
        report.evaluations += blend.evaluations
    report.tables |= write_model_log(tables, rows, stored)
    report.seconds["session_models"] = time.monotonic() - started
    return report


# -- the live blend's session share (ml/blend.py) -----------------------------------------------

BACKTESTS = "gold.recommendation_backtests"
BLEND_SESSIONS = 3_000  # known customers' sessions replayed per window (seeded sample)


@dataclass
class BlendTuning:
    share: float
    scores: dict[str, ShareScores]  # validation, test
    baseline: dict[str, ShareScores]  # popularity of the sessions before the window
    as_of: dict[str, dt.date]
    windows: dict[str, Any] = field(default_factory=dict)

    @property
    def evaluations(self) -> list[dict[str, Any]]:
        return [
            {
                "task": "session_blend",
                "model": name,
                "split": split,
                f"hr@{BLEND_K}": hr,
                f"mrr@{BLEND_K}": mrr,
            }
            for split, name, _, hr, mrr in self._scored()
        ]

    def rows(self, run: dict[str, Any]) -> list[dict[str, Any]]:
        """gold.model_evaluations rows: every share (0 = the batch list alone, 1 = the session
        model alone) and the popularity baseline, on both windows."""
        out = []
        for split, name, share, hr, mrr in self._scored():
            for metric, value in ((f"hr@{BLEND_K}", hr), (f"mrr@{BLEND_K}", mrr)):
                out.append(
                    {
                        **run,
                        "champion_metric": f"hr@{BLEND_K}",
                        "target": "next",
                        "test_days": (self.as_of["test"] - self.as_of["validation"]).days,
                        "train_end": self.as_of[split],
                        "split": split,
                        "model": name,
                        "model_version": None,
                        "is_champion": share == self.share,
                        "metric": metric,
                        "value": float(value),
                        "params": json.dumps({"session_share": share}),
                    }
                )
        return out

    def _scored(self) -> list[tuple[str, str, float | None, float, float]]:
        found = []
        for split, scores in self.scores.items():
            for share in scores.hr:
                found.append((split, share_name(share), share, scores.hr[share], scores.mrr[share]))
            popular = self.baseline[split]
            found.append((split, "popularity", None, popular.hr[1.0], popular.mrr[1.0]))
        return found


def share_name(share: float) -> str:
    if share == 0.0:
        return "batch_list"
    return "session_model" if share == 1.0 else f"blend_{share:.1f}"


def tune_blend(tables: Tables, algorithm: str, seed: int = 0) -> BlendTuning | None:
    """The session share chosen on the recommenders' validation window and scored on their test
    window, each with the champion's lists as of the window's start and the session model
    `algorithm` refitted on the HISTORY_DAYS of sessions before it. None without backtests."""
    backtests = tables.lake.open(BACKTESTS)
    if backtests is None:
        return None
    lists_table = backtests.to_pyarrow_table(
        columns=["split", "as_of", "customer_id", "rank", "product_id"]
    ).to_pandas()
    as_of = lists_table.groupby("split")["as_of"].first().to_dict()
    if not {"validation", "test"} <= as_of.keys():
        return None
    # the windows are as long as each other and end where the recommenders' did (a live
    # stream past the newest purchase is left out, like theirs)
    days = as_of["test"] - as_of["validation"]
    ends = {"validation": as_of["test"], "test": as_of["test"] + days}
    scores, baseline, windows = {}, {}, {}
    for split in ("validation", "test"):
        start = as_of[split]
        fit = product_events(tables, since=start - dt.timedelta(days=HISTORY_DAYS), until=start)
        before = sessions_of(fit)
        del fit
        model = next(m for m in models() if m.name == algorithm).fit(before)
        popular = Popular().fit(before)
        columns = ("session_id", "customer_id", "event_time", "product_id")
        window = product_events(
            tables, since=start + dt.timedelta(days=1), until=ends[split], columns=columns
        )
        owners = window.dropna(subset=["customer_id"]).groupby("session_id")["customer_id"].first()
        of_split = lists_table[lists_table["split"] == split].sort_values(["customer_id", "rank"])
        lists = {
            int(c): g.to_numpy(np.int64) for c, g in of_split.groupby("customer_id")["product_id"]
        }
        sessions = [
            (int(owners[sid]), products)
            for sid, products in keyed_sessions(window)
            if sid in owners.index and int(owners[sid]) in lists
        ]
        points = points_of(sessions, BLEND_SESSIONS, seed)

        def session_part(prefix: list[int], model=model) -> list[tuple[int, float]]:  # noqa: ANN001
            return model.recommend(prefix, SESSION_CANDIDATES)

        scores[split] = score_shares(points, lists, session_part)
        baseline[split] = score_shares(
            points, {}, lambda prefix, p=popular: p.recommend(prefix, BLEND_K), shares=(1.0,)
        )
        windows[split] = {
            "as_of": str(start),
            "until": str(ends[split]),
            "sessions": min(sum(len(p) > 1 for _, p in sessions), BLEND_SESSIONS),
            "predictions": len(points),
        }
    share = best_share(scores["validation"])
    return BlendTuning(share, scores, baseline, as_of, windows)
