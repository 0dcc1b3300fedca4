"""Input discovery cost: what recording a run's inputs (``record/_inputs.py``) adds, measured side by side.

Goals of the issue, one section each:

1. **Digits run, recording ON vs OFF** (goal: ON/OFF <= 1.02).  The digits example
   (``examples/digits/options.yaml``, ``--engine.nb_epochs 5`` by default to keep it short) is
   run in this process with ``bootstrap_repro.run.run(..., cache=False)`` and a fresh exp dir
   each time, in alternating pairs: ON is the normal run; OFF replaces
   ``bootstrap_repro.run.InputRecorder`` by a stub (no audit hook, empty manifest) in this
   process only.  Printed: the median wall time of each, the median of the per-pair ratios,
   and what ON spends after training: ``finish()`` (the record's ``segments[0].inputs.cost_s``)
   and ``RunRecord.set_inputs`` (inputs.json + inputs.tar.gz of the git-ignored inputs), as %
   of the OFF run time.  Then warm vs cold stat cache: runs with a new, empty
   ``BOOTSTRAP_REPRO_CACHE_DIR`` (the first ``finish()`` hashes every imported module file).
   The very first run of the process (imports, cold stat cache) is printed apart, not counted.
2. **Training hot path with the audit hook** (goal: ratio ~1.00).  The Engine fit of
   ``benchmarks/engine_overhead.py`` (tiny MLP, synthetic data, checkpoints, view) timed from
   ``train_on_start`` to ``train_on_end``, each in a fresh process (an audit hook cannot be
   removed once added), alternating: ``none`` (no recorder, hook never installed), ``idle``
   (hook installed by an earlier recorder, none active: the state after a run) and ``on``
   (``run`` records as usual).  Printed: medians, per-batch cost and the ratios to ``none``,
   plus the audit events and ``os.environ`` reads per batch during training.
3. **A cache hit's input check with 10,000 data files** (goal: <= 0.5 s with warm stats).
   10,000 files of 1 KB (mtimes set 60 s in the past, outside the 2 s racy window) are opened
   under an ``InputRecorder``, ``finish()`` builds the manifest (with this process's modules,
   as a real run's would have).  Then ``check_inputs(manifest)`` (what ``run._from_cache``
   calls) is timed, median of ``--repeat``: unchanged stats; after touching 1 % of the files
   (mtime now, same content: re-hashed, no change); after editing 1 file in place (same size:
   must report exactly 1 change).  Reading the manifest JSON back is timed too.

All caches are private (``BOOTSTRAP_REPRO_CACHE_DIR`` is a temp dir); temp dirs are removed.
One torch thread everywhere.  Read ratios, not absolute times: the machine is shared, and the
header line gives its load average.

    python benchmarks/inputs_cost.py [--pairs 5] [--epochs 5] [--hot-pairs 3] [--files 10000]
                                     [--repeat 7] [--only 1,2,3]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

DIGITS = ROOT / "examples" / "digits" / "options.yaml"


def machine() -> str:
    load = os.getloadavg()
    return f"{len(os.sched_getaffinity(0))} cores, load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}"


def med(xs: list[float]) -> float:
    return statistics.median(xs)


def pct(a: float, b: float) -> str:
    return f"{100 * a / b:5.1f} %"


# --------------------------------------------------------------------------- recording switched off (benchmark only)
class NoRecorder:
    """Stands for ``InputRecorder`` in ``bootstrap_repro.run``: installs nothing, records nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    @classmethod
    def from_options(cls, options: Any, exp_dir: Path) -> NoRecorder:
        return cls()

    def start(self) -> NoRecorder:
        return self

    def stop(self) -> None:
        pass

    def finish(self, git_root: Path | None = None) -> Any:
        from bootstrap_repro.record._inputs import Inputs

        return Inputs()


@contextlib.contextmanager
def recording(on: bool) -> Iterator[None]:
    import bootstrap_repro.run as run_mod

    real = run_mod.InputRecorder
    if not on:
        run_mod.InputRecorder = NoRecorder  # type: ignore[misc,assignment]
    try:
        yield
    finally:
        run_mod.InputRecorder = real  # type: ignore[misc]


