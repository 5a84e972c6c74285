-- Monthly acquisition cohorts: customers by the month of their first purchase in gold, and how
-- many of them bought again 0, 1, 2 … months later. Every cohort has a row for every month up to
-- the last month with sales, so a month nobody came back shows as 0.
with purchases as (

    select
        customer_id,
        cast(date_trunc('month', invoice_date) as date) as activity_month
    from {{ ref('int_sales_lines') }}
    where not is_return

),

first_purchases as (

    select customer_id, min(activity_month) as cohort_month
    from purchases
    group by customer_id

),

cohorts as (

    select cohort_month, count(*) as cohort_customers
    from first_purchases
    group by cohort_month

),

cohort_months as (

    -- every cohort × every month from its first to the last month with sales
    select
        cohorts.cohort_month,
        cohorts.cohort_customers,
        cast(month_offset.month_start as date) as activity_month
    from cohorts
    cross join lateral (
        select unnest(
            generate_series(
                cohorts.cohort_month,
                (select max(activity_month) from purchases),
                interval 1 month
            )
        ) as month_start
    ) as month_offset

),

active as (

    select
        first_purchases.cohort_month,
        purchases.activity_month,
        count(distinct purchases.customer_id) as active_customers
    from purchases
    inner join first_purchases on purchases.customer_id = first_purchases.customer_id
    group by first_purchases.cohort_month, purchases.activity_month

)

select
    cohort_months.cohort_month,
    cohort_months.activity_month,
    date_diff('month', cohort_months.cohort_month, cohort_months.activity_month)
        as months_since_first_purchase,
    cohort_months.cohort_customers,
    coalesce(active.active_customers, 0) as active_customers,
    round(coalesce(active.active_customers, 0) / cohort_months.cohort_customers, 4)
        as retention_rate
from cohort_months
left join active
    on cohort_months.cohort_month = active.cohort_month
    and cohort_months.activity_month = active.activity_month
