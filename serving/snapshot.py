"""The serving snapshot: everything the recommendation API needs from gold, as one versioned
artefact the API holds in memory.

Layout under ``<LAKE_URI>/serving``: ``snapshots/<version>/`` holds one Parquet file per part and
``manifest.json`` (written last: a version without it is incomplete and never loaded);
``CURRENT`` names the newest complete version (replaced last, so a reader sees the old or the new
version, never half of one). Versions are UTC timestamps, so they sort by age.

The parts: the champion's lists per customer (gold.customer_recommendations), product neighbours
(gold.similar_products), pairs bought together (gold.product_associations), trending products
nationally and per city (gold.trending_products), the sellable catalogue and the customers'
cities (current rows of gold.dim_product and gold.dim_customer).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from lakehouse.core.lake import Lake
from ml.blend import SESSION_SHARE
from ml.experiments import decisions, serving_policy

MANIFEST = "manifest.json"
CURRENT = "CURRENT"
KEEP_VERSIONS = 5
SESSION_MODEL = "session_recommender"  # the registry's name for the next-item champion
SESSION_FILE = "session_model.joblib"
INTENT_MODEL = "purchase_intent"  # the registry's name for the purchase-intent model
INTENT_FILE = "intent_model.joblib"


class SnapshotMissing(RuntimeError):
    """No complete snapshot (or a gold table it needs) exists yet; the message says what to run."""


def _read(lake: Lake, table: str, columns: list[str], where: Any = None) -> tuple[pa.Table, int]:
    delta = lake.open(table)
    if delta is None:
        raise SnapshotMissing(
            f"{table} does not exist yet: train the recommenders first (`lakehouse ml train`)"
        )
    data = delta.to_pyarrow_dataset().to_table(columns=columns, filter=where)
    return data, delta.version()


def _customer_lists(lake: Lake) -> tuple[pa.Table, int]:
    columns = ["customer_id", "rank", "product_id", "score", "reason", "model", "model_version"]
    return _read(lake, "gold.customer_recommendations", columns)


def _similar(lake: Lake) -> tuple[pa.Table, int]:
    columns = ["product_id", "rank", "similar_product_id", "similarity", "method"]
    return _read(lake, "gold.similar_products", columns)


def _bought_together(lake: Lake) -> tuple[pa.Table, int]:
    """Pair rules only (one product → another), as (product_id, other_product_id, confidence,
    lift, rank)."""
    rules, version = _read(
        lake,
        "gold.product_associations",
        ["antecedent", "consequent", "size", "confidence", "lift"],
        pc.field("size") == 2,
    )
    pairs = pa.table(
        {
            "product_id": pc.list_element(rules["antecedent"], 0).cast(pa.int64()),
            "other_product_id": rules["consequent"].cast(pa.int64()),
            "confidence": rules["confidence"],
            "lift": rules["lift"],
        }
    )
    return pairs, version


def _trending(lake: Lake) -> tuple[pa.Table, int]:
    columns = ["scope", "scope_value", "product_id", "rank", "trending_score"]
    return _read(lake, "gold.trending_products", columns, pc.field("scope") != "area")


def _catalogue(lake: Lake) -> tuple[pa.Table, int]:
    columns = ["product_id", "product_name", "brand_name", "category_name", "list_price"]
    current = (pc.field("is_current") == True) & (pc.field("is_active") == True)  # noqa: E712
    data, version = _read(lake, "gold.dim_product", columns, current)
    return data.set_column(4, "list_price", data["list_price"].cast(pa.float64())), version


def _customers(lake: Lake) -> tuple[pa.Table, int]:
    """Each customer's city and, from the newest cutoff of the customer models' features (no
    scan of the sales fact on every publish), their orders to date and the newest one's date:
    purchase intent's `past_orders` and `days_since_order`."""
    columns = ["customer_id", "city_name"]
    current = pc.field("is_current") == True  # noqa: E712
    customers, version = _read(lake, "gold.dim_customer", columns, current)
    features = lake.open("gold.customer_features")
    if features is None:  # the customer models not trained yet: no history to serve
        return customers, version
    dataset = features.to_pyarrow_dataset()
    newest = pc.max(dataset.to_table(columns=["cutoff_date"])["cutoff_date"])
    ordered = (pc.field("cutoff_date") == newest) & (pc.field("frequency") > 0)
    history = dataset.to_table(
        columns=["customer_id", "cutoff_date", "frequency", "recency_days"], filter=ordered
    )
    cutoff = history["cutoff_date"].to_numpy().astype("datetime64[D]")
    days = history["recency_days"].to_numpy().astype("timedelta64[D]")
    orders = pa.table(
        {
            "customer_id": history["customer_id"],
            "orders": pc.cast(history["frequency"], pa.int64()),
            "last_order_date": pa.array(cutoff - days, pa.date32()),
        }
    )
    return customers.join(orders, "customer_id", join_type="left outer"), version


