"""Recommenders: the shared contract, quality against the popularity baseline on data with known
latent structure, and the rules (trending, cold start, business filters, association rules)."""

from __future__ import annotations

import copy
import types
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from implicit.cpu.topk import topk

from ml.evaluation import Window, time_split
from ml.interactions import Interactions
from ml.recommenders import (
    ALS,
    BPR,
    EASE,
    BoughtWith,
    BusinessRules,
    BuyAgain,
    ContentBased,
    GroupPopularity,
    Hybrid,
    ItemKNN,
    Popularity,
    Recommender,
    Trending,
    UserKNN,
    association_rules,
    factorization,
    frequently_bought_together,
    item_similarity,
    top_k,
)
from ml.recommenders.base import kth_of_packed, place_in_run, top_k_of_cells, top_k_sparse
from ml.synthetic import clustered_interactions

CUTOFF = "2025-02-20"  # 50 of the 60 synthetic days train, the last 10 test
CLUSTER_NAMES = ["Grocery", "Electronics", "Fashion", "Home & Kitchen", "Toys & Baby"]


@pytest.fixture(scope="module")
def data() -> dict[str, object]:
    synthetic = clustered_interactions(seed=7)
    train, test = time_split(synthetic.events, CUTOFF)
    interactions = Interactions.from_arrays(
        train["customer_id"], train["product_id"], train["weight"], train["at"]
    )
    products = pd.DataFrame(
        {
            "product_id": np.arange(1, len(synthetic.item_cluster) + 1),
            "category": [CLUSTER_NAMES[c] for c in synthetic.item_cluster],
        }
    )
    products["name"] = [
        f"item {i} {c.split()[0].lower()} thing" for i, c in enumerate(products["category"])
    ]
    products["brand"] = "Acme"
    products["subcategory"] = products["category"] + " misc"
    products["price"] = 1000.0
    return {"synthetic": synthetic, "train": interactions, "test": test, "products": products}


def _factories(products: pd.DataFrame) -> dict[str, Callable[[], Recommender]]:
    return {
        "popularity": Popularity,
        "group_popularity": lambda: GroupPopularity({i: f"g{i % 3}" for i in range(1, 301)}),
        "trending": Trending,
        "als": lambda: ALS(factors=16, iterations=10, num_threads=1),
        "bpr": lambda: BPR(factors=16, iterations=50, num_threads=1),
        "item_knn_cosine": lambda: ItemKNN(20, "cosine"),
        "item_knn_jaccard": lambda: ItemKNN(20, "jaccard"),
        "user_knn": lambda: UserKNN(30),
        "content": lambda: ContentBased(products, neighbours=20),
        "ease": lambda: EASE(regularization=50.0),
    }


@pytest.fixture(scope="module")
def fitted(data: dict) -> dict[str, Recommender]:
    return {name: make().fit(data["train"]) for name, make in _factories(data["products"]).items()}


@pytest.fixture(scope="module")
def ndcg(data: dict, fitted: dict[str, Recommender]) -> dict[str, dict]:
    test = data["test"]
    hybrid = Hybrid(
        {"als": (fitted["als"], 0.5), "item_knn": (fitted["item_knn_cosine"], 0.5)},
        cold_start=fitted["popularity"],
    ).fit(data["train"])
    return {
        name: new_items_window(data["train"], test).score(model, "new", k=10)
        for name, model in {**fitted, "hybrid": hybrid}.items()
    }


def new_items_window(train: Interactions, test: pd.DataFrame) -> Window:
    """Scored on the products new to each customer (everything they interacted with in training
    counts as known), every list filled with the training popularity."""
    coo = train.matrix.tocoo()
    known = pd.DataFrame(
        {"customer_id": train.user_ids[coo.row], "product_id": train.item_ids[coo.col]}
    )
    counts = pd.Series(train.item_user_counts(), index=train.item_ids)
    return Window(
        purchases=test[["customer_id", "product_id"]],
        bought_before=known,
        fallback=counts.sort_values(ascending=False, kind="stable").index.to_numpy(),
        item_user_counts=counts,
        n_users=train.shape[0],
        catalogue_size=train.shape[1],
    )


@pytest.mark.parametrize(
    "name",
    [
        "popularity",
        "group_popularity",
        "trending",
        "als",
        "bpr",
        "item_knn_cosine",
        "item_knn_jaccard",
        "user_knn",
        "content",
        "ease",
    ],
)
def test_every_recommender_returns_k_distinct_unseen_items_best_first(
    name: str, data: dict, fitted: dict[str, Recommender]
) -> None:
    train: Interactions = data["train"]
    customers = train.user_ids[:50]
    recs = fitted[name].recommend(customers, k=10)
    assert recs.product_ids.shape == (50, 10)
    for customer, items, scores in zip(customers, recs.product_ids, recs.scores, strict=True):
        assert (items > 0).all(), f"{name}: padding for a warm customer"
        assert len(set(items.tolist())) == 10
        assert not set(items.tolist()) & set(train.seen(int(customer)).tolist())
        assert np.all(np.diff(scores) <= 1e-12), f"{name}: scores not in descending order"
    frame = recs.to_frame()
    assert list(frame.columns) == ["customer_id", "rank", "product_id", "score"]
    assert len(frame) == 500


