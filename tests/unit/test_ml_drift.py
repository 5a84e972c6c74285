"""The population stability index (ml/drift.py) on synthetic data: ~0 for the same
distribution, large for a shifted one, binned by the reference's deciles."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from ml.drift import MODERATE, STABLE, drift, psi, reference_profile, status


def frame(rng: np.random.Generator, n: int, shift: float = 0.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "minutes": rng.exponential(10, n) + shift,
            "carted": (rng.random(n) < 0.3 + shift / 100).astype(float),
            "score": rng.beta(2, 5, n),
        }
    )


def test_the_same_population_is_stable_and_a_shifted_one_drifts() -> None:
    rng = np.random.default_rng(0)
    profile = reference_profile(frame(rng, 20_000), ["minutes", "carted", "score"])
    json.dumps(profile)  # stored with the model in the registry
    assert len(profile["columns"]["minutes"]["shares"]) == 10
    # a binary column: a bin for 0, one for 1 and one (empty) above
    assert np.allclose(profile["columns"]["carted"]["shares"][2], 0)
    assert np.isclose(profile["columns"]["carted"]["shares"][1], 0.3, atol=0.02)

    same = {r["feature"]: r for r in drift(profile, frame(rng, 5_000))}
    assert all(r["psi"] < STABLE and r["status"] == "stable" for r in same.values())
    assert same["minutes"]["current_rows"] == 5_000 and same["minutes"]["reference_rows"] == 20_000

    shifted = {r["feature"]: r for r in drift(profile, frame(rng, 5_000, shift=10.0))}
    assert shifted["minutes"]["psi"] >= MODERATE and shifted["minutes"]["status"] == "drift"
    assert shifted["score"]["psi"] < STABLE  # untouched


def test_psi_is_symmetric_zero_on_equal_shares_and_finite_on_empty_bins() -> None:
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert psi([0.2, 0.8], [0.6, 0.4]) == psi([0.6, 0.4], [0.2, 0.8]) > 0
    # Σ (c − r) ln(c / r) by hand for one pair
    expected = (0.6 - 0.2) * np.log(0.6 / 0.2) + (0.4 - 0.8) * np.log(0.4 / 0.8)
    assert np.isclose(psi([0.2, 0.8], [0.6, 0.4]), expected)
    assert np.isfinite(psi([1.0, 0.0], [0.0, 1.0]))
    assert [status(v) for v in (0.05, 0.2, 0.3)] == ["stable", "moderate", "drift"]


def test_missing_columns_and_missing_values_are_skipped() -> None:
    rng = np.random.default_rng(1)
    profile = reference_profile(frame(rng, 1_000), ["minutes", "score"])
    current = frame(rng, 500).drop(columns="score")
    current.loc[:9, "minutes"] = np.nan
    [row] = drift(profile, current)
    assert row["feature"] == "minutes" and row["current_rows"] == 490


def test_the_newest_complete_day_comes_from_the_log_and_skips_today(tmp_path) -> None:
    import datetime as dt

    import pyarrow as pa

    from lakehouse.core.lake import Lake
    from spark_jobs.drift_report import EVENTS, newest_complete_day
    from spark_jobs.training import Tables

    lake = Lake.at(str(tmp_path / "lake"))
    days = [dt.date(2026, 11, 30), dt.date(2026, 12, 1), dt.date(2026, 12, 2)]
    events = pa.table({"event_date": days, "event_id": ["a", "b", "c"]})
    lake.write(EVENTS, events, mode="overwrite", partition_by=["event_date"])
    assert newest_complete_day(Tables(lake), today=dt.date(2026, 12, 2)) == dt.date(2026, 12, 1)
    assert newest_complete_day(Tables(lake), today=dt.date(2026, 11, 30)) is None
