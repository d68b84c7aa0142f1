"""Runs inside Superset's own environment: roles, users and the DuckDB views.

Called by ``orderhealth superset`` (orderhealth/superset_cmd.py) as
``.venv-superset/bin/python superset/bootstrap.py ...`` after ``superset db
upgrade`` and ``superset init``.  Idempotent: run it again after new tables
appear or to reset the demo users.

Roles:
* ``Executive``: Gamma (view dashboards and charts, no SQL Lab, no editing)
  plus read access to every dataset;
* ``Finance``: the same, plus CSV export of chart data;
* ``Admin``: Superset's own.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from pathlib import Path

import duckdb

#: Published tables Superset may read, as views named after the table.
VIEWS = {
    "health_metrics": "gold/health_metrics",
    "promise_fulfilment": "gold/promise_fulfilment",
    "order_lifecycle": "silver/order_lifecycle",
    "validation_runs": "quality/validation_runs",
}


def duckdb_config(extension_dir: Path) -> dict[str, object]:
    """Load the Delta extension from disk when a view needs it; never download."""
    return {
        "extension_directory": str(extension_dir),
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": True,
    }


def write_views(database: Path, lakehouse: str, extension_dir: Path) -> list[str]:
    """(Re)create the views over ``delta_scan`` in the DuckDB file Superset reads."""
    database.parent.mkdir(parents=True, exist_ok=True)
    made = []
    with duckdb.connect(str(database), config=duckdb_config(extension_dir)) as con:
        for view, path in VIEWS.items():
            uri = f"{lakehouse.rstrip('/')}/{path}"
            if "://" not in uri and not (Path(uri) / "_delta_log").is_dir():
                continue
            con.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM delta_scan('{uri}')")
            made.append(view)
    return made


def roles_and_users(users: list[tuple[str, str, str]]) -> dict[str, str]:
    """Create the roles and the given (username, role, password-or-empty) users."""
    from superset.app import create_app

    app = create_app()
    passwords = {}
    with app.app_context():
        from superset import db, security_manager as sm

        gamma = sm.find_role("Gamma")
        everything = sm.find_permission_view_menu("all_datasource_access", "all_datasource_access")
        csv = sm.find_permission_view_menu("can_csv", "Superset")
        for name, extra in (("Executive", []), ("Finance", [csv])):
            role = sm.find_role(name) or sm.add_role(name)
            for pv in [*gamma.permissions, everything, *extra]:
                if pv is not None and pv not in role.permissions:
                    sm.add_permission_role(role, pv)
        for username, role_name, given in users:
            role = sm.find_role(role_name)
            user = sm.find_user(username=username)
            if user is None:
                password = given or secrets.token_urlsafe(12)
                sm.add_user(username, username, role_name, f"{username}@orderhealth.local",
                            role, password=password)
                passwords[username] = password
            else:
                user.roles = [role]
                if given:  # an existing user keeps its password unless one is given
                    sm.reset_password(user.id, given)
                    passwords[username] = given
        db.session.commit()
    return passwords


def import_bundle(path: Path, owner: str) -> None:
    """Import (and overwrite) the database, datasets, charts and dashboards.

    ``superset import-dashboards`` never overwrites existing charts or
    datasets, so an updated bundle would not take effect; the assets import
    used by ``/api/v1/assets/import/`` does.
    """
    from zipfile import ZipFile

    from flask import g
    from superset.app import create_app

    app = create_app()
    with app.app_context():
        from superset import security_manager as sm
        from superset.commands.importers.v1.assets import ImportAssetsCommand
        from superset.commands.importers.v1.utils import get_contents_from_bundle

        g.user = sm.find_user(username=owner)
        with ZipFile(path) as bundle:
            contents = get_contents_from_bundle(bundle)
        ImportAssetsCommand(contents).run()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", type=Path, required=True)
    parser.add_argument("--lakehouse", required=True)
    parser.add_argument("--extension-dir", type=Path, required=True)
    parser.add_argument("--bundle", type=Path, help="import bundle (zip) to import")
    parser.add_argument("--user", action="append", default=[],
                        help="username:role[:password] (repeatable)")
    args = parser.parse_args()
    views = write_views(args.database, args.lakehouse, args.extension_dir)
    users = []
    for spec in args.user:
        username, role, *rest = spec.split(":", 2)
        users.append((username, role, rest[0] if rest else ""))
    passwords = roles_and_users(users)
    if args.bundle is not None:
        import_bundle(args.bundle, owner=users[0][0] if users else "admin")
    print(json.dumps({"views": views, "passwords": passwords}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
