"""How the view's costs grow with the run: 10, 100 and 1,000 epochs x 1,000 batches, side by side.

For each length, the logs of a run at that epoch (8 epoch curves overlaid in 4 subplots, two
more epoch items, a batch-level train loss of ``epochs x 1,000`` points) and, per column:

- ``page KB``: the size of view.html (plotly.js beside it, not counted);
- ``flush ms``: the training thread's cost of one flush hook (``View.on_flush``: each logged
  list handed over with its length), and ``copy ms`` what the previous hook did (``list(v)`` of
  every list), for comparison;
- ``rebuild ms``: one background rebuild after an epoch of 1,000 new batch values (incremental
  decimation: O(new values + points drawn)); ``cold ms``: the first build of a fresh view from the
  same values (O(values), once per process, e.g. after a resume); ``disk ms``: ``bootstrap-repro
  view DIR`` (reads logs.json, then a cold build).

    python benchmarks/view_scaling.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bootstrap_repro import views  # noqa: E402

BATCHES = 1000
METRICS = ("loss", "acctop1", "acctop5", "lr")
ITEMS = [f"logs:train_epoch.{m}+logs:eval_epoch.{m}" for m in METRICS] + [
    "logs:train_batch.loss", "logs:train_epoch.loss", "logs:eval_epoch.acctop1", "logs:test_epoch.map"]


class Logger:
    name = "logs"

    def __init__(self) -> None:
        self.values: dict[str, list] = {}


class Engine:
    def __init__(self) -> None:
        self.logger = Logger()


def log_epoch(values: dict[str, list], e: int, rng: random.Random) -> None:
    """One epoch as a float32 model logs it: 1,000 batch losses, then the epoch means."""
    batch = values.setdefault("train_batch.loss", [])
    b0 = e * BATCHES
    batch.extend(2 * math.exp(-(b0 + b) / 200_000) + rng.random() * 0.3 for b in range(BATCHES))
    for split, shift in (("train", 0.0), ("eval", 0.1)):
        values.setdefault(f"{split}_epoch.epoch", []).append(e)
        values.setdefault(f"{split}_epoch.loss", []).append(2 * math.exp(-e / 200) + shift + rng.random() * 0.05)
        values.setdefault(f"{split}_epoch.acctop1", []).append(100 - 60 * math.exp(-e / 200) - 10 * shift)
        values.setdefault(f"{split}_epoch.acctop5", []).append(100 - 30 * math.exp(-e / 200) - 10 * shift)
        values.setdefault(f"{split}_epoch.lr", []).append(0.1 * 0.5 ** (e // 300))


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def measure(epochs: int, repeat: int, root: Path) -> dict[str, float]:
    rng = random.Random(0)
    engine = Engine()
    values = engine.logger.values
    exp = root / f"e{epochs}"
    exp.mkdir()
    for e in range(epochs - repeat):
        log_epoch(values, e, rng)
    view = views.View(exp, ITEMS)
    view.min_interval = 0.0
    view.build(views.snapshot_logs({"logs": values}))  # links plotly.js; the decimation is warm
    flush, copy, rebuild = [], [], []
    for e in range(epochs - repeat, epochs):  # the last epochs of the run, one flush each
        log_epoch(values, e, rng)
        t0 = time.perf_counter()
        view.on_flush(engine)
        flush.append(time.perf_counter() - t0)
        view.wait()
        t0 = time.perf_counter()
        {k: list(v) for k, v in values.items()}  # the previous hook's copy
        copy.append(time.perf_counter() - t0)
        logs = views.snapshot_logs({"logs": values})
        values["train_batch.loss"].extend([1.0] * BATCHES)  # the next epoch's batches ...
        t0 = time.perf_counter()
        view.build(logs)  # ... do not reach this page
        rebuild.append(time.perf_counter() - t0)
        del values["train_batch.loss"][-BATCHES:]
    view.build(views.snapshot_logs({"logs": values}))
    size = view.path.stat().st_size
    cold = []
    for _ in range(3):
        fresh = views.View(exp, ITEMS)
        t0 = time.perf_counter()
        fresh.build({"logs": values})
        cold.append(time.perf_counter() - t0)
    (exp / "logs.json").write_text(json.dumps(values))
    t0 = time.perf_counter()
    views.View(exp, ITEMS).build()
    disk = time.perf_counter() - t0
    return {"epochs": epochs, "points": sum(len(v) for v in values.values()), "page_kb": size / 1000,
            "flush_ms": median_ms(flush), "copy_ms": median_ms(copy), "rebuild_ms": median_ms(rebuild),
            "cold_ms": median_ms(cold), "disk_ms": disk * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="epochs timed at the end of each run (median)")
    parser.add_argument("--epochs", type=int, nargs="+", default=[10, 100, 1000])
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; budget {views.View.max_points} points "
          f"per page; {len(ITEMS)} items; medians over the last {args.repeat} epochs")
    print(f"{'epochs':>7} {'points':>9} {'page KB':>8} {'flush ms':>9} {'copy ms':>8} {'rebuild ms':>11} "
          f"{'cold ms':>8} {'disk ms':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("BOOTSTRAP_REPRO_CACHE_DIR", str(Path(tmp) / "cache"))
        for epochs in args.epochs:
            r = measure(epochs, min(args.repeat, epochs), Path(tmp))
            print(f"{r['epochs']:>7} {r['points']:>9} {r['page_kb']:>8.1f} {r['flush_ms']:>9.3f} {r['copy_ms']:>8.2f} "
                  f"{r['rebuild_ms']:>11.2f} {r['cold_ms']:>8.1f} {r['disk_ms']:>8.0f}")


if __name__ == "__main__":
    main()
