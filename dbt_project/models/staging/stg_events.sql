select
    event_id,
    event_date,
    event_time,
    event_type,
    session_id,
    event_seq,
    customer_sk,
    customer_id,
    product_sk,
    product_id,
    device,
    city as event_city,
    search_query,
    quantity,
    price,
    order_id
from {{ source('gold', 'fact_events') }}