def test_als_beats_popularity_on_latent_structure(ndcg: dict[str, dict]) -> None:
    als, pop = ndcg["als"]["ndcg@10"], ndcg["popularity"]["ndcg@10"]
    print(
        f"\nNDCG@10 on 300 users x 200 items, 5 latent clusters: ALS {als:.3f} vs popularity "
        f"{pop:.3f} ({als / pop:.1f}x); users evaluated {ndcg['als']['users_evaluated']}"
    )
    for name, metrics in ndcg.items():
        shown = {k: round(v, 3) if isinstance(v, float) else v for k, v in metrics.items()}
        print(f"  {name:18s} {shown}")
    assert als >= 2.0 * pop and als - pop >= 0.1


@pytest.mark.parametrize(
    "name", ["item_knn_cosine", "item_knn_jaccard", "user_knn", "bpr", "ease", "hybrid"]
)
def test_collaborative_models_beat_popularity(name: str, ndcg: dict[str, dict]) -> None:
    assert ndcg[name]["ndcg@10"] >= 1.5 * ndcg["popularity"]["ndcg@10"]
    assert ndcg[name][f"recall@{10}"] > ndcg["popularity"]["recall@10"]


def test_unknown_customers_get_padding_or_the_popular_list(fitted: dict[str, Recommender]) -> None:
    als = fitted["als"].recommend([999_999], k=5)
    assert (als.product_ids == -1).all() and np.isnan(als.scores).all()
    pop = fitted["popularity"].recommend([999_999], k=5)
    assert (pop.product_ids > 0).all()


def test_interactions_sum_duplicates_and_keep_a_fixed_universe() -> None:
    inter = Interactions.from_arrays(
        [10, 10, 20, 30], [1, 1, 2, 99], [1.0, 2.0, 1.0, 5.0], item_ids=[1, 2, 3]
    )
    assert inter.shape == (3, 3)  # customer 30 keeps a (now empty) row; product 99 is dropped
    assert inter.matrix[0, 0] == 3.0
    assert inter.user_rows([20, 77]).tolist() == [1, -1]
    assert inter.item_user_counts().tolist() == [1, 1, 0]
    wider = inter.reindex_items([0, 1, 2, 3, 4])
    assert wider.shape == (3, 5) and wider.matrix[0, 1] == 3.0
    assert inter.reindex_items([3, 1, 2]) is inter  # the same universe: not copied


def test_top_k_breaks_ties_by_popularity_and_pads() -> None:
    scores = np.array([[0.0, 1.0, 0.0, 0.0], [-np.inf, 2.0, -np.inf, -np.inf]])
    cols, vals = top_k(scores, 3, tie_order=np.array([3, 2, 1, 0]))
    assert cols[0].tolist() == [1, 3, 2]  # the tie between 0, 2, 3 goes to the "most popular"
    assert cols[1].tolist() == [1, -1, -1] and np.isnan(vals[1, 1:]).all()


