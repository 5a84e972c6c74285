"""Bronze → silver → gold on the real Spark Connect server (Sail), real Delta tables and GX, on
a copy of the tiny world (tests/conftest.py): the ERP in two halves, so master data changes
between extractions (SCD2), and the whole clickstream with every fault knob on."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
from collections import Counter

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from lakehouse.core.settings import Settings
from tests.conftest import SPLIT, World, cli_json, run_cli

pytestmark = pytest.mark.integration

LATENESS_HOURS = Settings().silver_lateness_hours


def ack_kinds(world: World) -> dict[str, set[str]]:
    kinds: dict[str, set[str]] = {}
    with open(world.acks) as f:
        for row in csv.DictReader(f):
            kinds.setdefault(row["kind"], set()).add(row["event_id"])
    return kinds


def test_faults_are_quarantined_with_reasons_and_good_rows_reconcile(world_copy: World) -> None:
    kinds = ack_kinds(world_copy)
    bronze = world_copy.table("bronze.events")
    silver = world_copy.table("silver.events")
    quarantine = world_copy.table("silver.events_quarantine")
    dead = world_copy.table("bronze.events_dead_letter")
    silver_ids = set(silver["event_id"].to_pylist())
    by_reason: dict[str, set[str]] = {}
    for event_id, reason in zip(
        quarantine["event_id"].to_pylist(), quarantine["reason"].to_pylist(), strict=True
    ):
        by_reason.setdefault(reason, set()).add(event_id)
    reasons = Counter(quarantine["reason"].to_pylist())

    # every bronze row is in exactly one place: silver or the quarantine
    assert bronze.num_rows == silver.num_rows + quarantine.num_rows
    assert len(silver_ids) == silver.num_rows  # deduplicated
    # none of the bad rows is in silver; each is quarantined with its reason
    assert not silver_ids & (kinds["future_time"] | kinds["orphan_product"])
    assert kinds["future_time"] <= by_reason["future_event_time"]
    assert kinds["orphan_product"] <= by_reason["unknown_product"]
    assert kinds.get("orphan_customer", set()) <= by_reason.get("unknown_customer", set())
    assert reasons["duplicate_event_id"] == len(kinds["duplicate"])  # one row per extra copy
    # customers who registered after the split came in with the second extraction: their
    # events, first quarantined as orphans, were rebuilt into silver
    orphans = by_reason.get("unknown_customer", set()) | by_reason["unknown_product"]
    assert orphans == kinds.get("orphan_customer", set()) | kinds["orphan_product"]
    # late events: in silver within the window, quarantined beyond it; none lost
    late = kinds["late"]
    assert late <= silver_ids | by_reason["late_beyond_window"]
    assert late & silver_ids and late & by_reason["late_beyond_window"]
    lateness = pc.divide(
        pc.subtract(
            silver["kafka_timestamp"].cast(pa.int64()), silver["event_time"].cast(pa.int64())
        ),
        3_600_000_000,
    )
    assert pc.max(lateness).as_py() <= LATENESS_HOURS
    # every good event made it: valid/late/drift minus the ones too late
    good = kinds["valid"] | kinds.get("drift", set()) | late
    assert good - by_reason["late_beyond_window"] == silver_ids
    # contract violations never reached silver: they are bronze dead letters
    rejected = sum(len(ids) for k, ids in kinds.items() if k.startswith("malformed"))
    assert dead.num_rows == rejected + len(kinds["negative_quantity"])
    # events sit in their true date partition
    assert pc.all(
        pc.equal(silver["event_date"], pc.cast(silver["event_time"], pa.date32()))
    ).as_py()


def test_gold_reconciles_with_silver(world_copy: World) -> None:
    silver_events = world_copy.table("silver.events")
    silver_sales = world_copy.table("silver.sales")
    silver_lines = world_copy.table("silver.sales_lines")
    facts = world_copy.table("gold.fact_sales_line")
    assert world_copy.table("gold.fact_events").num_rows == silver_events.num_rows
    assert facts.num_rows == silver_lines.num_rows > 500
    # Σ line net amounts per invoice = the header's net amount (the coupon spread over lines)
    per_invoice = facts.group_by("invoice_id").aggregate([("net_amount", "sum")])
    nets = dict(
        zip(
            silver_sales["invoice_id"].to_pylist(),
            silver_sales["net_amount"].to_pylist(),
            strict=True,
        )
    )
    for invoice_id, total in zip(
        per_invoice["invoice_id"].to_pylist(),
        per_invoice["net_amount_sum"].to_pylist(),
        strict=True,
    ):
        assert total == nets[invoice_id], invoice_id
    sessions = world_copy.table("gold.fact_sessions")
    assert pc.sum(sessions["events"]).as_py() == silver_events.num_rows
    kpis = world_copy.table("gold.kpi_hourly")
    assert pc.sum(kpis["events"]).as_py() == silver_events.num_rows
    interactions = world_copy.table("gold.customer_product_interactions")
    assert interactions.num_rows > 0 and pc.min(interactions["weight"]).as_py() >= 0
    assert world_copy.table("silver.sales_quarantine").num_rows == 0  # the generated ERP is clean


def test_scd2_attributes_sales_to_the_city_of_the_time(world_copy: World) -> None:
    customers = world_copy.table("gold.dim_customer").to_pylist()
    versions: dict[int, list[dict]] = {}
    for row in customers:
        versions.setdefault(row["customer_id"], []).append(row)
    movers = {
        cid: sorted(rows, key=lambda r: r["version"])
        for cid, rows in versions.items()
        if len({r["city_id"] for r in rows}) > 1
    }
    assert movers, "customers moved city between the two extractions"
    for rows in movers.values():
        assert [r["is_current"] for r in rows] == [False] * (len(rows) - 1) + [True]
        for older, newer in zip(rows, rows[1:], strict=False):
            assert older["valid_to"] == newer["valid_from"]
            assert newer["valid_from"] >= dt.datetime.fromisoformat(SPLIT).replace(tzinfo=dt.UTC)
    city_of = {r["customer_sk"]: r["city_id"] for r in customers}
    facts = world_copy.table("gold.fact_sales_line").to_pylist()
    # The ERP stamps each invoice with the customer's city at the time: SCD2 must agree from the
    # first extraction on, and for the movers it saw move. (A move before the first extraction
    # is history the source never showed: version 1 covers the time before it.)
    split = dt.datetime.fromisoformat(SPLIT).replace(tzinfo=dt.UTC)
    observed = [f for f in facts if f["invoice_time"] >= split or f["customer_id"] in movers]
    assert len(observed) > len(facts) / 3
    assert all(city_of[f["customer_sk"]] == f["city_id"] for f in observed)
    cities_of_movers = {
        cid: {f["city_id"] for f in facts if f["customer_id"] == cid} for cid in movers
    }
    assert any(len(c) > 1 for c in cities_of_movers.values()), "a mover bought before and after"


def checksum(world: World, name: str, key: list[str]) -> str:
    data = world.table(name).sort_by([(k, "ascending") for k in key])
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, data.schema) as writer:
        writer.write_table(data.combine_chunks())
    return hashlib.sha256(sink.getvalue().to_pybytes()).hexdigest()


KEYS = {
    "silver.events": ["event_id"],
    "silver.events_quarantine": ["event_id", "kafka_partition", "kafka_offset"],
    "silver.sales_lines": ["invoice_id", "line_no"],
    "gold.fact_sales_line": ["invoice_id", "line_no"],
    "gold.fact_sessions": ["session_id"],
    "gold.kpi_minute": ["period_start"],
    "gold.customer_product_interactions": ["customer_id", "product_id"],
}


@pytest.fixture(scope="module")
def rebuilt(world_copy: World, spark) -> dict:  # noqa: ANN001 - a SparkSession
    """Checksums of the copy, a re-run and a backfill through the CLI, then a full rebuild in
    many small batches straight through the runner, recording what every step read."""
    from spark_jobs.pipeline import Pipeline, TransformOptions
    from spark_jobs.steps import in_dependency_order

    env = world_copy.env
    before = {name: checksum(world_copy, name, key) for name, key in KEYS.items()}
    again = cli_json("transform", env=env)
    backfill = cli_json("transform", "--from", "2025-09-05", "--to", "2025-09-12", env=env)
    after_backfill = {name: checksum(world_copy, name, key) for name, key in KEYS.items()}
    settings = world_copy.settings
    options = TransformOptions(
        batch_rows=2000,
        lateness=dt.timedelta(hours=settings.silver_lateness_hours),
        future_tolerance=dt.timedelta(minutes=settings.silver_future_tolerance_minutes),
        interaction_half_life_days=settings.interaction_half_life_days,
    )
    pipeline = Pipeline(spark, settings.lake, options)
    full = [r for step in in_dependency_order() for r in pipeline.run(step, full=True)]
    return {
        "before": before,
        "again": again,
        "backfill": backfill,
        "after_backfill": after_backfill,
        "full": full,
        "after_full": {name: checksum(world_copy, name, key) for name, key in KEYS.items()},
        "reads": pipeline.reads,
    }


def test_rerun_and_backfill_reproduce_identical_results(rebuilt: dict) -> None:
    assert all(r["skipped"] for r in rebuilt["again"]), "nothing new upstream: nothing rebuilt"
    published = {r["table"] for r in rebuilt["backfill"] if r["published"]}
    assert published >= {"silver.events", "gold.fact_events"}
    assert rebuilt["after_backfill"] == rebuilt["before"]
    # from scratch again, computed in many small batches: still the same bytes
    assert all(r.published for r in rebuilt["full"])
    assert {r.table: r.batches for r in rebuilt["full"]}["silver.events"] > 3
    assert rebuilt["after_full"] == rebuilt["before"]


def test_every_step_reads_exactly_what_its_entry_declares(rebuilt: dict) -> None:
    """The runner refuses a read its step does not declare (UndeclaredInput); a full rebuild
    reads every declared input, so the Dagster lineage derived from the entries is what the
    code reads."""
    from spark_jobs.steps import STEPS

    for step in STEPS:
        read = rebuilt["reads"][step.name]
        declared = set(step.inputs + step.references)
        assert read <= step.reads, (step.name, read - step.reads)
        assert declared <= read, (step.name, "declared but never read", declared - read)


def test_an_undeclared_read_is_refused(world_copy: World, spark) -> None:  # noqa: ANN001
    from spark_jobs.pipeline import Output, Pipeline, Step, UndeclaredInput

    sneaky = Step(
        outputs=(Output("silver.sneaky", "reads more than it says"),),
        inputs=("bronze.mv_brand",),
        transform=lambda brands: brands,
        run=lambda p, **_: [p.read("bronze.mv_setup_customer")],
    )
    pipeline = Pipeline(spark, world_copy.settings.lake, options=None)  # type: ignore[arg-type]
    with pytest.raises(UndeclaredInput, match="silver.sneaky read bronze.mv_setup_customer"):
        pipeline.run(sneaky)


@pytest.mark.slow
def test_integrity_failures_block_and_distribution_ones_warn(world_copy: World) -> None:
    env, root = world_copy.env, world_copy.root
    day = "2025-09-15"
    bronze = DeltaTable(f"{root}/lake/bronze/events")
    silver = DeltaTable(f"{root}/lake/silver/events")
    gold = DeltaTable(f"{root}/lake/gold/fact_events")
    versions = (bronze.version(), silver.version(), gold.version())

    def results(table: str, expectation: str) -> list[dict]:
        rows = world_copy.table("quality.validation_results").to_pylist()
        return [r for r in rows if r["table_name"] == table and r["expectation"] == expectation]

    try:
        # an integrity failure: event types nobody accepts reach gold's input
        silver.update({"event_type": "'teleport'"}, predicate=f"event_date = '{day}'")
        failed = run_cli(
            "transform", "--step", "gold.fact_events", "--from", day, "--to", day,
            env=env, check=False,
        )  # fmt: skip
        assert failed.returncode == 1
        assert "expect_column_values_to_be_in_set(event_type)" in failed.stderr
        assert "staging" in failed.stderr
        assert "great_expectations" in failed.stderr  # the blocking check that failed
        gold.update_incremental()
        assert gold.version() == versions[2]  # the failing batch was not published
        blocked = results("gold.fact_events", "expect_column_values_to_be_in_set")
        assert any(not r["success"] and r["severity"] == "critical" for r in blocked)
        silver.restore(versions[1])

        # a distribution failure: most of a day's bronze rows are gone; the rebuilt day is
        # published and the shrink is flagged
        bronze.delete(f"event_date = '{day}' AND kafka_offset % 10 != 0")
        warned = run_cli(
            "transform", "--step", "silver.events", "--from", day, "--to", day, env=env
        )
        assert (
            "quality warning silver.events: expect_table_row_count_to_be_between" in warned.stdout
        )
        silver.update_incremental()
        assert silver.version() > versions[1] + 1
        shrunk = results("silver.events", "expect_table_row_count_to_be_between")
        assert any(not r["success"] and r["severity"] == "warning" for r in shrunk)
    finally:
        DeltaTable(f"{root}/lake/bronze/events").restore(versions[0])
        DeltaTable(f"{root}/lake/silver/events").restore(versions[1])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--layer", "platinum"], "unknown layer"),
        (["--step", "gold.nothing"], "unknown step"),
        (["--from", "2025-09-01"], "go together"),
        (["--from", "2025-09-05", "--to", "2025-09-01"], "before --from"),
    ],
)
def test_transform_rejects_bad_arguments(world_copy: World, args: list[str], message: str) -> None:
    result = run_cli("transform", *args, env=world_copy.env, check=False)
    assert result.returncode == 2
    assert message in result.stderr


def test_bad_erp_rows_are_quarantined_whole_invoices_with_reasons(world_copy: World) -> None:
    import sqlalchemy as sa

    env, root = world_copy.env, world_copy.root
    engine = sa.create_engine(f"sqlite:///{root}/erp/erp.sqlite")
    with engine.begin() as conn:
        latest = conn.execute(sa.text('SELECT max("ModifiedAt") FROM "MV_Sales"')).scalar()
        later = dt.datetime.fromisoformat(str(latest)) + dt.timedelta(minutes=1)
        sales = conn.execute(
            sa.text(
                'SELECT "InvoiceID" FROM "MV_Sales" WHERE "InvoiceType" = \'Sale\' '
                'AND "Status" = \'Completed\' ORDER BY "InvoiceID" LIMIT 2'
            )
        ).scalars()
        mismatched, negative = list(sales)
        conn.execute(
            sa.text(
                'UPDATE "MV_Sales" SET "NetAmount" = "NetAmount" + 5, "ModifiedAt" = :at '
                'WHERE "InvoiceID" = :id'
            ),
            {"at": later, "id": mismatched},
        )
        conn.execute(
            sa.text(
                'UPDATE "MV_SalesDetail" SET "Quantity" = -"Quantity", "ModifiedAt" = :at '
                'WHERE "InvoiceID" = :id AND "LineNo" = 1'
            ),
            {"at": later, "id": negative},
        )
        conn.execute(
            sa.text(
                'INSERT INTO "MV_SalesDetail" ("InvoiceID", "LineNo", "ProductID", "Quantity", '
                '"UnitPrice", "DiscountAmount", "LineAmount", "CreatedAt", "ModifiedAt") '
                "VALUES (999999999, 1, 1, 1, 10, 0, 10, :at, :at)"
            ),
            {"at": later},
        )
    cli_json("extract", env=env)
    results = cli_json("transform", "--layer", "silver", env=env)
    assert {r["table"] for r in results if r["published"]} >= {"silver.sales", "silver.sales_lines"}

    sales_ids = set(world_copy.table("silver.sales")["invoice_id"].to_pylist())
    line_ids = set(world_copy.table("silver.sales_lines")["invoice_id"].to_pylist())
    assert not {mismatched, negative} & (sales_ids | line_ids)
    quarantine = world_copy.table("silver.sales_quarantine").to_pylist()
    reasons = {(q["source_table"], q["invoice_id"]): q["reason"] for q in quarantine}
    assert reasons[("MV_Sales", mismatched)] == "net amount != gross - discount"
    assert reasons[("MV_Sales", negative)] == "negative quantity on a sale"
    assert reasons[("MV_SalesDetail", negative)] == "negative quantity on a sale"  # all its lines
    assert reasons[("MV_SalesDetail", 999999999)] == "line of an unknown invoice"
