-- One row per training run × task × model × population × metric (gold keeps every run).
select
    run_id,
    evaluated_at,
    task,
    model,
    model_version,
    population,
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
