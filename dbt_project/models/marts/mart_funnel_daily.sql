-- The web/app shopping funnel per day and category: sessions that viewed a product of the
-- category, added one to the cart, bought one. Sessions are filed under the day they started;
-- a session counts once per category and step, however many products it touched.
with steps as (

    select * from {{ ref('int_session_product_steps') }}

),

daily as (

    select
        session_date as funnel_date,
        category_name,
        count(distinct session_id) filter (where product_views > 0) as view_sessions,
        count(distinct session_id) filter (where adds_to_cart > 0) as cart_sessions,
        count(distinct session_id) filter (where purchase_lines > 0) as purchase_sessions,
        cast(sum(product_views) as bigint) as product_views,
        cast(sum(adds_to_cart) as bigint) as adds_to_cart,
        cast(sum(purchase_lines) as bigint) as purchase_lines,
        cast(sum(units_purchased) as bigint) as units_purchased
    from steps
    group by session_date, category_name

)

select
    *,
    round(cart_sessions / nullif(view_sessions, 0), 4) as view_to_cart_rate,
    round(purchase_sessions / nullif(cart_sessions, 0), 4) as cart_to_purchase_rate,
    round(purchase_sessions / nullif(view_sessions, 0), 4) as view_to_purchase_rate
from daily
