-- One row per customer version (SCD2). Facts carry the customer_sk of the version valid at
-- their time, so joining on customer_sk gives the geography of the time.
select
    customer_sk,
    customer_id,
    customer_code,
    customer_name,
    gender,
    birth_date,
    customer_type,
    loyalty_tier,
    registration_date,
    status as customer_status,
    city_id,
    city_name,
    area_id,
    area_name,
    region,
    valid_from,
    valid_to,
    is_current,
    version
from {{ source('gold', 'dim_customer') }}
