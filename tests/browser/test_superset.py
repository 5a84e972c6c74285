"""Superset over the gold world's warehouse: `lakehouse bi up` (real Superset in its own
environment, real DuckDB files), its API, and the dashboards and SQL Lab in a real browser
(Playwright driving Debian's Chromium).

Screenshots of every dashboard and the page-load times go to test-artifacts/superset/."""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb
import pytest
import requests
import yaml

from lakehouse.core.settings import PROJECT_ROOT
from serving.health import down
from streaming.online import OnlineStore, Ttls
from tests.conftest import LAKEHOUSE, World, cli_json, free_port, run_cli
from warehouse.stream_kpis import publish_stream_kpis
from warehouse.superset.browser import chart_states, logged_in, open_dashboard
from warehouse.superset.bundle import DATABASES, SPEC_DIR, render

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "superset"


@pytest.fixture(scope="module")
def bi(world_copy: World) -> Iterator[dict]:
    """Superset up on a port of its own over a copy of the tiny world's published warehouse."""
    env = {**world_copy.env, "SUPERSET_URL": f"http://127.0.0.1:{free_port()}"}
    root = world_copy.root
    # the models' drift report for the live file, and the API's health for the stream file
    run_cli("ml", "drift", "--json", env=env, check=False)
    publish_api_health(world_copy)
    cli_json("bi", "refresh", env=env)
    started = time.monotonic()
    first = cli_json("bi", "up", env=env)
    seconds = time.monotonic() - started
    try:
        yield {"env": env, "first": first, "startup_seconds": seconds, "root": root}
    finally:
        run_cli("bi", "down", env=env, check=False)


def publish_api_health(world: World) -> None:
    """The stream file with a live session that bought (a view, a purchase) and two health rows
    of an API: one scrape it missed, one it answered (a Redis database of this module's own)."""
    settings = world.settings
    store = OnlineStore(f"redis://127.0.0.1:{settings.redis_port}/5", Ttls.of(settings))
    store.client.flushdb()
    now = time.time()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now - 1))
    session = {"event_time": stamp, "session_id": "s-bi", "customer_id": 1, "product_id": 2,
               "device": "desktop_web", "schema_version": "1.1"}  # fmt: skip
    store.apply(
        [
            {**session, "event_id": str(uuid.uuid4()), "event_type": "product_view"},
            {**session, "event_id": str(uuid.uuid4()), "event_type": "purchase", "order_id": 9,
             "price": 25.0, "quantity": 2, "city": "Lahore"},
        ]
    )  # fmt: skip
    store.record_api_health(down(now - 4))
    store.record_api_health(
        {"scraped_at": now - 2, "api_up": True, "requests": 40, "requests_per_second": 20.0,
         "p50_ms": 2.1, "p95_ms": 4.8, "p99_ms": 7.5, "degraded": 1, "degraded_share": 0.025,
         "impressions_lost": 0, "snapshot_age_seconds": 60.0}
    )  # fmt: skip
    publish_stream_kpis(store, settings.warehouse_path)
    store.close()


def _password(bi: dict) -> str:
    return json.loads((bi["root"] / "superset" / "secrets.json").read_text())["admin_password"]


def _api(bi: dict) -> requests.Session:
    """A session logged in through the REST API, with the CSRF token SQL Lab's POSTs need."""
    base = bi["env"]["SUPERSET_URL"]
    session = requests.Session()
    login = session.post(
        f"{base}/api/v1/security/login",
        json={"username": "admin", "password": _password(bi), "provider": "db"},
        timeout=30,
    )
    login.raise_for_status()
    session.headers["Authorization"] = f"Bearer {login.json()['access_token']}"
    csrf = session.get(f"{base}/api/v1/security/csrf_token/", timeout=30).json()["result"]
    session.headers.update({"X-CSRFToken": csrf, "Referer": base})
    return session


def _sql(bi: dict, session: requests.Session, database: str, sql: str) -> dict:
    base = bi["env"]["SUPERSET_URL"]
    databases = session.get(f"{base}/api/v1/database/", timeout=30).json()["result"]
    database_id = next(d["id"] for d in databases if d["database_name"].startswith(database))
    response = session.post(
        f"{base}/api/v1/sqllab/execute/",
        json={
            "database_id": database_id,
            "sql": sql,
            "runAsync": False,
            "schema": "main",
            "queryLimit": 1000,  # what SQL Lab sends; a LIMIT in the SQL below it wins
        },
        timeout=60,
    )
    return {**response.json(), "http_status": response.status_code}


# -- lakehouse bi up ----------------------------------------------------------------------


def test_up_generates_a_password_kept_under_the_data_root_and_is_idempotent(bi: dict) -> None:
    first = bi["first"]
    assert first["server"]["healthy"] and first["server"]["started"]
    assert first["new_password"] and len(first["new_password"]) >= 20
    secrets = bi["root"] / "superset" / "secrets.json"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600
    assert first["new_password"] == _password(bi)
    assert len(first["provisioned"]["dashboards"]) == 8
    assert first["provisioned"]["datasets_without_table"] == []

    again = cli_json("bi", "up", env=bi["env"])
    assert again["new_password"] is None  # printed once
    assert again["provisioned"]["admin"] == "unchanged"
    assert again["server"]["detail"] == "already running"
    assert again["provisioned"]["dashboards"] == first["provisioned"]["dashboards"]
    assert not any("init" in step for step in again["steps"])  # roles are set up once
    print(f"\nSuperset first `bi up` {bi['startup_seconds']:.1f}s: {first['steps']}")


