-- Which categories each region favours: the category's share of the region's net revenue
-- against its share nationally. Index = 100 × regional share / national share; 'over' from
-- 110, 'under' up to 90 (a tenth either way), else 'in line'. Over all sales in gold, in the
-- region the customer lived in and the category the product had at the time.
with lines as (

    select * from {{ ref('int_sales_lines') }}

),

regions as (

    select distinct region from {{ ref('stg_geography') }}

),

categories as (

    select distinct category_name from {{ ref('stg_products') }}

),

revenue as (

    select
        region,
        category_name,
        cast(sum(net_amount) as decimal(18, 2)) as net_revenue
    from lines
    group by region, category_name

),

region_categories as (

    select
        regions.region,
        categories.category_name,
        coalesce(revenue.net_revenue, 0) as net_revenue
    from regions
    cross join categories
    left join revenue
        on regions.region = revenue.region
        and categories.category_name = revenue.category_name

),

shares as (

    select
        *,
        cast(sum(net_revenue) over (partition by region) as decimal(18, 2))
            as region_net_revenue,
        cast(sum(net_revenue) over (partition by category_name) as decimal(18, 2))
            as national_category_net_revenue,
        cast(sum(net_revenue) over () as decimal(18, 2)) as national_net_revenue
    from region_categories

),

indexed as (

    select
        *,
        net_revenue / nullif(region_net_revenue, 0) as region_share,
        national_category_net_revenue / nullif(national_net_revenue, 0) as national_share
    from shares

)

select
    region,
    category_name,
    net_revenue,
    region_net_revenue,
    round(region_share, 4) as region_share,
    national_category_net_revenue,
    round(national_share, 4) as national_share,
    round(100 * region_share / nullif(national_share, 0), 1) as preference_index,
    case
        when region_share / nullif(national_share, 0) >= 1.1 then 'over'
        when region_share / nullif(national_share, 0) <= 0.9 then 'under'
        when region_share / nullif(national_share, 0) is not null then 'in line'
    end as preference,
    rank() over (partition by region order by net_revenue desc) as rank_in_region
from indexed
