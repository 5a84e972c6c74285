"""The dbt project as Dagster sees it. Its manifest is prepared at build time (`./run` calls
`dagster-dbt project prepare-and-package --file orchestration/defs/marts/project.py`), never
parsed when the code location is imported."""

from dagster_dbt import DbtProject

from warehouse.marts import DBT_PROJECT_DIR

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
