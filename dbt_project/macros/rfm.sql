{#- The RFM logic, shared by the RFM as of the run date (int_customer_rfm_scored,
    mart_customer_rfm) and the RFM a look-back earlier (int_customer_rfm_scored_previous,
    mart_rfm_segment_movement), so the two are scored and segmented alike. -#}

{#- Recency, frequency and monetary value per customer as of the date in `as_of` (a relation
    or subquery with one row and a column as_of_date), scored 1–5 by quintile. Only purchases
    make a customer recent or frequent; monetary is net of returns, so a customer who sends
    goods back is worth what they kept. Lines after the as-of date are ignored. -#}
{% macro rfm_scores(sales_lines, as_of) %}
with as_of as (

    select as_of_date from {{ as_of }}

),

lines as (

    select lines.*
    from {{ sales_lines }} as lines
    cross join as_of
    where lines.invoice_date <= as_of.as_of_date

),

customer_totals as (

    select
        customer_id,
        min(invoice_date) filter (where not is_return) as first_purchase_date,
        max(invoice_date) filter (where not is_return) as last_purchase_date,
        count(distinct invoice_id) filter (where not is_return) as frequency,
        cast(sum(net_amount) as decimal(18, 2)) as monetary
    from lines
    group by customer_id

),

purchasers as (

    -- a customer with nothing but returns up to the as-of date has no recency to score
    select
        customer_totals.*,
        as_of.as_of_date,
        date_diff('day', customer_totals.last_purchase_date, as_of.as_of_date) as recency_days
    from customer_totals
    cross join as_of
    where customer_totals.last_purchase_date is not null

)

select
    customer_id,
    as_of_date,
    first_purchase_date,
    last_purchase_date,
    recency_days,
    frequency,
    monetary,
    -- quintiles (ntile); equal values are split by customer_id so every build scores alike.
    -- Recency is ordered oldest first, so the most recent buyers score 5.
    ntile(5) over (order by recency_days desc, customer_id) as r_score,
    ntile(5) over (order by frequency, customer_id) as f_score,
    ntile(5) over (order by monetary, customer_id) as m_score
from purchasers
{% endmacro %}

{#- customer_id and segment of every customer in `scored` (with r_score, f_score, m_score): the
    first rule of `rules` (the seed rfm_segment_rules) by priority whose inclusive score ranges
    hold the customer's scores. Both arguments name CTEs or relations. -#}
{% macro rfm_segments(scored, rules) %}
    select
        {{ scored }}.customer_id,
        {{ rules }}.segment
    from {{ scored }}
    inner join {{ rules }}
        on {{ scored }}.r_score between {{ rules }}.r_min and {{ rules }}.r_max
        and {{ scored }}.f_score between {{ rules }}.f_min and {{ rules }}.f_max
        and {{ scored }}.m_score between {{ rules }}.m_min and {{ rules }}.m_max
    qualify row_number() over (
        partition by {{ scored }}.customer_id order by {{ rules }}.priority
    ) = 1
{% endmacro %}
