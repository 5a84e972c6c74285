-- One row per association rule antecedent → consequent; the antecedent is a sorted list of
-- product ids (one or two), so its text form is a key.
select
    array_to_string(antecedent, '+') as antecedent_key,
    antecedent as antecedent_product_ids,
    consequent as consequent_product_id,
    size as itemset_size,
    count as basket_count,
    support,
    confidence,
    lift,
    antecedent_support,
    consequent_support,
    rank as rule_rank
from {{ source('gold', 'product_associations') }}
