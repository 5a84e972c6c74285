"""A/B experiments on the recommendations: the specs (`experiments/*.yaml`), sticky assignment,
and the statistics that decide whether a variant wins.

The statistics, per variant against the control:

- **Sample ratio mismatch**: a chi-square goodness-of-fit test of the units per variant against
  the declared split (scipy). Below `srm_alpha` (0.001) the split is broken and the experiment
  stops: no result of a broken split is trusted.
- **Fixed-horizon tests**, reported: a two-proportion z-test with the Newcombe interval of the
  difference for rates (statsmodels), Welch's t-test for revenue per unit (scipy).
- **The decision** uses an always-valid p-value instead, so the daily look of a sensor does not
  inflate the false-positive rate: the normal-mixture sequential probability ratio test (mSPRT;
  Johari, Koomen, Pekelis & Walsh, "Always valid inference", Operations Research 2022) on the
  estimated difference and its variance, taken as normal. By Ville's inequality, the chance
  that 1/Λ ever falls below α under no difference is then at most α, however often it is looked
  at. No well-kept Python library has it: `savvi` (Lindon & Malek's tests) brings cvxpy and
  eight more packages for this one formula.

A variant is promoted when, with every variant at its minimum sample and the split sound, its
primary metric is better than the control's at the declared level and no guardrail metric is
worse at that level.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator
from scipy import stats

Metric = Literal["ctr", "add_to_cart_rate", "conversion", "revenue_per_unit"]
RATES: tuple[str, ...] = ("ctr", "add_to_cart_rate", "conversion")


Recommender = Literal["champion", "batch_list", "popularity"]


class Variant(BaseModel):
    """What one share of the units is served: `champion` (the batch list blended with the live
    session), `batch_list` (the batch list alone) or `popularity` (what is trending)."""

    model_config = {"extra": "forbid"}

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    weight: float = Field(gt=0, le=1, description="share of the units")
    recommender: Recommender
    session_share: float | None = Field(
        None, ge=0, le=1, description="the champion's session share (default: the tuned one)"
    )


class ExperimentSpec(BaseModel):
    """One experiment, as declared in `experiments/<name>.yaml`."""

    model_config = {"extra": "forbid"}

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,59}$")
    description: str = ""
    enabled: bool = Field(True, description="false: declared and checked, never served")
    variants: list[Variant] = Field(min_length=2)
    control: str
    unit: Literal["customer", "session"] = "session"
    primary_metric: Metric = "conversion"
    guardrails: list[Metric] = Field(default_factory=list)
    alpha: float = Field(0.05, gt=0, lt=0.5)
    srm_alpha: float = Field(0.001, gt=0, lt=0.5)
    minimum_sample: int = Field(1_000, ge=10, description="units per variant before deciding")
    expected_lift: float = Field(
        0.1, gt=0, le=10, description="the relative lift the sequential test detects fastest"
    )
    start: dt.datetime = Field(description="UTC when no zone is given")
    stop: dt.datetime | None = None

    @field_validator("start", "stop")
    @classmethod
    def _utc(cls, value: dt.datetime | None) -> dt.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value

    @field_validator("variants")
    @classmethod
    def _distinct_and_whole(cls, variants: list[Variant]) -> list[Variant]:
        names = [v.name for v in variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names repeat: {names}")
        total = sum(v.weight for v in variants)
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise ValueError(f"variant weights sum to {total:g}, not 1")
        return variants

    @model_validator(mode="after")
    def _control_and_dates(self) -> ExperimentSpec:
        if self.control not in {v.name for v in self.variants}:
            raise ValueError(f"control {self.control!r} is not one of the variants")
        if self.primary_metric in self.guardrails:
            raise ValueError(f"{self.primary_metric} is the primary metric and a guardrail")
        if self.stop is not None and self.stop <= self.start:
            raise ValueError(f"stop {self.stop} is not after start {self.start}")
        return self

    @property
    def weights(self) -> dict[str, float]:
        return {v.name: v.weight for v in self.variants}


class ExperimentError(ValueError):
    """A spec that cannot be used; the message names the file and the field."""


def load_experiments(folder: Path) -> list[ExperimentSpec]:
    """Every `*.yaml` under `folder`, validated; a file's name must be its experiment's name."""
    specs = []
    for path in sorted(folder.glob("*.yaml")):
        try:
            raw = yaml.safe_load(path.read_text())
            spec = ExperimentSpec.model_validate(raw)
        except yaml.YAMLError as exc:
            raise ExperimentError(f"{path}: not YAML: {exc}") from exc
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}" for e in exc.errors()
            )
            raise ExperimentError(f"{path}: {problems}") from exc
        if spec.name != path.stem:
            raise ExperimentError(f"{path}: name {spec.name!r} differs from the file name")
        specs.append(spec)
    enabled = [s for s in specs if s.enabled]
    for i, one in enumerate(enabled):
        for other in enabled[i + 1 :]:
            if _overlap(one, other):
                raise ExperimentError(
                    f"{folder}: experiments {one.name} and {other.name} run at the same time; "
                    "the recommendations take one experiment at a time (set a stop)"
                )
    return specs


def _overlap(a: ExperimentSpec, b: ExperimentSpec) -> bool:
    never = dt.datetime.max.replace(tzinfo=dt.UTC)
    return a.start < (b.stop or never) and b.start < (a.stop or never)


def running(specs: Sequence[ExperimentSpec], now: dt.datetime) -> ExperimentSpec | None:
    """The enabled experiment running at `now`, if any (they never overlap)."""
    return next(
        (s for s in specs if s.enabled and s.start <= now and (s.stop is None or now < s.stop)),
        None,
    )


def assignment(
    specs: Sequence[ExperimentSpec],
    now: dt.datetime,
    session_id: str | None,
    customer_id: int | None,
) -> tuple[ExperimentSpec, Variant] | None:
    """The running experiment and the variant of this request's unit; None when no experiment
    runs or the request has no unit (no session for a session experiment, say)."""
    spec = running(specs, now)
    if spec is None:
        return None
    unit = session_id if spec.unit == "session" else customer_id
    if unit is None:
        return None
    chosen = assign(spec, str(unit))
    return spec, next(v for v in spec.variants if v.name == chosen)


def assign(spec: ExperimentSpec, unit_id: str) -> str:
    """The unit's variant: a hash of the experiment and the unit, so it is the same on every
    request and every API process (sticky), and independent between experiments."""
    digest = hashlib.sha256(f"{spec.name}:{unit_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64
    upto = 0.0
    for variant in spec.variants:
        upto += variant.weight
        if point < upto:
            return variant.name
    return spec.variants[-1].name  # rounding of the last boundary


# -- statistics --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One variant's totals for one metric: units, and the sum and sum of squares of the metric
    per unit (for a rate, successes: each unit 0 or 1)."""

    units: int
    total: float
    squares: float | None = None  # None: a rate, whose squares equal its total

    @property
    def mean(self) -> float:
        return self.total / self.units if self.units else 0.0

    @property
    def variance(self) -> float:
        """Sample variance per unit."""
        if self.units < 2:
            return 0.0
        squares = self.total if self.squares is None else self.squares
        return max(squares - self.units * self.mean**2, 0.0) / (self.units - 1)


