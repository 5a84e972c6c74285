"""Superset configuration: everything from the environment, nothing secret in the repo."""

import os

SECRET_KEY = os.environ["SUPERSET_SECRET_KEY"]
SQLALCHEMY_DATABASE_URI = os.environ["SUPERSET_METADATA_DB_URL"]

# Offline and single-node: in-process caches, no Celery.
CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 300}
DATA_CACHE_CONFIG = CACHE_CONFIG
FEATURE_FLAGS = {"DASHBOARD_RBAC": False}
