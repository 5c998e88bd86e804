"""A throwaway PostgreSQL server for tests, from the Debian binaries: no Docker, no running service.

`initdb` into a fresh temporary directory, `pg_ctl start` on a free TCP port on
127.0.0.1 (the unix socket goes into the same directory), and a database URL
the service can use. PostgreSQL refuses to run as root, so when the tests run
as root (CI here does) the server runs as the `postgres` user if it exists,
else `nobody`; the data directory is made theirs. Tests skip only when the
binaries are truly absent (`postgresql` is not installed).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

SUPERUSER = "kinema"
START_TIMEOUT_SECONDS = 60  # pg_ctl -w waits for the server to accept connections


def find_postgres_bin() -> Path | None:
    """The directory with initdb, pg_ctl and postgres: Debian's versioned layout first, then PATH."""
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True):
        if all((Path(candidate) / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            return Path(candidate)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(os.path.realpath(initdb)).parent
    return None


def _version_key(path: str) -> float:
    try:
        return float(Path(path).parent.name)
    except ValueError:
        return 0.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_user() -> str | None:
    """None when we are not root (the server runs as us); else an unprivileged account to run it as."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL")


@dataclass
class PostgresServer:
    """One running server; `url()` gives a SQLAlchemy URL for a database on it."""

    bin_dir: Path
    root: Path
    port: int
    user: str | None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args), user=self.user, check=check, capture_output=True, text=True, cwd=self.root, env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"}
        )

    def start(self) -> None:
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--no-sync")
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c max_connections=50"
        result = self._run(
            str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-l", str(self.root / "server.log"),
            "-o", options, "-w", "-t", str(START_TIMEOUT_SECONDS), "start", check=False,
        )  # fmt: skip
        if result.returncode != 0:
            log = (self.root / "server.log").read_text() if (self.root / "server.log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {result.stderr.strip()}\n{log[-2000:]}")

    def create_database(self, name: str) -> str:
        """A fresh empty database; returns its SQLAlchemy URL (psycopg 3 driver)."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres() -> PostgresServer:
    """Start a throwaway server; the caller must `stop()` it. Raises FileNotFoundError without the binaries."""
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL binaries (initdb, pg_ctl, postgres) not found; apt-get install postgresql")
    user = _server_user()
    # Not pytest's tmp_path: that lives under a root-only directory the server user cannot enter.
    root = Path(tempfile.mkdtemp(prefix="kinema-pg-"))
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    os.chmod(root, 0o700)
    server = PostgresServer(bin_dir=bin_dir, root=root, port=free_port(), user=user)
    try:
        server.start()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return server

