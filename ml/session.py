"""Session-based recommenders: the next product of a live session from the products before it.

The models (Ludewig, Mauro, Latifi & Jannach, "Empirical analysis of session-based
recommendation algorithms", UMUAI 2021, whose nearest-neighbour methods match or beat neural
ones on e-commerce sessions):

- `popularity`: the products in most training sessions (the baseline);
- `rules`: association rules of pairs in one session, from the session's last product;
- `item_knn`: cosine similarity of products over sessions, from the last product;
- `vsknn`: vector-multiplied session kNN. The current session is a vector whose weights fall
  linearly from its newest product back; the training sessions most similar to it (dot
  product, among the most recent that share a product with it) vote for their products with
  their similarity.

The evaluation protocol is the paper's next-item task on a time split of whole sessions: for
every prefix of a test session, is the next product among the top 20 (HR@20), and at which rank
(MRR@20)? Sessions are sequences of distinct consecutive products viewed, carted or bought.

No well-kept library fits: `wsknn` (the one V-SKNN package on PyPI) is archived and keeps its
index in Python dicts; scipy's sparse products do it in a few lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

K = 20


def sessions_of(events: pd.DataFrame) -> list[npt.NDArray[np.int64]]:
    """Product sequences per session (columns session_id, event_time, product_id), ordered by
    the session's first event, consecutive repeats dropped; sessions of one product kept (they
    train, they cannot be tested)."""
    return [products for _, products in keyed_sessions(events)]


def keyed_sessions(events: pd.DataFrame) -> list[tuple[str, npt.NDArray[np.int64]]]:
    """`sessions_of` with each session's id."""
    frame = events.dropna(subset=["product_id"]).sort_values(["session_id", "event_time"])
    products = frame["product_id"].to_numpy(np.int64)
    session = frame["session_id"].to_numpy()
    keep = np.ones(len(frame), dtype=bool)
    keep[1:] = (session[1:] != session[:-1]) | (products[1:] != products[:-1])
    frame = frame[keep]
    starts = frame.groupby("session_id", sort=False)["event_time"].transform("min")
    frame = frame.assign(start=starts).sort_values(["start", "session_id", "event_time"])
    groups = frame.groupby(["start", "session_id"], sort=False)["product_id"]
    return [(session, g.to_numpy(np.int64)) for (_, session), g in groups]


class SessionModel:
    name = "session"

    def fit(self, sessions: Sequence[npt.NDArray[np.int64]]) -> SessionModel:
        raise NotImplementedError

    def recommend(self, prefix: Sequence[int], k: int = K) -> list[tuple[int, float]]:
        """(product, score) best first for a session whose products so far are `prefix`
        (oldest first)."""
        raise NotImplementedError


def _index(sessions: Sequence[npt.NDArray[np.int64]]) -> tuple[sp.csr_matrix, np.ndarray]:
    """The sessions × products binary matrix and the product id of each column."""
    items = np.unique(np.concatenate(sessions)) if sessions else np.array([], np.int64)
    rows = np.repeat(np.arange(len(sessions)), [len(s) for s in sessions])
    cols = np.searchsorted(items, np.concatenate(sessions)) if sessions else np.array([], int)
    matrix = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (rows, cols)), shape=(len(sessions), len(items))
    )
    matrix.sum_duplicates()
    matrix.data[:] = 1.0  # a product twice in a session counts once
    return matrix, items


def _top(scores: np.ndarray, items: np.ndarray, k: int) -> list[tuple[int, float]]:
    positive = np.flatnonzero(scores > 0)
    if not len(positive):
        return []
    best = positive[np.argsort(-scores[positive], kind="stable")[:k]]
    return [(int(items[i]), float(scores[i])) for i in best]


class Popular(SessionModel):
    name = "popularity"  # the baseline, named like the recommenders' (the marts compare to it)

    def fit(self, sessions: Sequence[npt.NDArray[np.int64]]) -> Popular:
        matrix, self.items = _index(sessions)
        self.scores = np.asarray(matrix.sum(axis=0)).ravel()
        self.ranked = _top(self.scores, self.items, 200)
        return self

    def recommend(self, prefix: Sequence[int], k: int = K) -> list[tuple[int, float]]:
        return self.ranked[:k]


