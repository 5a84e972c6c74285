"""The installed `lakehouse` console script, run as users run it (the other tests call the same
CLI in their own process, tests/conftest.py run_cli)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import isolated_env, run_cli_process


def test_the_console_script_lists_its_commands(tmp_path: Path) -> None:
    result = run_cli_process("--help", env=isolated_env(tmp_path))
    assert result.returncode == 0, result.stderr
    for command in ("ingest", "extract", "transform", "marts", "ml", "bi", "services", "demo"):
        assert command in result.stdout


def test_bad_configuration_exits_2_naming_the_variable(tmp_path: Path) -> None:
    env = {**isolated_env(tmp_path), "SPARK_REMOTE": "http://not-spark-connect"}
    result = run_cli_process("transform", env=env)
    assert result.returncode == 2
    assert "SPARK_REMOTE" in result.stderr and "sc://" in result.stderr


def test_experiments_are_checked_and_a_bad_one_is_named(tmp_path: Path) -> None:
    env = isolated_env(tmp_path)
    listed = run_cli_process("ml", "experiments", env=env)
    assert listed.returncode == 0, listed.stderr
    assert "ranker_vs_popularity: popularity 50% (popularity), champion 50%" in listed.stdout
    bad = tmp_path / "experiments"
    bad.mkdir()
    (bad / "skewed.yaml").write_text(
        "name: skewed\ncontrol: a\nstart: 2026-12-01\nvariants:\n"
        "  - {name: a, weight: 0.7, recommender: popularity}\n"
        "  - {name: b, weight: 0.7, recommender: champion}\n"
    )
    failed = run_cli_process("ml", "experiments", env={**env, "EXPERIMENTS_DIR": str(bad)})
    assert failed.returncode == 2
    assert "skewed.yaml" in failed.stderr and "sum to 1.4" in failed.stderr
