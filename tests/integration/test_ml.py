"""The models on the tiny world (tests/conftest.py, which trained them once through Dagster):
the Spark jobs against the numpy references, the customer snapshots against pandas, and on a
copy a second `lakehouse ml train`: champion selection, the outputs' rules, the registry."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ml.customer_models import FEATURE_COLUMNS as FEATURE_NAMES
from ml.evaluation import TASKS
from ml.intent import FEATURES
from ml.interactions import Interactions
from ml.recommenders import association_rules, item_similarity
from ml.recommenders.neighbourhood import neighbours_frame
from ml.registry import ModelRegistry
from serving.snapshot import load_snapshot
from tests.conftest import World, cli_json, isolated_env, run_cli

pytestmark = pytest.mark.integration
STATUSES = {"stable", "moderate", "drift"}


def gold(world: World, table: str) -> pd.DataFrame:
    return world.table(f"gold.{table}").to_pandas()


def read(spark, world: World, table: str):  # noqa: ANN001, ANN201 - Spark session and frame
    return spark.read.format("delta").load(world.settings.lake.table_uri(table))


@pytest.fixture(scope="module")
def second_run(world_copy: World) -> dict:
    return cli_json("ml", "train", env=world_copy.env)


def test_spark_cooccurrence_equals_the_reference_item_similarity(world: World, spark) -> None:  # noqa: ANN001
    from spark_jobs.ml_inputs import item_cooccurrence

    interactions = read(spark, world, "gold.customer_product_interactions")
    got = item_cooccurrence(interactions, k=5).toPandas()
    pairs = interactions.select("customer_id", "product_id", "weight").toPandas()
    matrix = Interactions.from_arrays(pairs.customer_id, pairs.product_id, pairs.weight)
    for method, metric in (("cf_cosine", "cosine"), ("cf_jaccard", "jaccard")):
        want = neighbours_frame(item_similarity(matrix.matrix, 5, metric), matrix.item_ids)
        mine = got[got["method"] == method]
        assert len(mine) == len(want) > 100
        # the similarity at every (product, rank) agrees; ids may differ only within ties
        merged = mine.merge(want, on=["product_id", "rank"], suffixes=("", "_ref"))
        assert len(merged) == len(want)
        np.testing.assert_allclose(merged["similarity"], merged["similarity_ref"], rtol=1e-5)
        same = merged["similar_product_id"] == merged["similar_product_id_ref"]
        assert same.mean() > 0.9


def test_spark_basket_rules_equal_the_reference_apriori(world: World, spark) -> None:  # noqa: ANN001
    from spark_jobs.ml_inputs import basket_rules

    lines = read(spark, world, "gold.fact_sales_line")
    bought = lines.where("NOT is_cancelled AND NOT is_return").toPandas()
    support = 2 / bought["invoice_id"].nunique()  # itemsets in two baskets: triples occur
    got = basket_rules(lines, min_support=support).toPandas()
    want = association_rules(bought.invoice_id, bought.product_id, min_support=support)
    assert len(want) > 50 and (want["size"] == 3).any()
    got["antecedent"] = got["antecedent"].map(lambda a: tuple(sorted(int(x) for x in a)))
    want["antecedent"] = want["antecedent"].map(lambda a: tuple(int(x) for x in a))
    merged = got.merge(want, on=["antecedent", "consequent"], suffixes=("", "_ref"))
    assert len(merged) == len(got) == len(want)
    for column in ("count", "support", "confidence", "lift"):
        np.testing.assert_allclose(merged[column], merged[f"{column}_ref"], rtol=1e-9)


def test_the_groups_spark_steps_are_gated_and_cover_the_catalogue(world: World) -> None:
    """gold.customer_product_daily and the product tables are Spark steps of the `ml` group:
    each batch passed its Great Expectations suite before it was published."""
    results = pd.DataFrame(world.table("quality.validation_results").to_pylist())
    for table in (
        "gold.customer_product_daily",
        "gold.customer_product_features",
        "gold.customer_product_candidates",
        "gold.similar_products",
        "gold.product_associations",
        "gold.trending_products",
    ):
        mine = results[results["table_name"] == table]
        assert len(mine) >= 5 and mine["success"].all(), table
    daily = gold(world, "customer_product_daily")
    lines = gold(world, "fact_sales_line")
    bought = lines[~lines["is_cancelled"] & ~lines["is_return"]]
    assert daily["purchases"].gt(0).sum() == len(
        bought.drop_duplicates(["customer_id", "product_id", "invoice_date"])
    )
    similar = gold(world, "similar_products")
    assert set(similar["method"]) == {"cf_cosine", "cf_jaccard", "content"}
    current = gold(world, "dim_product").query("is_current")
    # content needs no buyer: every product of the catalogue has neighbours
    assert set(similar.loc[similar["method"] == "content", "product_id"]) == set(
        current["product_id"]
    )
    assert (similar["product_id"] != similar["similar_product_id"]).all()
    trending = gold(world, "trending_products")
    assert set(trending["scope"]) == {"global", "city", "area"}
    assert len(gold(world, "product_associations")) > 0


def test_the_ranker_reads_the_statistics_the_spark_step_computed(world: World) -> None:
    """gold.customer_product_features is the ranker's own function run by Spark per group of
    customers: the statistics of every training cutoff of the chain's fits, for the buyers of
    the window after it, the same as in-process; the evaluation's and the refit's training
    snapshots read them."""
    from ml.ranker import STATISTICS, snapshot_statistics
    from spark_jobs.recommender_training import load_catalogue, recommender_span
    from spark_jobs.training import Tables, ranker_snapshot_days, test_window_days

    table = gold(world, "customer_product_features")
    daily = gold(world, "customer_product_daily")
    span = recommender_span(daily)
    days = ranker_snapshot_days(world.settings.ml_test_days, *span)
    window = test_window_days(world.settings.ml_test_days, *span)
    assert sorted(table["as_of"].unique()) == days and len(days) >= 3
    products = load_catalogue(Tables(world.settings.lake)).for_ranker.products
    keys = ["customer_id", "product_id"]
    for as_of in (days[0], days[-1]):
        got = table.loc[table["as_of"] == as_of, list(STATISTICS)]
        want = snapshot_statistics(daily, products, {as_of: window})[list(STATISTICS)]
        assert len(got) == len(want) > 0
        pd.testing.assert_frame_equal(
            got.sort_values(keys, ignore_index=True),
            want.sort_values(keys, ignore_index=True),
            check_dtype=False,
            rtol=1e-12,
        )
    materialized = world.runs["training"].materialized
    for runner in ("gold.model_evaluations", "gold.model_registry"):
        summary = materialized[runner]["training_report"]["windows"]["ranker_snapshots"]
        read = int(summary.split(" days read from gold.customer_product_features")[0])
        assert read >= 2, summary
        # only the weekly snapshots of shoppers' answers may be computed in-process
        if "computed in-process: " in summary:
            computed = summary.split("computed in-process: ")[1].split(", ")
            assert not {dt.date.fromisoformat(d) for d in computed} & set(days), summary


def test_the_ranker_learns_from_the_candidates_the_step_proposed(world: World) -> None:
    """gold.customer_product_candidates holds every training cutoff's candidates of its
    sampled buyers, proposed as the fits would propose them; the evaluation's and the refit's
    fits read every cutoff's from it."""
    from ml.ranker import LearnedRanker
    from spark_jobs.recommender_training import load_catalogue, recommender_span
    from spark_jobs.training import Tables, ranker_snapshot_days, test_window_days

    settings = world.settings
    table = gold(world, "customer_product_candidates")
    daily = gold(world, "customer_product_daily")
    span = recommender_span(daily)
    days = ranker_snapshot_days(settings.ml_test_days, *span)
    assert sorted(table["as_of"].unique()) == days
    ranker = LearnedRanker(
        load_catalogue(Tables(settings.lake)).for_ranker,
        test_window_days(settings.ml_test_days, *span),
        training_customers=settings.ml_ranker_training_customers,
        generator_customers=settings.ml_ranker_generator_customers,
    )
    day = days[-1]
    got = table[table["as_of"] == day]
    np.testing.assert_array_equal(np.unique(got["customer_id"]), ranker.training_buyers(daily, day))
    want = ranker.training_candidates(daily, day)
    # the generators of the customers' own history are deterministic: exactly the same lists
    for generator in ("buy_again", "repurchase_due", "browsed", "popular"):
        columns = ["customer_id", "product_id", f"{generator}_score", f"{generator}_rank"]
        mine, theirs = (
            f.loc[f[f"{generator}_rank"].notna(), columns]
            .sort_values(columns[:2], ignore_index=True)
            .astype({"customer_id": "int64", "product_id": "int64"})
            for f in (got, want)
        )
        assert len(mine) > 0 or generator == "browsed", generator
        pd.testing.assert_frame_equal(mine, theirs, rtol=1e-12)
    materialized = world.runs["training"].materialized
    for runner in ("gold.model_evaluations", "gold.model_registry"):
        summary = materialized[runner]["training_report"]["windows"]["ranker_candidates"]
        read = int(summary.split(" days read from gold.customer_product_candidates")[0])
        assert read >= 2 and "computed in-process" not in summary, summary


