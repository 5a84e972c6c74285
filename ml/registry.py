"""A tiny model registry: versioned artefacts plus metadata under one root.

Layout: `<root>/<model_name>/<version>/model.joblib` and `metadata.json` (name, version, params,
metrics, training input versions such as Delta table versions, created_at). Versions are
zero-padded integers ("000001", ...), so they sort as strings and as numbers. A version counts
only once its metadata.json exists: the artefact is written first, the metadata last (each via a
temporary file and a rename), so a crash mid-save leaves no half version that `load` would
return. Every version stays loadable; the champion is chosen by a declared metric, not stored,
so it can never disagree with the metrics. A version stored by code whose classes have
since been removed or renamed cannot be loaded: `load` says so and asks for a refit.

Paths are plain strings joined with "/" and all file access goes through a handful of small
functions (`_open`, `_exists`, `_listdir`, `_makedirs`, `_rename`), so an fsspec/S3 backend
can replace them later without touching the rest.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import IO, Any, Literal

import joblib

ARTEFACT = "model.joblib"
METADATA = "metadata.json"


class StaleModel(RuntimeError):
    """A stored version the current code cannot load (its classes are gone)."""


def _join(*parts: str) -> str:
    return "/".join(p.rstrip("/") for p in parts)


def _open(path: str, mode: str) -> IO[Any]:
    return open(path, mode)  # noqa: SIM115 - callers use it as a context manager


def _exists(path: str) -> bool:
    return os.path.exists(path)


def _listdir(path: str) -> list[str]:
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


def _makedirs(path: str, exist_ok: bool) -> None:
    os.makedirs(path, exist_ok=exist_ok)


def _rename(src: str, dst: str) -> None:
    os.replace(src, dst)


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    path: str
    created_at: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


class ModelRegistry:
    """Save, list, load and pick the champion of versioned models under `root`."""

    def __init__(self, root: str) -> None:
        self.root = str(root)

    def save(
        self,
        name: str,
        model: Any,
        params: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
        inputs: Mapping[str, Any] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> ModelVersion:
        """Store a fitted model as the next version of `name` and return its record.

        `inputs` records what it was trained on (e.g. {"gold.customer_product_interactions": 42}
        for Delta versions); all mappings must be JSON-serialisable.
        """
        if not name or "/" in name:
            raise ValueError(f"invalid model name {name!r}")
        model_dir = _join(self.root, name)
        _makedirs(model_dir, exist_ok=True)
        while True:  # claim the next version directory; makedirs fails if a writer beat us
            version = f"{self._last_number(name) + 1:06d}"
            path = _join(model_dir, version)
            try:
                _makedirs(path, exist_ok=False)
                break
            except FileExistsError:
                continue
        record = ModelVersion(
            name=name,
            version=version,
            path=path,
            created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            params=dict(params or {}),
            metrics=dict(metrics or {}),
            inputs=dict(inputs or {}),
            extra=dict(extra or {}),
        )
        self._write(_join(path, ARTEFACT), lambda f: joblib.dump(model, f), binary=True)
        text = json.dumps(asdict(record), indent=2, sort_keys=True, default=str)
        self._write(_join(path, METADATA), lambda f: f.write(text), binary=False)
        return record

    @staticmethod
    def _write(path: str, write: Any, binary: bool) -> None:
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        with _open(tmp, "wb" if binary else "w") as f:
            write(f)
        _rename(tmp, path)

    def _last_number(self, name: str) -> int:
        numbers = [int(v) for v in _listdir(_join(self.root, name)) if v.isdigit()]
        return max(numbers, default=0)

    def models(self) -> list[str]:
        return [n for n in _listdir(self.root) if self.versions(n)]

    def versions(self, name: str) -> list[ModelVersion]:
        """Complete versions of `name`, oldest first."""
        out = []
        for version in _listdir(_join(self.root, name)):
            meta = _join(self.root, name, version, METADATA)
            if version.isdigit() and _exists(meta):
                with _open(meta, "r") as f:
                    out.append(ModelVersion(**json.load(f)))
        return sorted(out, key=lambda v: int(v.version))

    def get(self, name: str, version: str | None = None) -> ModelVersion:
        """The record of a version (default: the latest)."""
        versions = self.versions(name)
        if not versions:
            raise KeyError(f"no versions of model {name!r} under {self.root}")
        if version is None:
            return versions[-1]
        for v in versions:
            if v.version == version or int(v.version) == int(version):
                return v
        raise KeyError(f"model {name!r} has no version {version!r}")

    def load(self, name: str, version: str | None = None) -> Any:
        """The fitted model of a version (default: the latest); `StaleModel` when it was
        stored by code whose classes are gone."""
        record = self.get(name, version)
        with _open(_join(record.path, ARTEFACT), "rb") as f:
            try:
                return joblib.load(f)
            except (AttributeError, ImportError) as exc:  # unpickling names a missing class
                raise StaleModel(
                    f"model {name!r} version {record.version} was stored by other code "
                    f"({exc}): refit it (`lakehouse ml train`)"
                ) from exc

    def champion(self, name: str, metric: str, mode: Literal["max", "min"] = "max") -> ModelVersion:
        """The version with the best value of `metric` (versions lacking it are ignored; ties
        go to the newest)."""
        if mode not in ("max", "min"):
            raise ValueError("mode must be 'max' or 'min'")
        scored = [
            v
            for v in self.versions(name)
            if isinstance(v.metrics.get(metric), int | float)
            and not math.isnan(float(v.metrics[metric]))
        ]
        if not scored:
            raise KeyError(f"no version of {name!r} reports metric {metric!r}")
        sign = 1.0 if mode == "max" else -1.0
        return max(scored, key=lambda v: (sign * float(v.metrics[metric]), int(v.version)))
