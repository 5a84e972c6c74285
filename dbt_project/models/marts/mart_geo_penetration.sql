-- Market penetration per area as of the run date: registered customers who live there now
-- against those of them who bought in the last `active_window_days` days, and how the area's
-- penetration compares with the national one (index 100 = national).
with as_of as (

    select as_of_date from {{ ref('int_as_of_date') }}

),

areas as (

    select * from {{ ref('stg_geography') }}

),

customers as (

    select customers.customer_id, customers.area_id
    from {{ ref('stg_customers') }} as customers
    cross join as_of
    where customers.is_current
        and customers.registration_date <= as_of.as_of_date

),

last_purchases as (

    select lines.customer_id, max(lines.invoice_date) as last_purchase_date
    from {{ ref('int_sales_lines') }} as lines
    cross join as_of
    where not lines.is_return
        and lines.invoice_date <= as_of.as_of_date
    group by lines.customer_id

),

customer_activity as (

    select
        customers.customer_id,
        customers.area_id,
        last_purchases.last_purchase_date is not null as has_purchased,
        coalesce(
            last_purchases.last_purchase_date
                > as_of.as_of_date - {{ var('active_window_days') }},
            false
        ) as is_active
    from customers
    cross join as_of
    left join last_purchases on customers.customer_id = last_purchases.customer_id

),

by_area as (

    select
        area_id,
        count(*) as registered_customers,
        count(*) filter (where has_purchased) as customers_ever_purchased,
        count(*) filter (where is_active) as active_customers
    from customer_activity
    group by area_id

),

national as (

    select count(*) filter (where is_active) / nullif(count(*), 0) as penetration_rate
    from customer_activity

)

select
    as_of.as_of_date,
    {{ var('active_window_days') }} as active_window_days,
    areas.region,
    areas.city_id,
    areas.city_name,
    areas.area_id,
    areas.area_name,
    coalesce(by_area.registered_customers, 0) as registered_customers,
    coalesce(by_area.customers_ever_purchased, 0) as customers_ever_purchased,
    coalesce(by_area.active_customers, 0) as active_customers,
    round(by_area.active_customers / nullif(by_area.registered_customers, 0), 4)
        as penetration_rate,
    round(national.penetration_rate, 4) as national_penetration_rate,
    round(
        100 * (by_area.active_customers / nullif(by_area.registered_customers, 0))
        / nullif(national.penetration_rate, 0),
        1
    ) as penetration_index
from areas
cross join as_of
cross join national
left join by_area on areas.area_id = by_area.area_id