def test_the_features_are_the_same_in_any_batches_of_customers(world: World, spark) -> None:  # noqa: ANN001
    """The step writes its output a batch of customer groups at a time (bounding the Spark
    server's memory): smaller groups and batches give the same table."""
    from spark_jobs.ml_inputs import customer_product_features

    batches = customer_product_features(
        read(spark, world, "gold.customer_product_daily"),
        read(spark, world, "gold.dim_product"),
        world.settings.ml_test_days,
        group_rows=1_000,
        batch_rows=2_000,
    )
    assert len(batches) > 1
    got = pd.concat([batch.toPandas() for batch in batches], ignore_index=True)
    want = gold(world, "customer_product_features")
    keys = ["as_of", "customer_id", "product_id"]
    pd.testing.assert_frame_equal(
        got.sort_values(keys, ignore_index=True)[list(want.columns)],
        want.sort_values(keys, ignore_index=True),
        check_dtype=False,
    )


def test_customer_snapshot_features_match_pandas(world: World, spark) -> None:  # noqa: ANN001
    from spark_jobs.ml_inputs import customer_snapshots

    lines = gold(world, "fact_sales_line")
    cutoff = max(lines["invoice_date"]) - dt.timedelta(days=7)
    got = (
        customer_snapshots(
            spark,
            read(spark, world, "gold.fact_sales_line"),
            read(spark, world, "gold.fact_events"),
            read(spark, world, "gold.dim_customer"),
            read(spark, world, "gold.dim_product"),
            [cutoff],
            propensity_days=3,
            churn_days=7,
            data_end=max(lines["invoice_date"]),
        )
        .toPandas()
        .set_index("customer_id")
    )
    ok = lines[~lines["is_cancelled"]]
    past = ok[ok["invoice_date"] <= cutoff]
    orders = past[~past["is_return"]].groupby("customer_id")["invoice_id"].nunique()
    spend = past.groupby("customer_id")["net_amount"].sum().astype(float)
    last = past[~past["is_return"]].groupby("customer_id")["invoice_date"].max()
    after = ok[(ok["invoice_date"] > cutoff) & ~ok["is_return"]]
    next_orders = after.groupby("customer_id")["invoice_id"].nunique()
    buyers = orders.index
    assert len(buyers) > 50
    pd.testing.assert_series_equal(
        got.loc[buyers, "frequency"], orders.astype(float), check_names=False
    )
    np.testing.assert_allclose(got.loc[buyers, "monetary"], spend.loc[buyers], rtol=1e-9)
    recency = (pd.Timestamp(cutoff) - pd.to_datetime(last)).dt.days.astype(float)
    np.testing.assert_array_equal(got.loc[buyers, "recency_days"], recency.loc[buyers])
    np.testing.assert_array_equal(
        got["orders_next_churn_window"],
        next_orders.reindex(got.index, fill_value=0).astype(float),
    )


