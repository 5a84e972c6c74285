-- The association rules with names: which products (and categories) the antecedent holds and
-- what it predicts, so analysts can explore the rules by product or category name. Names are
-- those of the current product versions (the rules are mined from the newest data).
with rules as (

    select * from {{ ref('stg_product_associations') }}

),

products as (

    select * from {{ ref('stg_products') }}
    where is_current

),

antecedent_products as (

    -- one row per product of each distinct antecedent (an antecedent has several rules)
    select distinct
        antecedent_key,
        unnest(antecedent_product_ids) as product_id
    from rules

),

antecedents as (

    select
        antecedent_products.antecedent_key,
        string_agg(products.product_name, ' + ' order by products.product_id)
            as antecedent_product_names,
        string_agg(distinct products.category_name, ' + ' order by products.category_name)
            as antecedent_category_names
    from antecedent_products
    left join products on antecedent_products.product_id = products.product_id
    group by antecedent_products.antecedent_key

)

select
    rules.antecedent_key,
    antecedents.antecedent_product_names,
    antecedents.antecedent_category_names,
    rules.consequent_product_id,
    consequents.product_name as consequent_product_name,
    consequents.brand_name as consequent_brand_name,
    consequents.category_name as consequent_category_name,
    consequents.subcategory_name as consequent_subcategory_name,
    antecedents.antecedent_product_names || ' → ' || consequents.product_name as rule,
    -- every antecedent product is of the consequent's category
    antecedents.antecedent_category_names = consequents.category_name as is_within_category,
    rules.itemset_size,
    rules.basket_count,
    rules.support,
    rules.confidence,
    rules.lift,
    rules.antecedent_support,
    rules.consequent_support,
    rules.rule_rank
from rules
left join antecedents on rules.antecedent_key = antecedents.antecedent_key
left join products as consequents on rules.consequent_product_id = consequents.product_id
