"""Per-trial overhead of the sweep driver vs running the same experiments directly (goal: <= 0.5 s per trial).

The same N tiny experiments (distinct learning rates, so no result-cache hit) run
(a) directly, one ``bootstrap-repro run`` after the other, and (b) as a 1-worker sweep whose N
trials are exactly those experiments.  Also timed: (c) the finished sweep run again, which
starts nothing (the driver's one-off start-up: imports, storage, report).  Rounds alternate
(a) and (b); the medians are reported, as wall time and as CPU time (user + system of every
process involved, which other load on the machine hardly changes).

    per trial, amortised = (b - a) / N             everything the sweep adds, start-up included
    per trial, marginal  = (b - c - a) / N         what each extra trial adds

    /tmp/venv/bin/python benchmarks/sweep_overhead.py [--trials 6] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sweep_common import env, lrs, machine, package_copy, timed, write_files  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    n = args.trials
    direct, swept, noop = [], [], []  # (wall, cpu) per round
    with tempfile.TemporaryDirectory() as tmp:
        pkg = package_copy(Path(tmp))
        for r in range(args.rounds):
            root = Path(tmp) / f"round{r}"
            opts, sweep = write_files(root, n, jobs=1)
            e = env(root / "cache-direct", pkg)
            runs = [timed(["run", "-o", str(opts), "--optimizer.lr", str(v), "--exp.dir",
                           str(root / "direct" / f"{i:04d}")], e) for i, v in enumerate(lrs(n))]
            direct.append((sum(w for w, _ in runs), sum(c for _, c in runs)))
            e = env(root / "cache-sweep", pkg)
            swept.append(timed(["sweep", str(sweep)], e))
            noop.append(timed(["sweep", str(sweep)], e))
            shutil.rmtree(root)
            print(f"round {r + 1}: wall (CPU) direct {direct[-1][0]:.2f} s ({direct[-1][1]:.2f} s), "
                  f"sweep {swept[-1][0]:.2f} s ({swept[-1][1]:.2f} s), "
                  f"finished sweep again {noop[-1][0]:.2f} s ({noop[-1][1]:.2f} s)", flush=True)
    print(f"{n} trials, {machine()}")
    for i, what in ((0, "wall"), (1, "CPU")):
        a, b, c = (statistics.median(x[i] for x in xs) for xs in (direct, swept, noop))
        print(f"{what}: direct runs {a:.2f} s ({a / n:.2f} s per experiment); sweep (1 worker) {b:.2f} s; "
              f"driver start-up alone (finished sweep run again) {c:.2f} s")
        print(f"{what} overhead per trial: amortised {(b - a) / n:+.3f} s, marginal {(b - c - a) / n:+.3f} s "
              f"(goal <= 0.5 s)")


if __name__ == "__main__":
    main()