def test_the_champion_is_chosen_on_validation_and_alone_feeds_the_recommendations(
    world_copy: World, second_run: dict
) -> None:
    report = second_run["recommenders"]
    evaluations = pd.DataFrame(report["evaluations"])
    # every model and baseline on both tasks of the validation, test and held-out future windows
    models = {"popularity_28d", "buy_again", "als", "bpr", "item_knn_cosine", "hybrid", "content"}
    assert models <= set(evaluations["model"])
    grid = evaluations.groupby(["split", "target"])["model"].nunique()
    assert set(grid.index) == {(s, t) for s in ("validation", "test", "future") for t in TASKS}
    assert grid.nunique() == 1
    validation = evaluations.query("split == 'validation' and target == 'all'")
    best = validation.loc[validation["ndcg@10"].idxmax()]
    assert validation.set_index("model").loc[report["champion"], "ndcg@10"] == best["ndcg@10"]
    recs = gold(world_copy, "customer_recommendations")
    assert set(recs["model"]) == {report["champion"]}
    assert set(recs["model_version"]) == {report["champion_version"]}
    stored = gold(world_copy, "model_evaluations")
    run = stored[stored["run_id"] == report["run_id"]]
    assert set(run.loc[run["is_champion"], "model"]) == {report["champion"]}
    assert set(zip(run["split"], run["target"], strict=True)) == set(grid.index)
    assert (
        run["train_end"][run["split"] == "future"] > run["train_end"][run["split"] == "test"].max()
    ).all()
    # every buyer is either cold (no history before the window) or returning
    users = run[run["metric"] == "users_evaluated"].pivot_table(
        index=["split", "target", "model"], columns="population", values="value"
    )
    assert set(users.columns) <= {"buyers", "cold_start", "returning"}
    assert (users.drop(columns="buyers").fillna(0).sum(axis=1) == users["buyers"]).all()
    inputs = json.loads(run["inputs"].iloc[0])
    assert inputs["gold.customer_product_daily"] >= 0 and "gold.dim_product" in inputs
    # the evaluation of the first run (in the fixture) is still there
    assert stored["run_id"].nunique() >= 3


