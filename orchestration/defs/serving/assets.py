"""The `serving` group: the snapshot the recommendation API holds in memory (docs/serving.md).

`serving/snapshot` reads the champion's lists and the product tables from gold and publishes
them as one versioned artefact under <LAKE_URI>/serving; running APIs pick the new version up
within API_SNAPSHOT_POLL_SECONDS, without dropping a request.
"""

import dagster as dg

from orchestration.defs.resources import LakeResource
from orchestration.lib.code_versions import source_version
from orchestration.lib.metadata import markdown_table
from orchestration.lib.spark_steps import key
from serving.snapshot import PARTS


@dg.asset(
    key=["serving", "snapshot"],
    group_name="serving",
    kinds={"parquet"},
    owners=["team:data-science"],
    deps=[
        *(key(table) for table, _ in PARTS.values()),
        dg.AssetKey(["ml", "session_recommender"]),
        dg.AssetKey(["ml", "purchase_intent"]),
        key("gold.experiment_history"),
    ],
    code_version=source_version("serving.snapshot"),
    description="The recommendation API's serving snapshot: the champion's lists per customer, "
    "product neighbours, pairs bought together, trending products nationally and per city, the "
    "sellable catalogue and the customers' cities, as Parquet under <LAKE_URI>/serving/"
    "snapshots/<version>, with the newest session recommender and purchase-intent model and the "
    "concluded experiments' decisions, made current atomically.",
)
def serving_snapshot(lake: LakeResource) -> dg.MaterializeResult:
    from serving.snapshot import publish_snapshot

    manifest = publish_snapshot(lake.lake)
    rows = [{"part": part, "rows": n} for part, n in manifest["rows"].items()]
    return dg.MaterializeResult(
        metadata={
            "version": manifest["version"],
            "champion": manifest["champion"],
            "rows": dg.MetadataValue.md(markdown_table(rows)),
            "source_delta_versions": manifest["sources"],
            "manifest": dg.MetadataValue.json(manifest),  # `lakehouse ml publish`
        }
    )
