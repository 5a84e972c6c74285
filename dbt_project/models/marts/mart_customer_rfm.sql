-- RFM per customer as of the run date: metrics and scores from int_customer_rfm_scored, the
-- segment from the rule table (seed rfm_segment_rules): the first rule by priority whose score
-- ranges hold the customer's scores (macros/rfm.sql, shared with mart_rfm_segment_movement).
with scored as (

    select * from {{ ref('int_customer_rfm_scored') }}

),

rules as (

    select * from {{ ref('rfm_segment_rules') }}

),

segments as (

{{ rfm_segments('scored', 'rules') }}

)

select
    scored.customer_id,
    scored.as_of_date,
    scored.first_purchase_date,
    scored.last_purchase_date,
    scored.recency_days,
    scored.frequency,
    scored.monetary,
    scored.r_score,
    scored.f_score,
    scored.m_score,
    concat(scored.r_score, scored.f_score, scored.m_score) as rfm_score,
    segments.segment as rfm_segment
from scored
left join segments on scored.customer_id = segments.customer_id
