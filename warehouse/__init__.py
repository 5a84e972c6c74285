"""The DuckDB warehouse (publishing) and the Superset environment and dashboards-as-code."""
