-- One row per customer: the customer models' scores as of the newest day of data.
select
    customer_id,
    as_of as scored_as_of,
    segment as ml_segment_id,
    segment_label as ml_segment,
    churn_probability,
    is_churn_risk,
    purchase_propensity,
    clv_next_window as predicted_clv,
    clv_baseline,
    clv_window_days
from {{ source('gold', 'customer_scores') }}