def test_the_default_admin_password_does_not_log_in(bi: dict) -> None:
    response = requests.post(
        f"{bi['env']['SUPERSET_URL']}/api/v1/security/login",
        json={"username": "admin", "password": "admin", "provider": "db"},
        timeout=30,
    )
    assert response.status_code == 401


def test_status_and_bad_configuration(bi: dict) -> None:
    status = cli_json("bi", "status", env=bi["env"])
    assert status["services"][0]["healthy"]
    bad = run_cli("bi", "status", env={**bi["env"], "SUPERSET_URL": "ftp://x"}, check=False)
    assert bad.returncode == 2 and "SUPERSET_URL" in bad.stderr


def test_the_connection_is_read_only(bi: dict) -> None:
    session = _api(bi)
    result = _sql(bi, session, "Warehouse", "create table hacked as select 1 as x")
    assert result["http_status"] >= 400
    assert result["errors"][0]["error_type"] == "DML_NOT_ALLOWED_ERROR"
    base = bi["env"]["SUPERSET_URL"]
    for database in session.get(f"{base}/api/v1/database/", timeout=30).json()["result"]:
        url = f"{base}/api/v1/database/{database['id']}/connection"
        detail = session.get(url, timeout=30).json()
        extra = json.loads(detail["result"]["extra"])
        assert extra["engine_params"]["connect_args"] == {"read_only": True}


def test_edited_yaml_is_picked_up_and_removed_charts_go(bi: dict, tmp_path: Path) -> None:
    spec = tmp_path / "dashboards"
    shutil.copytree(SPEC_DIR, spec)
    path = spec / "4_products.yaml"
    data = yaml.safe_load(path.read_text())
    data["charts"]["top_products"]["title"] = "Best sellers"
    del data["charts"]["conversion_daily"]
    data["rows"][2]["charts"].remove("conversion_daily")
    path.write_text(yaml.safe_dump(data))
    env = {**bi["env"], "SUPERSET_DASHBOARDS_DIR": str(spec)}

    def titles() -> set[str]:
        base = bi["env"]["SUPERSET_URL"]
        query = "(page_size:500)"
        charts = _api(bi).get(f"{base}/api/v1/chart/?q={query}", timeout=30).json()["result"]
        return {c["slice_name"] for c in charts}

    edited = cli_json("bi", "up", env=env)
    removed = edited["provisioned"]["removed"]
    assert any("Slice" in r and "Conversion per week" in r for r in removed), removed
    assert "Best sellers" in titles() and "Conversion per week" not in titles()
    cli_json("bi", "up", env=bi["env"])  # back to the repository's YAML
    assert "Top products by net revenue" in titles() and "Conversion per week" in titles()


def test_saved_queries_run_on_the_warehouse(bi: dict) -> None:
    session = _api(bi)
    base = bi["env"]["SUPERSET_URL"]
    saved = session.get(f"{base}/api/v1/saved_query/", timeout=30).json()["result"]
    specs = render(dict.fromkeys(DATABASES, "")).saved_queries
    assert {q["label"] for q in saved} == {s["label"] for s in specs}
    warehouse = bi["root"] / "warehouse" / "warehouse.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for spec in specs:
            expected = con.execute(spec["sql"]).fetchall()
            result = _sql(bi, session, "Warehouse", spec["sql"])
            assert result["http_status"] == 200, result
            assert len(result["data"]) == len(expected) > 0, spec["label"]


