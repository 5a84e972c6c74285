-- RFM metrics and scores per customer `rfm_movement_days` before the run date: the scoring of
-- int_customer_rfm_scored (macros/rfm.sql) moved back in time, for mart_rfm_segment_movement.
-- Customers are scored against the customers of that day, as mart_customer_rfm would have.
{% set previous_as_of %}
(
    select as_of_date - {{ var('rfm_movement_days') }} as as_of_date
    from {{ ref('int_as_of_date') }}
)
{% endset %}
{{ rfm_scores(ref('int_sales_lines'), previous_as_of) }}
