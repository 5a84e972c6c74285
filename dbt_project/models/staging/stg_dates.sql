select
    date as date_day,
    date_key,
    year,
    quarter,
    month,
    month_name,
    year_month,
    iso_week,
    day_of_month,
    day_of_week,
    day_name,
    is_weekend
from {{ source('gold', 'dim_date') }}