@dataclass(frozen=True)
class Comparison:
    metric: str
    control: float
    treatment: float
    difference: float
    interval: tuple[float, float]  # of the difference, fixed horizon
    p_value: float  # fixed horizon: reported, never used to decide
    always_valid_p: float  # what decides


def srm_p_value(units: Mapping[str, int], weights: Mapping[str, float]) -> float:
    """Chi-square goodness of fit of the units per variant to the declared split."""
    observed = [units[name] for name in weights]
    total = sum(observed)
    if total == 0:
        return 1.0
    expected = [total * weights[name] for name in weights]
    return float(stats.chisquare(observed, expected).pvalue)


def msprt_p_value(control: Sample, treatment: Sample, mixing_variance: float) -> float:
    """1/Λ of the normal-mixture SPRT of "no difference in means", capped at 1."""
    variance = control.variance / control.units + treatment.variance / treatment.units
    if variance <= 0:
        return 1.0
    difference = treatment.mean - control.mean
    tau2 = mixing_variance
    log_ratio = 0.5 * math.log(variance / (variance + tau2)) + (
        difference**2 * tau2 / (2 * variance * (variance + tau2))
    )
    return min(1.0, math.exp(-log_ratio))


def compare(
    metric: str, control: Sample, treatment: Sample, alpha: float, expected_lift: float = 0.1
) -> Comparison:
    """The treatment against the control on one metric."""
    from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

    difference = treatment.mean - control.mean
    if metric in RATES:
        counts = [round(treatment.total), round(control.total)]
        units = [treatment.units, control.units]
        p_value = float(proportions_ztest(counts, units)[1]) if sum(counts) else 1.0
        low, high = confint_proportions_2indep(
            counts[0], units[0], counts[1], units[1], method="newcomb", alpha=alpha
        )
        interval = (float(low), float(high))
    else:
        test = stats.ttest_ind_from_stats(
            treatment.mean,
            math.sqrt(treatment.variance),
            treatment.units,
            control.mean,
            math.sqrt(control.variance),
            control.units,
            equal_var=False,
        )
        p_value = float(test.pvalue) if not math.isnan(test.pvalue) else 1.0
        se = math.sqrt(control.variance / control.units + treatment.variance / treatment.units)
        dof = _welch_dof(control, treatment)
        half = float(stats.t.ppf(1 - alpha / 2, dof)) * se if se else 0.0
        interval = (difference - half, difference + half)
    # the mixture over effects: centred on none, spread like the lift the test is tuned for
    tau = expected_lift * abs(control.mean) or expected_lift
    always = msprt_p_value(control, treatment, tau**2)
    return Comparison(metric, control.mean, treatment.mean, difference, interval, p_value, always)


