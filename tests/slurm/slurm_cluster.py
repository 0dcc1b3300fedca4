"""A real Slurm cluster for tests: ``scripts/slurm-local.sh`` (munge, MariaDB + slurmdbd, slurmctld, n1 and n2).

The ``slurm`` fixture starts it once per session in a temporary dir, exports ``SLURM_CONF`` and
stops every daemon by PID at the end.  Without Slurm (or root) outside CI the tests skip with the
reason; in CI (``CI=true``) the script installs the packages and a missing cluster fails the tests.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import IN_CI, REPO

SCRIPT = REPO / "scripts" / "slurm-local.sh"
#: Held for the whole session by the process whose cluster is up (another session waits for it).
LOCK = Path(os.environ.get("TMPDIR", "/tmp")) / "bootstrap-repro-slurm-tests.lock"


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"Slurm: {reason}; CI=true requires it (.ci/run installs it, scripts/slurm-local.sh starts it)")
    pytest.skip(f"Slurm: {reason}")


#: The cluster this process started, shared by every test module that imports the fixture (pytest makes one
#: session fixture per importing module): {"dir": Path, "lock": fd, "users": n, "saved": SLURM_CONF before}.
_CLUSTER: dict[str, Any] = {}


@pytest.fixture(scope="session")
def slurm(tmp_path_factory) -> Iterator[Path]:
    """The cluster's dir (``SLURM_CONF`` is ``DIR/slurm.conf`` while the session lasts)."""
    if _CLUSTER:  # another module's instance of this fixture started it: share it
        _CLUSTER["users"] += 1
        try:
            yield _CLUSTER["dir"]
        finally:
            _release()
        return
    pytest.importorskip("submitit")
    if os.geteuid() != 0:
        _unavailable("the test cluster runs munged/slurmd as root, and this is not root")
    if shutil.which("slurmctld") is None and not IN_CI:
        _unavailable("not installed (apt-get install slurm-wlm munge slurmdbd mariadb-server)")
    # One test cluster per machine at a time: its daemons use fixed ports and MariaDB's system socket.
    lock = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.lockf(lock, fcntl.LOCK_EX)
    d = tmp_path_factory.mktemp("slurm")
    up = subprocess.run([str(SCRIPT), "up", str(d)], capture_output=True, text=True, timeout=600)
    if up.returncode != 0:
        subprocess.run([str(SCRIPT), "down", str(d)], capture_output=True, timeout=120)
        os.close(lock)
        _unavailable(f"scripts/slurm-local.sh up failed: {up.stderr.strip()[-400:]}")
    _CLUSTER.update(dir=d, lock=lock, users=1, saved=os.environ.get("SLURM_CONF"))
    os.environ["SLURM_CONF"] = str(d / "slurm.conf")
    try:
        yield d
    finally:
        _release()


def _release() -> None:
    """The last user of the cluster stops it and gives the machine-wide lock back."""
    _CLUSTER["users"] -= 1
    if _CLUSTER["users"]:
        return
    subprocess.run([str(SCRIPT), "down", str(_CLUSTER["dir"])], capture_output=True, timeout=120)
    os.close(_CLUSTER["lock"])
    if _CLUSTER["saved"] is None:
        os.environ.pop("SLURM_CONF", None)
    else:
        os.environ["SLURM_CONF"] = _CLUSTER["saved"]
    _CLUSTER.clear()
