"""Purchase intent: will this session end in a purchase, from what it did so far?

The features are the ones the online store holds for a live session (streaming/online.py: the
products viewed and carted with their times; the catalogue's prices from the snapshot), so the
model trained here can score a live session as it is:

- `viewed`, `carted`: distinct products viewed (at most 50, what the store keeps), and in the
  cart (added and not removed);
- `minutes`: from the session's first product event to its newest view or add to cart;
- `view_price`, `cart_price`: the mean list price of the viewed and carted products (0 if none);
- `cart_value`: the list prices of the cart summed;
- `hour`, `weekend`: of the newest event (UTC);
- `known_customer`: the session is signed in;
- `app`, `mobile_web`: the session's device, the contract's `mobile_app_*` or `mobile_web`
  (neither: `desktop_web` or not said);
- `categories`: distinct categories of the products viewed or carted; `category_focus`: the
  share of the viewed products in the session's most viewed category (0 without views);
- `past_orders`: the customer's orders (ERP invoices, neither cancelled nor returns) before
  the session's day; `days_since_order`: days from the newest of them to the session's day
  (-1: none, or not signed in). The API takes them from the serving snapshot, which carries
  the customer models' newest counts of the same invoices.

Each training session is cut once, at a random point (seeded) before its first purchase, which is
what a live session looks like when it is scored; the label is whether a purchase followed. A
gradient-boosted classifier (LightGBM) is compared with a baseline that scores a session by its
cart alone. Explanations are TreeSHAP values (LightGBM's `pred_contrib`): per feature, how much it
moved this session's log-odds from the average.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import average_precision_score, f1_score, precision_recall_curve, roc_auc_score

FEATURES = (
    "viewed",
    "carted",
    "minutes",
    "view_price",
    "cart_price",
    "cart_value",
    "hour",
    "weekend",
    "known_customer",
    "app",
    "mobile_web",
    "categories",
    "category_focus",
    "past_orders",
    "days_since_order",
)
NEVER = -1.0  # days_since_order of a customer without orders (or a session not signed in)
PARAMS = {
    "objective": "binary",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_child_samples": 50,
    "verbose": -1,
    "seed": 7,
    "deterministic": True,
    "num_threads": 1,
}
ROUNDS = 400
KEPT = 50  # products the online store keeps per session and kind (streaming/online.py KEEP)


def session_prefixes(
    events: pd.DataFrame,
    prices: pd.Series,
    seed: int = 0,
    *,
    categories: pd.Series | None = None,
    orders: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per session: the features of a random prefix before its first purchase, the
    label (a purchase followed) and the session's start. `events`: session_id, event_time,
    event_type, product_id, customer_id (and device); `prices` and `categories`: by product
    id; `orders`: customer_id, order_date, one row per order (`prefix_features`)."""
    frame = events.sort_values(["session_id", "event_time"], kind="stable").reset_index(drop=True)
    frame["position"] = frame.groupby("session_id").cumcount()
    bought = frame["event_type"].eq("purchase")
    first_purchase = frame[bought].groupby("session_id")["position"].min()
    length = frame.groupby("session_id")["position"].max() + 1
    sessions = pd.DataFrame({"length": length})
    sessions["label"] = sessions.index.isin(first_purchase.index)
    # how many events the prefix keeps: at least one, and never the purchase itself
    limit = first_purchase.reindex(sessions.index).fillna(sessions["length"]).astype(int)
    sessions = sessions[limit >= 1]
    limit = limit[sessions.index]
    rng = np.random.default_rng(seed)
    sessions["cut"] = 1 + np.floor(rng.random(len(sessions)) * limit.to_numpy()).astype(int)
    frame = frame.merge(sessions[["cut"]], left_on="session_id", right_index=True)
    prefix = frame[frame["position"] < frame["cut"]]
    features = prefix_features(prefix, prices, categories=categories, orders=orders)
    features["label"] = sessions["label"].reindex(features.index).astype(int)
    features["start"] = frame.groupby("session_id")["event_time"].min().reindex(features.index)
    return features