def _top_k_by_sorting(
    scores: np.ndarray, k: int, tie_order: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """top_k's definition, by sorting each row: finite scores, best first, ties in tie_order."""
    rank = np.argsort(tie_order)
    cols = np.full((len(scores), k), -1)
    vals = np.full((len(scores), k), np.nan)
    for i, row in enumerate(scores):
        ok = np.flatnonzero(np.isfinite(row))
        best = ok[np.lexsort((rank[ok], -row[ok]))][:k]
        cols[i, : len(best)], vals[i, : len(best)] = best, row[best]
    return cols, vals


def _scores_of_shape(shape: str, rng: np.random.Generator, b: int, n: int) -> np.ndarray:
    if shape == "mostly zero":  # a sparse model's scores
        return np.where(rng.random((b, n)) < 0.1, rng.integers(-2, 4, size=(b, n)), 0.0)
    if shape == "mostly unscored":
        return np.where(rng.random((b, n)) < 0.1, rng.random((b, n)), -np.inf)
    if shape == "ties":
        return rng.integers(-1, 3, size=(b, n)).astype(float)
    if shape == "wide":  # the best cells last
        return np.sort(rng.normal(size=(b, n)), axis=1)
    if shape == "wide, some rows tied":  # ties at the sampled bound let whole rows through
        rows = rng.normal(size=(b, n))
        rows[rng.random(b) < 0.5] = rng.integers(0, 2, size=n)
        return rows
    return rng.normal(size=(b, n))


@pytest.mark.parametrize(
    "shape", ["dense", "mostly zero", "mostly unscored", "ties", "wide", "wide, some rows tied"]
)
def test_top_k_is_the_head_of_a_full_sort_for_every_shape_of_scores(shape: str) -> None:
    # each shape takes another path: a partition, the positive cells of a sparse model's
    # scores, a bound from a sample of the columns
    rng = np.random.default_rng(3)
    for _ in range(40):
        b, n, k = int(rng.integers(1, 12)), int(rng.integers(1, 60)), 10
        n = n * 50 if shape.startswith("wide") else n
        scores = _scores_of_shape(shape, rng, b, n).astype(rng.choice([np.float32, np.float64]))
        scores[rng.random((b, n)) < 0.03] = np.nan
        tie_order = rng.permutation(n)
        cols, vals = top_k(scores, k, tie_order)
        want_cols, want_vals = _top_k_by_sorting(scores, k, tie_order)
        assert cols.tolist() == want_cols.tolist()
        np.testing.assert_array_equal(vals, want_vals)
        positive = np.where(scores > 0, scores, 0.0)
        kept = top_k_sparse(positive, k).toarray()
        want_cols, _ = _top_k_by_sorting(np.where(positive > 0, positive, -np.inf), k, np.arange(n))
        assert [np.flatnonzero(row).tolist() for row in kept] == [
            sorted(c[c >= 0].tolist()) for c in want_cols
        ]
        r, c = np.nonzero(positive)  # the same read from the cells alone (similarities)
        from_cells = top_k_of_cells(r, c, positive[r, c], positive.shape, k).toarray()
        np.testing.assert_array_equal(from_cells, kept)


@pytest.mark.parametrize("cells_per_row", [6, 40, 600])  # a packed block; one row at a time
def test_each_row_s_kth_largest_cell_is_what_a_sort_says(cells_per_row: int) -> None:
    rng = np.random.default_rng(cells_per_row)
    counts = rng.poisson(cells_per_row, 300)
    counts[:3] = [0, 9, 3 * cells_per_row]  # empty, fewer than k, one long row
    r = np.repeat(np.arange(300), counts)
    v = rng.integers(0, 50, len(r)).astype(np.float64)  # ties too
    want = [np.sort(v[r == i])[::-1][9] if counts[i] >= 10 else -np.inf for i in range(300)]
    np.testing.assert_array_equal(kth_of_packed(r, v, 300, 10), want)


@pytest.mark.parametrize(
    "name",
    [
        "item_knn_cosine",
        "item_knn_jaccard",
        "user_knn",
        "content",
        "trending",
        "trending_by_city",
        "als",
        "bpr",
    ],
)
def test_models_with_a_shortcut_top_k_list_what_their_dense_scores_would(
    name: str, data: dict, fitted: dict[str, Recommender]
) -> None:
    # sparse models read the top k from the stored cells of a sparse product, trending ranks
    # once per group, factorisations take implicit's top k: against a dense top-k of the
    # same scores, with every mask (seen, excluded pairs, a product filter), and k beyond the
    # customers' positive scores (the empty cells then fill the list in popularity order)
    train = data["train"]
    if name == "trending_by_city":
        cities = {int(c): f"city {c % 4}" for c in train.user_ids[::2]}
        model = Trending(groups=cities).fit(train)
    else:
        model = fitted[name]
    rng = np.random.default_rng(5)
    customers = np.concatenate([rng.choice(train.user_ids, 60, replace=False), [-7, 10**9]])
    exclude = pd.DataFrame(
        {"customer_id": np.repeat(customers[:20], 3), "product_id": rng.choice(train.item_ids, 60)}
    )
    items = rng.choice(model.item_ids, len(model.item_ids) // 2, replace=False)
    for k, options in [
        (10, {"exclude_seen": True}),
        (10, {"exclude_seen": False}),
        (40, {"exclude_seen": True, "items": items, "exclude": exclude}),
    ]:
        sparse = model.recommend(customers, k, **options)
        dense = _densely(model).recommend(customers, k, **options)
        assert sparse.product_ids.tolist() == dense.product_ids.tolist()
        np.testing.assert_array_equal(sparse.scores, dense.scores)


@pytest.mark.parametrize("spare", [0.0, 0.5, 3.0])
@pytest.mark.parametrize("name", ["item_knn_jaccard", "content"])
def test_sparse_top_lists_the_same_whatever_cells_it_fetches_past_the_list(
    name: str, spare: float, data: dict, fitted: dict[str, Recommender], monkeypatch
) -> None:
    # rows whose fetched cells end in a tie with the list's last are scored in full again:
    # with more cells fetched fewer are, and the lists (ties by popularity) stay the dense ones
    model = fitted[name]
    monkeypatch.setattr(type(model), "top_spare", spare)
    customers = np.random.default_rng(8).choice(data["train"].user_ids, 80, replace=False)
    for k in (3, 10):
        sparse = model.recommend(customers, k, exclude_seen=False)
        dense = _densely(model).recommend(customers, k, exclude_seen=False)
        assert sparse.product_ids.tolist() == dense.product_ids.tolist()
        np.testing.assert_array_equal(sparse.scores, dense.scores)


@pytest.mark.parametrize("name", ["item_knn_jaccard", "user_knn", "content"])
def test_sparse_models_list_the_same_whatever_the_blocks_of_rows(
    name: str, data: dict, fitted: dict[str, Recommender], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a scoring batch is one call of the sparse top n; rows scored in full (masked, tied,
    # short of positive cells) go in blocks of the dense batch's rows: here 7 rows a block
    model = fitted[name]
    rng = np.random.default_rng(3)
    customers = rng.choice(data["train"].user_ids, 60, replace=False)
    exclude = pd.DataFrame(  # pairs of customers in every block
        {"customer_id": np.repeat(customers, 2), "product_id": rng.choice(model.item_ids, 120)}
    )
    for options in ({"exclude_seen": True, "exclude": exclude}, {"exclude_seen": False}):
        whole = model.recommend(customers, 10, **options)
        with monkeypatch.context() as patched:
            patched.setattr("ml.recommenders.base.SCORE_BATCH_CELLS", 7 * len(model.item_ids))
            blocks = model.recommend(customers, 10, **options)
        assert blocks.product_ids.tolist() == whole.product_ids.tolist()
        np.testing.assert_array_equal(blocks.scores, whole.scores)


def test_factorisations_scan_the_longest_product_vectors_first_and_list_the_same(
    data: dict, fitted: dict[str, Recommender], monkeypatch: pytest.MonkeyPatch
) -> None:
    # products' vector lengths spread as popularity spreads them; a customer is settled by
    # the first products once the bound of the rest is below their k-th score. From 16 on,
    # the 200 products are scanned in prefixes, as 50,000 are from 1,024 on
    monkeypatch.setattr(factorization, "PRUNED_FIRST_ITEMS", 16)
    scanned: list[tuple[int, int]] = []  # (products, customers) of each call

    def counted(items: np.ndarray, queries: np.ndarray, k: int, **kw: object) -> tuple:
        scanned.append((len(items), len(queries)))
        return topk(items, queries, k, **kw)

    monkeypatch.setattr(factorization, "topk", counted)
    model = copy.copy(fitted["als"])
    rng = np.random.default_rng(11)
    items = rng.normal(size=model.item_factors.shape).astype(np.float32)
    model.item_factors = items * rng.pareto(0.7, size=(len(items), 1)).astype(np.float32)
    users = rng.normal(size=model.user_factors.shape).astype(np.float32)
    users[0] = 0.0  # a customer whose scores all tie at 0
    model.user_factors = users
    customers = np.concatenate([data["train"].user_ids[:80], [10**9]])
    for k in (1, 10, 40):
        scanned.clear()
        pruned = model.recommend(customers, k, exclude_seen=False)
        dense = _densely(model).recommend(customers, k, exclude_seen=False)
        assert pruned.product_ids[1:].tolist() == dense.product_ids[1:].tolist()
        # float32 dot products summed in another order (prefixes, the CPU's BLAS kernels):
        # apart by at most float32's rounding of the sum of the terms' magnitudes, which is
        # large where long vectors nearly cancel (3e-5 of the score on one CPU)
        rows = model.train.user_rows(customers[1:80])
        cols = np.searchsorted(model.item_ids, pruned.product_ids[1:80])
        assert (model.item_ids[cols] == pruned.product_ids[1:80]).all()
        magnitude = np.einsum("cf,ckf->ck", np.abs(users[rows]), np.abs(model.item_factors[cols]))
        error = np.abs(pruned.scores[1:80] - dense.scores[1:80])
        assert (error <= 64 * np.finfo(np.float32).eps * magnitude).all()
        # the tied customer's zeros and the unknown customer's padding, exactly
        np.testing.assert_array_equal(pruned.scores[[0, 80]], dense.scores[[0, 80]])
        assert len(set(pruned.product_ids[0])) == k  # any k of the tied products
        # every known customer in the first prefix, most settled before the whole catalogue
        assert scanned[0] == (max(16, k), 80)
        assert sum(n for size, n in scanned if size >= len(items)) < 40
    # with a filter, the whole catalogue is scanned (implicit's filters)
    scanned.clear()
    model.recommend(customers, 10, exclude_seen=True)
    assert scanned == [(len(items), 80)]


def _densely(model: Recommender) -> Recommender:
    """The model with the dense batch × items top-k that every recommender has."""
    dense = copy.copy(model)
    dense._top_of_batch = types.MethodType(Recommender._top_of_batch, dense)  # type: ignore[method-assign]
    return dense


def test_ease_weights_are_each_product_s_ridge_regression_on_the_others() -> None:
    # B's column j is the ridge regression (penalty λ) of who took j on who took each other
    # product, j itself left out; the model holds the `max_items` most taken products only
    rng = np.random.default_rng(11)
    taken = rng.random((80, 12)) < np.linspace(0.05, 0.6, 12)  # product 12 the most taken
    rows, cols = np.nonzero(taken)
    weights = rng.integers(1, 5, len(rows)).astype(np.float64)  # weights do not count: 0/1
    train = Interactions.from_arrays(rows + 1, cols + 1, weights, np.zeros(len(rows)))
    model = EASE(regularization=3.0, max_items=8).fit(train)
    kept = np.sort(np.argsort(-taken.sum(axis=0), kind="stable")[:8])
    np.testing.assert_array_equal(model.item_ids, kept + 1)
    x = taken[:, kept].astype(np.float64)
    for j in range(8):
        others = np.delete(np.arange(8), j)
        a = x[:, others]
        solved = np.linalg.solve(a.T @ a + 3.0 * np.eye(7), a.T @ x[:, j])
        np.testing.assert_allclose(model.weights[others, j], solved, rtol=1e-4, atol=1e-6)
        assert model.weights[j, j] == 0.0
    recs = model.recommend([1, 2, 999], 12, exclude_seen=False)
    outside = set((np.setdiff1d(np.arange(12), kept) + 1).tolist())
    assert not outside & set(recs.product_ids.ravel().tolist())  # never scored
    assert (recs.product_ids[2] == -1).all()  # a customer it never saw: padding
    with pytest.raises(ValueError, match="regularization > 0"):
        EASE(regularization=0.0)
    # nothing taken (every weight 0): no product modelled, every list padding
    nothing = Interactions.from_arrays([1, 2], [5, 6], [0.0, 0.0], np.zeros(2))
    empty = EASE().fit(nothing).recommend([1, 3], 4, exclude_seen=False)
    assert (empty.product_ids == -1).all()


def test_bought_with_recommends_only_products_bought_with_the_customer_s() -> None:
    baskets = pd.DataFrame(
        {
            "customer_id": [1, 1, 2, 2, 3, 3, 4],
            "product_id": [10, 11, 10, 11, 12, 13, 10],
            "weight": 1.0,
            "at": pd.to_datetime(["2025-01-01"] * 6 + ["2025-01-02"]),
        }
    )
    train = Interactions.from_arrays(*(baskets[c] for c in baskets.columns))
    model = BoughtWith().fit(train)
    dense = _densely(model)
    for k in (1, 3):
        lists = model.recommend([4, 1, 99], k, exclude_seen=False)
        assert lists.product_ids.tolist() == (
            dense.recommend([4, 1, 99], k, exclude_seen=False).product_ids.tolist()
        )
    # 11 came with 10 in two of its three baskets, 10 with 11 in both of its; nothing else
    assert lists.product_ids.tolist() == [[11, -1, -1], [10, 11, -1], [-1, -1, -1]]


def test_trending_favours_recent_rising_items_and_takes_a_boost() -> None:
    day = np.datetime64("2025-03-01T12:00:00", "s")
    d = np.timedelta64(1, "D")
    # product 1: steady (3 a day for 14 days); product 2: rising (0 last week, 6 a day now);
    # product 3: was big two weeks ago, quiet now.
    customers, products, at = [], [], []
    for age in range(14):
        customers += [1, 2, 3]
        products += [1, 1, 1]
        at += [day - age * d] * 3
    for age in range(4):
        customers += list(range(10, 16))
        products += [2] * 6
        at += [day - age * d] * 6
    for age in range(14, 20):
        customers += list(range(20, 30))
        products += [3] * 10
        at += [day - age * d] * 10
    inter = Interactions.from_arrays(customers, products, None, np.array(at))
    trending = Trending(window_days=7, half_life_days=3).fit(inter)
    table = trending.table()
    assert table["product_id"].tolist()[:2] == [2, 1]
    assert table.set_index("product_id").loc[3, "score"] == 0.0
    assert table.set_index("product_id").loc[2, "velocity"] > 0.9

    def boost_steady(ids: np.ndarray, as_of: np.datetime64) -> np.ndarray:
        return np.where(ids == 1, 3.0, 1.0)

    boosted = Trending(window_days=7, half_life_days=3, seasonal_boost=boost_steady).fit(inter)
    assert boosted.table()["product_id"].iloc[0] == 1
    # per group: customers 10-15 are in Lahore, where product 2 trends; a new Lahore customer
    # (never seen) gets it first, an unknown-group customer the global list
    groups = {c: ("Lahore" if 10 <= c <= 15 else "Karachi") for c in range(1, 30)} | {500: "Lahore"}
    by_city = Trending(window_days=7, half_life_days=3, groups=groups).fit(inter)
    assert by_city.recommend([500], k=1).product_ids[0, 0] == 2
    assert by_city.recommend([1], k=1, exclude_seen=False).product_ids[0, 0] == 1
    per_city = by_city.group_table(top_n=1).set_index("group")
    assert per_city.loc["Lahore", "product_id"] == 2 and per_city.loc["Karachi", "product_id"] == 1

    # long after the last interaction (a live stream a year after the history): nothing trends
    later = Trending(window_days=7, half_life_days=3, groups=groups, as_of=day + 365 * d).fit(inter)
    assert (later.table()["score"] == 0.0).all()


def test_group_popularity_answers_cold_customers_with_their_group() -> None:
    # Karachi customers take product 1, Lahore customers product 2; product 1 is more popular.
    customers = [1, 2, 3, 4, 5, 6]
    products = [1, 1, 1, 1, 2, 2]
    groups = {1: "Karachi", 2: "Karachi", 3: "Karachi", 4: "Karachi", 5: "Lahore", 6: "Lahore"}
    model = GroupPopularity(groups | {100: "Lahore"}, prior_strength=1.0)
    model.fit(Interactions.from_arrays(customers, products))
    assert model.recommend([100], k=1).product_ids[0, 0] == 2
    assert model.recommend([200], k=1).product_ids[0, 0] == 1  # no group: global


def test_content_based_finds_same_category_items_first(data: dict, fitted: dict) -> None:
    content: ContentBased = fitted["content"]
    products = data["products"].set_index("product_id")
    similar = content.similar_items()
    top5 = similar[similar["rank"] <= 5]
    same = (
        products.loc[top5["product_id"], "category"].to_numpy()
        == products.loc[top5["similar_product_id"], "category"].to_numpy()
    )
    assert same.all()
    # price bands: with text equal, the nearest price wins
    catalogue = pd.DataFrame(
        {
            "product_id": [1, 2, 3, 4, 5, 6],
            "name": ["kettle"] * 6,
            "brand": ["Acme"] * 6,
            "category": ["Home & Kitchen"] * 6,
            "subcategory": ["Small Appliances"] * 6,
            "price": [1000, 1100, 5000, 9000, 40000, 45000],
        }
    )
    model = ContentBased(catalogue, neighbours=2, price_bands=3).fit(
        Interactions.from_arrays([1], [1])
    )
    nearest = model.similar_items().query("product_id == 1 and rank == 1")
    assert nearest["similar_product_id"].item() == 2


def test_hybrid_cold_start_new_products_and_business_filters(data: dict, fitted: dict) -> None:
    train: Interactions = data["train"]
    products: pd.DataFrame = data["products"]
    new_product = int(products["product_id"].max()) + 1
    category_of_first = products.set_index("product_id")["category"]
    customer = int(train.user_ids[0])
    favourite = category_of_first.reindex(train.seen(customer)).value_counts().index[0]
    catalogue = pd.concat(
        [
            products,
            pd.DataFrame(
                {
                    "product_id": [new_product],
                    "category": [favourite],
                    "name": [f"new {favourite.split()[0].lower()} thing"],
                    "brand": ["Acme"],
                    "subcategory": [f"{favourite} misc"],
                    "price": [1000.0],
                }
            ),
        ],
        ignore_index=True,
    )
    content = ContentBased(catalogue, neighbours=60).fit(train)
    groups = pd.Series({int(c): "Lahore" for c in train.user_ids} | {5000: "Lahore"})
    cold = GroupPopularity(groups).fit(train)
    als, knn = fitted["als"], fitted["item_knn_cosine"]

    # the filter: product X (the customer's best without rules) is inactive
    plain = Hybrid({"als": (als, 0.6), "item_knn": (knn, 0.4)}).fit(train)
    top = plain.recommend([customer], k=10, exclude_seen=False).product_ids[0]
    x, y = (int(p) for p in top[:2])
    rules = BusinessRules(allowed_product_ids=np.setdiff1d(catalogue["product_id"].to_numpy(), [x]))
    hybrid = Hybrid(
        {"als": (als, 0.6), "item_knn": (knn, 0.4)},
        cold_start=cold,
        content=content,
        rules=rules,
        chunk_customers=1,
    ).fit(train)
    recs = hybrid.recommend([customer, 5000], k=10, exclude_seen=False)
    mine = recs.product_ids[0].tolist()
    assert x not in mine and y in mine
    assert new_product in mine  # the reserved slot for a content-similar new product
    reasons = dict(zip(mine, recs.reasons[0], strict=True))
    assert reasons[new_product] == "new_product:content"
    assert {r.split(":")[0] for r in recs.reasons[0]} <= {"blend", "new_product"}
    assert np.all(np.diff(recs.scores[0]) <= 1e-12)
    assert len(set(mine)) == 10
    # the customer with no history gets the group's popular products, said so
    assert (recs.product_ids[1] > 0).all()
    assert set(recs.reasons[1]) == {"cold_start:group_popularity"}
    assert x not in recs.product_ids[1]
    frame = recs.to_frame()
    assert set(frame.columns) == {"customer_id", "rank", "product_id", "score", "reason"}


def test_association_rules_on_hand_made_baskets() -> None:
    baskets = {
        1: [1, 2, 3],
        2: [1, 2],
        3: [1, 2, 3],
        4: [2, 3],
        5: [4],
        6: [1, 2, 2],  # a repeated line counts once
        7: [1, 3],
        8: [5, 4],
    }
    invoices = [i for i, items in baskets.items() for _ in items]
    products = [p for items in baskets.values() for p in items]
    rules = association_rules(invoices, products, min_support=0.25, max_size=3)
    by_rule = {(r.antecedent, r.consequent): r for r in rules.itertuples()}
    # support counts: {1}=5, {2}=5, {3}=4, {4}=2; {1,2}=4, {1,3}=3, {2,3}=3, {1,2,3}=2 of 8
    r = by_rule[((1,), 2)]
    assert r.count == 4 and r.support == pytest.approx(0.5)
    assert r.confidence == pytest.approx(4 / 5)
    assert r.lift == pytest.approx((4 / 5) / (5 / 8))
    assert by_rule[((3,), 1)].confidence == pytest.approx(3 / 4)
    assert ((4,), 5) not in by_rule  # {4,5} appears once: below 25 % support
    assert (rules["size"] == 2).sum() == 6 and (rules["size"] == 3).sum() == 3
    t = by_rule[((1, 2), 3)]
    assert t.count == 2 and t.confidence == pytest.approx(2 / 4)
    assert t.lift == pytest.approx((2 / 4) / (4 / 8))
    assert by_rule[((2, 3), 1)].confidence == pytest.approx(2 / 3)
    fbt = frequently_bought_together(rules, top_n=1)
    assert fbt.set_index("product_id").loc[1, "other_product_id"] == 2
    assert list(fbt.columns[:3]) == ["product_id", "rank", "other_product_id"]
    strict = association_rules(invoices, products, min_support=0.25, min_confidence=0.7)
    assert (strict["confidence"] >= 0.7).all() and len(strict) < len(rules)


def test_buy_again_ranks_the_most_bought_then_the_latest_and_nothing_else() -> None:
    at = ["2025-01-01", "2025-01-02", "2025-01-05", "2025-01-09", "2025-01-03"]
    purchases = Interactions.from_arrays([1, 1, 1, 1, 2], [10, 11, 11, 12, 10], at=at)
    model = BuyAgain().fit(purchases)
    recs = model.recommend([1, 2, 3], k=3, exclude_seen=False)
    # 1 bought 11 twice, then 12 (9 Jan) is more recent than 10 (1 Jan); 3 is unknown
    assert recs.product_ids.tolist() == [[11, 12, 10], [10, -1, -1], [-1, -1, -1]]
    assert recs.scores[0, 0] > 2 > recs.scores[0, 1] > recs.scores[0, 2] >= 1


def test_recommend_drops_the_excluded_pairs_of_each_customer() -> None:
    train = Interactions.from_arrays([1, 2, 2, 3], [10, 10, 11, 12])
    model = Popularity().fit(train)
    exclude = pd.DataFrame({"customer_id": [1, 1, 3], "product_id": [10, 11, 99]})
    recs = model.recommend([1, 3, 1], k=3, exclude_seen=False, exclude=exclude)
    assert recs.product_ids.tolist() == [[12, -1, -1], [10, 11, 12], [12, -1, -1]]


def test_bought_with_follows_baskets_and_names_the_purchase_behind_it() -> None:
    # baskets (customer, day): {10, 11} twice, {10, 12} once, {13} alone; customer 4 bought 10
    customers = [1, 1, 2, 2, 3, 3, 3, 4]
    products = [10, 11, 10, 11, 10, 12, 13, 10]
    at = ["2025-01-01"] * 4 + ["2025-01-02", "2025-01-02", "2025-01-05", "2025-01-09"]
    model = BoughtWith().fit(Interactions.from_arrays(customers, products, at=at))
    recs = model.recommend([4, 5], k=3, exclude_seen=False)
    # confidence(10 → 11) = 2/4 beats 10 → 12 = 1/4; 13 was never in a basket with 10
    assert recs.product_ids.tolist() == [[11, 12, -1], [-1, -1, -1]]
    assert recs.scores[0, 0] == pytest.approx(0.5)
    assert model.because([4, 4, 5], [11, 13, 11]).tolist() == [10, -1, -1]


def test_bought_with_names_the_purchase_contributing_most_by_definition() -> None:
    """`because` against its dense definition: argmax over the customer's history of weight ×
    confidence(p → product), the first product among equals, -1 when nothing contributes."""
    rng = np.random.default_rng(5)
    n = 600
    customers = rng.integers(0, 40, n)
    products = rng.integers(0, 30, n)
    at = np.datetime64("2025-01-01") + rng.integers(0, 6, n).astype("timedelta64[D]")
    model = BoughtWith(neighbours=5).fit(Interactions.from_arrays(customers, products, at=at))
    train = model.train
    assert train is not None
    pairs = [(c, p) for c in range(-1, 41) for p in range(-1, 31)]
    found = model.because([c for c, _ in pairs], [p for _, p in pairs])
    history, confidence = train.matrix.toarray(), model.confidence.toarray()
    rows, cols = train.user_rows([c for c, _ in pairs]), train.item_cols([p for _, p in pairs])
    for (row, col), got in zip(zip(rows, cols, strict=True), found, strict=True):
        expected = -1
        if row >= 0 and col >= 0:
            contribution = history[row] * confidence[:, col]
            if contribution.max() > 0:
                expected = int(model.item_ids[contribution.argmax()])
        assert got == expected


def test_user_knn_draws_neighbours_from_the_most_active_customers_only() -> None:
    # customers 1 and 2 took {10, 11, 12}; 3 took {10, 11, 13, 14} (the most products);
    # 4 took {10, 15}. With a pool of one, 3 is every customer's only possible neighbour
    customers = [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 4, 4]
    products = [10, 11, 12, 10, 11, 12, 10, 11, 13, 14, 10, 15]
    train = Interactions.from_arrays(customers, products)
    # (every product is common in so small a pool: none is left out here)
    everyone = UserKNN(neighbours=1, common_share=1.0).fit(train)
    assert (everyone.recommend([1], k=2, exclude_seen=True).scores[0] == 0).all()  # 2 is 1's
    pool = UserKNN(neighbours=1, pool=1, common_share=1.0).fit(train)
    recs = pool.recommend([1, 3, 4], k=2, exclude_seen=True)
    assert sorted(recs.product_ids[0]) == [13, 14] and (recs.scores[0] > 0).all()  # 3's
    assert (recs.scores[1] == 0).all()  # 3 is not their own neighbour: no votes
    assert 11 in recs.product_ids[2] and recs.scores[2, 0] > 0


def test_user_knn_matches_tastes_without_the_products_most_of_the_pool_took() -> None:
    # everyone took 10 (the blockbuster). With it, 1's nearest is 4 (both mostly 10); without
    # it, 2 (who shares 11 with 1 alone). The blockbuster still gets its votes
    customers = [1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 5, 6, 7, 8]
    products = [10, 11, 12, 10, 11, 20, 10, 12, 21, 10, 12, 10, 10, 10, 10]
    weights = [5, 2, 1, 1, 2, 3, 5, 1, 1, 5, 1, 5, 5, 5, 5]
    train = Interactions.from_arrays(customers, products, weights)
    nearest = UserKNN(neighbours=1, common_share=1.0).fit(train)
    found = nearest.neighbours_of(train.user_rows([1]))
    assert train.user_ids[nearest._pool_position == found.indices[0]].tolist() == [4]
    model = UserKNN(neighbours=1, common_share=0.5).fit(train)
    pool = model._pool_votes.shape[0]
    assert pool == 8 and model._pool_t[train.item_cols([10])[0]].nnz == 0
    assert model._pool_t[train.item_cols([11])[0]].nnz == 2  # 2 of 8: kept
    neighbour = model.neighbours_of(train.user_rows([1]))
    assert train.user_ids[model._pool_position == neighbour.indices[0]].tolist() == [2]
    assert 20 in model.recommend([1], k=3, exclude_seen=True).product_ids[0]
    votes = model.recommend([3], k=3, exclude_seen=False)
    assert 10 in votes.product_ids[0]


def test_place_in_run_counts_the_equal_keys_before_each() -> None:
    keys = np.array([2, 2, 2, 5, 7, 7, 9])
    np.testing.assert_array_equal(place_in_run(keys), [0, 1, 2, 0, 0, 1, 0])
    np.testing.assert_array_equal(place_in_run(keys[:0]), np.empty(0, dtype=np.int64))
    rng = np.random.default_rng(4)
    many = np.sort(rng.integers(0, 300, 20_000))
    np.testing.assert_array_equal(
        place_in_run(many), np.arange(len(many)) - np.searchsorted(many, many, "left")
    )


def test_user_knn_neighbours_are_the_most_similar_pool_customers_but_themselves() -> None:
    """sparse_dot_topn's top n against the definition: the dense cosine similarities to the
    pool, the customer's own cell emptied, the k largest positive kept."""
    rng = np.random.default_rng(3)
    customers = rng.integers(1, 400, 6_000)
    train = Interactions.from_arrays(customers, rng.integers(1, 300, 6_000), rng.random(6_000))
    model = UserKNN(neighbours=7, pool=150).fit(train)
    rows = np.arange(model.train.matrix.shape[0])
    dense = (model._users[rows] @ model._pool_t).toarray()
    own = model._pool_position[rows]
    dense[np.flatnonzero(own >= 0), own[own >= 0]] = 0.0
    expected = top_k_sparse(dense, 7)
    found = model.neighbours_of(rows)
    assert found.nnz > 5 * len(rows)  # most customers have their 7
    np.testing.assert_allclose(found.toarray(), expected.toarray(), rtol=1e-5)


@pytest.mark.parametrize("density", [0.004, 0.3])  # pairs read as cells; most pairs meet
@pytest.mark.parametrize("metric", ["cosine", "jaccard"])
def test_item_similarity_keeps_each_item_s_best_neighbours_by_definition(
    metric: str, density: float
) -> None:
    # the definition on the dense items x items block: customers in common over the union
    # (jaccard) or cosine of the weighted columns; no item its own neighbour; ties to the
    # lower column
    rng = np.random.default_rng(11)
    m = sp.random(600, 300, density=density, random_state=rng, dtype=np.float32, format="csr")
    m.data = np.round(m.data * 3) + 1  # a few equal weights: ties
    items = m.T.toarray().astype(np.float64)
    if metric == "jaccard":
        items = (items > 0).astype(np.float64)
        together = items @ items.T
        sizes = items.sum(axis=1)
        union = sizes[:, None] + sizes[None, :] - together
        dense = np.divide(together, union, out=np.zeros_like(together), where=union > 0)
    else:
        norms = np.linalg.norm(items, axis=1, keepdims=True)
        unit = np.divide(items, norms, out=np.zeros_like(items), where=norms > 0)
        dense = unit @ unit.T
    np.fill_diagonal(dense, 0.0)
    want = top_k_sparse(dense, 7).toarray()
    got = item_similarity(m, 7, metric, chunk_cells=300 * 40).toarray()
    assert (got > 0).sum() > 300  # most items have neighbours
    np.testing.assert_array_equal(got > 0, want > 0)
    np.testing.assert_allclose(got, want, rtol=1e-5)