def test_the_future_score_is_the_published_lists_score(world_copy: World, second_run: dict) -> None:
    """The `future` row of the champion scores exactly the lists in gold against the generator's
    held-out purchases (which only the scoring reads)."""
    from ml.evaluation import ndcg_at_k

    report = second_run["recommenders"]
    future = pd.read_parquet(
        world_copy.root / "generated" / "ground_truth" / "future_purchases.parquet"
    )
    recs = gold(world_copy, "customer_recommendations").sort_values(["customer_id", "rank"])
    lists = recs.groupby("customer_id")["product_id"].apply(list)
    relevant = future.groupby("customer_id")["product_id"].apply(set)
    scores = [ndcg_at_k(lists.get(c, []), items, 10) for c, items in relevant.items()]
    row = next(
        e
        for e in report["evaluations"]
        if (e["model"], e["split"], e["target"]) == (report["champion"], "future", "all")
    )
    assert row["users_evaluated"] == len(relevant)
    assert row["ndcg@10"] == pytest.approx(np.mean(scores))


def test_the_published_lists_beat_the_baselines_on_the_held_out_future(second_run: dict) -> None:
    """On the generator's held-out future, the published lists (the champion's `future` rows)
    beat "buy again" on every product bought and "popular minus what you bought" (the 28-day
    popularity's `new` row) on products new to the customer."""
    report = second_run["recommenders"]
    future = {
        (e["model"], e["target"]): e["ndcg@10"]
        for e in report["evaluations"]
        if e["split"] == "future"
    }
    champion = report["champion"]
    assert future[(champion, "all")] > future[("buy_again", "all")]
    assert future[(champion, "new")] > future[("popularity_28d", "new")]
    # the ranker and its generators are in the table, each on its own
    assert {"ranker", "repurchase_due", "browsed", "bought_with"} <= {model for model, _ in future}


def test_recommendations_follow_the_business_rules(world_copy: World, second_run: dict) -> None:
    recs = gold(world_copy, "customer_recommendations")
    products = gold(world_copy, "dim_product").query("is_current")
    customers = gold(world_copy, "dim_customer").query("is_current")
    assert set(recs["product_id"]) <= set(products.loc[products["is_active"], "product_id"])
    assert not recs.duplicated(["customer_id", "product_id"]).any()
    assert recs.groupby("customer_id")["rank"].max().max() <= 10
    assert set(recs["customer_id"]) == set(customers["customer_id"])  # cold ones get popular
    assert set(recs["source"]) <= {"model", "popular", "blend", "cold_start", "new_product"}
    assert recs["reason"].str.len().gt(0).all()
    assert recs.loc[recs["source"] == "popular", "reason"].str.startswith("popular in").all()
    # customers with no history: the model's cold-start list (the ranker's is what trends:
    # test_ml_ranker), or the best sellers
    cold = ~recs["customer_id"].isin(gold(world_copy, "customer_product_daily")["customer_id"])
    assert cold.any() and recs.loc[cold, "source"].isin(["cold_start", "popular"]).all()


