"""The blend of a customer's batch list with the live session, and how its share is tuned.

The recommendation API (serving/recommend.py) scores each product as
``(1 - share) * batch + share * session``: `batch` falls with the product's rank in the
customer's nightly list (1 for the first, towards 0 for the last), `session` is the session
part's score over its best one. `share` is the session's weight once the session has activity.

`tune_share` chooses it on held-out sessions, honestly: every part is as of the start of the
window it is scored on. The batch lists are the champion's, fitted before the window
(`gold.recommendation_backtests`, kept by the recommenders' validation and test fits); the
session model is refitted on the sessions before the window. The share is chosen on the
validation window; the test window after it reports the figure, untouched by the choice. The
task is the session models' (ml/session.py): for every prefix of a known customer's session,
is the next product in the top k?
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

SESSION_SHARE = 0.6  # the default, until a tuned share is published with the session model
SHARES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
K = 10  # what the storefront shows
SESSION_CANDIDATES = 20  # products the session model proposes per request


@dataclass
class Scored:
    """A product's score, summed over contributions, and the reason of the largest one."""

    score: float = 0.0
    best: float = -1.0
    reason: str = ""

    def add(self, value: float, reason: str) -> None:
        self.score += value
        if value > self.best:
            self.best, self.reason = value, reason


def blend(
    batch: Sequence[tuple[int, str]], session: Mapping[int, Scored], share: float
) -> dict[int, Scored]:
    """The batch list (products best first, with their reasons) blended with the session's
    scores; without session scores, the batch list alone."""
    share = share if session else 0.0
    combined: dict[int, Scored] = {}
    top = max((s.score for s in session.values()), default=0.0) or 1.0
    for product, scored in session.items():
        combined.setdefault(product, Scored()).add(share * scored.score / top, scored.reason)
    for rank, (product, reason) in enumerate(batch):
        value = 1.0 - rank / max(len(batch), 1)
        combined.setdefault(product, Scored()).add((1 - share) * value, reason)
    return combined


def ranked(scores: Mapping[int, Scored], k: int, fill: Sequence[int] = ()) -> list[int]:
    """The top k products with a positive score (ties: the lower product id first), then
    `fill` (the batch list: with a share of 1 it scores nothing, yet it still beats trending
    products for the slots the session leaves)."""
    best = sorted(
        ((p, s) for p, s in scores.items() if s.score > 0), key=lambda i: (-i[1].score, i[0])
    )
    found = [p for p, _ in best[:k]]
    return [*found, *(p for p in fill if p not in found)][:k]


@dataclass(frozen=True)
class Point:
    """One prediction to score: a known customer's session so far (oldest first) and the
    product it went on to."""

    customer_id: int
    prefix: tuple[int, ...]
    target: int


def points_of(
    sessions: Sequence[tuple[int, npt.NDArray[np.int64]]], limit: int, seed: int = 0
) -> list[Point]:
    """Every prefix of up to `limit` sessions (customer, products oldest first) drawn at
    random (seeded), with two products or more."""
    usable = [s for s in sessions if len(s[1]) > 1]
    if len(usable) > limit:
        chosen = np.random.default_rng(seed).choice(len(usable), limit, replace=False)
        usable = [usable[i] for i in sorted(chosen)]
    return [
        Point(customer, tuple(int(p) for p in products[:cut]), int(products[cut]))
        for customer, products in usable
        for cut in range(1, len(products))
    ]


@dataclass
class ShareScores:
    """HR@k and MRR@k of each share over a window's points."""

    hr: dict[float, float] = field(default_factory=dict)
    mrr: dict[float, float] = field(default_factory=dict)
    points: int = 0


def score_shares(
    points: Sequence[Point],
    lists: Mapping[int, Sequence[int]],
    session: Callable[[Sequence[int]], list[tuple[int, float]]],
    shares: Sequence[float] = SHARES,
    k: int = K,
) -> ShareScores:
    """Each share's HR@k and MRR@k: the customer's batch list (`lists`) blended with what the
    session part (`session(prefix)`: (product, score) best first) predicts."""
    hits = {s: 0 for s in shares}
    reciprocal = {s: 0.0 for s in shares}
    for point in points:
        batch = [(p, "") for p in lists.get(point.customer_id, ())]
        found = {p: Scored(v) for p, v in session(list(point.prefix))}
        for share in shares:
            top = ranked(blend(batch, found, share), k, fill=[p for p, _ in batch])
            if point.target in top:
                hits[share] += 1
                reciprocal[share] += 1.0 / (top.index(point.target) + 1)
    n = max(len(points), 1)
    return ShareScores(
        {s: hits[s] / n for s in shares}, {s: reciprocal[s] / n for s in shares}, len(points)
    )


def best_share(scores: ShareScores) -> float:
    """The share with the highest HR@k (ties: the higher MRR@k, then the default's side)."""
    return max(scores.hr, key=lambda s: (scores.hr[s], scores.mrr[s], -abs(s - SESSION_SHARE)))
