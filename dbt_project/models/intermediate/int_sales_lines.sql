-- The invoice lines that stand (a cancelled order is not a sale), with the customer's geography
-- and the product's brand and category as they were at invoice time: the _sk keys point at the
-- SCD2 versions valid then, so a customer who moved keeps old sales in the old area.
with lines as (

    select * from {{ ref('stg_sales_lines') }}
    where not is_cancelled

),

customers as (

    select * from {{ ref('stg_customers') }}

),

products as (

    select * from {{ ref('stg_products') }}

)

select
    lines.invoice_id,
    lines.line_no,
    lines.invoice_date,
    lines.invoice_time,
    lines.is_return,
    lines.channel,
    lines.customer_id,
    lines.customer_sk,
    customers.region,
    customers.city_id,
    customers.city_name,
    customers.area_id,
    customers.area_name,
    lines.product_id,
    lines.product_sk,
    products.brand_name,
    products.category_name,
    products.subcategory_name,
    lines.quantity,
    lines.net_amount,
    lines.cost_amount,
    lines.margin_amount,
    -- sales and returns apart, both positive (returns carry negative quantities and amounts)
    case when lines.is_return then 0 else lines.quantity end as units_sold,
    case when lines.is_return then -lines.quantity else 0 end as units_returned,
    case when lines.is_return then 0 else lines.net_amount end as sales_amount,
    case when lines.is_return then -lines.net_amount else 0 end as returned_amount
from lines
left join customers on lines.customer_sk = customers.customer_sk
left join products on lines.product_sk = products.product_sk