def test_every_model_version_stays_loadable(world_copy: World, second_run: dict) -> None:
    registry = ModelRegistry(str(world_copy.root / "lake" / "models"))
    versions = registry.versions("recommender")
    assert len(versions) >= 2
    first = registry.load("recommender", versions[0].version)
    assert first.recommend(np.array([1, 2]), 5).product_ids.shape == (2, 5)
    table = gold(world_copy, "model_registry")
    assert len(table) == sum(len(registry.versions(n)) for n in registry.models())


def test_customer_scores_cover_every_customer_with_probabilities(
    world_copy: World, second_run: dict
) -> None:
    scores = gold(world_copy, "customer_scores")
    assert scores["customer_id"].is_unique and len(scores) > 200
    for column in ("churn_probability", "purchase_propensity"):
        assert scores[column].between(0, 1).all()
    assert (scores["clv_next_window"] >= 0).all()
    tasks = {e["task"]: e for e in second_run["customers"]["evaluations"]}
    assert {"churn", "propensity", "clv"} <= set(tasks)
    assert 0.5 <= tasks["churn"]["roc_auc"] <= 1.0
    profiles = gold(world_copy, "customer_segment_profiles")
    assert profiles["size"].sum() == len(scores)


def test_mart_customer_360_carries_the_model_outputs(world: World) -> None:
    import duckdb

    path = world.root / "warehouse" / "warehouse.duckdb"  # built after training
    with duckdb.connect(str(path), read_only=True) as con:
        row = con.execute(
            "select count(*), count(churn_probability), count(top_recommendations), "
            "count(distinct recommendation_model) from mart_customer_360"
        ).fetchone()
    customers, scored, recommended, models = row
    assert scored == len(gold(world, "customer_scores"))
    assert recommended == customers and models == 1


def test_bad_arguments_and_missing_gold_fail_clearly(tmp_path: Path, world: World) -> None:
    bad = run_cli("ml", "train", "--part", "everything", env=world.env, check=False)
    assert bad.returncode == 2 and "unknown part" in bad.stderr
    empty = {**isolated_env(tmp_path), "SPARK_REMOTE": world.settings.spark_remote}
    missing = run_cli("ml", "train", env=empty, check=False)
    assert missing.returncode == 1
    assert "does not exist yet" in missing.stderr and "build it first" in missing.stderr


