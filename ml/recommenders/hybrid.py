"""The hybrid recommender: what feeds gold.customer_recommendations.

No single model is right for every customer and product, so the hybrid combines fitted models
and adds the rules a retailer expects:

- Blend: each component proposes `candidates` products per customer; its scores are min-max
  normalised per customer (models score on different scales: ALS dot products, CF similarity
  sums, popularity counts) and summed with the component's weight. The reason of a slot is the
  component that contributed most (`blend:<name>`).
- Cold-start customers (no history in training): the `cold_start` model alone, typically
  `Trending` or `GroupPopularity` by city/segment, which can score customers it never saw
  (`cold_start:<name>`).
- Cold-start products (in the catalogue, no interactions yet): up to `new_product_slots` slots
  go to the new products most similar in content to the customer's history
  (`new_product:<content model name>`), scored `new_product_weight` × normalised similarity.
- Business filters: only `rules.allowed_product_ids` (active and in stock) are candidates.
  Whether a product the customer bought comes back is left to the models and the evaluation
  (`all` counts repeat purchases), not to a hand-written list of repeatable categories.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from ml.interactions import Interactions
from ml.recommenders.base import Ids, Recommendations, Recommender


@dataclass(frozen=True)
class BusinessRules:
    """Filters applied to every recommendation.

    allowed_product_ids: active and in-stock products (None = everything is allowed).
    """

    allowed_product_ids: npt.NDArray[np.int64] | None = None


def _long(recs: Recommendations, source: str) -> pd.DataFrame:
    frame = recs.to_frame()
    frame["source"] = source
    return frame.drop(columns=["rank", "reason"], errors="ignore")


def _minmax_per_customer(frame: pd.DataFrame) -> pd.Series:
    g = frame.groupby("customer_id")["score"]
    lo, hi = g.transform("min"), g.transform("max")
    span = hi - lo
    return ((frame["score"] - lo) / span.where(span > 0)).fillna(1.0)


class Hybrid(Recommender):
    """Weighted blend of fitted recommenders with cold-start rules and business filters.

    `components` maps a name to (fitted recommender, weight). `fit(interactions)` only records
    who and what has history (the components are fitted beforehand, possibly on other inputs).
    """

    name = "hybrid"

    def __init__(
        self,
        components: Mapping[str, tuple[Recommender, float]],
        cold_start: Recommender | None = None,
        content: Recommender | None = None,
        rules: BusinessRules | None = None,
        candidates: int = 100,
        new_product_slots: int = 1,
        new_product_weight: float = 0.5,
        chunk_customers: int = 20_000,
    ) -> None:
        super().__init__()
        if not components:
            raise ValueError("a hybrid needs at least one component")
        self.components = dict(components)
        self.cold_start = cold_start
        self.content = content
        self.rules = rules or BusinessRules()
        self.candidates = candidates
        self.new_product_slots = new_product_slots
        self.new_product_weight = new_product_weight
        self.chunk_customers = chunk_customers
        self.new_products: npt.NDArray[np.int64] = np.empty(0, dtype=np.int64)

    def _fit(self, interactions: Interactions) -> None:
        known = interactions.item_ids[interactions.item_user_counts() > 0]
        catalogue = [interactions.item_ids] + [m.item_ids for m, _ in self.components.values()]
        if self.content is not None:
            catalogue.append(self.content.item_ids)
        self.item_ids = np.unique(np.concatenate(catalogue))
        self.new_products = np.setdiff1d(self.item_ids, known)

    def _score(self, rows: Ids, customer_ids: Ids) -> np.ndarray:
        raise NotImplementedError("Hybrid.recommend blends component lists instead")

    def _allowed(self, base: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        allowed = self.rules.allowed_product_ids
        return base if allowed is None else np.intersect1d(base, np.asarray(allowed))

    def recommend(
        self,
        customer_ids: npt.ArrayLike,
        k: int = 10,
        exclude_seen: bool = True,
        *,
        items: npt.ArrayLike | None = None,
        exclude: pd.DataFrame | None = None,
    ) -> Recommendations:
        """Top k per customer with scores and a reason per slot (see the module docstring);
        repeated customer ids are answered once. Customers are processed `chunk_customers` at
        a time, so the long candidate frames stay bounded (chunk × candidates × components).
        `exclude`: (customer_id, product_id) pairs no component may propose."""
        if self.train is None:
            raise RuntimeError("Hybrid is not fitted")
        customers = pd.unique(np.asarray(customer_ids, dtype=np.int64).ravel())
        universe = self.item_ids if items is None else np.intersect1d(self.item_ids, items)
        allowed = self._allowed(universe)
        parts = [
            self._recommend_chunk(
                customers[i : i + self.chunk_customers], k, exclude_seen, allowed, exclude
            )
            for i in range(0, len(customers), self.chunk_customers)
        ] or [self._recommend_chunk(customers, k, exclude_seen, allowed, exclude)]
        return Recommendations(
            customers,
            np.concatenate([p.product_ids for p in parts]),
            np.concatenate([p.scores for p in parts]),
            np.concatenate([p.reasons for p in parts if p.reasons is not None]),
        )

    def _recommend_chunk(
        self,
        customers: Ids,
        k: int,
        exclude_seen: bool,
        allowed: Ids,
        exclude: pd.DataFrame | None = None,
    ) -> Recommendations:
        assert self.train is not None
        warm = customers[self.train.user_rows(customers) >= 0]
        cold = np.setdiff1d(customers, warm)
        n = max(self.candidates, k)

        regular = np.setdiff1d(allowed, self.new_products)
        parts = []
        for source, (model, weight) in self.components.items():
            frame = _long(
                model.recommend(warm, n, exclude_seen, items=regular, exclude=exclude), source
            )
            frame["score"] = weight * _minmax_per_customer(frame)
            parts.append(frame)
        blend = pd.concat(parts, ignore_index=True)
        blend = blend.sort_values("score", ascending=False, kind="stable")
        dominant = blend.drop_duplicates(["customer_id", "product_id"])[
            ["customer_id", "product_id", "source"]
        ]
        blend = (
            blend.groupby(["customer_id", "product_id"], as_index=False)["score"]
            .sum()
            .merge(dominant, on=["customer_id", "product_id"])
        )
        blend["reason"] = "blend:" + blend["source"]
        frames = [blend.drop(columns="source")]

        new_allowed = np.intersect1d(allowed, self.new_products)
        if self.content is not None and self.new_product_slots > 0 and len(new_allowed):
            new = _long(
                self.content.recommend(
                    warm, self.new_product_slots, True, items=new_allowed, exclude=exclude
                ),
                "",
            )
            new["score"] = (
                self.new_product_weight
                * new["score"].clip(lower=0)
                / max(float(new["score"].max()) if len(new) else 1.0, 1e-12)
            )
            new = new[new["score"] > 0].assign(reason=f"new_product:{self.content.name}")
            frames.append(new.drop(columns="source"))
        if self.cold_start is not None and len(cold):
            cs = _long(
                self.cold_start.recommend(cold, n, exclude_seen, items=allowed, exclude=exclude),
                "",
            )
            frames.append(
                cs.assign(reason=f"cold_start:{self.cold_start.name}").drop(columns="source")
            )

        merged = pd.concat(frames, ignore_index=True)
        return self._assemble(customers, merged, k)

    def _assemble(self, customers: Ids, frame: pd.DataFrame, k: int) -> Recommendations:
        """Keep the reserved new-product slots, fill the rest by score, order by score."""
        is_new = frame["reason"].str.startswith("new_product:")
        regular = frame[~is_new].sort_values(["customer_id", "score"], ascending=[True, False])
        regular = regular.drop_duplicates(["customer_id", "product_id"])
        new = frame[is_new].sort_values(["customer_id", "score"], ascending=[True, False])
        n_new = new.groupby("customer_id").size().clip(upper=self.new_product_slots)
        n_regular = regular.groupby("customer_id").size()
        keep_regular = (k - n_new.reindex(n_regular.index, fill_value=0)).clip(lower=0)
        regular = regular[
            regular.groupby("customer_id").cumcount().to_numpy()
            < keep_regular.reindex(regular["customer_id"]).to_numpy()
        ]
        kept = regular.groupby("customer_id").size()
        keep_new = (k - kept.reindex(n_new.index, fill_value=0)).clip(lower=0)
        new = new[
            new.groupby("customer_id").cumcount().to_numpy()
            < keep_new.reindex(new["customer_id"]).to_numpy()
        ]
        final = pd.concat([regular, new]).sort_values(
            ["customer_id", "score"], ascending=[True, False], kind="stable"
        )
        final["slot"] = final.groupby("customer_id").cumcount()
        final = final[final["slot"] < k]
        index = pd.Index(customers).get_indexer(final["customer_id"])
        ids = np.full((len(customers), k), -1, dtype=np.int64)
        scores = np.full((len(customers), k), np.nan)
        reasons = np.full((len(customers), k), None, dtype=object)
        ok = index >= 0
        slot = final["slot"].to_numpy()[ok]
        ids[index[ok], slot] = final["product_id"].to_numpy()[ok]
        scores[index[ok], slot] = final["score"].to_numpy()[ok]
        reasons[index[ok], slot] = final["reason"].to_numpy()[ok]
        return Recommendations(customers, ids, scores, reasons)
