-- mart_sales_daily neither loses nor double-counts a line: its units, revenue and margin add up
-- to the totals of int_sales_lines. Returns the totals when they differ.
with mart as (

    select
        sum(units_sold) as units_sold,
        sum(units_returned) as units_returned,
        sum(net_revenue) as net_revenue,
        sum(margin_amount) as margin_amount
    from {{ ref('mart_sales_daily') }}

),

lines as (

    select
        sum(units_sold) as units_sold,
        sum(units_returned) as units_returned,
        sum(net_amount) as net_revenue,
        sum(margin_amount) as margin_amount
    from {{ ref('int_sales_lines') }}

)

select
    mart.*,
    lines.units_sold as lines_units_sold,
    lines.units_returned as lines_units_returned,
    lines.net_revenue as lines_net_revenue,
    lines.margin_amount as lines_margin_amount
from mart
cross join lines
where mart.units_sold is distinct from lines.units_sold
    or mart.units_returned is distinct from lines.units_returned
    or mart.net_revenue is distinct from lines.net_revenue
    or mart.margin_amount is distinct from lines.margin_amount
