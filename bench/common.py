"""Helpers shared by the benchmark scripts (run as `python bench/<name>.py`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CLI = str(Path(sys.executable).parent / "lakehouse")

# `bench/serving.py` is named like the platform's `serving` package, and a script's own folder
# comes first on the path: the folder goes last, so the package wins and sibling scripts import
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE] + [str(_HERE)]


def free_port() -> int:
    """A free loopback port below the ephemeral range (see `free_port_block`)."""
    from lakehouse.devstack.services import free_port_block

    return free_port_block(1)


def run_json(args: list[str], env: dict[str, str]) -> dict:
    """Run `lakehouse <args> --json` and return its report; exit with its stderr on failure."""
    result = subprocess.run(
        [CLI, *args, "--json"], env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise SystemExit(f"lakehouse {' '.join(args)} failed:\n{result.stderr}")
    return json.loads(result.stdout)
