import dagster as dg

from orchestration.definitions import defs


def test_code_location_loads() -> None:
    assert isinstance(defs, dg.Definitions)
    defs.validate_loadable(defs)
