-- One row per customer (current version): who they are, where they live now, what they have
-- bought over the whole history in gold, their RFM segment, how they use the web and app, and
-- what the models say: ML segment, churn risk, propensity, predicted CLV, top recommendations.
with customers as (

    select * from {{ ref('stg_customers') }}
    where is_current

),

as_of as (

    select as_of_date from {{ ref('int_as_of_date') }}

),

lines as (

    select * from {{ ref('int_sales_lines') }}

),

rfm as (

    select * from {{ ref('mart_customer_rfm') }}

),

purchases as (

    select
        customer_id,
        min(invoice_date) filter (where not is_return) as first_purchase_date,
        max(invoice_date) filter (where not is_return) as last_purchase_date,
        count(distinct invoice_id) filter (where not is_return) as orders,
        count(distinct invoice_id) filter (where is_return) as return_invoices,
        cast(sum(units_sold) as bigint) as units_sold,
        cast(sum(units_returned) as bigint) as units_returned,
        cast(sum(sales_amount) as decimal(18, 2)) as sales_amount,
        cast(sum(returned_amount) as decimal(18, 2)) as returned_amount,
        cast(sum(net_amount) as decimal(18, 2)) as net_revenue,
        cast(sum(margin_amount) as decimal(18, 2)) as margin_amount
    from lines
    group by customer_id

),

category_revenue as (

    select
        customer_id,
        category_name,
        cast(sum(net_amount) as decimal(18, 2)) as net_revenue
    from lines
    group by customer_id, category_name

),

preferred_category as (

    -- the category they spent most on, net of returns (ties: alphabetical)
    select customer_id, category_name as preferred_category
    from category_revenue
    where net_revenue > 0
    qualify row_number() over (
        partition by customer_id order by net_revenue desc, category_name
    ) = 1

),

brand_revenue as (

    select
        customer_id,
        brand_name,
        cast(sum(net_amount) as decimal(18, 2)) as net_revenue
    from lines
    group by customer_id, brand_name

),

preferred_brand as (

    select customer_id, brand_name as preferred_brand
    from brand_revenue
    where net_revenue > 0
    qualify row_number() over (
        partition by customer_id order by net_revenue desc, brand_name
    ) = 1

),

sessions as (

    select
        customer_id,
        count(*) as sessions,
        count(*) filter (where converted) as converted_sessions,
        max(session_start) as last_session_at
    from {{ ref('stg_sessions') }}
    where customer_id is not null
    group by customer_id

),

events as (

    select
        customer_id,
        count(*) as events,
        count(*) filter (where event_type = 'product_view') as product_views,
        count(*) filter (where event_type = 'add_to_cart') as adds_to_cart
    from {{ ref('stg_events') }}
    where customer_id is not null
    group by customer_id

),

scores as (

    select * from {{ ref('stg_customer_scores') }}

),

products as (

    select product_id, product_name from {{ ref('stg_products') }}
    where is_current

),

recommendations as (

    select
        recs.customer_id,
        any_value(recs.recommendation_model) as recommendation_model,
        string_agg(products.product_name, ' | ' order by recs.recommendation_rank)
            filter (where recs.recommendation_rank <= 3) as top_recommendations,
        count(*) as recommendations
    from {{ ref('stg_customer_recommendations') }} as recs
    left join products on recs.product_id = products.product_id
    group by recs.customer_id

)

select
    customers.customer_id,
    customers.customer_sk,
    customers.customer_code,
    customers.customer_name,
    customers.gender,
    customers.birth_date,
    -- whole years lived at the run date (date_sub counts complete years only)
    date_sub('year', customers.birth_date, as_of.as_of_date) as age_years,
    customers.customer_type,
    customers.loyalty_tier,
    customers.customer_status,
    customers.registration_date,
    customers.region,
    customers.city_id,
    customers.city_name,
    customers.area_id,
    customers.area_name,
    purchases.first_purchase_date,
    purchases.last_purchase_date,
    coalesce(purchases.orders, 0) as orders,
    coalesce(purchases.return_invoices, 0) as return_invoices,
    coalesce(purchases.units_sold, 0) as units_sold,
    coalesce(purchases.units_returned, 0) as units_returned,
    coalesce(purchases.sales_amount, 0) as sales_amount,
    coalesce(purchases.returned_amount, 0) as returned_amount,
    coalesce(purchases.net_revenue, 0) as net_revenue,
    coalesce(purchases.margin_amount, 0) as margin_amount,
    cast(purchases.sales_amount / nullif(purchases.orders, 0) as decimal(18, 2))
        as average_order_value,
    -- share of the value bought that came back
    round(purchases.returned_amount / nullif(purchases.sales_amount, 0), 4) as return_rate,
    preferred_category.preferred_category,
    preferred_brand.preferred_brand,
    rfm.as_of_date as rfm_as_of_date,
    rfm.recency_days,
    rfm.frequency,
    rfm.monetary,
    rfm.r_score,
    rfm.f_score,
    rfm.m_score,
    rfm.rfm_score,
    rfm.rfm_segment,
    coalesce(sessions.sessions, 0) as sessions,
    coalesce(sessions.converted_sessions, 0) as converted_sessions,
    sessions.last_session_at,
    coalesce(events.events, 0) as events,
    coalesce(events.product_views, 0) as product_views,
    coalesce(events.adds_to_cart, 0) as adds_to_cart,
    scores.ml_segment_id,
    scores.ml_segment,
    scores.churn_probability,
    scores.is_churn_risk,
    scores.purchase_propensity,
    scores.predicted_clv,
    scores.clv_window_days,
    scores.scored_as_of,
    recommendations.top_recommendations,
    coalesce(recommendations.recommendations, 0) as recommendations,
    recommendations.recommendation_model
from customers
cross join as_of
left join purchases on customers.customer_id = purchases.customer_id
left join preferred_category on customers.customer_id = preferred_category.customer_id
left join preferred_brand on customers.customer_id = preferred_brand.customer_id
left join rfm on customers.customer_id = rfm.customer_id
left join sessions on customers.customer_id = sessions.customer_id
left join events on customers.customer_id = events.customer_id
left join scores on customers.customer_id = scores.customer_id
left join recommendations on customers.customer_id = recommendations.customer_id
