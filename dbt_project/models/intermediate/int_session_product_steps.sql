-- One row per session × product: how far the session went with the product (viewed, added to
-- cart, bought). Filed under the day the session started, like gold.fact_sessions, so a
-- session that crosses midnight counts once.
with events as (

    select * from {{ ref('stg_events') }}
    where event_type in ('product_view', 'add_to_cart', 'purchase')

),

sessions as (

    select session_id, session_date from {{ ref('stg_sessions') }}

),

products as (

    select product_sk, category_name from {{ ref('stg_products') }}

)

select
    events.session_id,
    coalesce(sessions.session_date, min(events.event_date)) as session_date,
    events.product_id,
    -- the category of the product version the session first saw
    arg_min(products.category_name, events.event_time) as category_name,
    count(*) filter (where events.event_type = 'product_view') as product_views,
    count(*) filter (where events.event_type = 'add_to_cart') as adds_to_cart,
    count(*) filter (where events.event_type = 'purchase') as purchase_lines,
    coalesce(cast(sum(events.quantity) filter (where events.event_type = 'purchase') as bigint), 0)
        as units_purchased
from events
left join sessions on events.session_id = sessions.session_id
left join products on events.product_sk = products.product_sk
group by events.session_id, sessions.session_date, events.product_id
