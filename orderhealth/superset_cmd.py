"""``orderhealth superset``: install, initialise and serve Superset beside the pipeline.

Superset lives in its own virtual environment (``.venv-superset``) because its
pins (pandas 2.1, pyarrow 18, SQLAlchemy 1.4) conflict with the pipeline's;
this module only drives it through subprocesses.  It reads the published
Delta tables through DuckDB views (``superset/bootstrap.py``), with the Delta
extension loaded from the ``duckdb-extension-delta`` wheel on disk.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import msgspec

from orderhealth.private_files import read_private, write_private

__all__ = ["SupersetError", "SupersetSetup", "bootstrap", "ensure_env", "serve"]

REPO = Path(__file__).resolve().parents[1]
SUPERSET_DIR = REPO / "superset"
REQUIREMENTS = SUPERSET_DIR / "requirements.txt"
DEFAULT_VENV = REPO / ".venv-superset"
_DUCKDB_VERSION = "v1.5.5"


class SupersetError(RuntimeError):
    """Superset could not be installed, initialised or started."""


class SupersetSetup(msgspec.Struct, frozen=True):
    venv: Path
    home: Path
    lakehouse: str
    secret_generated: bool
    views: list[str]
    passwords: dict[str, str]

    @property
    def database(self) -> Path:
        return self.home / "orderhealth.duckdb"


def _run(command: list[str], env: dict[str, str] | None = None, what: str = "") -> str:
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise SupersetError(f"{what or command[0]} failed: " + " | ".join(tail))
    return done.stdout


def ensure_env(venv: Path = DEFAULT_VENV, on_step: Callable[[str], None] = print) -> Path:
    """Create or update Superset's environment when its requirements changed."""
    stamp = venv / ".requirements.sha256"
    wanted = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text().strip() == wanted:
        return venv
    python = "python3.11"
    if not (venv / "bin" / "python").exists():
        on_step(f"creating {venv}")
        _run([python, "-m", "venv", str(venv)], what="python3.11 -m venv")
    on_step("installing Superset 6.1.0 and the DuckDB read path (about a minute)")
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    _run([*pip, "--upgrade", "pip"], what="pip")
    _run([*pip, "-r", str(REQUIREMENTS)], what="pip install -r superset/requirements.txt")
    stamp.write_text(wanted)
    return venv


def extension_dir(venv: Path, home: Path) -> Path:
    """A DuckDB extension directory holding the wheel's Delta extension.

    DuckDB looks for ``<dir>/<version>/<platform>/delta.duckdb_extension``; the
    wheel ships ``extensions/<version>/delta.duckdb_extension``, so link it in.
    """
    found = list(
        (venv / "lib").glob(
            f"python3*/site-packages/duckdb_extension_delta/extensions/{_DUCKDB_VERSION}/"
            "delta.duckdb_extension"
        )
    )
    if not found:
        raise SupersetError(f"duckdb-extension-delta {_DUCKDB_VERSION} is not installed in {venv}")
    target = home / "duckdb_extensions" / _DUCKDB_VERSION / "linux_amd64"
    target.mkdir(parents=True, exist_ok=True)
    link = target / "delta.duckdb_extension"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(found[0])
    return home / "duckdb_extensions"


def superset_environ(home: Path, secret: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        SUPERSET_CONFIG_PATH=str(SUPERSET_DIR / "superset_config.py"),
        SUPERSET_SECRET_KEY=secret,
        ORDERHEALTH_SUPERSET_HOME=str(home),
        FLASK_APP="superset",
    )
    return env


def _secret(home: Path) -> tuple[str, bool]:
    """The secret key: from the environment, a private file, or generated once into the home."""
    if key := os.environ.get("SUPERSET_SECRET_KEY"):
        return key, False
    if named := os.environ.get("SUPERSET_SECRET_KEY_FILE"):
        return read_private(Path(named), "Superset secret key").decode().strip(), False
    path = home / "secret_key"
    if path.exists():
        return read_private(path, "Superset secret key").decode().strip(), False
    key = secrets.token_urlsafe(42)
    write_private(path, key.encode())
    return key, True


def bootstrap(
    lakehouse: str,
    home: Path,
    *,
    venv: Path = DEFAULT_VENV,
    users: list[str] | None = None,
    on_step: Callable[[str], None] = print,
) -> SupersetSetup:
    """Install if needed, migrate the metadata, create roles and users, write the views."""
    ensure_env(venv, on_step)
    home = home.resolve()
    secret, generated = _secret(home)
    env = superset_environ(home, secret)
    superset = str(venv / "bin" / "superset")
    on_step("migrating Superset's metadata database")
    _run([superset, "db", "upgrade"], env, "superset db upgrade")
    on_step("creating Superset's built-in roles and permissions")
    _run([superset, "init"], env, "superset init")
    extensions = extension_dir(venv, home)
    from orderhealth.superset_bundle import bundle_zip

    archive = home / "orderhealth_bundle.zip"
    archive.write_bytes(bundle_zip(home / "orderhealth.duckdb", extensions))
    on_step("writing DuckDB views, roles and users; importing superset/bundle")
    command = [
        str(venv / "bin" / "python"),
        str(SUPERSET_DIR / "bootstrap.py"),
        "--database",
        str(home / "orderhealth.duckdb"),
        "--lakehouse",
        lakehouse,
        "--extension-dir",
        str(extensions),
        "--bundle",
        str(archive),
    ]
    for user in users or []:
        command += ["--user", user]
    out = msgspec.json.decode(
        _run(command, env, "superset/bootstrap.py").strip().splitlines()[-1],
        type=dict[str, object],
    )
    return SupersetSetup(
        venv=venv,
        home=home,
        lakehouse=lakehouse,
        secret_generated=generated,
        views=list(out["views"]),  # type: ignore[call-overload]
        passwords=dict(out["passwords"]),  # type: ignore[call-overload]
    )


def serve(setup: SupersetSetup, port: int) -> subprocess.Popen[bytes]:
    """Start ``superset run`` on loopback; the caller waits for /health."""
    secret, _ = _secret(setup.home)
    env = superset_environ(setup.home, secret)
    log = (setup.home / "superset.log").open("ab")
    return subprocess.Popen(
        [
            str(setup.venv / "bin" / "superset"),
            "run",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "--with-threads",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )


def wait_healthy(
    process: subprocess.Popen[bytes], url: str, log: Path, timeout_s: float = 300
) -> None:
    """Wait until ``url/health`` answers 200; raise with the log's tail if Superset dies."""
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise SupersetError(f"Superset exited (code {process.returncode}); see {log}\n{tail}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as reply:
                if reply.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SupersetError(f"Superset did not answer on {url}/health in {timeout_s:.0f} s")
        time.sleep(1)
