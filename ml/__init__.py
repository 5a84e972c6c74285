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
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# The gold tables the models train on: their Delta versions are recorded with each model, and
# the Dagster `ml` assets depend on them.
RECOMMENDER_INPUTS = (
    "gold.customer_product_daily",
    "gold.dim_product",
    "gold.dim_customer",
    "gold.recommendation_exposures",  # what shoppers did with the lists (ml.feedback)
)
CUSTOMER_MODEL_INPUTS = (
    "gold.fact_sales_line",
    "gold.fact_events",
    "gold.dim_product",
    "gold.dim_customer",
)
