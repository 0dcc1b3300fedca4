"""Throughput of 2 workers vs 1 worker on 2 cores (goal: >= 1.8x).

The same N tiny experiments (distinct learning rates) run as a sweep with ``jobs: 1`` and with
``jobs: 2``; rounds alternate the two and the medians are reported.  A trial is mostly one
process's start-up, imports and a short CPU training, so two workers should nearly double the
trials per minute on an otherwise idle 2-core machine (the driver sets ``OMP_NUM_THREADS=1`` per
trial when ``jobs: 2`` and none is set, so the two trials do not fight over the cores).

    /tmp/venv/bin/python benchmarks/sweep_throughput.py [--trials 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sweep_common import env, machine, package_copy, timed, write_files  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    n = args.trials
    walls: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        pkg = package_copy(Path(tmp))
        for r in range(args.rounds):
            for jobs in (1, 2):
                root = Path(tmp) / f"round{r}-jobs{jobs}"
                _, sweep = write_files(root, n, jobs=jobs)
                walls[jobs].append(timed(["sweep", str(sweep)], env(root / "cache", pkg))[0])
                shutil.rmtree(root)
            print(f"round {r + 1}: 1 worker {walls[1][-1]:.1f} s, 2 workers {walls[2][-1]:.1f} s "
                  f"({walls[1][-1] / walls[2][-1]:.2f}x)", flush=True)
    one, two = statistics.median(walls[1]), statistics.median(walls[2])
    print(f"{n} trials, {machine()}")
    print(f"1 worker: {one:.1f} s ({60 * n / one:.1f} trials/min); 2 workers: {two:.1f} s ({60 * n / two:.1f} trials/min)")
    print(f"speed-up of 2 workers: {one / two:.2f}x (median walls; goal >= 1.8x)")


if __name__ == "__main__":
    main()
