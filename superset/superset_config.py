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
from typing import Any

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


def _answer_anonymous_event_logs(app: Any) -> None:
    """Answer a logged-out browser's event-log beacon with 204, before anything reads the session.

    Why: the login page's logger flushes its queue with ``navigator.sendBeacon``
    when the form submits.  That beacon still carries the logged-out cookie, so
    Superset redirects it to the login page, and the redirect's ``Set-Cookie``
    (a fresh anonymous session) can land after the login's own cookie and undo
    the login: the user is bounced back to the login page now and then.  An
    anonymous event log is refused either way; answering it without touching
    the session removes the race.  It runs first of all request hooks, because
    Flask-Login's session protection marks the session modified on first use.
    """
    from flask import Response, request, session

    def answer() -> Response | None:
        beacon = request.method == "POST" and request.path == "/superset/log/"
        return Response(status=204) if beacon and "_user_id" not in session else None

    app.before_request_funcs.setdefault(None, []).insert(0, answer)


FLASK_APP_MUTATOR = _answer_anonymous_event_logs