@contextlib.contextmanager
def cache_dir(path: Path) -> Iterator[None]:
    old = os.environ.get("BOOTSTRAP_REPRO_CACHE_DIR")
    os.environ["BOOTSTRAP_REPRO_CACHE_DIR"] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("BOOTSTRAP_REPRO_CACHE_DIR", None)
        else:
            os.environ["BOOTSTRAP_REPRO_CACHE_DIR"] = old


# --------------------------------------------------------------------------- 1. the digits run, ON vs OFF
SET_INPUTS_S: list[float] = []
ARCHIVE_S: list[float] = []


def time_set_inputs() -> None:
    """Time ``RunRecord.set_inputs`` and its ``write_archive`` (timing wrappers only; behaviour unchanged)."""
    from bootstrap_repro.record import _record

    real_set, real_archive = _record.RunRecord.set_inputs, _record.write_archive

    def set_inputs(self: Any, *a: Any, **k: Any) -> None:
        t0 = time.perf_counter()
        try:
            real_set(self, *a, **k)
        finally:
            SET_INPUTS_S.append(time.perf_counter() - t0)

    def write_archive(*a: Any, **k: Any) -> None:
        t0 = time.perf_counter()
        try:
            real_archive(*a, **k)
        finally:
            ARCHIVE_S.append(time.perf_counter() - t0)

    _record.RunRecord.set_inputs = set_inputs  # type: ignore[method-assign]
    _record.write_archive = write_archive  # type: ignore[assignment]


def digits_run(exp_dir: Path, epochs: int, on: bool) -> dict[str, Any]:
    from bootstrap_repro.options import Options
    from bootstrap_repro.run import run

    opt = Options.load(DIGITS, overrides=["--exp.dir", str(exp_dir), "--engine.nb_epochs", str(epochs),
                                          "--engine.progress_bar", "false"])
    n_set = len(SET_INPUTS_S)
    with recording(on), open(os.devnull, "w") as null:
        t0 = time.perf_counter()
        res = run(opt, cache=False, handle_signals=False, stream=null)
        wall = time.perf_counter() - t0
    assert res.status == "COMPLETED", res.error
    seg = json.loads((exp_dir / "repro" / "record.json").read_text())["segments"][0]["inputs"]
    archive = exp_dir / "repro" / "segments" / "0" / "inputs.tar.gz"
    out = {"wall": wall, "cost": float(seg.get("cost_s") or 0.0), "modules": seg["modules"], "files": seg["files"],
           "env": len(seg["env"]), "archived": seg["archived"], "by_kind": seg["by_kind"],
           "set_inputs": SET_INPUTS_S[-1] if len(SET_INPUTS_S) > n_set else 0.0,
           "archive_s": ARCHIVE_S[-1] if len(SET_INPUTS_S) > n_set and ARCHIVE_S else 0.0,
           "archive_mb": archive.stat().st_size / 2**20 if archive.exists() else 0.0}
    shutil.rmtree(exp_dir, ignore_errors=True)
    return out


