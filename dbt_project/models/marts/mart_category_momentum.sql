{%- set window_days = var('momentum_window_days') -%}
-- Per category, as of the run date: units and net revenue of the last {{ window_days }} days
-- against the {{ window_days }} days before, the category's share of recent revenue, and a rank
-- by revenue momentum. Sales count in the category the product had at the time.
with as_of as (

    select as_of_date from {{ ref('int_as_of_date') }}

),

categories as (

    select distinct category_name from {{ ref('stg_products') }}

),

lines as (

    select
        lines.*,
        lines.invoice_date > as_of.as_of_date - {{ window_days }} as in_last_window
    from {{ ref('int_sales_lines') }} as lines
    cross join as_of
    where lines.invoice_date <= as_of.as_of_date
        and lines.invoice_date > as_of.as_of_date - {{ 2 * window_days }}

),

windows as (

    select
        category_name,
        cast(sum(units_sold) filter (where in_last_window) as bigint) as units_last_window,
        cast(sum(units_sold) filter (where not in_last_window) as bigint)
            as units_previous_window,
        cast(sum(net_amount) filter (where in_last_window) as decimal(18, 2))
            as net_revenue_last_window,
        cast(sum(net_amount) filter (where not in_last_window) as decimal(18, 2))
            as net_revenue_previous_window,
        count(distinct customer_id) filter (where in_last_window and not is_return)
            as customers_last_window
    from lines
    group by category_name

),

joined as (

    select
        as_of.as_of_date,
        {{ window_days }} as window_days,
        categories.category_name,
        coalesce(windows.units_last_window, 0) as units_last_window,
        coalesce(windows.units_previous_window, 0) as units_previous_window,
        coalesce(windows.net_revenue_last_window, 0) as net_revenue_last_window,
        coalesce(windows.net_revenue_previous_window, 0) as net_revenue_previous_window,
        coalesce(windows.customers_last_window, 0) as customers_last_window
    from categories
    cross join as_of
    left join windows on categories.category_name = windows.category_name

),

momentum as (

    select
        *,
        round(units_last_window / window_days, 4) as velocity_units_per_day,
        round(
            net_revenue_last_window / nullif(sum(net_revenue_last_window) over (), 0), 4
        ) as revenue_share_last_window,
        -- relative change; undefined against an empty (or net-negative) previous window
        round(units_last_window / nullif(units_previous_window, 0) - 1, 4) as units_momentum,
        round(
            case when net_revenue_previous_window > 0
                then net_revenue_last_window / net_revenue_previous_window - 1
            end,
            4
        ) as revenue_momentum
    from joined

)

select
    *,
    rank() over (order by revenue_momentum desc nulls last, net_revenue_last_window desc)
        as momentum_rank
from momentum