def _welch_dof(a: Sample, b: Sample) -> float:
    va, vb = a.variance / a.units, b.variance / b.units
    denominator = va**2 / max(a.units - 1, 1) + vb**2 / max(b.units - 1, 1)
    return (va + vb) ** 2 / denominator if denominator else float(a.units + b.units - 2)


@dataclass(frozen=True)
class Decision:
    status: Literal["running", "promote", "stopped"]
    winner: str | None
    reason: str
    comparisons: dict[str, list[Comparison]]  # per treatment: primary first, then guardrails
    srm_p: float


def decide(spec: ExperimentSpec, samples: Mapping[str, Mapping[str, Sample]]) -> Decision:
    """What the experiment says now. `samples[variant][metric]` for the primary metric and
    every guardrail."""
    units = {name: samples[name][spec.primary_metric].units for name in spec.weights}
    srm = srm_p_value(units, spec.weights)
    metrics = [spec.primary_metric, *spec.guardrails]
    control = samples[spec.control]
    treatments = [v.name for v in spec.variants if v.name != spec.control]
    comparisons = {
        name: [
            compare(m, control[m], samples[name][m], spec.alpha, spec.expected_lift)
            for m in metrics
        ]
        for name in treatments
    }
    if srm < spec.srm_alpha:
        split = ", ".join(f"{n} {units[n]:,} ({spec.weights[n]:.0%} declared)" for n in units)
        reason = f"sample ratio mismatch: {split}; chi-square p = {srm:.2g} < {spec.srm_alpha}"
        return Decision("stopped", None, reason, comparisons, srm)
    short = {n: u for n, u in units.items() if u < spec.minimum_sample}
    if short:
        waiting = ", ".join(f"{n} {u:,}/{spec.minimum_sample:,}" for n, u in short.items())
        return Decision(
            "running", None, f"waiting for the minimum sample: {waiting}", comparisons, srm
        )
    winners = []
    for name, (primary, *guards) in comparisons.items():
        better = primary.difference > 0 and primary.always_valid_p < spec.alpha
        harmed = [g.metric for g in guards if g.difference < 0 and g.always_valid_p < spec.alpha]
        if better and not harmed:
            winners.append((primary.difference, name))
    if not winners:
        return Decision(
            "running", None, f"no variant beats {spec.control} at {spec.alpha}", comparisons, srm
        )
    _, winner = max(winners)
    primary = comparisons[winner][0]
    reason = (
        f"{winner} beats {spec.control} on {spec.primary_metric}: {primary.treatment:.4g} vs "
        f"{primary.control:.4g}, always-valid p = {primary.always_valid_p:.3g} < {spec.alpha}"
    )
    return Decision("promote", winner, reason, comparisons, srm)


