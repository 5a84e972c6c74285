-- One row per experiment × day × variant: the experiment as it stood at the end of the day
-- (every unit's outcomes counted with the day it was first exposed). The control's comparison
-- columns are null: it is what the others are compared with.
select
    experiment,
    day as result_date,
    variant,
    is_control,
    weight as declared_share,
    units,
    exposures,
    ctr,
    add_to_cart_rate,
    conversion,
    revenue_per_unit,
    primary_metric,
    alpha,
    difference,
    ci_low,
    ci_high,
    p_value,
    always_valid_p,
    srm_p,
    units_in_several_variants,
    status,
    winner,
    reason,
    computed_at
from {{ source('gold', 'experiment_results') }}