def test_queries_keep_answering_while_the_warehouse_is_rebuilt(bi: dict) -> None:
    """A marts build runs; Superset's queries on the warehouse all succeed meanwhile, on the
    old build until the new one is published, then on the new one."""
    session = _api(bi)
    sql = "select distinct build_id from warehouse_build"
    before = _sql(bi, session, "Warehouse", sql)["data"][0]["build_id"]
    build = subprocess.Popen(
        [*LAKEHOUSE, "marts", "build", "--json"],
        env=bi["env"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen, answered = [], 0
    while build.poll() is None:
        result = _sql(bi, session, "Warehouse", sql)
        assert result["http_status"] == 200, result
        answered += 1
        seen.append(result["data"][0]["build_id"])
        time.sleep(0.2)
    stdout, stderr = build.communicate()
    assert build.returncode == 0, stderr
    new = json.loads(stdout)["build_id"]
    after = _sql(bi, session, "Warehouse", sql)["data"][0]["build_id"]
    assert answered >= 5, answered
    assert after == new != before
    assert set(seen) <= {before, new}
    assert seen[0] == before


def test_the_bi_assets_materialise_through_dagster(bi: dict) -> None:
    """`bi refresh` and `bi up` run the bi assets through Dagster: the runs are in the
    instance the UI reads, with the assets' metadata."""
    live = bi["root"] / "warehouse" / "live" / "warehouse.duckdb"
    before = live.stat().st_ino
    refreshed = cli_json("bi", "refresh", env=bi["env"])
    with dg.DagsterInstance.from_config(str(bi["root"] / "dagster")) as instance:
        refresh = instance.get_latest_materialization_event(dg.AssetKey(["bi", "live_warehouse"]))
        superset = instance.get_latest_materialization_event(dg.AssetKey(["bi", "superset"]))
    assert refresh.asset_materialization.metadata["build_id"].value == refreshed["build_id"]
    metadata = superset.asset_materialization.metadata
    charts = len(render(dict.fromkeys(DATABASES, "")).of_kind("charts"))
    assert metadata["charts"].value == charts and metadata["datasets_without_table"].value == []
    assert live.stat().st_ino != before  # a new live build was published


# -- in the browser -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def page(bi: dict) -> Iterator:
    with logged_in(bi["env"]["SUPERSET_URL"], "admin", _password(bi)) as page:
        yield page


def _charts_with_data(bi: dict) -> dict[str, dict[str, bool]]:
    """{dashboard slug: {chart title: whether its query has rows}}, asked of DuckDB directly."""
    root = bi["root"] / "warehouse"
    files = {"warehouse": root / "warehouse.duckdb"}
    files |= {name: root / name / "warehouse.duckdb" for name in ("live", "stream")}
    bundle = render({k: str(v) for k, v in files.items()})
    datasets = {c["uuid"]: (p.split("/")[1], c) for p, c in bundle.of_kind("datasets").items()}
    expected: dict[str, dict[str, bool]] = {}
    for path, chart in bundle.of_kind("charts").items():
        database, dataset = datasets[chart["dataset_uuid"]]
        source = f"({dataset['sql']})" if dataset["sql"] else f"main.{dataset['table_name']}"
        where = " AND ".join(f["sqlExpression"] for f in chart["params"]["adhoc_filters"])
        with duckdb.connect(str(files[database]), read_only=True) as con:
            rows = con.execute(
                f"SELECT count(*) FROM {source} AS t WHERE {where or 'true'}"
            ).fetchone()[0]
        expected.setdefault(path.split("/")[1], {})[chart["slice_name"]] = rows > 0
    return expected


def test_every_dashboard_renders_every_chart_with_data(bi: dict, page, world_copy: World) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    base = bi["env"]["SUPERSET_URL"]
    # the live charts show the last 5 minutes: stamp the live session now, since the module's
    # earlier tests can take longer than that on a loaded machine
    publish_api_health(world_copy)
    expected = _charts_with_data(bi)
    load_seconds = {}
    problems = []
    for dashboard in bi["first"]["provisioned"]["dashboards"]:
        slug = dashboard["slug"]
        load_seconds[slug] = round(open_dashboard(page, base, slug), 2)
        page.screenshot(path=str(ARTIFACTS / f"{slug}.png"), full_page=True)
        states = chart_states(page)
        assert set(states) == set(expected[slug]), (slug, states)
        for title, state in states.items():
            want = "data" if expected[slug][title] else "empty"
            if state != want:
                problems.append(f"{slug}: {title!r} shows {state}, expected {want}")
    (ARTIFACTS / "page_load_seconds.json").write_text(json.dumps(load_seconds, indent=2))
    print(f"\npage-load seconds: {load_seconds}")
    assert not problems, "\n".join(problems)
    # the data root of the test world has data for most charts: a test of "empty" alone
    # would prove nothing
    with_data = sum(v for charts in expected.values() for v in charts.values())
    assert with_data >= 0.75 * sum(len(c) for c in expected.values())


def test_a_saved_query_runs_in_sql_lab(bi: dict, page) -> None:
    base = bi["env"]["SUPERSET_URL"]
    saved = _api(bi).get(f"{base}/api/v1/saved_query/", timeout=30).json()["result"]
    query = next(q for q in saved if q["label"].startswith("Cohort retention"))
    warehouse = bi["root"] / "warehouse" / "warehouse.duckdb"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        cohorts = con.execute(
            "select count(distinct cohort_month) from mart_cohort_retention"
        ).fetchone()[0]
    page.goto(f"{base}/sqllab/?savedQueryId={query['id']}")
    page.get_by_role("button", name="Run").first.click()
    badge = page.get_by_text(re.compile(rf"^{cohorts} rows?$"))  # "1 row", "4 rows"
    badge.wait_for(timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "sql-lab.png"))
    assert page.locator("[data-test='table-container']").count() == 1


def test_the_realtime_dashboard_refreshes_itself_every_five_seconds(bi: dict) -> None:
    dashboards = (
        _api(bi).get(f"{bi['env']['SUPERSET_URL']}/api/v1/dashboard/realtime", timeout=30).json()
    )
    metadata = json.loads(dashboards["result"]["json_metadata"])
    assert metadata["refresh_frequency"] == 5
