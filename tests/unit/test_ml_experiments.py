"""Experiments: specs, sticky assignment and the statistics that decide (ml/experiments.py), on
fast synthetic data."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from ml.experiments import (
    ExperimentError,
    ExperimentSpec,
    Sample,
    assign,
    decide,
    load_experiments,
    msprt_p_value,
    rate,
)

ROOT = Path(__file__).resolve().parents[2]


def spec(**changes: object) -> ExperimentSpec:
    base = {
        "name": "test",
        "variants": [
            {"name": "control", "weight": 0.5, "recommender": "popularity"},
            {"name": "treatment", "weight": 0.5, "recommender": "champion"},
        ],
        "control": "control",
        "primary_metric": "conversion",
        "minimum_sample": 1_000,
        "start": "2026-12-01T00:00:00Z",
    }
    return ExperimentSpec.model_validate({**base, **changes})


def test_the_shipped_experiments_are_valid() -> None:
    specs = load_experiments(ROOT / "experiments")
    assert [s.name for s in specs] == ["ranker_vs_popularity"]


HEAD = "name: bad\ncontrol: x\nstart: 2026-12-01\nvariants:\n"
VARIANT = "  - {{name: {}, weight: {}, recommender: champion}}\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: bad\nvariants: []", "variants"),
        (HEAD + VARIANT.format("a", 0.6) + VARIANT.format("b", 0.6), "sum to 1.2"),
        (
            HEAD + VARIANT.format("a", 0.5) + VARIANT.format("b", 0.5),
            "control 'x' is not one of the variants",
        ),
        ("name: bad\n  - : [", "not YAML"),
    ],
)
def test_a_bad_spec_names_its_file_and_the_problem(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ExperimentError, match="bad.yaml") as raised:
        load_experiments(tmp_path)
    assert message in str(raised.value)


def test_assignment_is_sticky_follows_the_split_and_differs_between_experiments() -> None:
    skewed = spec(
        variants=[
            {"name": "control", "weight": 0.2, "recommender": "popularity"},
            {"name": "treatment", "weight": 0.8, "recommender": "champion"},
        ]
    )
    units = [f"session-{i}" for i in range(40_000)]
    first = [assign(skewed, u) for u in units]
    assert first == [assign(skewed, u) for u in units]
    share = Counter(first)["treatment"] / len(units)
    assert abs(share - 0.8) < 0.01
    other = spec(name="other")
    treated = [u for u, a in zip(units, first, strict=True) if a == "treatment"]
    again = sum(assign(other, u) == "treatment" for u in treated) / len(treated)
    assert abs(again - 0.5) < 0.02  # independent of the first


def simulate(
    seed: int,
    rates: tuple[float, float],
    split: float = 0.5,
    looks: int = 20,
    per_look: int = 2_000,
) -> list:
    """An experiment looked at `looks` times as units arrive: the decision at each look."""
    rng = np.random.default_rng(seed)
    units, successes = np.zeros(2, int), np.zeros(2, int)
    decisions = []
    experiment = spec()
    for _ in range(looks):
        arrived = rng.binomial(per_look, split)
        new = np.array([arrived, per_look - arrived])
        units += new
        successes += rng.binomial(new, rates)
        samples = {
            name: {"conversion": rate(int(units[i]), int(successes[i]))}
            for i, name in enumerate(("control", "treatment"))
        }
        decisions.append(decide(experiment, samples))
    return decisions


def test_an_a_a_experiment_looked_at_twenty_times_promotes_nothing_in_95_of_100() -> None:
    promoted = sum(
        any(d.status == "promote" for d in simulate(seed, (0.05, 0.05))) for seed in range(100)
    )
    assert promoted <= 5


def test_a_true_lift_is_found_and_the_better_variant_promoted() -> None:
    found = [simulate(seed, (0.05, 0.06))[-1] for seed in range(20)]
    winners = Counter(d.winner for d in found)
    assert winners["treatment"] >= 16 and winners["control"] == 0
    promoted = next(d for d in found if d.status == "promote")
    primary = promoted.comparisons["treatment"][0]
    assert primary.interval[0] < primary.difference < primary.interval[1]
    assert "beats control on conversion" in promoted.reason


def test_a_skewed_split_stops_the_experiment_and_says_why() -> None:
    decision = simulate(1, (0.05, 0.05), split=0.55, looks=5)[-1]
    assert decision.status == "stopped" and decision.winner is None
    assert "sample ratio mismatch" in decision.reason and "50% declared" in decision.reason


def test_nothing_is_decided_before_the_minimum_sample() -> None:
    samples = {"control": {"conversion": rate(400, 10)}, "treatment": {"conversion": rate(400, 90)}}
    decision = decide(spec(), samples)
    assert decision.status == "running" and "control 400/1,000" in decision.reason


def test_a_guardrail_that_is_significantly_worse_blocks_the_promotion() -> None:
    experiment = spec(guardrails=["revenue_per_unit"])
    rich = Sample(20_000, 20_000 * 30.0, 20_000 * (30.0**2 + 25.0))
    poor = Sample(20_000, 20_000 * 25.0, 20_000 * (25.0**2 + 25.0))
    samples = {
        "control": {"conversion": rate(20_000, 1_000), "revenue_per_unit": rich},
        "treatment": {"conversion": rate(20_000, 1_400), "revenue_per_unit": poor},
    }
    assert decide(experiment, samples).status == "running"
    samples["treatment"]["revenue_per_unit"] = rich
    assert decide(experiment, samples).winner == "treatment"


def test_the_sequential_p_value_needs_more_evidence_than_the_fixed_one() -> None:
    control, treatment = rate(10_000, 500), rate(10_000, 570)
    from ml.experiments import compare

    result = compare("conversion", control, treatment, 0.05)
    assert result.p_value < 0.05 < result.always_valid_p
    assert msprt_p_value(control, control, 1e-4) == 1.0


def test_only_one_enabled_experiment_runs_at_a_time(tmp_path: Path) -> None:
    import datetime as dt

    from ml.experiments import running

    text = (
        "control: a\nvariants:\n  - {name: a, weight: 0.5, recommender: champion}\n"
        "  - {name: b, weight: 0.5, recommender: popularity}\n"
    )
    (tmp_path / "first.yaml").write_text(f"name: first\nstart: 2026-12-01\n{text}")
    (tmp_path / "second.yaml").write_text(f"name: second\nstart: 2026-12-05\n{text}")
    with pytest.raises(ExperimentError, match="first and second run at the same time"):
        load_experiments(tmp_path)
    (tmp_path / "second.yaml").write_text(
        f"name: second\nstart: 2026-12-05\nenabled: false\n{text}"
    )
    specs = load_experiments(tmp_path)
    assert specs[0].start == dt.datetime(2026, 12, 1, tzinfo=dt.UTC)  # a date: midnight UTC
    assert running(specs, dt.datetime(2026, 11, 30, tzinfo=dt.UTC)) is None
    assert running(specs, dt.datetime(2026, 12, 6, tzinfo=dt.UTC)).name == "first"


def test_a_request_gets_the_variant_of_its_unit_or_none() -> None:
    import datetime as dt

    from ml.experiments import assignment

    now = dt.datetime(2026, 12, 6, tzinfo=dt.UTC)
    by_session = spec()
    spec_, variant = assignment([by_session], now, "s-1", None)
    assert spec_ is by_session and variant.name == assign(by_session, "s-1")
    assert assignment([by_session], now, None, 7) is None  # no session: not in the experiment
    by_customer = spec(unit="customer")
    assert assignment([by_customer], now, "s-1", 7)[1].name == assign(by_customer, "7")
    assert assignment([by_session], dt.datetime(2026, 11, 1, tzinfo=dt.UTC), "s-1", 7) is None
