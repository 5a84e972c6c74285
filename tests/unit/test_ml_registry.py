"""Model registry: versions round-trip, stay loadable, and the champion follows the metric."""

from __future__ import annotations

import json
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from ml.interactions import Interactions
from ml.recommenders import Popularity
from ml.registry import ModelRegistry, StaleModel


def test_save_list_load_and_metadata(tmp_path: Path) -> None:
    registry = ModelRegistry(str(tmp_path / "models"))
    train = Interactions.from_arrays([1, 2, 3, 3], [10, 10, 11, 12])
    v1 = registry.save(
        "popularity",
        Popularity().fit(train),
        params={"by": "users"},
        metrics={"ndcg@10": 0.07},
        inputs={"gold.customer_product_interactions": 12},
    )
    v2 = registry.save("popularity", {"a": np.arange(3)}, metrics={"ndcg@10": 0.05})
    assert (v1.version, v2.version) == ("000001", "000002")
    assert [v.version for v in registry.versions("popularity")] == ["000001", "000002"]
    assert registry.models() == ["popularity"]

    meta = json.loads((tmp_path / "models/popularity/000001/metadata.json").read_text())
    assert meta["params"] == {"by": "users"}
    assert meta["inputs"] == {"gold.customer_product_interactions": 12}
    assert meta["created_at"].endswith("+00:00")
    assert (tmp_path / "models/popularity/000001/model.joblib").exists()

    old = registry.load("popularity", "000001")  # previous versions stay loadable
    assert old.recommend([1], k=2).product_ids[0].tolist() == [11, 12]
    assert registry.load("popularity", "1") is not None
    assert registry.load("popularity")["a"].tolist() == [0, 1, 2]  # latest by default
    with pytest.raises(KeyError):
        registry.load("popularity", "000009")
    with pytest.raises(KeyError):
        registry.get("nothing")


def test_champion_by_a_declared_metric(tmp_path: Path) -> None:
    registry = ModelRegistry(str(tmp_path))
    registry.save("als", "a", metrics={"ndcg@10": 0.20, "mae": 5.0})
    registry.save("als", "b", metrics={"ndcg@10": 0.25, "mae": 7.0})
    registry.save("als", "c", metrics={"mae": 3.0})  # no ndcg: ignored for that metric
    registry.save("als", "d", metrics={"ndcg@10": 0.25, "mae": float("nan")})
    assert registry.champion("als", "ndcg@10").version == "000004"  # tie: the newest
    assert registry.champion("als", "mae", mode="min").version == "000003"
    with pytest.raises(KeyError):
        registry.champion("als", "recall@10")
    with pytest.raises(ValueError):
        registry.champion("als", "mae", mode="best")  # type: ignore[arg-type]


def test_half_written_versions_are_invisible_and_not_reused(tmp_path: Path) -> None:
    registry = ModelRegistry(str(tmp_path))
    registry.save("churn", 1)
    os.makedirs(tmp_path / "churn" / "000002")  # a crash before metadata.json was written
    assert [v.version for v in registry.versions("churn")] == ["000001"]
    assert registry.load("churn") == 1
    assert registry.save("churn", 3).version == "000003"
    with pytest.raises(ValueError):
        registry.save("bad/name", 1)


class Fitted:
    """A model class of code that is later removed."""


def test_a_version_whose_class_is_gone_asks_for_a_refit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = types.ModuleType("models_of_older_code")
    module.Fitted = Fitted
    monkeypatch.setattr(Fitted, "__module__", module.__name__)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    registry = ModelRegistry(str(tmp_path / "models"))
    registry.save("ranker", Fitted())
    assert isinstance(registry.load("ranker"), Fitted)
    del module.Fitted  # the class was removed from its module
    with pytest.raises(StaleModel, match=r"'ranker' version 000001 .*refit it"):
        registry.load("ranker")
    monkeypatch.delitem(sys.modules, module.__name__)  # the whole module is gone
    with pytest.raises(StaleModel, match="models_of_older_code"):
        registry.load("ranker")
