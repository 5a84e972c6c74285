"""Content-based recommendations: products described by their text and price, not by who bought
them, so a product nobody has bought yet still has neighbours (the cold-start answer for new
products) and `gold.similar_products` covers the whole catalogue (`similar_by_content`).

Each product becomes a vector: TF-IDF over its name, brand, category and subcategory (plus
whole-field tokens such as `cat_grocery`, so an exact category or brand match counts more than a
shared word), and a price-band block (log-price quantile band, one-hot with half weight on the
adjacent bands, scaled by `price_weight`) so a 2,000 PKR kettle is closer to a 2,500 one than to
a 40,000 one. Cosine similarity keeps the top-k neighbours per product (chunked, as in item CF).
A customer's score for a product is Σ over their history of weight × similarity.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.feature_extraction.text import TfidfVectorizer

from ml.interactions import Interactions
from ml.recommenders.base import Ids, SparseScored, normalise_rows
from ml.recommenders.neighbourhood import item_similarity, neighbours_frame, product_top

PRODUCT_TEXT_COLUMNS = ("name", "brand", "category", "subcategory")


def _slug(value: object) -> str:
    return re.sub(r"\W+", "_", str(value).lower()).strip("_")


def product_features(
    products: pd.DataFrame, price_bands: int = 5, price_weight: float = 0.3
) -> sp.csr_matrix:
    """One row per product (in the frame's order): [TF-IDF text | price band], unit length.

    `products` needs product_id, name, brand, category, subcategory, price (missing text is
    fine; a missing price gets no price block).
    """
    text = products.reindex(columns=list(PRODUCT_TEXT_COLUMNS)).fillna("").astype(str)
    docs = (
        text["name"]
        + " "
        + text["brand"]
        + " "
        + text["category"]
        + " "
        + text["subcategory"]
        + " brand_"
        + text["brand"].map(_slug)
        + " cat_"
        + text["category"].map(_slug)
        + " sub_"
        + text["subcategory"].map(_slug)
    )
    tfidf = TfidfVectorizer(sublinear_tf=True, min_df=1).fit_transform(docs.tolist())
    price = pd.to_numeric(products.get("price"), errors="coerce").to_numpy(dtype=np.float64)
    bands = np.zeros((len(products), price_bands))
    ok = np.isfinite(price) & (price > 0)
    if ok.any() and price_bands > 0:
        logp = np.log(price[ok])
        edges = np.quantile(logp, np.linspace(0, 1, price_bands + 1)[1:-1])
        band = np.searchsorted(edges, logp, side="right")
        rows = np.flatnonzero(ok)
        bands[rows, band] = 1.0
        bands[rows[band > 0], band[band > 0] - 1] = 0.5
        bands[rows[band < price_bands - 1], band[band < price_bands - 1] + 1] = 0.5
        bands /= np.maximum(np.linalg.norm(bands, axis=1, keepdims=True), 1e-12)
    block = sp.csr_matrix(bands * price_weight, dtype=np.float32)
    return normalise_rows(sp.csr_matrix(sp.hstack([tfidf.astype(np.float32), block])))


def content_similarity(
    products: pd.DataFrame, neighbours: int, price_bands: int = 5, price_weight: float = 0.3
) -> sp.csr_matrix:
    """Top-`neighbours` cosine similarity between the rows of `products` (in the frame's order)."""
    features = product_features(products, price_bands, price_weight)
    return item_similarity(sp.csr_matrix(features.T), neighbours, "cosine")


def similar_by_content(products: pd.DataFrame, k: int) -> pd.DataFrame:
    """The top-k content neighbours of every product: (product_id, rank, similar_product_id,
    similarity). Needs only the catalogue, so new products have neighbours too."""
    products = products.drop_duplicates("product_id").sort_values("product_id")
    ids = products["product_id"].to_numpy(dtype=np.int64)
    return neighbours_frame(content_similarity(products, k), ids)


class ContentBased(SparseScored):
    """Recommends products similar (by content) to a customer's history, over the catalogue."""

    name = "content"
    # products whose words and price band match score the same: at 1 M customers × 50,000
    # products, 63 % of the rows of a batch had a tie at the end of their 31 cells and were
    # scored in full again; with 15 more cells the same lists took 60 ms a batch, not 96–102
    top_spare = 0.5

    def __init__(
        self,
        products: pd.DataFrame,
        neighbours: int = 50,
        price_bands: int = 5,
        price_weight: float = 0.3,
    ) -> None:
        super().__init__()
        self.products = products.drop_duplicates("product_id").sort_values("product_id")
        self.neighbours = neighbours
        self.price_bands = price_bands
        self.price_weight = price_weight
        self.similarity: sp.csr_matrix = sp.csr_matrix((0, 0))

    def _fit(self, interactions: Interactions) -> None:
        catalogue = self.products["product_id"].to_numpy(dtype=np.int64)
        self.train = interactions.reindex_items(catalogue)
        self.item_ids = self.train.item_ids
        self.with_similarity()

    def with_similarity(self) -> ContentBased:
        """Computes the product similarity unless it is there: it depends on the catalogue
        alone, so a copy of a model that has it fits on new interactions without redoing it."""
        if self.similarity.shape[0] != len(self.products):
            self.similarity = content_similarity(
                self.products, self.neighbours, self.price_bands, self.price_weight
            )
        return self

    def _sparse_score(self, rows: Ids) -> sp.csr_matrix:
        assert self.train is not None
        return self.train.matrix[rows] @ self.similarity

    def _sparse_top(self, rows: Ids, n: int) -> sp.csr_matrix:
        assert self.train is not None
        return product_top(self.train.matrix[rows], self.similarity, n)

    def similar_items(self) -> pd.DataFrame:
        """(product_id, rank, similar_product_id, similarity) of the fitted neighbours."""
        return neighbours_frame(self.similarity, self.item_ids)
