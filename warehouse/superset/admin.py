"""Superset's side of the BI layer: its secrets, its metadata database and the dashboards as code.

Superset lives in its own virtual environment (`.venv-superset`, installed by `./run` from
warehouse/superset/requirements.txt: it pins numpy, pandas, pyarrow and SQLAlchemy below what
the platform uses), so everything here runs Superset's own CLI in that environment: `apply`
migrates the metadata database and runs `superset init` when Superset or its metadata database
is new (or Superset was upgraded), and applies the dashboards-as-code bundle
(warehouse/superset/dashboards) with the admin user. The Dagster asset `bi/superset` calls it;
the web server is run by `lakehouse bi up` (lakehouse/devstack/superset.py) or, in production,
by its own container.

Secrets: SUPERSET_SECRET_KEY and SUPERSET_ADMIN_PASSWORD come from the environment; for the
embedded Superset, when unset, they are generated once and kept in `<home>/secrets.json`
(readable by its owner only).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from lakehouse.core.settings import PROJECT_ROOT, Settings, mask_password

CONFIG = PROJECT_ROOT / "warehouse" / "superset" / "superset_config.py"
INSTALLED_REQUIREMENTS = "installed-requirements.txt"  # written by ./run after installing


class SupersetError(RuntimeError):
    """Superset cannot be set up as asked; the message says why and where to look."""


@dataclass(frozen=True)
class SupersetConfig:
    """Where Superset is, what it reads and who administers it (settings: SUPERSET_*,
    WAREHOUSE_PATH). `home` holds its generated secrets and markers; `embedded` says whether
    the platform runs it (then missing secrets are generated)."""

    url: str
    admin_user: str
    home: Path
    metadata_db_url: str
    warehouse_path: Path
    dashboards_dir: Path
    venv: Path
    log_dir: Path
    embedded: bool
    secret_key: str | None = None
    admin_password: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> SupersetConfig:
        key, password = settings.superset_secret_key, settings.superset_admin_password
        return cls(
            url=settings.superset_url,
            admin_user=settings.superset_admin_user,
            home=settings.data_root / "superset",
            metadata_db_url=str(settings.superset_metadata_db_url),
            warehouse_path=Path(settings.warehouse_path),
            dashboards_dir=settings.superset_dashboards_dir,
            venv=settings.superset_venv,
            log_dir=settings.log_dir,
            embedded=settings.superset_is_embedded,
            secret_key=key.get_secret_value() if key else None,
            admin_password=password.get_secret_value() if password else None,
        )


@dataclass
class Credentials:
    username: str
    password: str
    generated: bool  # created by this call: print it, once
    stored_in: Path | None


def secrets_of(config: SupersetConfig) -> tuple[str, Credentials]:
    """(secret key, admin credentials): from the environment; for the embedded Superset, when
    unset, generated once and kept under its home (readable by its owner only)."""
    key, password = config.secret_key, config.admin_password
    if not config.embedded and (key is None or password is None):
        raise SupersetError(
            f"Superset at {config.url} is not embedded: set SUPERSET_SECRET_KEY and "
            "SUPERSET_ADMIN_PASSWORD (they are only generated for the embedded Superset)"
        )
    path = config.home / "secrets.json"
    stored = json.loads(path.read_text()) if path.exists() else {}
    wanted = dict(stored)
    if key is None:
        wanted.setdefault("secret_key", secrets.token_urlsafe(48))
    if password is None:
        wanted.setdefault("admin_password", secrets.token_urlsafe(18))
    if wanted != stored:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)
        tmp.touch(mode=0o600)
        tmp.write_text(json.dumps(wanted, indent=2))
        tmp.replace(path)
    credentials = Credentials(
        username=config.admin_user,
        password=password or wanted["admin_password"],
        generated=password is None and "admin_password" not in stored,
        stored_in=None if password else path,
    )
    return (key or wanted["secret_key"]), credentials


@dataclass
class Applied:
    """What `apply` did: seconds per step and what the bundle provisioned."""

    steps: dict[str, float] = field(default_factory=dict)
    provisioned: dict = field(default_factory=dict)


class Superset:
    """Superset's CLI in its own environment, for one configuration."""

    def __init__(self, config: SupersetConfig):
        self.config = config
        self.secret_key, self.credentials = secrets_of(config)
        self.env = {
            "SUPERSET_CONFIG_PATH": str(CONFIG),
            "SUPERSET_HOME": str(config.home),
            "SUPERSET_SECRET_KEY": self.secret_key,
            "SUPERSET_METADATA_DB_URL": config.metadata_db_url,
            "SUPERSET_ADMIN_USER": self.credentials.username,
            "SUPERSET_ADMIN_PASSWORD": self.credentials.password,
            "WAREHOUSE_PATH": str(config.warehouse_path.resolve()),
            "SUPERSET_DASHBOARDS_DIR": str(config.dashboards_dir),
            "PYTHONPATH": str(PROJECT_ROOT),  # provision.py and the bundle renderer
            "FLASK_APP": "superset.app:create_app()",
            "OPENBLAS_NUM_THREADS": "1",
        }

    def executable(self, name: str) -> Path:
        return self.config.venv / "bin" / name

    def check_installed(self) -> None:
        if not self.executable("superset").exists():
            raise SupersetError(
                f"Superset is not installed in {self.config.venv}. `./run demo` or `./run test` "
                "installs it (from warehouse/superset/requirements.txt)."
            )

    def _run(self, *args: str) -> str:
        """Run Superset's own CLI (or a module in its environment); its output, or a
        SupersetError with the last lines of the log."""
        log = self.config.log_dir / "superset-setup.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        self.config.home.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [str(self.executable(args[0])), *args[1:]],
            env={**os.environ, **self.env},
            cwd=self.config.home,
            capture_output=True,
            text=True,
            check=False,
        )
        with open(log, "a") as handle:
            handle.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(args)}\n")
            handle.write(result.stdout + result.stderr)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
            raise SupersetError(
                f"`superset {' '.join(args[1:])}` failed (exit {result.returncode}); "
                f"log: {log}\n{tail}"
            )
        return result.stdout

    def _install_key(self) -> str:
        """What `superset init` was last run for: the installed requirements and the metadata
        database (roles and permissions change with Superset's version)."""
        installed = (self.config.venv / INSTALLED_REQUIREMENTS).read_bytes()
        digest = hashlib.sha256(installed).hexdigest()[:16]
        return f"{digest} {mask_password(self.config.metadata_db_url)}"

    def _done(self, marker: str) -> bool:
        """Whether a set-up step (`migrated`, `initialized`) was done for this installation and
        metadata database (its marker under home says for which)."""
        path = self.config.home / marker
        url = sa.engine.make_url(self.config.metadata_db_url)
        database = url.database if url.get_backend_name() == "sqlite" else None
        if database and not Path(database).exists():
            return False  # a new (or deleted) SQLite metadata database
        return path.exists() and path.read_text() == self._install_key()

    def _mark(self, marker: str) -> None:
        (self.config.home / marker).write_text(self._install_key())

    def apply(self, progress: Callable[[str], None] = lambda _: None) -> Applied:
        """Migrate the metadata database, create roles and permissions when needed, and apply
        the dashboards-as-code bundle (idempotent)."""
        self.check_installed()
        applied = Applied()

        def step(name: str, *args: str) -> str:
            progress(name)
            started = time.monotonic()
            out = self._run(*args)
            applied.steps[name] = round(time.monotonic() - started, 2)
            return out

        # both only when Superset or its metadata database is new (or Superset was upgraded)
        if not self._done("migrated"):
            step("migrating the metadata database", "superset", "db", "upgrade")
            self._mark("migrated")
        if not self._done("initialized"):
            step("creating roles and permissions (superset init)", "superset", "init")
            self._mark("initialized")
        # the stream processor publishes the stream file; its datasets need the tables before
        from warehouse.stream_kpis import ensure_stream_file

        ensure_stream_file(self.config.warehouse_path)
        state = self.config.home / "managed.json"
        out = step(
            "applying the dashboards-as-code bundle",
            "python",
            "-m",
            "warehouse.superset.provision",
            str(state),
        )
        applied.provisioned = json.loads(out.strip().splitlines()[-1])
        return applied
