-- One row per product version (SCD2): brand, category and price as they were at the time.
select
    product_sk,
    product_id,
    sku,
    product_name,
    brand_id,
    brand_name,
    category_id,
    category_name,
    subcategory_id,
    subcategory_name,
    list_price,
    unit_cost,
    launch_date,
    is_active,
    valid_from,
    valid_to,
    is_current,
    version
from {{ source('gold', 'dim_product') }}
