select
    area_id,
    area_name,
    city_id,
    city_name,
    region
from {{ source('gold', 'dim_geography') }}
