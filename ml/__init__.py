"""Engine-independent ML for the lakehouse: recommenders, their offline evaluation, customer
models (segments, churn, CLV, propensity) and a small model registry.

Everything here is plain Python over numpy/scipy/pandas-sized inputs. Spark jobs build the
inputs in the lake (interaction arrays, per-customer features, baskets); Dagster assets call
these functions and write the outputs back as gold tables.

OpenBLAS must run single-threaded for `implicit` (its own threads do the work; a threaded BLAS
underneath slows ALS down by up to 10x and makes it warn). The variable only takes effect if it
is set before numpy loads OpenBLAS, so it is set here, as early as the package is imported;
`ml.recommenders.factorization` also caps BLAS with threadpoolctl around fitting in case numpy
was imported first.

glibc's malloc gives each thread that contends for it an arena of its own, up to 8 per core,
and keeps what is freed in each: the ranker's rounds (threads proposing, LightGBM's and
implicit's threads) left more behind after every training cutoff. Two arenas, unless
`MALLOC_ARENA_MAX` says otherwise, took the peak of its fit at 250 k customers from 4.1 to 3.5 GB
(docs/ml.md); the cap applies to arenas made after this import.
"""

from __future__ import annotations

import contextlib
import ctypes
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

MALLOC_ARENAS = 2
M_ARENA_MAX = -8  # mallopt's parameter number (glibc's malloc.h)


def _cap_malloc_arenas() -> None:
    if "MALLOC_ARENA_MAX" in os.environ:  # glibc read it at start
        return
    with contextlib.suppress(OSError, AttributeError):  # not glibc: no such arenas
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, MALLOC_ARENAS)


_cap_malloc_arenas()

# The gold tables the models train on: their Delta versions are recorded with each model, and
# the Dagster `ml` assets depend on them.
RECOMMENDER_INPUTS = (
    "gold.customer_product_daily",
    "gold.dim_product",
    "gold.dim_customer",
    "gold.recommendation_exposures",  # what shoppers did with the lists (ml.feedback)
)
# what the ranker's training snapshots know of each cutoff's buyers (a Spark step, by the
# ranker's own function): the evaluation and the refit read it
RANKER_FEATURES = "gold.customer_product_features"
# recorded with the upstream versions it was built from: the windows its days and buyers follow
RANKER_FEATURES_WINDOWS = "setting:ML_TEST_DAYS"
# the training cutoffs' candidates (every generator's score and rank) of their sampled buyers,
# and the other settings they follow (recorded like the windows)
RANKER_CANDIDATES = "gold.customer_product_candidates"
RANKER_CANDIDATES_SAMPLES = (
    "setting:ML_RANKER_TRAINING_CUSTOMERS",
    "setting:ML_RANKER_GENERATOR_CUSTOMERS",
)
CUSTOMER_MODEL_INPUTS = (
    "gold.fact_sales_line",
    "gold.fact_events",
    "gold.dim_product",
    "gold.dim_customer",
)
