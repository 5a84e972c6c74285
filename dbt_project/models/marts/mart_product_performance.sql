{%- set window_days = var('momentum_window_days') -%}
-- Per product (current attributes), up to the run date: what it sold, what it earned, how the
-- clickstream converted (sessions that viewed it → added it to the cart → bought it; web and app
-- only, while sales cover every channel) and how fast it sells now: velocity = units per day
-- over the last {{ window_days }} days, momentum = those units against the {{ window_days }}
-- days before.
with as_of as (

    select as_of_date from {{ ref('int_as_of_date') }}

),

products as (

    select * from {{ ref('stg_products') }}
    where is_current

),

lines as (

    select
        lines.*,
        lines.invoice_date > as_of.as_of_date - {{ window_days }} as in_last_window,
        lines.invoice_date <= as_of.as_of_date - {{ window_days }}
            and lines.invoice_date > as_of.as_of_date - {{ 2 * window_days }}
            as in_previous_window
    from {{ ref('int_sales_lines') }} as lines
    cross join as_of
    where lines.invoice_date <= as_of.as_of_date

),

sales as (

    select
        product_id,
        min(invoice_date) filter (where not is_return) as first_sale_date,
        max(invoice_date) filter (where not is_return) as last_sale_date,
        count(distinct invoice_id) filter (where not is_return) as orders,
        count(distinct customer_id) filter (where not is_return) as customers,
        cast(sum(units_sold) as bigint) as units_sold,
        cast(sum(units_returned) as bigint) as units_returned,
        cast(sum(sales_amount) as decimal(18, 2)) as sales_amount,
        cast(sum(returned_amount) as decimal(18, 2)) as returned_amount,
        cast(sum(net_amount) as decimal(18, 2)) as net_revenue,
        cast(sum(margin_amount) as decimal(18, 2)) as margin_amount,
        cast(sum(units_sold) filter (where in_last_window) as bigint) as units_last_window,
        cast(sum(units_sold) filter (where in_previous_window) as bigint)
            as units_previous_window
    from lines
    group by product_id

),

funnel as (

    select
        steps.product_id,
        count(*) filter (where steps.product_views > 0) as view_sessions,
        count(*) filter (where steps.adds_to_cart > 0) as cart_sessions,
        count(*) filter (where steps.purchase_lines > 0) as purchase_sessions,
        cast(sum(steps.product_views) as bigint) as product_views,
        cast(sum(steps.adds_to_cart) as bigint) as adds_to_cart
    from {{ ref('int_session_product_steps') }} as steps
    cross join as_of
    where steps.session_date <= as_of.as_of_date
    group by steps.product_id

),

joined as (

    select
        as_of.as_of_date,
        products.product_id,
        products.sku,
        products.product_name,
        products.brand_name,
        products.category_name,
        products.subcategory_name,
        products.list_price,
        products.is_active,
        sales.first_sale_date,
        sales.last_sale_date,
        coalesce(sales.orders, 0) as orders,
        coalesce(sales.customers, 0) as customers,
        coalesce(sales.units_sold, 0) as units_sold,
        coalesce(sales.units_returned, 0) as units_returned,
        coalesce(sales.sales_amount, 0) as sales_amount,
        coalesce(sales.returned_amount, 0) as returned_amount,
        coalesce(sales.net_revenue, 0) as net_revenue,
        coalesce(sales.margin_amount, 0) as margin_amount,
        coalesce(funnel.view_sessions, 0) as view_sessions,
        coalesce(funnel.cart_sessions, 0) as cart_sessions,
        coalesce(funnel.purchase_sessions, 0) as purchase_sessions,
        coalesce(funnel.product_views, 0) as product_views,
        coalesce(funnel.adds_to_cart, 0) as adds_to_cart,
        coalesce(sales.units_last_window, 0) as units_last_window,
        coalesce(sales.units_previous_window, 0) as units_previous_window
    from products
    cross join as_of
    left join sales on products.product_id = sales.product_id
    left join funnel on products.product_id = funnel.product_id

)

select
    as_of_date,
    product_id,
    sku,
    product_name,
    brand_name,
    category_name,
    subcategory_name,
    list_price,
    is_active,
    first_sale_date,
    last_sale_date,
    orders,
    customers,
    units_sold,
    units_returned,
    sales_amount,
    returned_amount,
    net_revenue,
    margin_amount,
    round(margin_amount / nullif(net_revenue, 0), 4) as margin_rate,
    view_sessions,
    cart_sessions,
    purchase_sessions,
    product_views,
    adds_to_cart,
    round(cart_sessions / nullif(view_sessions, 0), 4) as view_to_cart_rate,
    round(purchase_sessions / nullif(cart_sessions, 0), 4) as cart_to_purchase_rate,
    round(purchase_sessions / nullif(view_sessions, 0), 4) as view_to_purchase_rate,
    {{ window_days }} as window_days,
    units_last_window,
    units_previous_window,
    round(units_last_window / {{ window_days }}, 4) as velocity_units_per_day,
    -- relative change; undefined when nothing sold in the previous window
    round(units_last_window / nullif(units_previous_window, 0) - 1, 4) as momentum
from joined