def prefix_features(
    prefix: pd.DataFrame,
    prices: pd.Series,
    *,
    categories: pd.Series | None = None,
    orders: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """FEATURES per session of the events given (all of them count); without `categories`
    (product id -> category) or `orders` (customer_id, order_date) their features are 0 / -1."""
    by_session = prefix.groupby("session_id")
    first = by_session["event_time"].min()
    # the newest view or add to cart: what the online store keeps a time for
    touched = prefix[prefix["event_type"].isin(["product_view", "add_to_cart"])]
    newest = touched.groupby("session_id")["event_time"].max().reindex(first.index).fillna(first)
    price = prefix["product_id"].map(prices)
    views = prefix[prefix["event_type"].eq("product_view")].assign(price=price)
    # in the cart: added, and not removed since (as the store's ZADD / ZREM leave it)
    pair = ["session_id", "product_id"]
    added = prefix[prefix["event_type"].eq("add_to_cart")].groupby(pair)["event_time"].max()
    removed = prefix[prefix["event_type"].eq("remove_from_cart")].groupby(pair)["event_time"].max()
    last_removed = removed.reindex(added.index)
    kept = added[last_removed.isna() | (added > last_removed)].reset_index()
    cart = kept.assign(price=kept["product_id"].map(prices))
    distinct_views = views.drop_duplicates(["session_id", "product_id"])
    out = pd.DataFrame(index=first.index)
    out["viewed"] = distinct_views.groupby("session_id").size().clip(upper=KEPT)
    out["carted"] = cart.groupby("session_id").size()
    out["minutes"] = (newest - first).dt.total_seconds() / 60
    out["view_price"] = distinct_views.groupby("session_id")["price"].mean()
    out["cart_price"] = cart.groupby("session_id")["price"].mean()
    out["cart_value"] = cart.groupby("session_id")["price"].sum()
    out["hour"] = newest.dt.hour
    out["weekend"] = (newest.dt.dayofweek >= 5).astype(int)
    customer = by_session["customer_id"].max()
    out["known_customer"] = customer.notna().astype(int)
    device = by_session["device"].first() if "device" in prefix else pd.Series(dtype=object)
    device = device.reindex(out.index).fillna("")
    out["app"] = device.str.startswith("mobile_app").astype(int)
    out["mobile_web"] = device.eq("mobile_web").astype(int)
    out["categories"] = out["category_focus"] = 0.0
    if categories is not None:
        # of what the store holds: the viewed products and those still in the cart
        held = pd.concat([distinct_views[pair], cart[pair]])
        held = held.assign(category=held["product_id"].map(categories))
        out["categories"] = held.groupby("session_id")["category"].nunique()
        viewed = distinct_views.assign(category=distinct_views["product_id"].map(categories))
        shares = viewed.groupby("session_id")["category"].value_counts(normalize=True)
        out["category_focus"] = shares.groupby(level=0).max()
    out["past_orders"], out["days_since_order"] = _order_history(customer, first, orders)
    return out[list(FEATURES)].fillna(0.0).astype(float)


def _order_history(
    customer: pd.Series, first: pd.Series, orders: pd.DataFrame | None
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per session (its customer, its first event's time): the orders before its day and the
    days since the newest of them (NEVER without one), by binary search over the orders
    sorted by (customer, day)."""
    count = np.zeros(len(customer))
    since = np.full(len(customer), NEVER)
    if orders is None or orders.empty:
        return count, since
    span = 1 << 20  # days since 1970 stay below it until the year 4840
    day = pd.to_datetime(orders["order_date"]).to_numpy("datetime64[D]").astype(np.int64)
    keys = np.sort(orders["customer_id"].to_numpy(np.int64) * span + day)
    known = customer.notna().to_numpy()
    who = customer.fillna(-1).to_numpy(np.int64)[known]
    today = first.dt.tz_localize(None).to_numpy("datetime64[D]").astype(np.int64)[known]
    before = np.searchsorted(keys, who * span + today, "left")
    n = before - np.searchsorted(keys, who * span, "left")
    count[known] = n
    last = keys[np.maximum(before - 1, 0)] - who * span
    since[known] = np.where(n > 0, today - last, NEVER)
    return count, since


def live_features(
    views: Sequence[tuple[int, float]],
    cart: Sequence[tuple[int, float]],
    start_ms: float | None,
    prices: Mapping[int, float],
    known_customer: bool,
    *,
    categories: Mapping[int, str] | None = None,
    device: str | None = None,
    past_orders: int = 0,
    last_order: dt.date | None = None,
) -> dict[str, float]:
    """FEATURES of a live session from the online store: (product, epoch ms of its newest
    touch) viewed and in the cart, and the time of the session's first product event; the
    customer's orders before today and the newest one's date from the snapshot."""
    touched = [ms for _, ms in (*views, *cart)]
    newest = max(touched) if touched else (start_ms or 0.0)
    first = start_ms if start_ms is not None else min(touched, default=newest)
    when = dt.datetime.fromtimestamp(newest / 1000, dt.UTC)
    view_prices = [prices[p] for p, _ in views if p in prices]
    cart_prices = [prices[p] for p, _ in cart if p in prices]
    return {
        "viewed": float(min(len(views), KEPT)),
        "carted": float(len(cart)),
        "minutes": max(newest - first, 0.0) / 60_000,
        "view_price": sum(view_prices) / len(view_prices) if view_prices else 0.0,
        "cart_price": sum(cart_prices) / len(cart_prices) if cart_prices else 0.0,
        "cart_value": float(sum(cart_prices)),
        "hour": float(when.hour),
        "weekend": float(when.weekday() >= 5),
        "known_customer": float(known_customer),
        "app": float((device or "").startswith("mobile_app")),
        "mobile_web": float(device == "mobile_web"),
        **_live_categories(views, cart, categories or {}),
        "past_orders": float(past_orders),
        "days_since_order": float((_day(first) - last_order).days) if last_order else NEVER,
    }


def _day(ms: float) -> dt.date:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).date()


def _live_categories(
    views: Sequence[tuple[int, float]],
    cart: Sequence[tuple[int, float]],
    categories: Mapping[int, str],
) -> dict[str, float]:
    touched = {categories[p] for p, _ in (*views, *cart) if p in categories}
    viewed = [categories[p] for p, _ in views if p in categories]
    top = max((viewed.count(c) for c in set(viewed)), default=0)
    return {
        "categories": float(len(touched)),
        "category_focus": top / len(viewed) if viewed else 0.0,
    }


def predict_intent(
    model: lgb.Booster, features: Mapping[str, float], explain: bool = False
) -> tuple[float, dict[str, float] | None]:
    """One session's probability of a purchase, and with `explain` each feature's SHAP value
    (log-odds) and `bias` (the average), which add up to the model's raw score."""
    names = model.feature_name()  # the model's own (a snapshot's model may predate a feature)
    row = np.array([[features[name] for name in names]], dtype=np.float64)
    probability = float(model.predict(row)[0])
    if not explain:
        return probability, None
    values = model.predict(row, pred_contrib=True)[0]
    return probability, {name: float(v) for name, v in zip([*names, "bias"], values, strict=True)}


def cart_baseline(features: pd.DataFrame) -> npt.NDArray[np.float64]:
    """The baseline's score: the cart's value, then its size (a cart is what buyers have)."""
    return features["cart_value"].to_numpy() + features["carted"].to_numpy()


def fit(train: pd.DataFrame, validation: pd.DataFrame) -> lgb.Booster:
    """LightGBM on FEATURES, stopped early on the validation sessions' log loss."""
    data = lgb.Dataset(train[list(FEATURES)], train["label"])
    valid = lgb.Dataset(validation[list(FEATURES)], validation["label"], reference=data)
    return lgb.train(
        PARAMS,
        data,
        num_boost_round=ROUNDS,
        valid_sets=[valid],
        callbacks=[lgb.early_stopping(30, verbose=False)],
    )


@dataclass(frozen=True)
class Scores:
    roc_auc: float
    pr_auc: float
    f1: float
    positive_rate: float
    sessions: int

    def as_dict(self) -> dict[str, float]:
        return {
            "roc_auc": self.roc_auc,
            "pr_auc": self.pr_auc,
            "f1": self.f1,
            "positive_rate": self.positive_rate,
            "sessions": float(self.sessions),
        }


def best_threshold(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """The score threshold of the best F1 (chosen on validation, applied to test)."""
    precision, recall, thresholds = precision_recall_curve(labels, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))]) if len(thresholds) else 0.5


def score(labels: npt.ArrayLike, scores: npt.ArrayLike, threshold: float) -> Scores:
    labels = np.asarray(labels)
    scores = np.asarray(scores)
    both = len(np.unique(labels)) == 2
    return Scores(
        roc_auc=float(roc_auc_score(labels, scores)) if both else float("nan"),
        pr_auc=float(average_precision_score(labels, scores)) if both else float("nan"),
        f1=float(f1_score(labels, scores >= threshold, zero_division=0)),
        positive_rate=float(labels.mean()) if len(labels) else 0.0,
        sessions=len(labels),
    )


def explain(model: lgb.Booster, features: pd.DataFrame) -> pd.DataFrame:
    """TreeSHAP values per session and feature (log-odds), and `bias` (the average)."""
    contributions = model.predict(features[list(FEATURES)], pred_contrib=True)
    return pd.DataFrame(contributions, columns=[*FEATURES, "bias"], index=features.index)


def global_importance(model: lgb.Booster, features: pd.DataFrame) -> dict[str, float]:
    """Mean |SHAP| per feature, largest first."""
    shap = explain(model, features).drop(columns="bias").abs().mean()
    return {name: float(v) for name, v in shap.sort_values(ascending=False).items()}
