"""Superset for the analysts: configuration, dashboards as code, provisioning."""