class _FromLastProduct(SessionModel):
    """Scores from a product × product matrix, looked up from the session's last product."""

    similarity: sp.csr_matrix
    items: np.ndarray

    def recommend(self, prefix: Sequence[int], k: int = K) -> list[tuple[int, float]]:
        if not prefix:
            return []
        at = np.searchsorted(self.items, prefix[-1])
        if at == len(self.items) or self.items[at] != prefix[-1]:
            return []
        # the row's stored entries only: no dense vector of the whole catalogue per request
        start, end = self.similarity.indptr[at], self.similarity.indptr[at + 1]
        columns, scores = self.similarity.indices[start:end], self.similarity.data[start:end]
        keep = (columns != at) & (scores > 0)
        columns, scores = columns[keep], scores[keep]
        best = np.lexsort((columns, -scores))[:k]  # ties: the lower product id first
        chosen = zip(columns[best], scores[best], strict=True)
        return [(int(self.items[c]), float(v)) for c, v in chosen]


class Rules(_FromLastProduct):
    """Pairs bought, viewed or carted in one session, counted once per session."""

    name = "rules"

    def fit(self, sessions: Sequence[npt.NDArray[np.int64]]) -> Rules:
        matrix, self.items = _index(sessions)
        self.similarity = (matrix.T @ matrix).tocsr()
        return self


class ItemKNN(_FromLastProduct):
    """Cosine similarity of the products' session vectors."""

    name = "item_knn"

    def fit(self, sessions: Sequence[npt.NDArray[np.int64]]) -> ItemKNN:
        matrix, self.items = _index(sessions)
        co = (matrix.T @ matrix).tocsr()
        norms = np.sqrt(np.asarray(matrix.sum(axis=0)).ravel())
        inverse = sp.diags(1.0 / np.maximum(norms, 1e-9))
        self.similarity = (inverse @ co @ inverse).tocsr()
        return self


@dataclass
class VSKNN(SessionModel):
    """Vector-multiplied session kNN: `neighbours` sessions, chosen among the `sample` most
    recent that share a product with the current one."""

    neighbours: int = 100
    sample: int = 1_000
    name = "vsknn"

    def fit(self, sessions: Sequence[npt.NDArray[np.int64]]) -> VSKNN:
        # sessions come oldest first: a higher row is a more recent session
        self.matrix, self.items = _index(sessions)
        self.by_product = self.matrix.tocsc()
        return self

    def recommend(self, prefix: Sequence[int], k: int = K) -> list[tuple[int, float]]:
        if not len(prefix):
            return []
        at = np.searchsorted(self.items, prefix)
        known = (at < len(self.items)) & (self.items[np.minimum(at, len(self.items) - 1)] == prefix)
        if not known.any():
            return []
        # linear decay: the newest product weighs 1, each older one 1/len less
        weights = (np.arange(1, len(prefix) + 1) / len(prefix))[known].astype(np.float32)
        columns = at[known]
        query = np.zeros(len(self.items), np.float32)
        np.add.at(query, columns, weights)
        index = self.by_product
        sharing = [
            index.indices[index.indptr[c] : index.indptr[c + 1]][-self.sample :] for c in columns
        ]
        rows = np.unique(np.concatenate(sharing))[-self.sample :]  # the most recent
        similarity = self.matrix[rows] @ query
        if len(rows) > self.neighbours:
            best = np.argpartition(-similarity, self.neighbours)[: self.neighbours]
            rows, similarity = rows[best], similarity[best]
        votes = np.asarray(self.matrix[rows].T @ similarity).ravel()
        if known[-1]:
            votes[at[-1]] = 0.0  # consecutive repeats are dropped: never the last one again
        return _top(votes, self.items, k)


def models() -> list[SessionModel]:
    return [Popular(), Rules(), ItemKNN(), VSKNN()]


@dataclass(frozen=True)
class NextItemScores:
    model: str
    hr: float
    mrr: float
    predictions: int


def evaluate_next_item(
    model: SessionModel, sessions: Iterable[npt.NDArray[np.int64]], k: int = K
) -> NextItemScores:
    """HR@k and MRR@k over every prefix of every session with two products or more."""
    hits, reciprocal, count = 0, 0.0, 0
    for session in sessions:
        for cut in range(1, len(session)):
            ranked = [p for p, _ in model.recommend(session[:cut].tolist(), k)]
            count += 1
            target = int(session[cut])
            if target in ranked:
                hits += 1
                reciprocal += 1.0 / (ranked.index(target) + 1)
    return NextItemScores(model.name, hits / max(count, 1), reciprocal / max(count, 1), count)