PARTS: dict[str, tuple[str, Callable[[Lake], tuple[pa.Table, int]]]] = {
    "customer_lists": ("gold.customer_recommendations", _customer_lists),
    "similar": ("gold.similar_products", _similar),
    "bought_together": ("gold.product_associations", _bought_together),
    "trending": ("gold.trending_products", _trending),
    "catalogue": ("gold.dim_product", _catalogue),
    "customers": ("gold.dim_customer", _customers),
}


def new_version(now: dt.datetime | None = None) -> str:
    when = now or dt.datetime.now(dt.UTC)
    return f"{when:%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:6]}"


def publish_snapshot(lake: Lake) -> dict[str, Any]:
    """Write a new snapshot from gold and make it current; its manifest."""
    fs, root = lake.filesystem()
    version = new_version()
    folder = f"{root}/serving/snapshots/{version}"
    fs.create_dir(folder, recursive=True)
    parts, sources = {}, {}
    champion: dict[str, Any] = {}
    for part, (table, read) in PARTS.items():
        data, delta_version = read(lake)
        if part == "customer_lists":
            if data.num_rows == 0:
                raise SnapshotMissing(
                    "gold.customer_recommendations is empty: train the recommenders first"
                )
            champion = {
                "model": data["model"][0].as_py(),
                "model_version": data["model_version"][0].as_py(),
            }
            data = data.drop_columns(["model", "model_version"])
        pq.write_table(data, f"{folder}/{part}.parquet", filesystem=fs)
        parts[part] = data.num_rows
        sources[table] = delta_version
    manifest = {
        "version": version,
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "champion": champion,
        "session_model": _copy_session_model(lake, fs, folder),
        "intent_model": _copy_intent_model(lake, fs, folder),
        "experiments": _decided_experiments(lake),
        "rows": parts,
        "sources": sources,  # the Delta versions read
    }
    _write_text(fs, f"{folder}/{MANIFEST}", json.dumps(manifest, indent=2))
    _write_text(fs, f"{root}/serving/{CURRENT}", version)
    _prune(fs, f"{root}/serving/snapshots", keep=version)
    return manifest


def _copy_session_model(lake: Lake, fs: pafs.FileSystem, folder: str) -> dict[str, Any] | None:
    """The newest session recommender of the registry into the snapshot; None when none was
    trained (the API then uses product neighbours for the session)."""
    record = _copy_model(lake, fs, SESSION_MODEL, f"{folder}/{SESSION_FILE}")
    if record is None:
        return None
    return {
        "algorithm": record.params.get("algorithm"),
        "version": record.version,
        "session_share": record.params.get("session_share"),  # tuned, when it could be
    }


def _copy_intent_model(lake: Lake, fs: pafs.FileSystem, folder: str) -> dict[str, Any] | None:
    """The newest purchase-intent model into the snapshot; None when none was trained (the API
    then answers its intent endpoint with 503 and the reason)."""
    record = _copy_model(lake, fs, INTENT_MODEL, f"{folder}/{INTENT_FILE}")
    if record is None:
        return None
    return {
        "version": record.version,
        "threshold": record.params.get("threshold"),
        "features": record.params.get("features"),
    }


