"""Sweeps on Slurm: per-trial overhead vs the same trials run locally (goal <= 1 s per trial), and submit-to-start latency.

The same N tiny trials (enqueued, distinct learning rates: no cache hit) run (a) as a local
1-worker sweep and (b) as a sweep on Slurm with ``--jobs 1`` (one array task running them one
after the other); (b) includes sbatch, the wait for a node, the worker's start-up (submitit,
imports, storage) and the driver's polling.

    per trial, amortised = (b - a) / N

Submit-to-start: ``sbatch --wrap`` of a job that writes the time it starts, K times.

    SLURM_CONF=... python benchmarks/slurm_overhead.py [--trials 6] [--latency 5]

Without SLURM_CONF it starts scripts/slurm-local.sh in a temp dir (root) and stops it at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sweep_common import REPO, machine, write_files  # noqa: E402


def _sweep(sweep_file: Path, *extra: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "bootstrap_repro", "sweep", str(sweep_file), *extra], env=env,
                       capture_output=True, text=True, timeout=900, check=False)
    if r.returncode != 0:
        raise SystemExit(f"sweep failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return time.monotonic() - t


def latency(tmp: Path, k: int) -> list[float]:
    out = []
    for i in range(k):
        f = tmp / f"start{i}"
        t = time.time()
        subprocess.run(["sbatch", "--parsable", "-p", "debug", "-t", "1", "-o", "/dev/null",
                        f"--wrap=date +%s.%N > {f}"], check=True, capture_output=True)
        while not f.exists() or not f.read_text().strip():
            time.sleep(0.02)
        out.append(float(f.read_text()) - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--latency", type=int, default=5)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="slurm-overhead-"))
    cluster = None
    if "SLURM_CONF" not in os.environ:
        cluster = tmp / "cluster"
        subprocess.run([str(REPO / "scripts" / "slurm-local.sh"), "up", str(cluster)], check=True,
                       capture_output=True, timeout=600)
        os.environ["SLURM_CONF"] = str(cluster / "slurm.conf")
    try:
        lat = latency(tmp, a.latency)
        _, local = write_files(tmp / "local", a.trials, 1)
        _, onslurm = write_files(tmp / "slurm", a.trials, 1)
        t_local = _sweep(local)
        t_slurm = _sweep(onslurm, "--runtime.name", "slurm", "--runtime.slurm.time", "10", "--jobs", "1")
        print(f"machine: {machine()}")
        print(f"submit-to-start (sbatch -> job's first command), {a.latency} jobs: median "
              f"{statistics.median(lat):.2f} s, min {min(lat):.2f}, max {max(lat):.2f}")
        print(f"{a.trials} trials: local sweep {t_local:.1f} s, Slurm sweep (1 worker) {t_slurm:.1f} s; "
              f"overhead per trial, amortised: {(t_slurm - t_local) / a.trials:.2f} s (goal <= 1 s)")
    finally:
        if cluster is not None:
            subprocess.run([str(REPO / "scripts" / "slurm-local.sh"), "down", str(cluster)], capture_output=True,
                           timeout=300, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
