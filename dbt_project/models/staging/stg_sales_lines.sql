-- ERP invoice lines, sales and returns (returns have negative quantities and amounts).
-- The ERP's own city/area stamp is left out: geography comes from dim_customer via customer_sk.
select
    invoice_id,
    line_no,
    invoice_date,
    invoice_time,
    customer_sk,
    customer_id,
    product_sk,
    product_id,
    branch_code,
    channel,
    payment_type,
    invoice_type,
    is_return,
    status as invoice_status,
    is_cancelled,
    quantity,
    unit_price,
    list_price_at_sale,
    gross_amount,
    line_discount_amount,
    coupon_amount,
    net_amount,
    cost_amount,
    margin_amount
from {{ source('gold', 'fact_sales_line') }}
