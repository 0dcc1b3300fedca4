"""Input discovery cost: what recording a run's inputs (``record/_inputs.py``) adds, measured side by side.

Goals of the issue, one section each (``--only 1,3`` runs some):

1. **Digits run, recording OFF / ON** (goal: discovery costs <= 2 % of the run's time).  The digits
   example (``examples/digits/options.yaml`` with ``--engine.nb_epochs 5`` by default, to stay
   short: the example has 30) runs in this process through ``bootstrap_repro.run.run(...,
   cache=False)``, a fresh exp dir each time, the two arms in alternating order.  OFF replaces
   ``bootstrap_repro.run.InputRecorder`` by a stub (no audit hook, empty manifest); ON is the
   code as shipped.  Printed: median wall times and the median per-pair ON/OFF ratio (with its
   spread: the machine's noise); what recording spends after training, ``finish()`` (the
   record's ``segments[0].inputs.cost_s``) and ``RunRecord.set_inputs`` (``inputs.json`` +
   ``inputs.tar.gz`` of the git-ignored inputs), as % of the OFF run, which the verdict uses
   (the hook's cost while training is section 2's); the manifest's kinds and the archive's size
   (0 files for the digits example: its installed packages are ``installed`` even when the venv
   lies, git-ignored, inside the repo).  Then ``finish()`` with a cold stat cache (a new, empty
   ``BOOTSTRAP_REPRO_CACHE_DIR``: every module hashed) vs the warm one.
2. **Training hot path with the audit hook** (goal: no measurable overhead).  In one fresh
   process: the cost of one ``id()`` call (an audit event), ``open()`` and ``os.environ[...]``
   without any hook, with the hook installed but idle, and while recording; the Engine fit of
   ``benchmarks/engine_overhead.py`` (train_on_start..train_on_end) without any hook (first,
   the hook cannot be removed once added), then idle vs recording in alternating pairs; and
   the audit events and environ reads per batch while training.  The verdict uses events per
   batch x cost per event (robust), the fit ratio is printed with its per-pair spread.
3. **A cache hit's input check with 10,000 data files** (goal: <= 0.5 s, warm stats).  Files
   of 1 KB, mtimes 60 s in the past (outside the 2 s racy window), opened under an
   ``InputRecorder``; ``finish()`` builds the manifest (plus this process's modules, as a
   run's would).  ``check_inputs(manifest)`` (what ``run._from_cache`` calls) is timed,
   median of ``--repeat``: unchanged; after touching 1 % of the files (mtime now, same
   content: re-hashed, no change reported); after editing 1 file in place (same size: exactly
   1 change).  Reading the manifest JSON is timed too; the goal counts read + check.

All caches are private (``BOOTSTRAP_REPRO_CACHE_DIR`` is a temp dir); temp dirs are removed.
One torch thread everywhere.  Read ratios and medians, not single times: the machine may be
shared, and the header line gives its load average.

    python benchmarks/inputs_cost.py [--pairs 5] [--epochs 5] [--cold 2] [--hot-pairs 7]
                                     [--files 10000] [--repeat 7] [--only 1,2,3]
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


def digits_run(exp_dir: Path, epochs: int, arm: str) -> dict[str, Any]:
    """One digits run; ``arm``: ``off`` (recording stubbed out) or ``on`` (as shipped)."""
    from bootstrap_repro.options import Options
    from bootstrap_repro.run import run

    opt = Options.load(DIGITS, overrides=["--exp.dir", str(exp_dir), "--engine.nb_epochs", str(epochs),
                                          "--engine.progress_bar", "false"])
    n_set, n_arch = len(SET_INPUTS_S), len(ARCHIVE_S)
    with recording(arm != "off"), open(os.devnull, "w") as null:
        t0 = time.perf_counter()
        res = run(opt, cache=False, handle_signals=False, stream=null)
        wall = time.perf_counter() - t0
    assert res.status == "COMPLETED", res.error
    seg = json.loads((exp_dir / "repro" / "record.json").read_text())["segments"][0]["inputs"]
    archive = exp_dir / "repro" / "segments" / "0" / "inputs.tar.gz"
    out = {"wall": wall, "cost": float(seg.get("cost_s") or 0.0), "modules": seg["modules"], "files": seg["files"],
           "env": len(seg["env"]), "archived": seg["archived"], "by_kind": seg["by_kind"],
           "set_inputs": sum(SET_INPUTS_S[n_set:]), "archive_s": sum(ARCHIVE_S[n_arch:]),
           "archive_mb": archive.stat().st_size / 2**20 if archive.exists() else 0.0}
    shutil.rmtree(exp_dir, ignore_errors=True)
    return out


def section_digits(tmp: Path, pairs: int, epochs: int, cold: int) -> None:
    time_set_inputs()
    arms = ("off", "on")
    print(f"\n1. digits example, --engine.nb_epochs {epochs} (the example has 30), in-process run(cache=False), "
          f"recording OFF / ON, {pairs} pairs in alternating order:")
    first = digits_run(tmp / "first", epochs, "on")
    print(f"  first run of the process (imports, cold stat cache; not counted): {first['wall']:.2f} s, "
          f"finish() {first['cost']:.3f} s, set_inputs {first['set_inputs']:.3f} s")
    digits_run(tmp / "warm-off", epochs, "off")  # the OFF arm's first run (allocator, page cache): not counted
    runs: dict[str, list[dict[str, Any]]] = {a: [] for a in arms}
    for i in range(pairs):
        for arm in arms if i % 2 == 0 else arms[::-1]:
            runs[arm].append(digits_run(tmp / f"{arm}{i}", epochs, arm))
        print(f"  pair {i}: OFF {runs['off'][-1]['wall']:.3f} s  ON {runs['on'][-1]['wall']:.3f} s  "
              f"ON/OFF {runs['on'][-1]['wall'] / runs['off'][-1]['wall']:.3f}")

    def m(arm: str, key: str) -> float:
        return med([r[key] for r in runs[arm]])

    off_w, on_w = m("off", "wall"), m("on", "wall")
    r0 = runs["on"][0]
    archived = {r["archived"] for r in runs["on"]}
    print(f"  ON manifest: {r0['modules']} modules, {r0['files']} data files, {r0['env']} env vars, "
          f"kinds {r0['by_kind']}")
    print(f"  ON inputs.tar.gz: {max(archived)} files, {m('on', 'archive_mb'):.1f} MB "
          f"(the digits example has no git-ignored input: expected 0 files, "
          f"{'ok' if archived == {0} else 'WRONG'})")
    print(f"  {'':<36} {'OFF':>9} {'ON':>9}   (median; ON as % of the OFF run)")
    print(f"  {'run wall time':<36} {off_w:>7.3f} s {on_w:>7.3f} s")
    for name, key in (("  finish() (inputs.cost_s)", "cost"), ("  set_inputs (inputs.json + archive)", "set_inputs"),
                      ("    of which write_archive", "archive_s")):
        print(f"  {name:<36} {'':>9} {m('on', key):>7.3f} s   {pct(m('on', key), off_w)}")
    ratios = [a["wall"] / b["wall"] for a, b in zip(runs["on"], runs["off"])]
    post = m("on", "cost") + m("on", "set_inputs")
    print(f"  ON/OFF median ratio {med(ratios):.3f} (per pair {min(ratios):.3f}..{max(ratios):.3f}; wall times move with "
          f"the machine's load, the verdict uses the cost: the hook's share while training is section 2's)")
    print(f"  finish() + set_inputs {post:.3f} s = {pct(post, off_w).strip()} of the OFF run "
          f"(goal <= 2 %: {'met' if post <= 0.02 * off_w else 'NOT met'})")
    # warm vs cold stat cache: a new cache dir makes finish() hash every module file again
    if cold:
        colds = []
        for i in range(cold):
            with cache_dir(tmp / f"cold-cache{i}"):
                colds.append(digits_run(tmp / f"cold{i}", epochs, "on"))
        c_on = med([r["cost"] for r in colds])
        print(f"  finish() with a warm stat cache {m('on', 'cost'):.3f} s ({pct(m('on', 'cost'), off_w).strip()} of "
              f"the OFF run), cold (median of {cold}, a new BOOTSTRAP_REPRO_CACHE_DIR: every module file hashed) "
              f"{c_on:.3f} s ({pct(c_on, off_w).strip()})")


# --------------------------------------------------------------------------- 2. the training hot path (one fresh process)
def hot_worker(epochs: int, items: int, pairs: int) -> None:
    """In a fresh process (no audit hook yet): per-event cost of the hook, then fits without/with it; JSON out."""
    import timeit

    import torch

    import engine_overhead
    from bootstrap_repro.record._inputs import InputRecorder
    from bootstrap_repro.run import run

    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="inputs-cost-hot-"))
    marks: dict[str, float] = {}
    counts: Counter[str] = Counter()
    batches = [0]
    probe = tmp / "probe.txt"
    probe.write_text("x")

    def setup(engine: Any) -> None:
        engine.register_hook("train_on_start", lambda: marks.__setitem__("start", time.perf_counter()))
        engine.register_hook("train_on_end", lambda: marks.__setitem__("end", time.perf_counter()))
        if "counting" in marks:
            for m in ("train", "eval"):
                engine.register_hook(f"{m}_on_end_batch", lambda: batches.__setitem__(0, batches[0] + 1))

    def fit(name: str, on: bool) -> float:
        with recording(on):
            res = run(engine_overhead.Options(engine_overhead.tree(tmp / name, epochs, items)), setup=setup,
                      handle_signals=False, stream=open(os.devnull, "w"))
        assert res.status == "COMPLETED", res.error
        shutil.rmtree(tmp / name, ignore_errors=True)
        return marks["end"] - marks["start"]

    def per_event() -> dict[str, float]:
        x = object()
        n_id, n_open, n_env = 200_000, 5_000, 100_000
        out = {"builtins.id": min(timeit.repeat(lambda: id(x), number=n_id, repeat=5)) / n_id,
               "open+close": min(timeit.repeat(lambda: open(probe).close(), number=n_open, repeat=5)) / n_open,
               "os.environ[HOME]": min(timeit.repeat(lambda: os.environ["HOME"], number=n_env, repeat=5)) / n_env}
        return out

    out: dict[str, Any] = {}
    try:
        fit("warmup", False)
        out["micro_none"] = per_event()
        out["fits_none"] = [fit(f"none{i}", False) for i in range(pairs)]
        InputRecorder(tmp / "idle").start().finish()  # the hook and the environ wrapper, installed for good
        out["micro_idle"] = per_event()
        rec = InputRecorder(tmp / "active").start()
        out["micro_on"] = per_event()
        rec.stop()
        fit("warmup-on", True)
        idle, on = [], []
        for i in range(pairs):
            for arm in (("idle", "on") if i % 2 == 0 else ("on", "idle")):
                (on if arm == "on" else idle).append(fit(f"{arm}{i}", arm == "on"))
        out["fits_idle"], out["fits_on"] = idle, on
        # count what the hook sees while training (a second hook, so after all timings)
        sys.addaudithook(lambda ev, args: counts.__setitem__(ev, counts[ev] + 1) if "counting" in marks else None)
        real_getitem = os._Environ.__getitem__

        def getitem(self: Any, key: Any) -> Any:
            if "counting" in marks:
                counts["os.environ[]"] += 1
            return real_getitem(self, key)

        os._Environ.__getitem__ = getitem  # type: ignore[method-assign]
        marks["counting"] = 1
        def counted_setup(engine: Any) -> None:
            setup(engine)
            engine.register_hook("train_on_start", lambda: counts.clear())
            engine.register_hook("train_on_end", lambda: marks.pop("counting", None))

        with recording(True):
            res = run(engine_overhead.Options(engine_overhead.tree(tmp / "count", epochs, items)), setup=counted_setup,
                      handle_signals=False, stream=open(os.devnull, "w"))
        assert res.status == "COMPLETED", res.error
        os._Environ.__getitem__ = real_getitem  # type: ignore[method-assign]
        out["counts"], out["batches"] = dict(counts), batches[0]
        print(json.dumps(out))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def section_hot(pairs: int, epochs: int, items: int) -> None:
    cmd = [sys.executable, __file__, "--hot-worker", "--hot-epochs", str(epochs), "--hot-items", str(items),
           "--hot-pairs", str(pairs)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy(), check=False)
    if r.returncode != 0:
        sys.exit(f"hot-path worker failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    nb = max(res["batches"], 1)
    print(f"\n2. training hot path: engine_overhead's Engine fit ({epochs} epochs x {items} items, batch 64, train + "
          f"eval = {nb} batches, 1 thread), train_on_start..train_on_end, one fresh process:")
    print(f"  per call              {'no hook':>9} {'idle hook':>10} {'recording':>10}")
    for ev in res["micro_none"]:
        print(f"  {ev:<20} {res['micro_none'][ev] * 1e9:>7.0f} ns {res['micro_idle'][ev] * 1e9:>8.0f} ns "
              f"{res['micro_on'][ev] * 1e9:>8.0f} ns")
    counts = Counter(res["counts"])
    env_reads = counts.pop("os.environ[]", 0)
    total = sum(counts.values())
    top = ", ".join(f"{k} {v}" for k, v in counts.most_common(5))
    print(f"  seen while training: {total} audit events ({total / nb:.2f} per batch; {top}), "
          f"{env_reads} os.environ[] reads")
    id_cost = res["micro_on"]["builtins.id"] - res["micro_none"]["builtins.id"]
    none, idle, on = (med(res[f"fits_{a}"]) for a in ("none", "idle", "on"))
    print(f"  fit, median of {pairs}:  no hook {none:.3f} s ({none / nb * 1e6:.0f} us/batch; run first, not "
          f"interleaved)  idle hook {idle:.3f} s  recording {on:.3f} s")
    ratio = med([a / b for a, b in zip(res["fits_on"], res["fits_idle"])])
    est = total * id_cost / (none or 1)
    print(f"  recording/idle median of {pairs} alternating pairs: {ratio:.3f} "
          f"(per pair: {', '.join(f'{a / b:.3f}' for a, b in zip(res['fits_on'], res['fits_idle']))})")
    print(f"  estimate from the per-event cost: {total / nb:.2f} events x {id_cost * 1e9:.0f} ns = "
          f"{total / nb * id_cost * 1e6:.2f} us/batch = {100 * est:.3f} % of the fit "
          f"(goal: no measurable overhead, i.e. < 0.5 %: {'met' if est < 0.005 else 'NOT met'}; the fits' "
          f"own noise on this machine is the per-pair spread above)")


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
    warm_finish: list[float] = []
    for _ in range(3):  # again, stat cache warm for the data files
        rec = InputRecorder(tmp / "exp-check2").start()
        for p in paths:
            with open(p, "rb") as f:
                f.read()
        t0 = time.perf_counter()
        again = rec.finish(None)
        warm_finish.append(time.perf_counter() - t0)
        same = {p: m["sha256"] for p, m in again.files.items()} == {p: m["sha256"] for p, m in inputs.files.items()}
        assert same and not again.secrets, "another manifest"
    manifest = inputs.to_json()
    # plus the data files earlier runs of this process read (section 1's): they count for every later recording
    missing = {os.path.realpath(p) for p in paths} - set(manifest["files"])
    assert not missing, (len(missing), sorted(missing)[:3], manifest["unfingerprintable"][:3])
    extra = len(manifest["files"]) - n_files
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
          f"(hashes the {n_files} files, stat cache cold for them);\n  finish() again, stat cache warm, median of 3: "
          f"{med(warm_finish):.2f} s (same manifest)"
          + (f"; {extra} more data files read by earlier runs of this process" if extra else ""))
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
    ap.add_argument("--hot-pairs", type=int, default=7, help="idle/recording fit pairs (section 2)")
    ap.add_argument("--hot-epochs", type=int, default=2)
    ap.add_argument("--hot-items", type=int, default=4096)
    ap.add_argument("--files", type=int, default=10_000, help="data files of section 3")
    ap.add_argument("--repeat", type=int, default=7, help="check_inputs timings (section 3)")
    ap.add_argument("--only", default="1,2,3", help="sections to run, e.g. 3 or 1,3")
    ap.add_argument("--hot-worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.hot_worker:
        hot_worker(args.hot_epochs, args.hot_items, args.hot_pairs)
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
            section_hot(args.hot_pairs, args.hot_epochs, args.hot_items)
        if "3" in only:
            section_check(tmp, args.files, args.repeat)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n({time.perf_counter() - t0:.0f} s in all; load average now {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