def test_the_ml_group_materialises_in_dagster(world: World) -> None:
    outcome = world.runs["training"]
    with dg.DagsterInstance.from_config(str(world.settings.dagster_home)) as instance:
        recs = instance.get_latest_materialization_event(
            dg.AssetKey(["gold", "customer_recommendations"])
        )
        scores = instance.get_latest_materialization_event(dg.AssetKey(["gold", "customer_scores"]))
        records = instance.get_records_for_run(
            outcome.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records
    report = outcome.materialized["gold.model_evaluations"]["training_report"]
    metadata = recs.asset_materialization.metadata
    assert recs.run_id == outcome.run_id
    assert metadata["champion"].value == report["champion"]
    assert metadata["dagster/row_count"].value == len(gold(world, "customer_recommendations"))
    assert "churn" in scores.asset_materialization.metadata["evaluation"].value
    # the recommenders are a chain of assets, each a step of its own: evaluation, then the
    # refit (which also records its rows in the log table), then the published lists
    steps: dict[str, list[str]] = {}
    for record in records:
        event = record.event_log_entry.dagster_event
        steps.setdefault("/".join(event.asset_key.path), []).append(event.step_key)
    log = steps["gold/model_evaluations"]
    assert [s for s in log if s.startswith("recommender")] == [
        "recommender_evaluation",
        "recommender_models",
    ]
    assert "customer_models" in log
    assert "recommender_models" in steps["gold/model_registry"]
    assert steps["gold/customer_recommendations"] == ["customer_recommendations"]


def test_the_live_blend_share_is_tuned_on_lists_as_of_each_window(world: World) -> None:
    """The session share is chosen on the recommenders' validation window and scored on their
    test window, with the champion's lists as they would have been published before each."""
    materialized = world.runs["training"].materialized["ml.session_recommender"]
    report = materialized["training_report"]
    backtests = gold(world, "recommendation_backtests")
    as_of = backtests.groupby("split")["as_of"].first()
    assert set(as_of.index) == {"validation", "test"} and as_of["validation"] < as_of["test"]
    assert (backtests.groupby(["split", "customer_id"])["rank"].max() <= 10).all()
    stored = gold(world, "model_evaluations")
    blend = stored[(stored["run_id"] == report["run_id"]) & (stored["task"] == "session_blend")]
    assert set(blend["split"]) == {"validation", "test"}
    assert {"batch_list", "session_model", "popularity", "blend_0.5"} <= set(blend["model"])
    assert set(blend["train_end"].astype(str)) == {str(d) for d in as_of}
    windows = report["windows"]["blend"]
    assert windows["validation"]["predictions"] > 0 and windows["test"]["predictions"] > 0
    # the share chosen on validation is the champion row, and what the API blends with
    champion = blend[blend["is_champion"]]
    assert set(champion["split"]) == {"validation", "test"}
    share = json.loads(champion["params"].iloc[0])["session_share"]
    assert share == report["windows"]["session_share"] == materialized["session_share"]
    registry = ModelRegistry(str(world.root / "lake" / "models"))
    assert registry.get("session_recommender").params["session_share"] == share
    assert load_snapshot(world.settings.lake).session_share == share


def test_purchase_intent_is_learned_on_a_time_split_and_explained(world: World) -> None:
    materialized = world.runs["training"].materialized["ml.purchase_intent"]
    report = materialized["training_report"]
    stored = gold(world, "model_evaluations")
    rows = stored[(stored["run_id"] == report["run_id"]) & (stored["task"] == "purchase_intent")]
    scores = rows.pivot_table(index=["model", "split"], columns="metric", values="value")
    assert set(scores.index) == {
        (m, s) for m in ("lightgbm", "cart_baseline") for s in ("validation", "test")
    }
    assert scores["roc_auc"].between(0, 1).all() and (scores["positive_rate"] > 0).all()
    shap = materialized["shap_mean_abs"]
    assert set(shap) == set(FEATURES) and list(shap.values()) == sorted(shap.values(), reverse=True)
    # the same summary in the log table, for the Models dashboard
    summary = rows[rows["metric"].str.startswith("shap:")].set_index("metric")["value"]
    assert {f"shap:{f}" for f in FEATURES} == set(summary.index)
    assert abs(summary[f"shap:{FEATURES[0]}"] - shap[FEATURES[0]]) < 1e-3
    registry = ModelRegistry(str(world.root / "lake" / "models"))
    record = registry.get("purchase_intent")
    assert record.version == materialized["model_version"]
    model = registry.load("purchase_intent", record.version)
    assert model.num_feature() == len(FEATURES)
    # the registry table lists it (the intent model is saved after the recommenders list it)
    listed = gold(world, "model_registry")
    assert "purchase_intent" in set(listed["model_name"])


def test_ml_train_trains_purchase_intent_as_a_part(second_run: dict) -> None:
    report = second_run["intent"]
    assert report["champion"] == "lightgbm" and report["champion_version"]
    assert {(e["model"], e["split"]) for e in report["evaluations"]} == {
        (m, s) for m in ("lightgbm", "cart_baseline") for s in ("validation", "test")
    }


def test_customer_scores_carry_shap_reasons_and_the_drift_report_reads_the_profiles(
    world_copy: World, second_run: dict
) -> None:
    scores = gold(world_copy, "customer_scores")
    for task in ("churn", "propensity"):
        top = scores[f"{task}_reasons"].str.split(", ")
        assert (top.str.len() == 3).all()
        assert top.explode().str.split(" ").str[0].isin(FEATURE_NAMES).all()
    shap = gold(world_copy, "model_evaluations")
    shap = shap[shap["metric"].str.startswith("shap:") & shap["task"].isin(["churn", "propensity"])]
    assert set(shap["task"]) == {"churn", "propensity"} and (shap["value"] >= 0).all()

    result = run_cli("ml", "drift", "--json", env=world_copy.env, check=False)
    report = json.loads(result.stdout)
    models = {row["model"] for row in report["rows"]}
    assert models == {"purchase_intent", "customer_churn", "customer_propensity"}
    assert all(row["psi"] >= 0 and row["status"] in STATUSES for row in report["rows"])
    [check] = report["checks"]
    scores_drifted = [r for r in report["rows"] if r["feature"] == "score" and r["psi"] >= 0.25]
    # the run fails exactly when a score drifted, and then the check says which
    assert (result.returncode != 0) == bool(scores_drifted)
    assert ("scores drifted" in check["description"]) == bool(scores_drifted)
    assert len(world_copy.table("gold.model_drift")) == len(report["rows"])