def rate(units: int, successes: int) -> Sample:
    return Sample(units, float(successes))


# -- results per day -----------------------------------------------------------------------------

# what each metric counts per unit, in the per-unit totals (`UnitTotals`)
METRIC_COLUMNS = {
    "ctr": "clicked",
    "add_to_cart_rate": "carted",
    "conversion": "converted",
    "revenue_per_unit": "revenue",
}


@dataclass(frozen=True)
class UnitTotals:
    """One variant's units first exposed on one day, and their outcomes over the experiment:
    how many clicked, carted and bought a recommended product, and the revenue (with its sum of
    squares per unit, for the variance)."""

    variant: str
    day: dt.date
    units: int
    exposures: int
    clicked: int
    carted: int
    converted: int
    revenue: float
    revenue_squares: float


def samples_of(totals: Sequence[UnitTotals], variants: Sequence[str]) -> dict[str, dict]:
    """`samples[variant][metric]` over the given per-day totals (summed)."""
    out: dict[str, dict[str, Sample]] = {}
    for name in variants:
        mine = [t for t in totals if t.variant == name]
        units = sum(t.units for t in mine)
        out[name] = {
            metric: Sample(
                units,
                float(sum(getattr(t, column) for t in mine)),
                float(sum(t.revenue_squares for t in mine))
                if metric == "revenue_per_unit"
                else None,
            )
            for metric, column in METRIC_COLUMNS.items()
        }
    return out


def results_by_day(spec: ExperimentSpec, totals: Sequence[UnitTotals]) -> list[dict]:
    """The experiment as it stood at the end of each day with exposures: per variant, the
    units so far, every metric, and against the control the primary metric's difference, its
    interval, the fixed-horizon and always-valid p-values, the SRM p-value and the decision.
    Each unit's outcomes count with the day it was first exposed."""
    variants = [v.name for v in spec.variants]
    rows = []
    for day in sorted({t.day for t in totals}):
        upto = [t for t in totals if t.day <= day]
        samples = samples_of(upto, variants)
        decision = decide(spec, samples)
        for name in variants:
            primary = next((c[0] for n, c in decision.comparisons.items() if n == name), None)
            mine = [t for t in upto if t.variant == name]
            rows.append(
                {
                    "experiment": spec.name,
                    "day": day,
                    "variant": name,
                    "is_control": name == spec.control,
                    "weight": spec.weights[name],
                    "units": samples[name]["conversion"].units,
                    "exposures": sum(t.exposures for t in mine),
                    **{m: samples[name][m].mean for m in METRIC_COLUMNS},
                    "primary_metric": spec.primary_metric,
                    "alpha": spec.alpha,
                    "difference": primary and primary.difference,
                    "ci_low": primary and primary.interval[0],
                    "ci_high": primary and primary.interval[1],
                    "p_value": primary and primary.p_value,
                    "always_valid_p": primary and primary.always_valid_p,
                    "srm_p": decision.srm_p,
                    "status": decision.status,
                    "winner": decision.winner,
                    "reason": decision.reason,
                }
            )
    return rows


# -- decisions -----------------------------------------------------------------------------------

DECISION_MODEL = "experiment_decision"  # the registry's name for a concluded experiment


def decisions(models: Any) -> dict[str, dict[str, Any]]:
    """The concluded experiments in a model registry (ml.registry.ModelRegistry), by name: the
    decision recorded (status promote or stopped, winner, its recommender and session share,
    reason, decided_at)."""
    if DECISION_MODEL not in models.models():
        return {}
    return {v.params["experiment"]: v.params for v in models.versions(DECISION_MODEL)}


def serving_policy(decided: Mapping[str, Mapping[str, Any]]) -> dict[str, Any] | None:
    """What everyone outside an experiment is served: the newest promoted variant, if any."""
    promoted = [d for d in decided.values() if d.get("status") == "promote"]
    return max(promoted, key=lambda d: d["decided_at"], default=None)
