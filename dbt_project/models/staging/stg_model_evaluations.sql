-- One row per training run × task × model × population × split × target × metric (gold keeps
-- every run). Recommendation runs score every model on a validation window (the champion is
-- chosen there), a test window and, on generated worlds, the held-out future (split), for every
-- product bought or only the ones new to the customer (target); customer-model runs have none.
select
    run_id,
    evaluated_at,
    task,
    model,
    model_version,
    population,
    split,
    target,
    metric,
    value as metric_value,
    params as model_params,
    inputs as run_inputs,
    train_end,
    test_days,
    is_champion,
    -- the customer-model runs record no champion metric: '' → null
    nullif(champion_metric, '') as champion_metric
from {{ source('gold', 'model_evaluations') }}
