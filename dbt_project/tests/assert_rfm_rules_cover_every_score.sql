-- Every one of the 125 (r, f, m) score combinations falls under at least one segment rule, so
-- no scored customer is left without a segment. Returns the combinations no rule covers.
with scores as (

    select range + 1 as score from range(5)

),

combinations as (

    select r.score as r_score, f.score as f_score, m.score as m_score
    from scores as r
    cross join scores as f
    cross join scores as m

)

select combinations.*
from combinations
left join {{ ref('rfm_segment_rules') }} as rules
    on combinations.r_score between rules.r_min and rules.r_max
    and combinations.f_score between rules.f_min and rules.f_max
    and combinations.m_score between rules.m_min and rules.m_max
where rules.segment is null