def section_digits(tmp: Path, pairs: int, epochs: int, cold: int) -> None:
    time_set_inputs()
    print(f"\n1. digits example, {epochs} epochs, in-process run(cache=False), recording ON vs OFF "
          f"({pairs} alternating pairs):")
    first = digits_run(tmp / "first", epochs, True)
    print(f"  first run of the process (imports, cold stat cache, not counted): {first['wall']:.2f} s, "
          f"finish() {first['cost']:.3f} s, set_inputs {first['set_inputs']:.3f} s")
    digits_run(tmp / "warm-off", epochs, False)  # the OFF side's first run too (allocator, page cache)
    on_runs, off_runs, ratios = [], [], []
    for i in range(pairs):
        order = (True, False) if i % 2 == 0 else (False, True)
        got = {o: digits_run(tmp / f"{'on' if o else 'off'}{i}", epochs, o) for o in order}
        on_runs.append(got[True])
        off_runs.append(got[False])
        ratios.append(got[True]["wall"] / got[False]["wall"])
        print(f"  pair {i}: ON {got[True]['wall']:.3f} s  OFF {got[False]['wall']:.3f} s  ratio {ratios[-1]:.3f}  "
              f"(finish {got[True]['cost']:.3f} s, set_inputs {got[True]['set_inputs']:.3f} s)")
    on_w, off_w = med([r["wall"] for r in on_runs]), med([r["wall"] for r in off_runs])
    cost, set_in = med([r["cost"] for r in on_runs]), med([r["set_inputs"] for r in on_runs])
    arch_s, arch_mb = med([r["archive_s"] for r in on_runs]), med([r["archive_mb"] for r in on_runs])
    r0 = on_runs[0]
    print(f"  manifest: {r0['modules']} modules, {r0['files']} data files, {r0['env']} env vars "
          f"({r0['by_kind']}); archived {r0['archived']} ignored inputs, {arch_mb:.1f} MB gz")
    print(f"  {'':<34} {'median':>9} {'% of OFF run':>13}")
    print(f"  {'run, recording OFF':<34} {off_w:>7.3f} s")
    print(f"  {'run, recording ON':<34} {on_w:>7.3f} s {pct(on_w - off_w, off_w):>12}  (ON - OFF)")
    print(f"  {'  finish() (inputs.cost_s)':<34} {cost:>7.3f} s {pct(cost, off_w):>12}")
    print(f"  {'  set_inputs (json + archive)':<34} {set_in:>7.3f} s {pct(set_in, off_w):>12}")
    print(f"  {'    of which write_archive':<34} {arch_s:>7.3f} s {pct(arch_s, off_w):>12}")
    ratio = med(ratios)
    print(f"  median ratio ON/OFF: {ratio:.3f}; finish() + set_inputs = {pct(cost + set_in, off_w).strip()} "
          f"of the run (goal <= 2 %: {'met' if ratio <= 1.02 and cost + set_in <= 0.02 * off_w else 'NOT met'})")
    # warm vs cold stat cache: a new cache dir makes finish() hash every module file again
    colds = []
    for i in range(cold):
        with cache_dir(tmp / f"cold-cache{i}"):
            colds.append(digits_run(tmp / f"cold{i}", epochs, True))
    if colds:
        c_cost, c_wall = med([r["cost"] for r in colds]), med([r["wall"] for r in colds])
        print(f"  stat cache    finish() median   run median   (finish as % of OFF run)")
        print(f"  warm          {cost:>8.3f} s     {on_w:>7.3f} s   {pct(cost, off_w)}")
        print(f"  cold (x{cold})     {c_cost:>8.3f} s     {c_wall:>7.3f} s   {pct(c_cost, off_w)}")


