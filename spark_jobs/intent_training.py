"""The purchase-intent runner: will a session end in a purchase (ml/intent.py), trained on the
newest sessions of `gold.fact_events` with a time split, explained with TreeSHAP.

Sessions of the newest `HISTORY_DAYS` days, each cut once before its first purchase. The newest
`WINDOW_DAYS` days of sessions are the test window, the `WINDOW_DAYS` before them validation,
everything earlier training. LightGBM is fitted on training and stopped early on validation; the
F1 threshold is chosen on validation; the test window reports, untouched by either choice, next
to the cart baseline. That model is versioned as `purchase_intent` in the registry; the rows go
to gold.model_evaluations with task `purchase_intent`.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from collections.abc import Callable

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from lakehouse.core.lake import Lake
from ml.drift import reference_profile
from ml.intent import (
    FEATURES,
    PARAMS,
    best_threshold,
    cart_baseline,
    fit,
    global_importance,
    score,
    session_prefixes,
)
from spark_jobs.session_training import EVENTS, HISTORY_DAYS, WINDOW_DAYS, load_session_events
from spark_jobs.training import NotEnoughData, Report, Tables, registry, write_model_log

MODEL_NAME = "purchase_intent"
PRODUCTS = "gold.dim_product"
SALES = "gold.fact_sales_line"
COLUMNS = ("session_id", "event_time", "event_type", "product_id", "customer_id", "device")
SHAP_SESSIONS = 5_000  # test sessions the global SHAP summary is taken over


def list_prices(tables: Tables) -> pd.Series:
    return products(tables)["list_price"].astype(float)


def products(tables: Tables) -> pd.DataFrame:
    """The current catalogue's list price and category by product id."""
    current = [("is_current", "=", True)]
    columns = ["product_id", "list_price", "category_name"]
    return tables.arrow(PRODUCTS, columns, current).to_pandas().set_index("product_id")


def customer_orders(tables: Tables, customers: pd.Series) -> pd.DataFrame:
    """(customer_id, order_date) of every order of these customers: invoices, neither
    cancelled nor returns, as `gold.customer_features.frequency` counts them (what the serving
    snapshot gives the API). The sessions' `past_orders` and `days_since_order` count them."""
    ids = pa.array(customers.dropna().unique().astype("int64"))
    kept = (pc.field("is_return") == False) & (pc.field("is_cancelled") == False)  # noqa: E712
    where = kept & pc.field("customer_id").isin(ids)
    sales = tables.require(SALES).to_pyarrow_dataset()
    lines = sales.to_table(columns=["customer_id", "invoice_id", "invoice_date"], filter=where)
    orders = lines.group_by(["customer_id", "invoice_id"]).aggregate([("invoice_date", "min")])
    return pd.DataFrame(
        {
            "customer_id": orders["customer_id"].to_numpy(),
            "order_date": orders["invoice_date_min"].to_numpy(),
        }
    )


def session_features(tables: Tables, events: pd.DataFrame) -> pd.DataFrame:
    """The training rows of these events' sessions (ml.intent.session_prefixes) with the
    catalogue's prices and categories and the customers' orders."""
    catalogue = products(tables)
    return session_prefixes(
        events,
        catalogue["list_price"].astype(float),
        categories=catalogue["category_name"],
        orders=customer_orders(tables, events["customer_id"]),
    )


