"""Size of view.html and time to rebuild it, for a realistic run.

100 epochs of train/eval metrics (8 items, train and eval overlaid) plus a
batch-level train loss of 20,000 points.  Prints the page size and the median
rebuild time from the logger's in-memory values (what the flush hook does) and
from the json file on disk (what ``bootstrap-repro view DIR`` does).

    /tmp/venv/bin/python benchmarks/view_build.py
"""

from __future__ import annotations

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

EPOCHS = 100
BATCHES = 20_000
METRICS = ("loss", "acctop1", "acctop5", "lr")
REPEAT = 21
LONG = 450_000


def fake_logs(rng: random.Random) -> dict[str, list]:
    """Values as a float32 model logs them (``tensor.item()`` gives 17-digit floats)."""
    import struct

    def f32(x: float) -> float:
        return struct.unpack("f", struct.pack("f", x))[0]

    values: dict[str, list] = {}
    for split, shift in (("train", 0.0), ("eval", 0.1)):
        values[f"{split}_epoch.epoch"] = list(range(EPOCHS))
        values[f"{split}_epoch.loss"] = [f32(2 * math.exp(-e / 20) + shift + rng.random() * 0.05) for e in range(EPOCHS)]
        values[f"{split}_epoch.acctop1"] = [f32(100 - 60 * math.exp(-e / 20) - 10 * shift) for e in range(EPOCHS)]
        values[f"{split}_epoch.acctop5"] = [f32(100 - 30 * math.exp(-e / 20) - 10 * shift) for e in range(EPOCHS)]
        values[f"{split}_epoch.lr"] = [f32(0.1 * 0.5 ** (e // 30)) for e in range(EPOCHS)]
    values["train_batch.loss"] = [f32(2 * math.exp(-b / 4000) + rng.random() * 0.3) for b in range(BATCHES)]
    return values


def median_ms(fn) -> float:
    times = []
    for _ in range(REPEAT):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> None:
    rng = random.Random(0)
    logs = fake_logs(rng)
    items = [f"logs:train_epoch.{m}+logs:eval_epoch.{m}" for m in METRICS]
    items += ["logs:train_batch.loss", "logs:train_epoch.loss", "logs:eval_epoch.acctop1",
              "logs:test_epoch.map"]  # the last one has no data yet
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("BOOTSTRAP_REPRO_CACHE_DIR", str(Path(tmp) / "cache"))
        exp = Path(tmp) / "exp"
        exp.mkdir()
        (exp / "logs.json").write_text(json.dumps(logs))
        view = views.View(exp, items)
        path = view.build({"logs": logs})  # first build also links plotly.js
        in_memory = median_ms(lambda: view.build({"logs": logs}))
        from_disk = median_ms(view.build)
        size = path.stat().st_size
        js = next(exp.glob("plotly-*.min.js"))
        print(f"run: {EPOCHS} epochs, {len(items)} items, batch loss of {BATCHES} points")
        print(f"view.html: {size / 1000:.1f} KB (plotly.js beside it: {js.name}, "
              f"{js.stat().st_size / 1e6:.1f} MB, {js.stat().st_nlink} links)")
        print(f"rebuild (hook, in-memory logs): median {in_memory:.1f} ms over {REPEAT}")
        print(f"rebuild (from logs.json on disk, {(exp / 'logs.json').stat().st_size / 1000:.0f} KB): "
              f"median {from_disk:.1f} ms over {REPEAT}")
        # A long run: 90 epochs x 5,000 batches, decimated to View.max_points per curve.
        logs["train_batch.loss"] = [2 * math.exp(-b / 90_000) + rng.random() * 0.3 for b in range(LONG)]
        long_ms = median_ms(lambda: view.build({"logs": logs}))
        print(f"long run ({LONG} batch points, kept <= {view.max_points}): view.html "
              f"{path.stat().st_size / 1000:.1f} KB, median rebuild {long_ms:.1f} ms")


if __name__ == "__main__":
    main()