# --------------------------------------------------------------------------- 2. the training hot path (subprocesses)
def hot_worker(mode: str, epochs: int, items: int, repeat: int) -> None:
    """In a fresh process: fit the engine_overhead experiment ``repeat`` times; print JSON."""
    import torch

    import bootstrap_repro.record._inputs as inputs_mod
    import engine_overhead
    from bootstrap_repro.record._inputs import InputRecorder
    from bootstrap_repro.run import run

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="inputs-cost-hot-"))
    counts: Counter[str] = Counter()
    marks: dict[str, float] = {}
    batches = [0]

    def setup(engine: Any) -> None:
        engine.register_hook("train_on_start", lambda: marks.__setitem__("start", time.perf_counter()))
        engine.register_hook("train_on_end", lambda: marks.__setitem__("end", time.perf_counter()))
        if mode == "count":
            engine.register_hook("train_on_start", lambda: marks.__setitem__("counting", 1))
            engine.register_hook("train_on_end", lambda: marks.pop("counting", None))
            for m in ("train", "eval"):
                engine.register_hook(f"{m}_on_end_batch", lambda: batches.__setitem__(0, batches[0] + 1))

    def fit(d: Path, ep: int, n: int) -> float:
        res = run(engine_overhead.Options(engine_overhead.tree(d, ep, n)), setup=setup, handle_signals=False,
                  stream=open(os.devnull, "w"))
        assert res.status == "COMPLETED", res.error
        return marks["end"] - marks["start"]

    try:
        if mode == "idle":
            InputRecorder(tmp / "idle").start().finish()  # hook installed for good, then nothing records
        if mode == "count":
            real_getitem = inputs_mod._tracked_getitem

            def getitem(self: Any, key: Any) -> Any:
                if "counting" in marks:
                    counts["os.environ[]"] += 1
                return real_getitem(self, key)

            inputs_mod._install()  # its environ wrapper first, then this counting one around it
            os._Environ.__getitem__ = getitem  # type: ignore[method-assign]
            sys.addaudithook(lambda ev, args: counts.__setitem__(ev, counts[ev] + 1) if "counting" in marks else None)
        with recording(mode in ("on", "count")):
            fit(tmp / "warmup", 1, 256)
            counts.clear()
            batches[0] = 0
            times = [fit(tmp / f"fit{i}", epochs, items) for i in range(repeat if mode != "count" else 1)]
        print(json.dumps({"times": times, "counts": dict(counts), "batches": batches[0]}))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def spawn_hot(mode: str, epochs: int, items: int, repeat: int) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--hot-worker", mode, "--hot-epochs", str(epochs), "--hot-items", str(items),
           "--hot-repeat", str(repeat)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), check=False)
    if r.returncode != 0:
        sys.exit(f"hot-path worker {mode} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def section_hot(pairs: int, epochs: int, items: int, repeat: int) -> None:
    modes = ("none", "idle", "on")
    print(f"\n2. training hot path: engine_overhead's Engine fit ({epochs} epochs x {items} items, batch 64, "
          f"1 thread), train_on_start..train_on_end, best of {repeat} fits per process, {pairs} rounds of "
          f"{'/'.join(modes)} in fresh processes:")
    best: dict[str, list[float]] = {m: [] for m in modes}
    for i in range(pairs):
        order = modes[i % 3:] + modes[:i % 3]
        for m in order:
            best[m].append(min(spawn_hot(m, epochs, items, repeat)["times"]))
        print(f"  round {i}: " + "  ".join(f"{m} {best[m][-1]:.3f} s" for m in modes)
              + f"  on/none {best['on'][-1] / best['none'][-1]:.3f}")
    counted = spawn_hot("count", epochs, items, 1)
    nb = max(counted["batches"], 1)
    base = med(best["none"])
    for m in modes:
        ratios = [a / b for a, b in zip(best[m], best["none"])]
        print(f"  {m:<5} median fit {med(best[m]):.3f} s  {med(best[m]) / nb * 1e6:7.1f} us/batch  "
              f"ratio to none {med(ratios):.3f} (per round: {', '.join(f'{r:.3f}' for r in ratios)})")
    ev = Counter(counted["counts"])
    total = sum(v for k, v in ev.items() if k != "os.environ[]")
    top = ", ".join(f"{k} {v}" for k, v in ev.most_common(6))
    print(f"  during training ({nb} train+eval batches): {total} audit events ({total / nb:.2f} per batch), "
          f"{ev.get('os.environ[]', 0)} os.environ[] reads; most: {top or 'none'}")
    on = med([a / b for a, b in zip(best["on"], best["none"])])
    print(f"  on/none {on:.3f}, {(med(best['on']) - base) / nb * 1e6:+.1f} us/batch "
          f"(goal ~1.00, i.e. within noise: {'met' if on <= 1.01 else 'NOT met'})")


# --------------------------------------------------------------------------- 3. checking 10,000 data files
def timed(fn: Any, repeat: int) -> tuple[list[float], Any]:
    out, res = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        res = fn()
        out.append(time.perf_counter() - t0)
    return out, res


def section_check(tmp: Path, n_files: int, repeat: int) -> None:
    from bootstrap_repro.record._inputs import InputRecorder, check_inputs

    print(f"\n3. cache hit's check_inputs with {n_files} recorded data files of 1 KB (median of {repeat}):")
    data = tmp / "data"
    paths = []
    past = time.time_ns() - 60 * 10**9
    for i in range(n_files):
        d = data / f"d{i // 1000:02d}"
        if i % 1000 == 0:
            d.mkdir(parents=True)
        p = d / f"item{i:05d}.bin"
        p.write_bytes(f"item {i}\n".encode().ljust(1024, b"."))
        os.utime(p, ns=(past, past))
        paths.append(str(p))
    rec = InputRecorder(tmp / "exp-check").start()
    try:
        for p in paths:
            with open(p, "rb") as f:
                f.read()
    finally:
        t0 = time.perf_counter()
        inputs = rec.finish(None)
        finish_s = time.perf_counter() - t0
    manifest = inputs.to_json()
    assert len(manifest["files"]) == n_files, (len(manifest["files"]), manifest["unfingerprintable"][:3])
    mpath = tmp / "inputs.json"
    mpath.write_text(json.dumps(manifest, indent=1))
    load_t, manifest = timed(lambda: json.loads(mpath.read_text()), repeat)
    files_only = {"files": manifest["files"]}
    stat_t, _ = timed(lambda: [os.stat(p) for p in manifest["files"]], repeat)
    warm_t, ch = timed(lambda: check_inputs(manifest), repeat)
    assert ch == [], ch[:3]
    warm_files_t, _ = timed(lambda: check_inputs(files_only), repeat)
    hit_t, _ = timed(lambda: check_inputs(manifest, first_only=True), repeat)
    # touch 1 %: mtime now, same content (re-hashed; racy, so the stat cache does not keep them)
    touched = paths[::100][: max(1, n_files // 100)]
    for p in touched:
        os.utime(p)
    touch_t, ch = timed(lambda: check_inputs(manifest), repeat)
    assert ch == [], ch[:3]
    # edit 1 file in place, same size
    victim = paths[n_files // 2]
    with open(victim, "r+b") as f:
        f.write(b"EDITED")
    edit_t, ch = timed(lambda: check_inputs(manifest), repeat)
    one = len(ch) == 1 and ch[0].name == os.path.realpath(victim)
    print(f"  manifest: {len(manifest['modules'])} modules + {len(manifest['files'])} files, "
          f"{mpath.stat().st_size / 2**20:.1f} MB JSON; recorder finish() {finish_s:.2f} s "
          f"(hashes the {n_files} files, stat cache cold for them)")
    rows = [
        ("read + parse the manifest JSON", load_t),
        ("os.stat of each file (floor)", stat_t),
        ("check_inputs, unchanged", warm_t),
        ("  files section only", warm_files_t),
        ("  first_only=True (as _from_cache)", hit_t),
        (f"after touching {len(touched)} files (1 %)", touch_t),
        ("after editing 1 file (same size)", edit_t),
    ]
    for name, ts in rows:
        print(f"  {name:<38} median {med(ts) * 1000:8.1f} ms   worst {max(ts) * 1000:8.1f} ms")
    print(f"  edited file reported: {'exactly 1 change' if one else f'{len(ch)} changes (WRONG)'}"
          f"{' (' + ch[0].describe()[-60:] + ')' if ch else ''}")
    warm = med(warm_t) + med(load_t)
    print(f"  goal <= 0.5 s (check + read manifest, warm stats): {'met' if warm <= 0.5 else 'NOT met'} "
          f"({warm:.3f} s); 1 % touched: {med(touch_t) + med(load_t):.3f} s")


# --------------------------------------------------------------------------- main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=5, help="ON/OFF pairs of the digits run (section 1)")
    ap.add_argument("--epochs", type=int, default=5, help="engine.nb_epochs of the digits run (example: 30)")
    ap.add_argument("--cold", type=int, default=2, help="digits runs with an empty stat cache (section 1)")
    ap.add_argument("--hot-pairs", type=int, default=3, help="rounds of none/idle/on processes (section 2)")
    ap.add_argument("--hot-epochs", type=int, default=2)
    ap.add_argument("--hot-items", type=int, default=4096)
    ap.add_argument("--hot-repeat", type=int, default=2, help="fits per process, the best counts (section 2)")
    ap.add_argument("--files", type=int, default=10_000, help="data files of section 3")
    ap.add_argument("--repeat", type=int, default=7, help="check_inputs timings (section 3)")
    ap.add_argument("--only", default="1,2,3", help="sections to run, e.g. 3 or 1,3")
    ap.add_argument("--hot-worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.hot_worker:
        hot_worker(args.hot_worker, args.hot_epochs, args.hot_items, args.hot_repeat)
        return
    only = {s.strip() for s in args.only.split(",")}
    tmp = Path(tempfile.mkdtemp(prefix="inputs-cost-"))
    os.environ["BOOTSTRAP_REPRO_CACHE_DIR"] = str(tmp / "cache")
    os.environ.pop("BOOTSTRAP_REPRO_NO_CACHE", None)
    import torch

    torch.set_num_threads(1)
    print(f"input discovery cost, {machine()}, python {sys.version.split()[0]}, torch {torch.__version__}, "
          f"1 torch thread")
    t0 = time.perf_counter()
    try:
        if "1" in only:
            section_digits(tmp, args.pairs, args.epochs, args.cold)
        if "2" in only:
            section_hot(args.hot_pairs, args.hot_epochs, args.hot_items, args.hot_repeat)
        if "3" in only:
            section_check(tmp, args.files, args.repeat)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n({time.perf_counter() - t0:.0f} s in all; load average now {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
