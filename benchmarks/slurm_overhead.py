"""Sweeps on Slurm: per-trial overhead vs the same trials run locally (goal <= 1 s per trial), and submit-to-start latency.

The same N tiny trials (enqueued, distinct learning rates) run (a) as a local 1-worker sweep and
(b) as a sweep on Slurm with ``--jobs 1`` (one array task running them one after the other);
(b) includes sbatch, the wait for a node, the worker's start-up (submitit, imports, storage) and
the driver's polling.  Each sweep has its own empty result cache (no trial of (b) is a cache hit
of (a)), and both run the package from a copy outside the git checkout (no git snapshot).

    per trial, amortised = (b - a) / N

and where it goes, from the study's own timestamps (each trial's start and end):

    head   = driver start -> first trial starts   (b: sbatch, queue wait, the worker's start-up)
    trials = first trial starts -> last one ends   (per trial: the trial processes, and between two trials)
    tail   = last trial ends -> the driver exits   (b: the driver notices the worker left squeue; the report)

Submit-to-start: ``sbatch --wrap`` of a job that writes the time it starts, K times.

    SLURM_CONF=... python benchmarks/slurm_overhead.py [--trials 6] [--latency 5]

Without SLURM_CONF it starts scripts/slurm-local.sh in a temp dir (root) and stops it at the end,
holding the machine-wide lock of the Slurm tests (one local cluster per machine: fixed ports).
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sweep_common import REPO, env, machine, package_copy, write_files  # noqa: E402

#: The lock tests/slurm/slurm_cluster.py holds while its cluster is up (fcntl.lockf, as there).
LOCK = Path(os.environ.get("TMPDIR", "/tmp")) / "bootstrap-repro-slurm-tests.lock"


def _sweep(sweep_file: Path, environ: dict[str, str], *extra: str) -> tuple[float, float, float]:
    """``(t0, t1, wall)``: the sweep's start and end (epoch seconds) and its wall time."""
    t0, m0 = time.time(), time.monotonic()
    r = subprocess.run([sys.executable, "-m", "bootstrap_repro", "sweep", str(sweep_file), *extra], env=environ,
                       capture_output=True, text=True, timeout=900, check=False)
    wall = time.monotonic() - m0
    if r.returncode != 0:
        raise SystemExit(f"sweep failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return t0, t0 + wall, wall


def _trial_span(sweep_dir: Path) -> tuple[float, float, list[float]]:
    """First trial start, last trial end (epoch seconds) and the gaps between one trial's end and the next's start."""
    import optuna

    marker = json.loads((sweep_dir / "sweep.json").read_text())
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=marker["study"],
                              storage=JournalStorage(JournalFileBackend(str(sweep_dir / "study.journal"))))
    trials = sorted(study.get_trials(), key=lambda t: t.datetime_start)
    starts = [t.datetime_start.timestamp() for t in trials]
    ends = [t.datetime_complete.timestamp() for t in trials]
    gaps = [b - a for a, b in zip(ends, starts[1:])]
    return min(starts), max(ends), gaps


def latency(tmp: Path, k: int) -> list[float]:
    out = []
    for i in range(k):
        f = tmp / f"start{i}"
        t = time.time()
        subprocess.run(["sbatch", "--parsable", "-t", "1", "-o", "/dev/null", f"--wrap=date +%s.%N > {f}"],
                       check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 120
        while not f.exists() or not f.read_text().strip():
            if time.monotonic() > deadline:
                queue = subprocess.run(["squeue"], capture_output=True, text=True, check=False).stdout.strip()
                raise SystemExit(f"job {i} did not start within 120 s (squeue: {queue})")
            time.sleep(0.02)
        out.append(float(f.read_text()) - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--latency", type=int, default=5)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="slurm-overhead-"))
    cluster, lock = None, None
    if "SLURM_CONF" not in os.environ:
        lock = os.open(LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.lockf(lock, fcntl.LOCK_EX)  # waits while a test session's cluster is up
        cluster = tmp / "cluster"
        subprocess.run([str(REPO / "scripts" / "slurm-local.sh"), "up", str(cluster)], check=True,
                       capture_output=True, timeout=600)
        os.environ["SLURM_CONF"] = str(cluster / "slurm.conf")
    try:
        lat = latency(tmp, a.latency)
        pkg = package_copy(tmp)
        _, local = write_files(tmp / "local", a.trials, 1)
        _, onslurm = write_files(tmp / "slurm", a.trials, 1)
        l0, l1, t_local = _sweep(local, env(tmp / "cache-local", pkg))
        s0, s1, t_slurm = _sweep(onslurm, env(tmp / "cache-slurm", pkg), "--runtime.name", "slurm",
                                 "--runtime.slurm.time", "10", "--jobs", "1")
        lf, ll, lgaps = _trial_span(tmp / "local" / "sweep-1")
        sf, sl, sgaps = _trial_span(tmp / "slurm" / "sweep-1")
        print(f"machine: {machine()}")
        print(f"submit-to-start (sbatch -> job's first command), {a.latency} jobs: median "
              f"{statistics.median(lat):.2f} s, min {min(lat):.2f}, max {max(lat):.2f}")
        print(f"{a.trials} trials: local sweep {t_local:.1f} s, Slurm sweep (1 worker) {t_slurm:.1f} s; "
              f"overhead per trial, amortised: {(t_slurm - t_local) / a.trials:.2f} s (goal <= 1 s)")
        for name, (t0, first, last, t1, gaps) in (("local", (l0, lf, ll, l1, lgaps)),
                                                   ("Slurm", (s0, sf, sl, s1, sgaps))):
            print(f"  {name:5}: head {first - t0:5.1f} s | {a.trials} trials {last - first:5.1f} s "
                  f"(between two trials: median {statistics.median(gaps) if gaps else 0:.2f} s) | "
                  f"tail {t1 - last:4.1f} s")
        fixed = (sf - s0 + s1 - sl) - (lf - l0 + l1 - ll)
        between = (statistics.median(sgaps) if sgaps else 0) - (statistics.median(lgaps) if lgaps else 0)
        print(f"  Slurm - local outside the trials: {fixed:+.1f} s once (head + tail: {fixed / a.trials:+.2f} s per "
              f"trial at {a.trials} trials), {between:+.2f} s between two trials")
    finally:
        if cluster is not None:
            subprocess.run([str(REPO / "scripts" / "slurm-local.sh"), "down", str(cluster)], capture_output=True,
                           timeout=300, check=False)
        if lock is not None:
            os.close(lock)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
