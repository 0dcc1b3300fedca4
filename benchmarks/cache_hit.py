"""Cache hit vs the run it repeats: whole-process time of ``bootstrap-repro run`` on the digits example.

The package and ``examples/digits/options.yaml`` are copied into a temporary git repo
(a frozen copy: edits to this checkout during the benchmark cannot change the key),
with a private result cache.  Then, each as its own process
(``python -m bootstrap_repro run -o examples/digits/options.yaml --exp.dir ...``):

1. the run: trains the example (30 epochs) and stores it in the cache;
2. the same command with another ``--exp.dir``, ``--hits`` times: cache hits, which
   materialise logs, checkpoints, view and record without training.

Prints both wall times (median of the hits), side by side, and the ratio
(goal: hit <= 2 s and >= 20x faster).

    python benchmarks/cache_hit.py [--hits 5] [--epochs N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GIT_ENV = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@x"}


def frozen_copy(dest: Path) -> Path:
    """This checkout's package + the digits example, committed in a fresh repo."""
    shutil.copytree(ROOT / "bootstrap_repro", dest / "bootstrap_repro",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (dest / "examples" / "digits").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "digits" / "options.yaml", dest / "examples" / "digits" / "options.yaml")
    (dest / ".gitignore").write_text("logs/\n__pycache__/\n")
    env = {**os.environ, **GIT_ENV}
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "frozen copy"]):
        subprocess.run(["git", *cmd], cwd=dest, env=env, check=True, capture_output=True)
    return dest


def run(repo: Path, exp_dir: Path, env: dict[str, str], extra: list[str]) -> tuple[float, str]:
    cmd = [sys.executable, "-m", "bootstrap_repro", "run", "-o", "examples/digits/options.yaml",
           "--exp.dir", str(exp_dir), "--engine.progress_bar", "false", *extra]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"run failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return elapsed, r.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hits", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=None, help="override engine.nb_epochs (default: the example's 30)")
    args = ap.parse_args()
    extra = ["--engine.nb_epochs", str(args.epochs)] if args.epochs else []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        repo = frozen_copy(tmp / "repo")
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "BOOTSTRAP_REPRO_NO_CACHE")}
        env["BOOTSTRAP_REPRO_CACHE_DIR"] = str(tmp / "cache")
        train_s, out = run(repo, tmp / "runs" / "trained", env, extra)
        assert "cache hit" not in out and "train epoch" in out, out[-500:]
        hits = []
        for i in range(args.hits):
            hit_s, out = run(repo, tmp / "runs" / f"hit{i}", env, extra)
            assert out.startswith("cache hit: "), f"expected a cache hit, got:\n{out[-500:]}"
            hits.append(hit_s)
        same = all(
            (tmp / "runs" / "trained" / f).read_bytes() == (tmp / "runs" / f"hit{i}" / f).read_bytes()
            for i in range(args.hits) for f in ("logs.json", "ckpt_last_model.pth.tar", "ckpt_best_acctop1_model.pth.tar"))
        acc = max(json.loads((tmp / "runs" / "hit0" / "logs.json").read_text())["eval_epoch.acctop1"])
    hit = statistics.median(hits)
    print(f"digits example ({args.epochs or 30} epochs), whole process, {sys.executable}:")
    print(f"  {'run (trains, stores)':<24} {'cache hit (median of ' + str(args.hits) + ')':<28} ratio")
    print(f"  {train_s:>8.2f} s{'':<14} {hit:>8.3f} s{'':<18} {train_s / hit:.0f}x")
    print(f"  hits: {', '.join(f'{h:.3f}' for h in hits)} s; files identical to the trained run: {same}; "
          f"best eval acctop1 {acc:.2f}")
    print(f"goal hit <= 2 s and >= 20x: {'met' if hit <= 2 and train_s / hit >= 20 else 'NOT met'}")


if __name__ == "__main__":
    main()
