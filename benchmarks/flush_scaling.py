"""Cost of one ``Logger.flush()`` as the run grows: 1k, 10k, 100k and 1M values already logged.

Each flush adds what an epoch of a small job adds (``--new`` batch losses and a few epoch
values) and is timed on the training thread (the call returns once the new values are
fsynced).  Sizes are measured side by side: rounds alternate between the sizes, and the
median of every size's flushes is compared with the 1k one.  Also printed: the bytes and
fsyncs one flush costs, the time writing the whole file (what a flush did before the journal;
its JSON encoding not counted) takes at each size, and the time ``read_logs`` takes to read the file and its journal back.

    python benchmarks/flush_scaling.py            # ~20 s; goal: 1M within 2x of 1k
    python benchmarks/flush_scaling.py --rounds 5 --flushes 20 --new 64
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bootstrap_repro.logger import Logger, read_logs  # noqa: E402

SIZES = (1_000, 10_000, 100_000, 1_000_000)


def make_logger(root: Path, size: int, rng: random.Random) -> Logger:
    lg = Logger(root / f"n{size}", activate=False, echo=False)
    lg.values["train_batch.loss"] = [rng.random() for _ in range(size)]  # 17-digit floats, like tensor.item()
    lg.values["train_batch.epoch"] = [0] * 1000
    lg.flush()  # the first flush writes logs.json whole
    lg._journal.wait()
    return lg


def one_flush(lg: Logger, rng: random.Random, new: int) -> float:
    for _ in range(new):
        lg.log_value("train_batch.loss", rng.random())
    lg.log_dict("train_epoch", {"loss": rng.random(), "acctop1": rng.random(), "epoch": 1})
    t0 = time.perf_counter()
    lg.flush()
    return time.perf_counter() - t0


def whole_file(lg: Logger) -> float:
    """What the flush did before the journal: rewrite and fsync the whole file (encoding excluded)."""
    from bootstrap_repro.fileio import atomic_write_text

    import json

    text = json.dumps(lg.values)
    t0 = time.perf_counter()
    atomic_write_text(lg.json_path.with_name("baseline.json"), text, fsync_dir=False)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--flushes", type=int, default=20, help="flushes per size per round")
    ap.add_argument("--new", type=int, default=64, help="batch values logged before each flush")
    args = ap.parse_args()
    rng = random.Random(0)
    times: dict[int, list[float]] = {n: [] for n in SIZES}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
        loggers = {n: make_logger(Path(tmp), n, rng) for n in SIZES}
        for r in range(args.rounds):
            order = SIZES if r % 2 == 0 else SIZES[::-1]
            for n in order:
                lg = loggers[n]
                times[n] += [one_flush(lg, rng, args.new) for _ in range(args.flushes)]
        baseline: dict[int, list[float]] = {n: [] for n in SIZES}
        for r in range(args.rounds):
            for n in (SIZES if r % 2 == 0 else SIZES[::-1]):
                baseline[n] += [whole_file(loggers[n]) for _ in range(3)]
        # What one flush writes and fsyncs (counted, not timed).
        counts = {}
        for n, lg in loggers.items():
            lg._journal.wait()
            size0 = lg._journal.size
            inode = lg.json_path.stat().st_ino
            one_flush(lg, rng, args.new)
            counts[n] = (lg._journal.size - size0, lg.json_path.stat().st_ino != inode)
        reads = {}
        for n, lg in loggers.items():
            t0 = time.perf_counter()
            read_logs(lg.json_path)
            reads[n] = time.perf_counter() - t0
            lg.close()
    base = statistics.median(times[SIZES[0]])
    load = os.getloadavg()[0]
    print(f"flush cost, {args.rounds} rounds x {args.flushes} flushes of {args.new} new values per size "
          f"(alternating), load average {load:.2f}, {os.cpu_count()} CPUs")
    print(f"{'values':>10} {'median ms':>10} {'p90 ms':>8} {'vs 1k':>6} {'bytes/flush':>12} {'file rewritten':>15} "
          f"{'read_logs ms':>13} {'whole-file write ms':>20}")
    for n in SIZES:
        med = statistics.median(times[n])
        p90 = statistics.quantiles(times[n], n=10)[-1]
        nbytes, rewritten = counts[n]
        print(f"{n:>10,} {med * 1e3:>10.3f} {p90 * 1e3:>8.3f} {med / base:>6.2f} {nbytes:>12} {str(rewritten):>15} "
              f"{reads[n] * 1e3:>13.1f} {statistics.median(baseline[n]) * 1e3:>20.2f}")
    ratio = statistics.median(times[SIZES[-1]]) / base
    print(f"1M / 1k = {ratio:.2f}x (goal <= 2x)")


if __name__ == "__main__":
    main()
