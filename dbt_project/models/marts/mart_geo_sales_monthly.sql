-- Sales per area and month, with growth against the previous month and the same month a year
-- before. Sales count in the area the customer lived in at the time (SCD2 version of the sale).
-- Every area has a row for every month from the first sale to the last, so that the growth
-- columns compare with the right month even when an area sold nothing.
with lines as (

    select
        *,
        cast(date_trunc('month', invoice_date) as date) as month_start
    from {{ ref('int_sales_lines') }}

),

areas as (

    select * from {{ ref('stg_geography') }}

),

month_range as (

    select min(month_start) as first_month, max(month_start) as last_month
    from lines

),

months as (

    select cast(unnest(generate_series(first_month, last_month, interval 1 month)) as date)
        as month_start
    from month_range

),

monthly as (

    select
        area_id,
        month_start,
        count(distinct invoice_id) filter (where not is_return) as orders,
        count(distinct customer_id) filter (where not is_return) as customers,
        cast(sum(units_sold) as bigint) as units_sold,
        cast(sum(sales_amount) as decimal(18, 2)) as sales_amount,
        cast(sum(returned_amount) as decimal(18, 2)) as returned_amount,
        cast(sum(net_amount) as decimal(18, 2)) as net_revenue
    from lines
    group by area_id, month_start

),

area_months as (

    select
        months.month_start,
        areas.region,
        areas.city_id,
        areas.city_name,
        areas.area_id,
        areas.area_name,
        coalesce(monthly.orders, 0) as orders,
        coalesce(monthly.customers, 0) as customers,
        coalesce(monthly.units_sold, 0) as units_sold,
        coalesce(monthly.sales_amount, 0) as sales_amount,
        coalesce(monthly.returned_amount, 0) as returned_amount,
        coalesce(monthly.net_revenue, 0) as net_revenue
    from areas
    cross join months
    left join monthly
        on areas.area_id = monthly.area_id
        and months.month_start = monthly.month_start

),

with_history as (

    select
        *,
        lag(net_revenue) over (partition by area_id order by month_start)
            as previous_month_net_revenue,
        lag(net_revenue, 12) over (partition by area_id order by month_start)
            as same_month_last_year_net_revenue
    from area_months

)

select
    month_start,
    strftime(month_start, '%Y-%m') as year_month,
    region,
    city_id,
    city_name,
    area_id,
    area_name,
    orders,
    customers,
    units_sold,
    sales_amount,
    returned_amount,
    net_revenue,
    cast(sales_amount / nullif(orders, 0) as decimal(18, 2)) as average_order_value,
    previous_month_net_revenue,
    -- growth only against a positive base: from zero (or a month of net returns) it is undefined
    round(
        case when previous_month_net_revenue > 0
            then net_revenue / previous_month_net_revenue - 1
        end,
        4
    ) as net_revenue_growth_mom,
    same_month_last_year_net_revenue,
    round(
        case when same_month_last_year_net_revenue > 0
            then net_revenue / same_month_last_year_net_revenue - 1
        end,
        4
    ) as net_revenue_growth_yoy
from with_history