def _decided_experiments(lake: Lake) -> dict[str, dict[str, Any]]:
    """The concluded A/B experiments of the registry (ml/experiments.py): the API serves them
    no more, and serves everyone the newest promoted variant."""
    from ml.registry import ModelRegistry

    root = lake.path("models")
    if "://" in root:
        return {}  # the registry is local-only (docs/ml.md)
    return decisions(ModelRegistry(root)) if Path(root).is_dir() else {}


def _copy_model(lake: Lake, fs: pafs.FileSystem, name: str, target: str) -> Any:
    """The newest version of `name` in the registry (<LAKE_URI>/models) copied to `target`; its
    record, or None when there is none."""
    from ml.registry import ARTEFACT, ModelRegistry

    root = lake.path("models")
    if "://" in root:
        return None  # the registry is local-only (docs/ml.md)
    registry = ModelRegistry(root)
    if not registry.versions(name):
        return None
    record = registry.get(name)
    with open(f"{record.path}/{ARTEFACT}", "rb") as artefact:
        data = artefact.read()
    with fs.open_output_stream(target) as out:
        out.write(data)
    return record


def _write_text(fs: pafs.FileSystem, path: str, text: str) -> None:
    # a local rename is atomic; an S3 put is atomic by itself
    temporary = path if isinstance(fs, pafs.S3FileSystem) else f"{path}.tmp"
    with fs.open_output_stream(temporary) as out:
        out.write(text.encode())
    if temporary != path:
        fs.move(temporary, path)


def _prune(fs: pafs.FileSystem, folder: str, keep: str) -> None:
    """Delete all but the newest KEEP_VERSIONS versions (an API may still be loading one of
    those; it is never the current one)."""
    found = fs.get_file_info(pafs.FileSelector(folder))
    versions = sorted(i.base_name for i in found if i.type == pafs.FileType.Directory)
    for old in versions[:-KEEP_VERSIONS]:
        if old != keep:
            fs.delete_dir(f"{folder}/{old}")


def current_version(lake: Lake) -> str | None:
    fs, root = lake.filesystem()
    try:
        with fs.open_input_stream(f"{root}/serving/{CURRENT}") as stream:
            return stream.read().decode().strip() or None
    except FileNotFoundError:
        return None


# -- the snapshot in memory -------------------------------------------------------------------


@dataclass(frozen=True)
class Grouped:
    """Rows grouped by an integer key, for O(log n) lookups without a Python object per row:
    the keys sorted, and each key's rows as one slice of the value arrays."""

    keys: npt.NDArray[np.int64]
    starts: npt.NDArray[np.int64]
    values: dict[str, np.ndarray]

    @classmethod
    def of(cls, table: pa.Table, key: str, order: str) -> Grouped:
        """Group by `key`, rows in each group sorted by `order` (ascending)."""
        frame = {name: table[name].to_numpy(zero_copy_only=False) for name in table.column_names}
        sort = np.lexsort((frame[order], frame[key]))
        keys = frame[key][sort].astype(np.int64)
        unique, starts = np.unique(keys, return_index=True)
        values = {n: v[sort] for n, v in frame.items() if n != key}
        return cls(unique, np.append(starts, len(keys)).astype(np.int64), values)

    def rows(self, key: int) -> slice:
        at = int(np.searchsorted(self.keys, key))
        if at == len(self.keys) or self.keys[at] != key:
            return slice(0, 0)
        return slice(int(self.starts[at]), int(self.starts[at + 1]))

    def __contains__(self, key: int) -> bool:
        return self.rows(key).stop > 0


@dataclass(frozen=True)
class Product:
    product_id: int
    name: str
    brand: str
    category: str
    price: float


