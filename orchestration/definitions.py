"""The Dagster code location: `dagster dev -m orchestration.definitions`.

Assets, resources, schedules and sensors live under `orchestration/defs/<domain>/` and are added
here as the layers land (bronze, silver, gold, marts, ml, bi).
"""

import dagster as dg

defs = dg.Definitions()
