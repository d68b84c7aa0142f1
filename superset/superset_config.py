"""Superset configuration for Order Health (loaded via SUPERSET_CONFIG_PATH).

Secrets and locations come from the environment; nothing here is a default
password or key.

* ``SUPERSET_SECRET_KEY`` (required): signs sessions and encrypts stored
  database credentials.  ``orderhealth superset`` generates one for the demo
  and keeps it in the Superset home directory.
* ``ORDERHEALTH_SUPERSET_HOME``: where the SQLite metadata lives
  (default ``data/superset``).
* ``SUPERSET_DATABASE_URI``: metadata database, e.g.
  ``postgresql+psycopg2://superset:...@db/superset``; SQLite by default.
"""

from __future__ import annotations

import os
from pathlib import Path

SECRET_KEY = os.environ.get("SUPERSET_SECRET_KEY")
if not SECRET_KEY:
    raise RuntimeError(
        "SUPERSET_SECRET_KEY is not set; `orderhealth superset` sets it up "
        "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(42))')"
    )

_HOME = Path(os.environ.get("ORDERHEALTH_SUPERSET_HOME", "data/superset")).resolve()
_HOME.mkdir(parents=True, exist_ok=True)
SQLALCHEMY_DATABASE_URI = os.environ.get(
    "SUPERSET_DATABASE_URI", f"sqlite:///{_HOME / 'superset.db'}?check_same_thread=false"
)

# Loopback demo and tests: no CSRF on the REST API would be wrong; keep it on
# and let clients fetch /api/v1/security/csrf_token/ like any API client.
WTF_CSRF_ENABLED = True
WTF_CSRF_TIME_LIMIT = None

FEATURE_FLAGS = {
    "DASHBOARD_NATIVE_FILTERS": True,
    "DASHBOARD_CROSS_FILTERS": True,
    "ENABLE_TEMPLATE_PROCESSING": False,
}

# No outbound calls from an air-gapped machine.
MAPBOX_API_KEY = ""
THUMBNAIL_SELENIUM_USER = None
ENABLE_PROXY_FIX = False
SUPERSET_WEBSERVER_TIMEOUT = 120
ROW_LIMIT = 50_000