class Snapshot:
    """One loaded snapshot version, read-only: lookups for the recommendation API."""

    def __init__(
        self,
        manifest: dict[str, Any],
        parts: dict[str, pa.Table],
        session_model: Any = None,
        intent_model: Any = None,
    ) -> None:
        self.manifest = manifest
        self.session_model = session_model  # ml.session.SessionModel, or None
        self.intent_model = intent_model  # a LightGBM Booster (ml/intent.py), or None
        tuned = (manifest.get("session_model") or {}).get("session_share")
        self.session_share: float = SESSION_SHARE if tuned is None else float(tuned)
        self.decided_experiments: dict[str, dict[str, Any]] = manifest.get("experiments") or {}
        self.policy = serving_policy(self.decided_experiments)  # a promoted variant, or None
        self.version: str = manifest["version"]
        self.created_at = dt.datetime.fromisoformat(manifest["created_at"])
        self.lists = Grouped.of(parts["customer_lists"], "customer_id", "rank")
        similar = parts["similar"]
        self.similar = {
            method: Grouped.of(similar.filter(pc.field("method") == method), "product_id", "rank")
            for method in pc.unique(similar["method"]).to_pylist()
        }
        self.together = Grouped.of(
            parts["bought_together"].append_column(
                "order", pc.negate(parts["bought_together"]["confidence"])
            ),
            "product_id",
            "order",
        )
        catalogue = parts["catalogue"].to_pylist()
        self.products = {
            row["product_id"]: Product(
                row["product_id"],
                row["product_name"],
                row["brand_name"],
                row["category_name"],
                row["list_price"],
            )
            for row in catalogue
        }
        customers = parts["customers"]
        ids = customers["customer_id"].to_pylist()
        self.cities = dict(zip(ids, customers["city_name"].to_pylist(), strict=True))
        # (orders to date, the newest one's date) of customers who ordered (older snapshots
        # carry none)
        self.orders: dict[int, tuple[int, dt.date]] = {}
        if "orders" in customers.column_names:
            self.orders = {
                c: (n, last)
                for c, n, last in zip(
                    ids,
                    customers["orders"].to_pylist(),
                    customers["last_order_date"].to_pylist(),
                    strict=True,
                )
                if n
            }
        self.trending: dict[str, list[int]] = {}
        trending = parts["trending"].sort_by([("scope_value", "ascending"), ("rank", "ascending")])
        for scope, value, product in zip(
            trending["scope"].to_pylist(),
            trending["scope_value"].to_pylist(),
            trending["product_id"].to_pylist(),
            strict=True,
        ):
            if product in self.products:  # sellable only
                name = f"city:{value}" if scope == "city" else "national"  # or "global"
                self.trending.setdefault(name, []).append(product)

    def popular(self, city: str | None = None) -> list[int]:
        """Trending products in the city (then nationally)."""
        local = self.trending.get(f"city:{city}", []) if city else []
        national = self.trending.get("national", [])
        return list(dict.fromkeys([*local, *national]))

    def known_customer(self, customer_id: int) -> bool:
        return customer_id in self.cities or customer_id in self.lists


def load_snapshot(lake: Lake, version: str | None = None) -> Snapshot:
    """The snapshot `version` (default: the current one) read into memory."""
    version = version or current_version(lake)
    if version is None:
        raise SnapshotMissing(
            "no serving snapshot has been published: materialise serving/snapshot "
            "(`lakehouse serve --publish` or the Dagster asset)"
        )
    fs, root = lake.filesystem()
    folder = f"{root}/serving/snapshots/{version}"
    try:
        with fs.open_input_stream(f"{folder}/{MANIFEST}") as stream:
            manifest = json.loads(stream.read())
    except FileNotFoundError as exc:
        raise SnapshotMissing(f"snapshot {version} is incomplete or was deleted") from exc
    parts = {part: pq.read_table(f"{folder}/{part}.parquet", filesystem=fs) for part in PARTS}
    models = {}
    for entry, file in (("session_model", SESSION_FILE), ("intent_model", INTENT_FILE)):
        models[entry] = None
        if manifest.get(entry):
            with fs.open_input_stream(f"{folder}/{file}") as stream:
                models[entry] = joblib.load(io.BytesIO(stream.read()))
    return Snapshot(manifest, parts, **models)
