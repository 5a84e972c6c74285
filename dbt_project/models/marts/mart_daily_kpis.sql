{{
    config(
        materialized='incremental',
        unique_key='kpi_date',
        incremental_strategy='delete+insert',
        on_schema_change='fail'
    )
}}
-- Platform KPIs per day: ERP sales over every channel, web/app behaviour from the clickstream.
-- Incremental: a build that starts from the previous warehouse recomputes only the days whose
-- source totals (invoice lines, net revenue, events, sessions) differ from what the table holds
-- — new days, days that got late events or a next-morning cancellation, days a backfill
-- rewrote; a build from an empty file computes every day.
with lines as (

    select * from {{ ref('int_sales_lines') }}

),

events as (

    select event_date, event_type from {{ ref('stg_events') }}

),

sessions as (

    select session_date, converted from {{ ref('stg_sessions') }}

),

line_totals as (

    select
        invoice_date as kpi_date,
        count(*) as invoice_lines,
        cast(sum(net_amount) as decimal(18, 2)) as net_revenue
    from lines
    group by invoice_date

),

event_totals as (

    select event_date as kpi_date, count(*) as events
    from events
    group by event_date

),

session_totals as (

    select session_date as kpi_date, count(*) as sessions
    from sessions
    group by session_date

),

active_days as (

    select kpi_date from line_totals
    union
    select kpi_date from event_totals
    union
    select kpi_date from session_totals

),

days as (

    -- every day from the first to the last with any activity, quiet days included
    select date_day as kpi_date, day_name, is_weekend
    from {{ ref('stg_dates') }}
    where date_day between (select min(kpi_date) from active_days)
        and (select max(kpi_date) from active_days)

),

source_totals as (

    select
        days.kpi_date,
        days.day_name,
        days.is_weekend,
        coalesce(line_totals.invoice_lines, 0) as invoice_lines,
        coalesce(line_totals.net_revenue, 0) as net_revenue,
        coalesce(event_totals.events, 0) as events,
        coalesce(session_totals.sessions, 0) as sessions
    from days
    left join line_totals on days.kpi_date = line_totals.kpi_date
    left join event_totals on days.kpi_date = event_totals.kpi_date
    left join session_totals on days.kpi_date = session_totals.kpi_date

),

days_to_build as (

    select source_totals.*
    from source_totals
    {% if is_incremental() -%}
    left join {{ this }} as built on source_totals.kpi_date = built.kpi_date
    where built.kpi_date is null
        or source_totals.invoice_lines != built.invoice_lines
        or source_totals.net_revenue != built.net_revenue
        or source_totals.events != built.events
        or source_totals.sessions != built.sessions
    {%- endif %}

),

sales as (

    select
        invoice_date as kpi_date,
        count(distinct invoice_id) filter (where not is_return) as orders,
        count(distinct customer_id) filter (where not is_return) as customers,
        cast(sum(units_sold) as bigint) as units_sold,
        cast(sum(sales_amount) as decimal(18, 2)) as sales_amount,
        cast(sum(returned_amount) as decimal(18, 2)) as returned_amount,
        cast(sum(margin_amount) as decimal(18, 2)) as margin_amount
    from lines
    where invoice_date in (select kpi_date from days_to_build)
    group by invoice_date

),

behaviour as (

    select
        event_date as kpi_date,
        count(*) filter (where event_type = 'product_view') as product_views,
        count(*) filter (where event_type = 'add_to_cart') as adds_to_cart
    from events
    where event_date in (select kpi_date from days_to_build)
    group by event_date

),

conversions as (

    select session_date as kpi_date, count(*) filter (where converted) as converted_sessions
    from sessions
    where session_date in (select kpi_date from days_to_build)
    group by session_date

)

select
    days_to_build.kpi_date,
    days_to_build.day_name,
    days_to_build.is_weekend,
    coalesce(sales.orders, 0) as orders,
    coalesce(sales.customers, 0) as customers,
    coalesce(sales.units_sold, 0) as units_sold,
    coalesce(sales.sales_amount, 0) as sales_amount,
    coalesce(sales.returned_amount, 0) as returned_amount,
    days_to_build.net_revenue,
    coalesce(sales.margin_amount, 0) as margin_amount,
    cast(sales.sales_amount / nullif(sales.orders, 0) as decimal(18, 2)) as average_order_value,
    days_to_build.invoice_lines,
    days_to_build.events,
    coalesce(behaviour.product_views, 0) as product_views,
    coalesce(behaviour.adds_to_cart, 0) as adds_to_cart,
    days_to_build.sessions,
    coalesce(conversions.converted_sessions, 0) as converted_sessions,
    round(conversions.converted_sessions / nullif(days_to_build.sessions, 0), 4)
        as session_conversion_rate
from days_to_build
left join sales on days_to_build.kpi_date = sales.kpi_date
left join behaviour on days_to_build.kpi_date = behaviour.kpi_date
left join conversions on days_to_build.kpi_date = conversions.kpi_date
