"""A real PostgreSQL server for tests: the system's cluster, a throwaway role and database.

The server is the system's PostgreSQL (installed and started here when missing and we are root);
:func:`database_url` creates its own role and database over the ``postgres`` user's unix socket
and yields a TCP URL with a password.  Without a server the caller skips, except in CI
(``CI=true``) where it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from conftest import IN_CI

__all__ = ["database_url"]


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"PostgreSQL: {reason}; CI=true requires it (.ci/run installs and starts it)")
    pytest.skip(f"PostgreSQL: {reason}")


def _as_postgres(sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-v", "ON_ERROR_STOP=1", "-qAtc", sql],
                          capture_output=True, text=True, timeout=60)


def _online_port() -> int | None:
    out = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True, timeout=30).stdout
    for line in out.splitlines():
        cols = line.split()
        if len(cols) >= 4 and cols[3] == "online":
            return int(cols[2])
    return None


def database_url() -> Iterator[str]:
    """Yield ``postgresql://role:password@127.0.0.1:PORT/db`` of a fresh database; drop it afterwards."""
    pytest.importorskip("psycopg2")
    if os.geteuid() != 0:
        _unavailable("the test manages the server as root (runuser -u postgres), and this is not root")
    if shutil.which("pg_ctlcluster") is None:
        apt = subprocess.run(["apt-get", "install", "-y", "-qq", "postgresql"], capture_output=True, text=True,
                             timeout=600, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        if apt.returncode != 0:
            _unavailable(f"not installed, and apt-get install postgresql failed: {apt.stderr.strip()[-300:]}")
    if _online_port() is None:
        versions = subprocess.run(["pg_lsclusters", "-h"], capture_output=True, text=True).stdout.split()
        start = subprocess.run(["pg_ctlcluster", versions[0] if versions else "15", "main", "start"],
                               capture_output=True, text=True, timeout=120)
        if _online_port() is None:
            _unavailable(f"pg_ctlcluster start failed: {start.stderr.strip()[-300:]}")
    port = _online_port()
    tag = uuid.uuid4().hex[:12]  # own role and database: concurrent test sessions never meet
    role, db, password = f"sweep_test_{tag}", f"sweep_{tag}", uuid.uuid4().hex
    made = _as_postgres(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    if made.returncode != 0:
        _unavailable(f"cannot create a role: {made.stderr.strip()}")
    made = _as_postgres(f"CREATE DATABASE {db} OWNER {role}")
    assert made.returncode == 0, made.stderr
    yield f"postgresql://{role}:{password}@127.0.0.1:{port}/{db}"
    _as_postgres(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    _as_postgres(f"DROP ROLE IF EXISTS {role}")
