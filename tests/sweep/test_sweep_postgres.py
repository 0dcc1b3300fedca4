"""Two sweep processes (two "machines": two sweep dirs) share one study in a real PostgreSQL server.

The server is the system's PostgreSQL (installed and started here when missing and we are root);
the test creates its own role and database over the ``postgres`` user's unix socket and connects
over TCP with a password.  Without a server: skipped, except in CI (``CI=true``) where it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest

from conftest import IN_CI, REPO
from sweep_helpers import states, study_trials, write_sweep

pytestmark = pytest.mark.slow


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


@pytest.fixture(scope="module")
def postgres_url():
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


def test_two_worker_processes_finish_exactly_n_trials(tmp_path, postgres_url):
    n_trials = 5
    files = [write_sweep(tmp_path / machine, sweep={"name": "shared", "n_trials": n_trials, "storage": postgres_url})
             for machine in ("a", "b")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    procs = [subprocess.Popen([sys.executable, "-m", "bootstrap_repro", "sweep", str(f)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for f in files]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, out + err
    trials = study_trials(tmp_path / "a" / "sweep", postgres_url)
    assert states(trials) == {"COMPLETE": n_trials}  # not one more: both count under one advisory lock
    dirs = {m: sorted(int(d.name) for d in (tmp_path / m / "sweep" / "trials").iterdir()) for m in ("a", "b")}
    assert dirs["a"] and dirs["b"], dirs  # both processes ran trials
    assert sorted(dirs["a"] + dirs["b"]) == sorted(t.number for t in trials)
    for m in ("a", "b"):  # each machine's report shows the whole study, linking its own trials
        page = (tmp_path / m / "sweep" / "view.html").read_text()
        assert page.count("<tr class=") == n_trials
        assert all(f'href="trials/{n:04d}/' in page for n in dirs[m])
    password = postgres_url.split(":")[2].split("@")[0]
    for m in ("a", "b"):  # no secret in the sweep dir
        for path in (tmp_path / m / "sweep").rglob("*.json"):
            assert password not in path.read_text(), path
