-- One row per concluded experiment, as the model registry recorded the decision.
select
    experiment,
    cast(decided_at as timestamptz) as decided_at,
    status as decision,
    winner,
    recommender as winner_recommender,
    session_share as winner_session_share,
    reason as decision_reason,
    registry_version
from {{ source('gold', 'experiment_history') }}
