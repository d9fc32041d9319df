"""A real PostgreSQL server (Debian's `postgresql` package) for tests and benchmarks.

``running_postgres()`` creates a cluster with ``initdb`` in a fresh temporary directory and
starts ``postgres`` on a free 127.0.0.1 port (no Unix socket outside that directory), with
password authentication (SCRAM) for one superuser whose password is made up for the run,
so the store's password path is the one tested. PostgreSQL refuses to run as root: when
the tests run as root (CI), initdb and postgres run as the ``postgres`` system user that
the Debian package creates, in a directory it owns.

Durability settings are off (fsync, synchronous_commit, full_page_writes): a test server
that loses its data in a power cut loses nothing of value, and creating a database per
test stays fast. Everything else is PostgreSQL as shipped.

Missing PostgreSQL is an error, never a skip: `make test` installs it
(deploy/ci/install-system-deps.sh).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from pydantic import SecretStr

from collector.store.settings import StoreSettings
from tests.conftest import LOOPBACK, free_port
from tests.services import ManagedProcess

SUPERUSER = "netqos"
INSTALL_HINT = "run `make test` or `bash deploy/ci/install-system-deps.sh` (apt-get install postgresql)"


def postgres_bindir() -> Path:
    """The newest installed server's bin folder (Debian: /usr/lib/postgresql/N/bin)."""
    found = [
        p.parent
        for p in Path("/usr/lib/postgresql").glob("*/bin/postgres")
        if p.parent.parent.name.isdigit() and (p.parent / "initdb").is_file()
    ]
    if found:
        return max(found, key=lambda b: int(b.parent.name))
    initdb = shutil.which("initdb")
    if initdb is not None:
        return Path(initdb).resolve().parent
    raise RuntimeError(f"PostgreSQL (initdb, postgres) is not installed: {INSTALL_HINT}")


@dataclass
class PostgresServer:
    host: str
    port: int
    password: str
    bindir: Path
    base: Path
    log: Path
    proc: ManagedProcess | None = field(default=None, repr=False)

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{dbname}"

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(self.url(dbname), password=self.password, autocommit=True, connect_timeout=10)

    def create_database(self) -> str:
        name = "t_" + uuid.uuid4().hex[:16]
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        with self.connect() as conn:
            # FORCE ends the sessions a test left open (a store it did not close).
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def store_settings(self, dbname: str) -> StoreSettings:
        return StoreSettings(url=self.url(dbname), password=SecretStr(self.password), pg_bin_dir=self.bindir)


def _as_postgres() -> dict[str, Any]:
    """Popen arguments that run the child as the `postgres` user when we are root."""
    if os.geteuid() != 0:
        return {}
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError(
            f"no `postgres` system user (the Debian package creates it): {INSTALL_HINT}"
        ) from None
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def _own(path: Path, run_as: dict[str, Any]) -> None:
    if run_as:
        os.chown(path, run_as["user"], run_as["group"])


@contextmanager
def running_postgres(timeout_s: float = 60.0) -> Iterator[PostgresServer]:
    """initdb + postgres on a free loopback port in a temporary directory; removed afterwards."""
    bindir = postgres_bindir()
    run_as = _as_postgres()
    base = Path(tempfile.mkdtemp(prefix="netqos-pg-"))
    proc: ManagedProcess | None = None
    try:
        _own(base, run_as)
        password = secrets.token_urlsafe(18)
        pwfile = base / "pwfile"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        _own(pwfile, run_as)
        data = base / "data"
        log = base / "postgres.log"
        init = subprocess.run(
            [
                str(bindir / "initdb"),
                f"--pgdata={data}",
                f"--username={SUPERUSER}",
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            cwd=base,
            capture_output=True,
            timeout=timeout_s,
            check=False,
            **run_as,
        )
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed: {init.stderr.decode(errors='replace')}")
        pwfile.unlink()
        port = free_port()
        proc = ManagedProcess(
            "postgres",
            [
                str(bindir / "postgres"),
                "-D",
                str(data),
                "-h",
                LOOPBACK,
                "-p",
                str(port),
                "-k",
                str(base),
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
            ],
            log=log,
            cwd=base,
            # SIGINT is PostgreSQL's fast shutdown (SIGTERM would wait for every session to end).
            stop_signal=signal.SIGINT,
            stop_timeout_s=20.0,
            popen=run_as,
        )
        proc.start()
        server = PostgresServer(LOOPBACK, port, password, bindir, base, log, proc)
        # Until a query answers: the port opens before recovery ends ("starting up").
        proc.wait_ready(
            lambda: _answers(server),
            timeout_s=timeout_s,
            what=f"postgres answering on port {port}",
            interval_s=0.1,
        )
        yield server
    finally:
        if proc is not None:
            proc.stop()
        shutil.rmtree(base, ignore_errors=True)


def _answers(server: PostgresServer) -> bool:
    try:
        with server.connect() as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True
