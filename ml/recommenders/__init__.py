"""Recommenders sharing one interface (`fit(interactions)`, `recommend(customer_ids, k)`), and
market-basket rules. See `base` for the interface and each module for the method and its why."""

from ml.recommenders.association import (
    BoughtWith,
    association_rules,
    frequently_bought_together,
)
from ml.recommenders.base import Recommendations, Recommender, top_k
from ml.recommenders.content import ContentBased, product_features
from ml.recommenders.factorization import ALS, BPR
from ml.recommenders.hybrid import BusinessRules, Hybrid
from ml.recommenders.linear import EASE
from ml.recommenders.neighbourhood import ItemKNN, UserKNN, item_similarity
from ml.recommenders.popularity import GroupPopularity, Popularity, Trending
from ml.recommenders.repeat import BuyAgain

__all__ = [
    "ALS",
    "BPR",
    "BoughtWith",
    "BusinessRules",
    "BuyAgain",
    "ContentBased",
    "EASE",
    "GroupPopularity",
    "Hybrid",
    "ItemKNN",
    "Popularity",
    "Recommendations",
    "Recommender",
    "Trending",
    "UserKNN",
    "association_rules",
    "frequently_bought_together",
    "item_similarity",
    "product_features",
    "top_k",
]
