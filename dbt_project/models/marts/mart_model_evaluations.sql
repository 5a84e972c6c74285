-- Every metric of every model of every training run, next to the popularity baseline's value of
-- the same run, task, population, split, target and metric: how much better than recommending
-- bestsellers each model did. Tasks without a popularity model (the customer models) have no
-- baseline here.
with evaluations as (

    select * from {{ ref('stg_model_evaluations') }}

),

baselines as (

    select
        run_id,
        task,
        population,
        split,
        target,
        metric,
        metric_value as baseline_value
    from evaluations
    where model = 'popularity'

)

select
    evaluations.run_id,
    evaluations.evaluated_at,
    evaluations.task,
    evaluations.model,
    evaluations.model_version,
    evaluations.population,
    evaluations.split,
    evaluations.target,
    evaluations.metric,
    evaluations.metric_value,
    baselines.baseline_value,
    -- 0.25 = 25 % above the baseline; undefined against a baseline of zero
    round(
        case when baselines.baseline_value <> 0
            then evaluations.metric_value / baselines.baseline_value - 1
        end,
        4
    ) as lift_vs_baseline,
    evaluations.is_champion,
    evaluations.champion_metric,
    coalesce(evaluations.metric = evaluations.champion_metric, false) as is_champion_metric,
    -- evaluated_at is one value per run, so the task's latest run has the latest one
    evaluations.evaluated_at = max(evaluations.evaluated_at) over (partition by evaluations.task)
        as is_latest_run,
    evaluations.train_end,
    evaluations.test_days,
    evaluations.model_params
from evaluations
left join baselines
    on evaluations.run_id = baselines.run_id
    and evaluations.task = baselines.task
    and evaluations.population = baselines.population
    and evaluations.split is not distinct from baselines.split
    and evaluations.target is not distinct from baselines.target
    and evaluations.metric = baselines.metric
