-- One row per customer and slot of the champion recommender's top-N list.
select
    customer_id,
    rank as recommendation_rank,
    product_id,
    score as recommendation_score,
    reason as recommendation_reason,
    source as recommendation_source,
    model as recommendation_model,
    model_version as recommendation_model_version,
    as_of as recommended_as_of
from {{ source('gold', 'customer_recommendations') }}
