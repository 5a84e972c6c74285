"""Resources of the monitoring domain: when drift fails the check."""

import dagster as dg

from lakehouse.core.settings import Settings


class MonitoringResource(dg.ConfigurableResource):
    """DRIFT_PSI_THRESHOLD: a model score's population stability index from which the drift
    check fails (inputs past it warn)."""

    psi_threshold: float = 0.25


def monitoring_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    return {"monitoring": MonitoringResource(psi_threshold=settings.drift_psi_threshold)}