def train_intent_model(lake: Lake, progress: Callable[[str], None] = lambda _: None) -> Report:
    tables = Tables(lake)
    started = time.monotonic()
    inputs = tables.versions(EVENTS, PRODUCTS, SALES)
    events = load_session_events(tables, COLUMNS)
    progress(f"purchase intent: {len(events):,} product events of the newest {HISTORY_DAYS} days")
    sessions = session_features(tables, events)
    del events
    end = sessions["start"].max()
    test_start = end - dt.timedelta(days=WINDOW_DAYS)
    validation_start = test_start - dt.timedelta(days=WINDOW_DAYS)
    splits = {
        "train": sessions[sessions["start"] < validation_start],
        "validation": sessions[
            (sessions["start"] >= validation_start) & (sessions["start"] < test_start)
        ],
        "test": sessions[sessions["start"] >= test_start],
    }
    for name, frame in splits.items():
        if frame["label"].nunique() < 2:
            raise NotEnoughData(
                f"{EVENTS}: the {name} window ({len(frame):,} sessions) needs sessions with and "
                "without a purchase to learn purchase intent"
            )
    report = Report(run_id=uuid.uuid4().hex[:12])
    report.windows = {
        "validation_start": str(validation_start),
        "test_start": str(test_start),
        "end": str(end),
        "sessions": {name: len(frame) for name, frame in splits.items()},
    }
    model = fit(splits["train"], splits["validation"])
    validation, test = splits["validation"], splits["test"]
    scorers = {
        "lightgbm": lambda f: model.predict(f[list(FEATURES)]),
        "cart_baseline": cart_baseline,
    }
    results = {}
    for name, scorer in scorers.items():
        threshold = best_threshold(validation["label"], scorer(validation))
        results[name] = {
            "validation": score(validation["label"], scorer(validation), threshold),
            "test": score(test["label"], scorer(test), threshold),
            "threshold": threshold,
        }
    sample = test.sample(min(len(test), SHAP_SESSIONS), random_state=0)
    shap = global_importance(model, sample)
    report.windows["shap_mean_abs"] = {k: round(v, 4) for k, v in shap.items()}
    stored = registry(lake)
    saved = stored.save(
        MODEL_NAME,
        model,
        params={
            **{k: v for k, v in PARAMS.items() if k != "verbose"},
            "features": list(FEATURES),
            "rounds": model.best_iteration or model.current_iteration(),
            "threshold": results["lightgbm"]["threshold"],
        },
        metrics=results["lightgbm"]["test"].as_dict(),
        inputs=inputs,
        extra={
            "run_id": report.run_id,
            "champion_metric": "roc_auc",
            # what drift monitoring compares the live sessions with (ml/drift.py)
            "reference_profile": reference_profile(
                splits["train"].assign(score=model.predict(splits["train"][list(FEATURES)])),
                [*FEATURES, "score"],
            ),
        },
    )
    report.champion, report.champion_version = "lightgbm", saved.version
    run = {
        "run_id": report.run_id,
        "evaluated_at": dt.datetime.now(dt.UTC).replace(tzinfo=None),
        "task": "purchase_intent",
        "test_days": WINDOW_DAYS,
        "inputs": json.dumps(inputs, sort_keys=True),
        "population": "sessions",
        "target": "purchase",
        "champion_metric": "roc_auc",
    }
    rows = []
    for name, result in results.items():
        for split, train_end in (("validation", validation_start), ("test", test_start)):
            scores = result[split].as_dict()
            for metric, value in scores.items():
                rows.append(
                    {
                        **run,
                        "train_end": train_end.date(),
                        "split": split,
                        "model": name,
                        "model_version": saved.version if name == "lightgbm" else None,
                        "is_champion": name == "lightgbm",
                        "metric": metric,
                        "value": float(value),
                        "params": json.dumps({"threshold": result["threshold"]}),
                    }
                )
            report.evaluations.append(
                {"task": "purchase_intent", "model": name, "split": split, **scores}
            )
    # the global explanation, for the Models dashboard: mean |SHAP| per feature on test
    for feature, value in shap.items():
        rows.append(
            {
                **run,
                "train_end": test_start.date(),
                "split": "test",
                "model": "lightgbm",
                "model_version": saved.version,
                "is_champion": True,
                "metric": f"shap:{feature}",
                "value": value,
                "params": json.dumps({"sessions": len(sample)}),
            }
        )
    report.tables |= write_model_log(tables, rows, stored)
    report.seconds["purchase_intent"] = time.monotonic() - started
    return report
