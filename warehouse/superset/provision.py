"""Apply the dashboards-as-code bundle and the admin user to a Superset metadata database.

Runs in Superset's own virtual environment (`lakehouse bi up` calls it after `superset db
upgrade` and `superset init`):

    python -m warehouse.superset.provision STATE_FILE

Reads WAREHOUSE_PATH (where the DuckDB files are), SUPERSET_DASHBOARDS_DIR, SUPERSET_ADMIN_USER
and SUPERSET_ADMIN_PASSWORD from the environment. Idempotent: objects keep their UUIDs, so a second
run updates them in place; objects an earlier run created that the YAML no longer has are
deleted (their UUIDs are kept in STATE_FILE). Prints one JSON line with what it did.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from warehouse.superset.bundle import Bundle, database_uris, render


def _admin(security_manager, username: str, password: str):  # noqa: ANN001, ANN202
    from werkzeug.security import check_password_hash, generate_password_hash

    user = security_manager.find_user(username=username)
    if user is None:
        user = security_manager.add_user(
            username,
            "Lakehouse",
            "Admin",
            f"{username}@lakehouse.local",
            security_manager.find_role("Admin"),
            password=password,
        )
        if not user:
            raise RuntimeError(f"could not create the Superset admin user {username!r}")
        return user, "created"
    if not check_password_hash(user.password, password):
        user.password = generate_password_hash(password)
        security_manager.update_user(user)
        return user, "password updated"
    return user, "unchanged"


def _import(bundle: Bundle) -> None:
    from superset.commands.chart.importers.v1 import ImportChartsCommand
    from superset.commands.dashboard.importers.v1 import ImportDashboardsCommand
    from superset.commands.database.importers.v1 import ImportDatabasesCommand
    from superset.commands.dataset.importers.v1 import ImportDatasetsCommand

    # One command per kind, each overwriting: the dashboard importer alone would keep existing
    # datasets and charts as they were, so edited YAML would not show.
    ImportDatabasesCommand(bundle.contents("Database", ["databases"]), overwrite=True).run()
    kinds = ["databases", "datasets"]
    ImportDatasetsCommand(bundle.contents("SqlaTable", kinds), overwrite=True).run()
    kinds.append("charts")
    ImportChartsCommand(bundle.contents("Slice", kinds), overwrite=True).run()
    kinds.append("dashboards")
    ImportDashboardsCommand(bundle.contents("Dashboard", kinds), overwrite=True).run()


def _sync_columns(db) -> list[str]:  # noqa: ANN001
    """Read every managed dataset's columns from its database; the datasets whose table is
    not there yet (the warehouse not built), which get their columns on a later run."""
    from superset.connectors.sqla.models import SqlaTable

    missing = []
    for dataset in db.session.query(SqlaTable).all():
        try:
            dataset.fetch_metadata()
        except Exception as exc:  # noqa: BLE001 - reported, not fatal: the table may come later
            missing.append(f"{dataset.table_name}: {str(exc).splitlines()[0][:200]}")
    return missing


def _saved_queries(db, bundle: Bundle, user) -> int:  # noqa: ANN001
    from superset.models.core import Database
    from superset.models.sql_lab import SavedQuery

    from warehouse.superset.bundle import DATABASES

    databases = {d.database_name: d for d in db.session.query(Database).all()}
    for spec in bundle.saved_queries:
        database = databases[DATABASES[spec["database"]]]
        query = db.session.query(SavedQuery).filter_by(label=spec["label"]).first()
        if query is None:
            query = SavedQuery(label=spec["label"], user_id=user.id)
            db.session.add(query)
        query.description = spec.get("description", "")
        query.sql = spec["sql"].strip()
        query.db_id = database.id
        query.schema = "main"
    return len(bundle.saved_queries)


def _delete_dropped(db, state_file: Path, bundle: Bundle) -> list[str]:  # noqa: ANN001
    from superset.connectors.sqla.models import SqlaTable
    from superset.models.dashboard import Dashboard
    from superset.models.slice import Slice

    current = {c["uuid"] for c in bundle.files.values()}
    previous = set(json.loads(state_file.read_text())) if state_file.exists() else set()
    gone = previous - current
    removed = []
    for model in (Dashboard, Slice, SqlaTable):
        for obj in db.session.query(model).all():
            if str(obj.uuid) in gone:
                removed.append(f"{model.__name__} {getattr(obj, 'slice_name', None) or obj}")
                db.session.delete(obj)
    state_file.write_text(json.dumps(sorted(current)))
    return removed


def main(state_file: Path) -> dict:
    from superset.app import create_app

    started = time.monotonic()
    app = create_app()
    with app.app_context():
        from superset import security_manager
        from superset.extensions import db
        from superset.utils.core import override_user

        bundle = render(
            database_uris(os.environ["WAREHOUSE_PATH"]),
            Path(os.environ["SUPERSET_DASHBOARDS_DIR"]),
        )
        user, admin = _admin(
            security_manager,
            os.environ["SUPERSET_ADMIN_USER"],
            os.environ["SUPERSET_ADMIN_PASSWORD"],
        )
        db.session.commit()
        with override_user(user):
            _import(bundle)
            missing = _sync_columns(db)
            queries = _saved_queries(db, bundle, user)
            removed = _delete_dropped(db, state_file, bundle)
            db.session.commit()
    return {
        "admin": admin,
        "databases": len(bundle.of_kind("databases")),
        "datasets": len(bundle.of_kind("datasets")),
        "charts": len(bundle.of_kind("charts")),
        "dashboards": bundle.dashboards,
        "saved_queries": queries,
        "removed": removed,
        "datasets_without_table": missing,
        "seconds": round(time.monotonic() - started, 2),
    }


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]))))
