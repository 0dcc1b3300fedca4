"""Two sweep processes (two "machines": two sweep dirs) share one study in a real PostgreSQL server.

The server is the system's PostgreSQL with a throwaway role and database (``tests/postgres.py``).
Without a server: skipped, except in CI (``CI=true``) where it fails.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO
from postgres import database_url
from sweep_helpers import states, study_trials, write_sweep

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def postgres_url():
    yield from database_url()


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
