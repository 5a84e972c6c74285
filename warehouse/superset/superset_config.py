"""Superset configuration: everything from the environment, nothing secret in the repo.

`lakehouse bi up` sets the variables (generating the secret key under the data root in embedded
mode); docker-compose sets them from its .env.
"""

import os

SECRET_KEY = os.environ["SUPERSET_SECRET_KEY"]
SQLALCHEMY_DATABASE_URI = os.environ["SUPERSET_METADATA_DB_URL"]

# Offline and single-node: in-process caches, no Celery, no thumbnails, no examples.
CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 300}
DATA_CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 60}
FILTER_STATE_CACHE_CONFIG = {"CACHE_TYPE": "SimpleCache", "CACHE_DEFAULT_TIMEOUT": 86400}
EXPLORE_FORM_DATA_CACHE_CONFIG = FILTER_STATE_CACHE_CONFIG
FEATURE_FLAGS = {"DASHBOARD_RBAC": False, "THUMBNAILS": False, "ALERT_REPORTS": False}

# SQL Lab: analysts query the warehouse synchronously, read-only (the connection enforces it).
SQLLAB_TIMEOUT = 120
SQLLAB_CTAS_NO_LIMIT = False
SQL_MAX_ROW = 100000

# Served on 127.0.0.1 by default; no outside fonts, maps or telemetry to fetch.
MAPBOX_API_KEY = ""
TALISMAN_ENABLED = os.environ.get("TALISMAN_ENABLED", "false").lower() == "true"
SESSION_COOKIE_SAMESITE = "Lax"
WTF_CSRF_ENABLED = True
LOG_LEVEL = os.environ.get("SUPERSET_LOG_LEVEL", "INFO")
