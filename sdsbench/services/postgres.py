"""A private PostgreSQL cluster for one benchmark (or an external server given by a DSN).

The cluster lives entirely under ``data_dir``: initdb, a generated ``sdsbench.conf``
(loopback only, unix socket inside the data dir), ``pg_ctl start -w``, and a database
``sdsbench``. initdb refuses to run as root, so as root every server command runs as the
unprivileged ``postgres`` user (``runuser -u postgres --``) on a directory it owns.
Authentication is ``trust`` on 127.0.0.1 only: the DSN is
``postgresql://postgres@127.0.0.1:PORT/sdsbench``.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import subprocess
import time
from pathlib import Path

from sdsbench.services import ServiceError
from sdsbench.services.ports import LOOPBACK, free_port, port_in_use

DB_NAME = "sdsbench"
SUPERUSER = "postgres"
RUN_AS = "postgres"  # OS user that owns the cluster when we are root
SOCKET_PATH_MAX = 100  # unix socket paths are limited to ~107 bytes

DEFAULT_SETTINGS: dict[str, str] = {
    "shared_buffers": "512MB",
    "max_connections": "50",
    "work_mem": "16MB",
    "maintenance_work_mem": "128MB",
    "max_wal_size": "4GB",
    "checkpoint_timeout": "15min",
    "wal_buffers": "16MB",
    "effective_cache_size": "4GB",
    "logging_collector": "off",
    "log_min_messages": "warning",
    "log_checkpoints": "off",
    "dynamic_shared_memory_type": "posix",
    "timezone": "UTC",
}


def find_pg_bin() -> Path:
    """Directory with ``initdb`` and ``pg_ctl``: newest /usr/lib/postgresql/*/bin, else PATH."""

    def version_key(p: str) -> tuple[int, ...]:
        m = re.search(r"/postgresql/(\d+)", p)
        return (int(m.group(1)),) if m else (0,)

    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version_key, reverse=True):
        if os.access(os.path.join(d, "initdb"), os.X_OK) and os.access(
            os.path.join(d, "pg_ctl"), os.X_OK
        ):
            return Path(d)
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return Path(pg_ctl).parent
    raise ServiceError(
        "PostgreSQL server binaries (initdb, pg_ctl) not found: run `bash env/setup.sh postgres` "
        "(installs Debian's postgresql) or set services.postgres.dsn to an external server"
    )


def server_version(bin_dir: Path | None = None) -> str:
    """Version string of the server binaries, e.g. ``15.18``."""
    bin_dir = bin_dir or find_pg_bin()
    out = subprocess.run(
        [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=True
    )
    m = re.search(r"(\d+(?:\.\d+)+)", out.stdout)
    return m.group(1) if m else out.stdout.strip()


def _connect(dsn: str, timeout: float = 5.0):  # -> psycopg.Connection
    try:
        import psycopg
    except ImportError as e:  # pragma: no cover - main venv has it
        raise ServiceError(
            "psycopg not installed in this venv: run `bash env/setup.sh main` and use .venv/main"
        ) from e
    return psycopg.connect(dsn, connect_timeout=max(1, int(timeout)), autocommit=True)


def health_check(dsn: str, timeout: float = 5.0) -> str:
    """``SELECT 1`` against ``dsn``; returns the server version string or raises ServiceError."""
    try:
        with _connect(dsn, timeout) as conn:
            row = conn.execute("SELECT 1, current_setting('server_version')").fetchone()
    except ServiceError:
        raise
    except Exception as e:
        raise ServiceError(f"PostgreSQL at {redact(dsn)} is not healthy: {e}".strip()) from e
    if not row or row[0] != 1:
        raise ServiceError(f"PostgreSQL at {redact(dsn)} answered SELECT 1 with {row!r}")
    return str(row[1])


def wait_healthy(dsn: str, timeout: float = 30.0) -> str:
    """Retry :func:`health_check` until it passes or ``timeout`` s elapse."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return health_check(dsn, timeout=min(5.0, max(1.0, timeout)))
        except ServiceError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def redact(dsn: str) -> str:
    """DSN with any password replaced by ``***``."""
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", dsn)


def _is_root() -> bool:
    return os.geteuid() == 0


class PostgresServer:
    """A private PostgreSQL cluster under ``data_dir`` listening on 127.0.0.1:``port``.

    ``port=0`` picks a free port. ``fsync`` stays on by default; ``settings`` overrides or
    adds postgresql.conf parameters (e.g. ``{"synchronous_commit": "off"}``).
    """

    def __init__(
        self,
        data_dir: Path | str,
        port: int = 0,
        fsync: bool = True,
        settings: dict[str, str] | None = None,
        bin_dir: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.requested_port = int(port or 0)
        self.port = self.requested_port
        self.fsync = bool(fsync)
        self.settings = {**DEFAULT_SETTINGS, **{k: str(v) for k, v in (settings or {}).items()}}
        self._bin_dir = bin_dir

    # -- paths / commands -------------------------------------------------
    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = find_pg_bin()
        return self._bin_dir

    @property
    def log_file(self) -> Path:
        return self.data_dir / "server.log"

    @property
    def dsn(self) -> str:
        return f"postgresql://{SUPERUSER}@{LOOPBACK}:{self.port}/{DB_NAME}"

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://{SUPERUSER}@{LOOPBACK}:{self.port}/postgres"

    def _cmd(self, *args: str) -> list[str]:
        if _is_root():
            return ["runuser", "-u", RUN_AS, "--", *args]
        return list(args)

    def _run(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        # cwd the postgres user can enter (as root the caller's cwd may be /root)
        cwd = self.data_dir if self.data_dir.is_dir() else Path("/")
        return subprocess.run(
            self._cmd(*args), capture_output=True, text=True, timeout=timeout, cwd=cwd
        )

    # -- lifecycle --------------------------------------------------------
    def _prepare_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not _is_root():
            self.data_dir.chmod(0o700)
            return
        try:
            pw = pwd.getpwnam(RUN_AS)
        except KeyError as e:
            raise ServiceError(
                f"running as root but there is no '{RUN_AS}' user to own the cluster: "
                "run `bash env/setup.sh postgres` (Debian's package creates it)"
            ) from e
        os.chown(self.data_dir, pw.pw_uid, pw.pw_gid)
        self.data_dir.chmod(0o700)
        check = self._run("test", "-w", str(self.data_dir), "-a", "-x", str(self.data_dir))
        if check.returncode != 0:
            raise ServiceError(
                f"user '{RUN_AS}' cannot reach {self.data_dir}: "
                "a parent directory is not searchable "
                "by other users; use a state dir under /tmp or the repo (or chmod o+x the parents)"
            )

    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def _initdb(self) -> None:
        r = self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-instructions",
        )
        if r.returncode != 0:
            raise ServiceError(
                f"initdb failed in {self.data_dir}: {(r.stderr or r.stdout).strip()[-800:]}"
            )

    def _write_config(self) -> None:
        sock_dir = str(self.data_dir) if len(str(self.data_dir)) + 20 <= SOCKET_PATH_MAX else ""
        conf = {
            **self.settings,
            "listen_addresses": LOOPBACK,
            "port": str(self.port),
            "unix_socket_directories": sock_dir,
            "fsync": "on" if self.fsync else "off",
        }
        lines = ["# written by sdsbench/services/postgres.py on every start"]
        for k, v in conf.items():
            quoted = (
                v
                if re.fullmatch(r"-?\d+(\.\d+)?|on|off|true|false", v)
                else "'" + v.replace("'", "''") + "'"
            )
            lines.append(f"{k} = {quoted}")
        (self.data_dir / "sdsbench.conf").write_text("\n".join(lines) + "\n")
        main_conf = self.data_dir / "postgresql.conf"
        text = main_conf.read_text()
        if "include_if_exists = 'sdsbench.conf'" not in text:
            main_conf.write_text(text + "\ninclude_if_exists = 'sdsbench.conf'\n")
        (self.data_dir / "pg_hba.conf").write_text(
            "# sdsbench private cluster: loopback only, no passwords\n"
            "local all all trust\n"
            "host  all all 127.0.0.1/32 trust\n"
        )
        if _is_root():
            pw = pwd.getpwnam(RUN_AS)
            for name in ("sdsbench.conf", "postgresql.conf", "pg_hba.conf"):
                os.chown(self.data_dir / name, pw.pw_uid, pw.pw_gid)

    def running(self) -> bool:
        r = self._run(str(self.bin_dir / "pg_ctl"), "status", "-D", str(self.data_dir), timeout=30)
        return r.returncode == 0

    @property
    def pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def start(self, timeout: float = 60.0) -> str:
        """initdb if needed, write config, start, create database ``sdsbench``; returns the DSN."""
        bin_dir = self.bin_dir  # raises ServiceError early if missing
        if self.port == 0:
            self.port = free_port()
        elif port_in_use(self.port):
            raise ServiceError(
                f"PostgreSQL port {self.port} is already in use on {LOOPBACK}: "
                "stop what listens there "
                "(`scripts/services.py down`) or set services.postgres.port: 0 to pick a free port"
            )
        self._prepare_dir()
        if not self.initialized():
            self._initdb()
        if self.running():
            raise ServiceError(
                f"a PostgreSQL server already runs on {self.data_dir}: "
                "run `scripts/services.py down` first"
            )
        self._write_config()
        log = self.log_file
        if _is_root():
            log.touch()
            pw = pwd.getpwnam(RUN_AS)
            os.chown(log, pw.pw_uid, pw.pw_gid)
        r = self._run(
            str(bin_dir / "pg_ctl"),
            "start",
            "-w",
            "-t",
            str(int(timeout)),
            "-D",
            str(self.data_dir),
            "-l",
            str(log),
            timeout=timeout + 10,
        )
        if r.returncode != 0:
            tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
            raise ServiceError(
                f"pg_ctl start failed (port {self.port}, log {log}): "
                f"{r.stderr.strip()} {tail.strip()}"
            )
        try:
            wait_healthy(self.admin_dsn, timeout=timeout)
            self._create_database()
            wait_healthy(self.dsn, timeout=timeout)
        except Exception:
            self.stop()
            raise
        return self.dsn

    def _create_database(self) -> None:
        with _connect(self.admin_dsn) as conn:
            exists = conn.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)
            ).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DB_NAME}"')

    def stop(self, timeout: float = 60.0) -> None:
        """``pg_ctl stop -m fast``; escalates to ``immediate``. No-op if not running."""
        if not self.initialized():
            return
        bin_dir = self.bin_dir
        for mode in ("fast", "immediate"):
            r = self._run(
                str(bin_dir / "pg_ctl"),
                "stop",
                "-w",
                "-t",
                str(int(timeout)),
                "-m",
                mode,
                "-D",
                str(self.data_dir),
                timeout=timeout + 10,
            )
            if r.returncode == 0 or "Is server running?" in r.stderr or not self.running():
                return
        raise ServiceError(f"could not stop PostgreSQL in {self.data_dir}: {r.stderr.strip()}")
