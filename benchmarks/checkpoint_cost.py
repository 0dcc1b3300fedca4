"""Cost of one checkpoint commit (3 files: engine, model, optimizer), before and after issue 15 item 3.

``before`` is the commit protocol of the previous version, rebuilt here from the same primitives:
each file written and fsynced under a temporary name, renamed to ``.staged``, a directory fsync, a
JSON journal written atomically (file fsync + directory fsync), the renames, the journal removed, a
final directory fsync: 7 fsyncs.  ``after`` is :func:`bootstrap_repro.fileio.commit_group`: the three
files written, then fsynced in one pass, a directory fsync (which also makes the previous commit's
renames durable), an empty marker, a directory fsync, the renames: 5 fsyncs.  Commits alternate
(before, after, before, ...) in one directory each; the fsyncs are counted by wrapping ``os.fsync``.
The time is the commit's wall time on the thread that runs it (the background writer in a run).

    python benchmarks/checkpoint_cost.py                    # ~10 s
    python benchmarks/checkpoint_cost.py --pairs 40 --size-kb 64 --size-kb 4096
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bootstrap_repro import fileio
from bootstrap_repro.fileio import (
    _fsync_dir,
    _roll_forward,
    _write_temp,
    atomic_write_json,
)

COUNT = {"n": 0}
_real_fsync = os.fsync


def _counting_fsync(fd: int) -> None:
    COUNT["n"] += 1
    _real_fsync(fd)


def before_commit(directory: Path, name: str, writers: dict) -> None:
    """The previous version's commit_group (7 fsyncs for 3 files)."""
    staged = {}
    for fname, writer in writers.items():
        target = directory / fname
        tmp = _write_temp(target, writer, fsync=True)
        final_tmp = target.with_name(target.name + ".staged")
        os.replace(tmp, final_tmp)
        staged[fname] = final_tmp.name
    _fsync_dir(directory)
    journal = directory / (name + fileio.JOURNAL_SUFFIX)
    atomic_write_json(journal, {"files": staged})
    _roll_forward(directory, staged)
    journal.unlink()
    _fsync_dir(directory)


def after_commit(directory: Path, name: str, writers: dict) -> None:
    fileio.commit_group(directory, name, writers)


def writers_for(sizes_kb: tuple[int, int, int], tag: int) -> dict:
    def w(n: int):
        data = os.urandom(16) * (n * 1024 // 16)
        return lambda f: f.write(data + tag.to_bytes(4, "little"))
    return {f"ckpt_last_{p}.pth.tar": w(n) for p, n in zip(("engine", "model", "optimizer"), sizes_kb, strict=True)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=30, help="alternating before/after commits per size")
    ap.add_argument("--size-kb", type=int, action="append", help="model file size in KB (optimizer: 2x, engine: 4 KB)")
    args = ap.parse_args()
    sizes = args.size_kb or [64, 4096]
    os.fsync = _counting_fsync  # fileio calls os.fsync through the os module
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; "
          f"filesystem of {tempfile.gettempdir()}: one commit = 3 files")
    with tempfile.TemporaryDirectory() as root:
        for kb in sizes:
            files = (4, kb, 2 * kb)
            times: dict[str, list[float]] = {"before": [], "after": []}
            fsyncs: dict[str, list[int]] = {"before": [], "after": []}
            dirs = {k: Path(root) / f"{k}{kb}" for k in times}
            for d in dirs.values():
                d.mkdir()
            for i in range(args.pairs + 1):
                for kind, fn in (("before", before_commit), ("after", after_commit)) if i % 2 == 0 else (
                        ("after", after_commit), ("before", before_commit)):
                    w = writers_for(files, i)
                    COUNT["n"] = 0
                    t0 = time.perf_counter()
                    fn(dirs[kind], "ckpt", w)
                    dt = time.perf_counter() - t0
                    if i:  # the first commit of each dir is a warm-up (and has no previous commit)
                        times[kind].append(dt)
                        fsyncs[kind].append(COUNT["n"])
            COUNT["n"] = 0
            fileio.settle_group(dirs["after"], "ckpt")
            settle = COUNT["n"]
            b, a = (statistics.median(times[k]) * 1e3 for k in ("before", "after"))
            print(f"files {files[0]}+{files[1]}+{files[2]} KB, {args.pairs} pairs: "
                  f"before {b:.2f} ms ({statistics.mean(fsyncs['before']):.0f} fsyncs), "
                  f"after {a:.2f} ms ({statistics.mean(fsyncs['after']):.0f} fsyncs; +{settle} once at the end "
                  f"of training) = {a / b:.2f}x")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
