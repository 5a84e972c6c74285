-- Every A/B experiment per day and variant, with what a dashboard needs beside the statistics:
-- the variant's value of the primary metric, its lift over the control, whether the
-- difference is significant by the always-valid p-value (what decides), each variant's share
-- of the units against the declared split, and the decision the registry recorded.
with results as (

    select * from {{ ref('stg_experiment_results') }}

),

history as (

    select * from {{ ref('stg_experiment_history') }}

),

controls as (

    select
        experiment,
        result_date,
        case primary_metric
            when 'ctr' then ctr
            when 'add_to_cart_rate' then add_to_cart_rate
            when 'conversion' then conversion
            else revenue_per_unit
        end as control_value
    from results
    where is_control

),

days as (

    select
        experiment,
        result_date,
        sum(units) as day_units,
        max(result_date) over (partition by experiment) as latest_date
    from results
    group by experiment, result_date

)

select
    results.experiment,
    results.result_date,
    results.variant,
    results.is_control,
    results.units,
    results.exposures,
    results.declared_share,
    round(results.units / nullif(days.day_units, 0), 4) as unit_share,
    results.ctr,
    results.add_to_cart_rate,
    results.conversion,
    results.revenue_per_unit,
    results.primary_metric,
    case results.primary_metric
        when 'ctr' then results.ctr
        when 'add_to_cart_rate' then results.add_to_cart_rate
        when 'conversion' then results.conversion
        else results.revenue_per_unit
    end as primary_value,
    controls.control_value,
    results.difference,
    -- 0.25 = 25 % above the control; undefined against a control of zero
    case
        when not results.is_control and controls.control_value <> 0
            then round(results.difference / controls.control_value, 4)
    end as relative_lift,
    results.ci_low,
    results.ci_high,
    results.p_value,
    results.always_valid_p,
    coalesce(results.always_valid_p < results.alpha, false) as is_significant,
    results.srm_p,
    results.units_in_several_variants,
    results.status,
    results.winner,
    results.reason,
    results.result_date = days.latest_date as is_latest_day,
    history.decision,
    history.decided_at,
    history.winner as decided_winner
from results
inner join days
    on results.experiment = days.experiment and results.result_date = days.result_date
left join controls
    on results.experiment = controls.experiment and results.result_date = controls.result_date
left join history
    on results.experiment = history.experiment
