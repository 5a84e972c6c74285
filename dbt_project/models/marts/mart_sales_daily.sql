-- Sales per day, area and product subcategory: the rows the executive and geography dashboards
-- filter by date range, city/area and category. A sale counts in the area the customer lived in
-- at the time and under the category of the product version sold (int_sales_lines); a return
-- on the day it happens. Only combinations with lines have a row (no zero-filling: the
-- dashboards sum over them).
with lines as (

    select
        lines.*,
        products.category_id,
        products.subcategory_id
    from {{ ref('int_sales_lines') }} as lines
    left join {{ ref('stg_products') }} as products on lines.product_sk = products.product_sk

),

areas as (

    select * from {{ ref('stg_geography') }}

),

daily as (

    select
        invoice_date,
        area_id,
        category_id,
        category_name,
        subcategory_id,
        subcategory_name,
        count(distinct invoice_id) filter (where not is_return) as orders,
        count(distinct invoice_id) filter (where is_return) as returns,
        count(distinct customer_id) filter (where not is_return) as customers,
        cast(sum(units_sold) as bigint) as units_sold,
        cast(sum(units_returned) as bigint) as units_returned,
        cast(sum(sales_amount) as decimal(18, 2)) as sales_amount,
        cast(sum(returned_amount) as decimal(18, 2)) as returned_amount,
        cast(sum(net_amount) as decimal(18, 2)) as net_revenue,
        cast(sum(margin_amount) as decimal(18, 2)) as margin_amount
    from lines
    group by invoice_date, area_id, category_id, category_name, subcategory_id, subcategory_name

)

select
    daily.invoice_date,
    areas.region,
    areas.city_id,
    areas.city_name,
    daily.area_id,
    areas.area_name,
    daily.category_id,
    daily.category_name,
    daily.subcategory_id,
    daily.subcategory_name,
    daily.orders,
    daily.returns,
    daily.customers,
    daily.units_sold,
    daily.units_returned,
    daily.sales_amount,
    daily.returned_amount,
    daily.net_revenue,
    daily.margin_amount
from daily
left join areas on daily.area_id = areas.area_id
