-- Movement between RFM segments: each customer's segment as of the run date (mart_customer_rfm)
-- against their segment `rfm_movement_days` earlier (same scoring and rules, macros/rfm.sql),
-- counted per from → to pair. Customers who had not bought by the earlier date come from 'New'.
with as_of as (

    select
        as_of_date,
        -- the as-of date of int_customer_rfm_scored_previous
        as_of_date - {{ var('rfm_movement_days') }} as previous_as_of_date
    from {{ ref('int_as_of_date') }}

),

current_rfm as (

    select * from {{ ref('mart_customer_rfm') }}

),

previous_scored as (

    select * from {{ ref('int_customer_rfm_scored_previous') }}

),

rules as (

    select * from {{ ref('rfm_segment_rules') }}

),

previous_segments as (

{{ rfm_segments('previous_scored', 'rules') }}

),

customer_moves as (

    select
        current_rfm.customer_id,
        coalesce(previous_segments.segment, 'New') as from_segment,
        current_rfm.rfm_segment as to_segment,
        previous_scored.customer_id is null as is_new_customer,
        current_rfm.monetary,
        previous_scored.monetary as previous_monetary
    from current_rfm
    left join previous_scored on current_rfm.customer_id = previous_scored.customer_id
    left join previous_segments on current_rfm.customer_id = previous_segments.customer_id

),

movements as (

    select
        from_segment,
        to_segment,
        is_new_customer,
        count(*) as customers,
        cast(sum(monetary) as decimal(18, 2)) as monetary,
        cast(sum(previous_monetary) as decimal(18, 2)) as previous_monetary
    from customer_moves
    group by from_segment, to_segment, is_new_customer

)

select
    as_of.as_of_date,
    as_of.previous_as_of_date,
    movements.from_segment,
    movements.to_segment,
    movements.is_new_customer,
    movements.from_segment = movements.to_segment and not movements.is_new_customer
        as is_unchanged,
    movements.customers,
    -- the share of the from segment's customers that went to this segment
    round(
        movements.customers / sum(movements.customers) over (
            partition by movements.from_segment, movements.is_new_customer
        ),
        4
    ) as share_of_from_segment,
    movements.monetary,
    movements.previous_monetary
from movements
cross join as_of
