"""Drift: the population stability index (PSI) of a model's inputs and scores now against the
data it was trained on.

At training, `reference_profile` cuts each column of the training data into deciles and keeps
the edges and each bin's share (saved with the model in the registry). Later, `drift` puts the
current values into the same bins and compares the shares:

    PSI = Σ over bins (current − reference) × ln(current / reference)

which is the symmetric Kullback-Leibler divergence of the two binned distributions (computed
with scipy's `rel_entr`; empty bins are floored at 0.01 % so it stays finite). The usual
reading: below 0.1 stable, 0.1 to 0.25 a moderate shift, 0.25 and above a significant one.
No monitoring library is used: Evidently, the well-kept one, would add 26 packages to this
environment (a web framework, NLTK, Plotly and a telemetry client among them) for this one
formula.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import rel_entr

BINS = 10
FLOOR = 1e-4
STABLE, MODERATE = 0.1, 0.25  # PSI below STABLE: stable; from MODERATE on: drift


def _edges(values: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges at the quantiles (fewer when values repeat: a binary column has one)."""
    inner = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(inner)


def _shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Share of the values in each bin: (-inf, e0], (e0, e1], …, (e_last, inf)."""
    bins = np.searchsorted(edges, values, side="left")
    counts = np.bincount(bins, minlength=len(edges) + 1)
    return counts / max(len(values), 1)


def reference_profile(frame: pd.DataFrame, columns: Sequence[str], bins: int = BINS) -> dict:
    """Per column, the training data's bin edges and shares (JSON-safe), and the row count."""
    out: dict[str, Any] = {"rows": len(frame), "columns": {}}
    for column in columns:
        values = frame[column].to_numpy(dtype=np.float64)
        values = values[~np.isnan(values)]
        edges = _edges(values, bins) if len(values) else np.array([])
        out["columns"][column] = {
            "edges": edges.tolist(),
            "shares": _shares(values, edges).tolist(),
        }
    return out


def psi(reference: Sequence[float], current: Sequence[float]) -> float:
    """The population stability index of two binned distributions (shares per bin)."""
    r = np.maximum(np.asarray(reference, dtype=np.float64), FLOOR)
    c = np.maximum(np.asarray(current, dtype=np.float64), FLOOR)
    return float(np.sum(rel_entr(c, r) + rel_entr(r, c)))


def status(value: float) -> str:
    return "stable" if value < STABLE else "moderate" if value < MODERATE else "drift"


def drift(profile: Mapping[str, Any], current: pd.DataFrame) -> list[dict[str, Any]]:
    """Per profiled column present in `current`: PSI, its status and both row counts."""
    rows = []
    for column, reference in profile["columns"].items():
        if column not in current:
            continue
        values = current[column].to_numpy(dtype=np.float64)
        values = values[~np.isnan(values)]
        if not len(values):
            continue
        value = psi(reference["shares"], _shares(values, np.asarray(reference["edges"])))
        rows.append(
            {
                "feature": column,
                "psi": value,
                "status": status(value),
                "reference_rows": int(profile["rows"]),
                "current_rows": len(values),
            }
        )
    return rows
