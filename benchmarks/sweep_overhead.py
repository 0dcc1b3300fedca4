"""Per-trial overhead of the sweep driver vs running the same experiments directly (goal: <= 0.5 s per trial).

The same N tiny experiments (distinct learning rates, so no result-cache hit) run
(a) directly, one ``bootstrap-repro run`` after the other, and (b) as a 1-worker sweep whose N
trials are exactly those experiments.  Also timed: (c) the finished sweep run again, which
starts nothing (the driver's one-off start-up: imports, storage, report).  Rounds alternate
(a) and (b); the medians are reported, as wall time and as CPU time (user + system of every
process involved, which other load on the machine hardly changes).

    per trial, amortised = (b - a) / N             everything the sweep adds, start-up included
    per trial, marginal  = (b - c - a) / N         what each extra trial adds

    /tmp/venv/bin/python benchmarks/sweep_overhead.py [--trials 6] [--rounds 3] [--docker]

With ``--docker`` both the direct runs and the trials run in containers (``--runtime.name docker``
on the image of ``docker/standin.py``: needs root, a running Docker engine and mmdebstrap).
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sweep_common import REPO, env, lrs, machine, package_copy, timed, write_files  # noqa: E402


@contextlib.contextmanager
def docker_args(tmp: Path):
    """The options that run an experiment in the stand-in project image (built now when missing)."""
    sys.path[:0] = [str(REPO), str(REPO / "docker")]
    import standin

    from bootstrap_repro.runtimes import DockerSettings, ensure_image
    from bootstrap_repro.runtimes._docker import connect

    client = connect()
    standin.build_base(sys.stderr, client)
    dockerfile = standin.frozen_context(tmp / "context")
    with standin.serve(standin.build_wheelhouse(sys.stderr)):
        settings = DockerSettings(image=None, dockerfile=dockerfile, build_args=standin.build_args(), gpus=None,
                                  shm_size="2g", env={}, mounts=())
        image = ensure_image(client, settings, sys.stderr)
        print(f"trials and direct runs in Docker image {image.tag} ({image.id[:19]})", flush=True)
        yield ["--runtime.name", "docker", "--runtime.docker.dockerfile", str(dockerfile),
               "--runtime.docker.build_args", *(f"{k}={v}" for k, v in standin.build_args().items())]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--docker", action="store_true", help="run the experiments and the trials in Docker")
    args = ap.parse_args()
    n = args.trials
    direct, swept, noop = [], [], []  # (wall, cpu) per round
    with tempfile.TemporaryDirectory() as tmp, \
            (docker_args(Path(tmp)) if args.docker else contextlib.nullcontext([])) as extra:
        pkg = package_copy(Path(tmp))
        for r in range(args.rounds):
            root = Path(tmp) / f"round{r}"
            opts, sweep = write_files(root, n, jobs=1)
            e = env(root / "cache-direct", pkg)
            runs = [timed(["run", "-o", str(opts), "--optimizer.lr", str(v), "--exp.dir",
                           str(root / "direct" / f"{i:04d}"), *extra], e) for i, v in enumerate(lrs(n))]
            direct.append((sum(w for w, _ in runs), sum(c for _, c in runs)))
            e = env(root / "cache-sweep", pkg)
            swept.append(timed(["sweep", str(sweep), *extra], e))
            noop.append(timed(["sweep", str(sweep), *extra], e))
            shutil.rmtree(root)
            print(f"round {r + 1}: wall (CPU) direct {direct[-1][0]:.2f} s ({direct[-1][1]:.2f} s), "
                  f"sweep {swept[-1][0]:.2f} s ({swept[-1][1]:.2f} s), "
                  f"finished sweep again {noop[-1][0]:.2f} s ({noop[-1][1]:.2f} s)", flush=True)
    print(f"{n} trials{' in Docker' if args.docker else ''}, {machine()}")
    for i, what in ((0, "wall"), (1, "CPU")):
        a, b, c = (statistics.median(x[i] for x in xs) for xs in (direct, swept, noop))
        print(f"{what}: direct runs {a:.2f} s ({a / n:.2f} s per experiment); sweep (1 worker) {b:.2f} s; "
              f"driver start-up alone (finished sweep run again) {c:.2f} s")
        print(f"{what} overhead per trial: amortised {(b - a) / n:+.3f} s, marginal {(b - c - a) / n:+.3f} s "
              f"(goal <= 0.5 s)")


if __name__ == "__main__":
    main()
