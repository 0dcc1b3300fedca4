"""What users run vs a raw script: the ``bootstrap-repro run`` process against a plain PyTorch script.

Part 1, the 5-epoch MLP job of issue 15 (synthetic data 4096 x 64, 10 classes, batch 64: 64 train
and 64 eval batches per epoch; MLP 64-256-256-10, Adam; per-batch loss/top-1/top-5 kept; eval and
a checkpoint every epoch).  Each round runs three fresh processes, their order rotating through
the 6 permutations:

- ``bootstrap-repro run`` with its view (3 plotly curves) and record, checkpoints ``last`` +
  ``best_*`` committed atomically every epoch, ``logs.json`` journal, its result stored in an
  empty result store (``results/`` of the cache dir is removed before each run: each run is a
  miss that trains, records its inputs and publishes its result).  The rest of the cache dir
  stays, as for anyone who has run once: the stat cache of the module files' hashes and the view's
  ``plotly.min.js``.  ``--cold-caches`` gives each run a new cache dir instead (a first run ever:
  every module file hashed, the asset copied);
- ``raw``: a hand-written script doing the same training and evaluation (a ``DataLoader`` over a
  ``TensorDataset``, shuffled each epoch, reading item by item as ``DataLoader(batch_size=...)``
  does), writing the files it needs:
  ``torch.save`` of the model and optimizer each epoch (to a temporary name, then ``os.replace``; no
  fsync) and a ``json.dump`` of its logs each epoch;
- ``raw-batched``: the same script with a loader that indexes each batch whole (a ``BatchSampler``
  as the sampler), as the platform's built-in datasets read their batches (``Dataset.get_collated_batch``):
  the ratio to it leaves out the data path and shows what the platform itself adds.

Printed: the fit-time ratio (the CLI's fit, from two lines a hook plugin writes to its ``logs.txt`` at
``train_on_start`` and ``train_on_end``, over the raw script's own fit) and the whole-process wall
ratio to each raw script, medians over the rounds, and where each process spent its time: start-up (from the launch to
the fit's start: imports, options, record, building), the fit, and the end (from the fit's end to
the process's exit: record, cache, interpreter shutdown).  The CLI's fit includes waiting for its
last checkpoint to be durable and its view's last page.

Part 2, the view's cost: a 200-epoch run of tiny batches (64 items, batch 8, dim 8), the Engine
in process, ``view: []`` vs a plotly view of 3 curves, alternating pairs, ratio of fit times.

    python benchmarks/cli_overhead.py                  # ~4 min on 2 cores
    python benchmarks/cli_overhead.py --pairs 18 --only 1
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _stats import median_interval  # noqa: E402

EPOCHS, ITEMS, DIM, CLASSES, BATCH = 5, 4096, 64, 10, 64
VIEW = ["logs:train_epoch.loss+logs:eval_epoch.loss", "logs:eval_epoch.acctop1", "logs:train_batch.loss"]

CLOCK = textwrap.dedent("""
    import time

    def register(engine):
        engine.register_hook('train_on_start', lambda: engine.logger(f'fit_clock start {time.time():.6f}'))
        engine.register_hook('train_on_end', lambda: engine.logger(f'fit_clock end {time.time():.6f}'))
""")

RAW = textwrap.dedent("""
    import json, os, sys, time
    import torch
    from torch import nn

    exp, BATCHED = sys.argv[1], sys.argv[2:] == ["batched"]
    EPOCHS, ITEMS, DIM, CLASSES, BATCH = %d, %d, %d, %d, %d
    torch.set_num_threads(1)
    os.makedirs(exp)
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(CLASSES, DIM, generator=g) * 2
    def split(seed):
        g = torch.Generator().manual_seed(seed)
        y = torch.randint(0, CLASSES, (ITEMS,), generator=g)
        return centers[y] + torch.randn(ITEMS, DIM, generator=g), y
    from torch.utils.data import DataLoader, TensorDataset
    train, val = TensorDataset(*split(1)), TensorDataset(*split(2))
    model = nn.Sequential(nn.Linear(DIM, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, CLASSES),
                          nn.LogSoftmax(dim=1))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    crit = nn.NLLLoss()
    logs = {k: [] for k in ("train_batch.loss", "train_batch.acctop1", "train_batch.acctop5", "eval_batch.loss",
                            "eval_batch.acctop1", "eval_batch.acctop5", "eval_epoch.loss")}

    def step(x, y, mode):
        out = model(x)
        loss = crit(out, y)
        top = out.topk(5, dim=1).indices
        logs[mode + "_batch.loss"].append(loss.item())
        logs[mode + "_batch.acctop1"].append((top[:, 0] == y).float().mean().item() * 100)
        logs[mode + "_batch.acctop5"].append((top == y[:, None]).any(1).float().mean().item() * 100)
        return loss

    def loader(ds, shuffle, seed=0):
        if BATCHED:  # one indexing per batch (as the platform's built-in datasets read their batches)
            from torch.utils.data import BatchSampler, RandomSampler, SequentialSampler
            order = RandomSampler(ds, generator=torch.Generator().manual_seed(seed)) if shuffle else SequentialSampler(ds)
            return DataLoader(ds, sampler=BatchSampler(order, BATCH, False), batch_size=None)
        return DataLoader(ds, batch_size=BATCH, shuffle=shuffle,
                          generator=torch.Generator().manual_seed(seed) if shuffle else None)

    def save(obj, name):
        tmp = os.path.join(exp, name + ".tmp")
        torch.save(obj, tmp)
        os.replace(tmp, os.path.join(exp, name))

    start = time.perf_counter()
    print(f"fit_clock start {time.time():.6f}")
    best = float("inf")
    for epoch in range(EPOCHS):
        model.train()
        for x, y in loader(train, True, epoch):
            opt.zero_grad(set_to_none=True)
            step(x, y, "train").backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            losses = [step(x, y, "eval").item() for x, y in loader(val, False)]
        logs["eval_epoch.loss"].append(sum(losses) / len(losses))
        save(model.state_dict(), "last_model.pth")
        save(opt.state_dict(), "last_optimizer.pth")
        save({"epoch": epoch + 1, "rng": torch.get_rng_state()}, "last_engine.pth")
        if logs["eval_epoch.loss"][-1] < best:
            best = logs["eval_epoch.loss"][-1]
            save(model.state_dict(), "best_model.pth")
        with open(os.path.join(exp, "logs.json.tmp"), "w") as f:
            json.dump(logs, f)
        os.replace(os.path.join(exp, "logs.json.tmp"), os.path.join(exp, "logs.json"))
    print(f"fit {time.perf_counter() - start:.6f}")
    print(f"fit_clock end {time.time():.6f}")
""") % (EPOCHS, ITEMS, DIM, CLASSES, BATCH)


def cli_options(exp: Path) -> dict[str, Any]:
    return {
        "exp": {"dir": str(exp)}, "misc": {"seed": 0},
        "dataset": {"name": "synthetic", "nb_items": ITEMS, "nb_classes": CLASSES, "dim": DIM, "batch_size": BATCH,
                    "nb_threads": 0},
        "model": {"name": "simple", "network": {"name": "mlp", "input_dim": DIM, "hidden": [256, 256],
                                                "nb_classes": CLASSES},
                  "criterion": {"name": "nll"}, "metric": {"name": "accuracy", "topk": [1, 5]}},
        "optimizer": {"name": "adam", "lr": 1e-3},
        "engine": {"nb_epochs": EPOCHS, "saving_criteria": ["loss:min", "acctop1:max"], "progress_bar": False},
        "view": VIEW,
    }


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


#: One run: (fit s, whole process s, start-up s, end s).
Timing = tuple[float, float, float, float]


def _marks(lines: list[str]) -> dict[str, float]:
    return {ln.split("fit_clock ")[1].split()[0]: float(ln.split()[-1]) for ln in lines if "fit_clock " in ln}


def run_cli(tmp: Path, i: int, cold: bool = False) -> Timing:
    import shutil

    import yaml

    exp = tmp / f"cli{i}"
    opt = tmp / f"cli{i}.yaml"
    opt.write_text(yaml.safe_dump(cli_options(exp)))
    cache = tmp / (f"cache{i}" if cold else "cache")
    # an empty result store: a miss (the run trains) that stores its result, as a first run of an
    # experiment does (the same options in a shared store would be a hit after the first pair)
    shutil.rmtree(cache / "results", ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": f"{tmp}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "BOOTSTRAP_REPRO_HOOKS": "fit_clock", "OMP_NUM_THREADS": "1", "BOOTSTRAP_REPRO_CACHE_DIR": str(cache)}
    t0, w0 = time.perf_counter(), time.time()
    r = subprocess.run([sys.executable, "-m", "bootstrap_repro", "run", "-o", str(opt)], env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False)
    wall, w1 = time.perf_counter() - t0, time.time()
    assert r.returncode == 0, r.stderr
    marks = _marks((exp / "logs.txt").read_text().splitlines())
    return marks["end"] - marks["start"], wall, marks["start"] - w0, w1 - marks["end"]


def run_raw(tmp: Path, i: int, cold: bool = False, batched: bool = False) -> Timing:
    script = tmp / "raw.py"
    t0, w0 = time.perf_counter(), time.time()
    r = subprocess.run([sys.executable, str(script), str(tmp / f"raw{'b' if batched else ''}{i}")]
                       + (["batched"] if batched else []), capture_output=True, text=True,
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, check=False)
    wall, w1 = time.perf_counter() - t0, time.time()
    assert r.returncode == 0, r.stderr
    marks = _marks(r.stdout.splitlines())
    return float(r.stdout.split("fit ")[1].split()[0]), wall, marks["start"] - w0, w1 - marks["end"]


def compile_package() -> None:
    """Compile bootstrap_repro's bytecode, as ``pip install`` does (torch's is): with PYTHONDONTWRITEBYTECODE set
    and a source edited since its ``.pyc`` was written, every run would compile it again."""
    import bootstrap_repro
    import compileall

    compileall.compile_dir(Path(bootstrap_repro.__file__).parent, quiet=1)


#: Part 1's sides: the CLI, the raw script reading item by item, the raw script reading whole batches.
SIDES = {
    "cli": run_cli,
    "raw": run_raw,
    "raw-batched": lambda tmp, i, cold: run_raw(tmp, i, cold, batched=True),
}


def part1(pairs: int, cold: bool = False) -> None:
    print(f"== part 1: `bootstrap-repro run` vs a raw script, {EPOCHS} epochs x {ITEMS // BATCH} train + "
          f"{ITEMS // BATCH} eval batches, {pairs} rounds of the 3 sides in rotating order, {'cold' if cold else 'warm'} "
          f"stat and asset caches (load average {load()})")
    compile_package()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        (tmp / "fit_clock.py").write_text(CLOCK)
        (tmp / "raw.py").write_text(RAW)
        for run_side in SIDES.values():  # warm the page cache of every side's imports (and the caches)
            run_side(tmp, -1, cold)
        got_all: list[dict[str, Timing]] = []
        orders = list(itertools.permutations(SIDES))
        for i in range(pairs):
            got = {who: SIDES[who](tmp, i, cold) for who in orders[i % len(orders)]}
            got_all.append(got)
            c, r, b = got["cli"], got["raw"], got["raw-batched"]
            print(f"round {i}: fit cli {c[0]:.3f}s raw {r[0]:.3f}s ({c[0] / r[0]:.3f}x) raw-batched {b[0]:.3f}s "
                  f"({c[0] / b[0]:.3f}x) | process cli {c[1]:.3f}s raw {r[1]:.3f}s ({c[1] / r[1]:.3f}x) raw-batched "
                  f"{b[1]:.3f}s ({c[1] / b[1]:.3f}x) | start-up cli {c[2]:.3f}s raw {r[2]:.3f}s | end cli {c[3]:.3f}s "
                  f"raw {r[3]:.3f}s | load {load()}")
        med = {f"{w}_{k}": statistics.median(g[w][j] for g in got_all)
               for w in SIDES for k, j in (("fit", 0), ("wall", 1), ("start", 2), ("end", 3))}
        for raw in ("raw", "raw-batched"):
            fit_r = [g["cli"][0] / g[raw][0] for g in got_all]
            wall_r = [g["cli"][1] / g[raw][1] for g in got_all]
            (fl, fh), (wl, wh) = median_interval(fit_r), median_interval(wall_r)
            print(f"vs {raw}: median fit cli {med['cli_fit']:.3f}s, {raw} {med[raw + '_fit']:.3f}s; median ratio "
                  f"{statistics.median(fit_r):.3f}x (95 % interval {fl:.3f}-{fh:.3f}; goal <= 1.10) | median process "
                  f"cli {med['cli_wall']:.3f}s, {raw} {med[raw + '_wall']:.3f}s; median ratio "
                  f"{statistics.median(wall_r):.3f}x ({wl:.3f}-{wh:.3f}; goal <= 1.05)")
        print(f"median start-up: cli {med['cli_start']:.3f}s, raw {med['raw_start']:.3f}s; median end: cli "
              f"{med['cli_end']:.3f}s, raw {med['raw_end']:.3f}s")


def engine_fit(exp: Path, view: list[str]) -> float:
    from bootstrap_repro.options import DEFAULTS, Options, merge
    from bootstrap_repro.run import run

    tree = merge(DEFAULTS, {
        "exp": {"dir": str(exp)}, "misc": {"seed": 0},
        "dataset": {"name": "synthetic", "nb_items": 64, "nb_classes": 4, "dim": 8, "batch_size": 8, "nb_threads": 0},
        "model": {"name": "simple", "network": {"name": "mlp", "input_dim": 8, "hidden": 16, "nb_classes": 4},
                  "criterion": {"name": "nll"}, "metric": {"name": "accuracy", "topk": [1, 2]}},
        "optimizer": {"name": "sgd", "lr": 0.1},
        "engine": {"nb_epochs": 200, "saving_criteria": ["loss:min"], "progress_bar": False},
        "view": view,
    })
    marks: dict[str, float] = {}

    def setup(engine: Any) -> None:
        engine.register_hook("train_on_start", lambda: marks.__setitem__("start", time.perf_counter()))
        engine.register_hook("train_on_end", lambda: marks.__setitem__("end", time.perf_counter()))

    with open(os.devnull, "w") as null:
        res = run(Options(tree), setup=setup, handle_signals=False, stream=null)
    assert res.status == "COMPLETED", res.error
    return marks["end"] - marks["start"]


def part2(pairs: int) -> None:
    import torch

    torch.set_num_threads(1)
    print(f"== part 2: 200 epochs x (8 train + 8 eval batches of 8), Engine in process, view on (3 plotly curves) vs "
          f"`view: []`, {pairs} alternating pairs (load average {load()})")
    with tempfile.TemporaryDirectory() as d:
        engine_fit(Path(d) / "warm", VIEW)
        ratios, on, off = [], [], []
        for i in range(pairs):
            order = ("on", "off") if i % 2 == 0 else ("off", "on")
            got = {w: engine_fit(Path(d) / f"{w}{i}", VIEW if w == "on" else []) for w in order}
            on.append(got["on"]), off.append(got["off"])
            ratios.append(got["on"] / got["off"])
            print(f"pair {i}: view on {got['on']:.3f}s off {got['off']:.3f}s = {ratios[-1]:.3f}x | load {load()}")
        low, high = median_interval(ratios)
        print(f"median fit: view on {statistics.median(on):.3f}s, off {statistics.median(off):.3f}s; median ratio "
              f"{statistics.median(ratios):.3f}x (95 % interval {low:.3f}-{high:.3f}; goal <= 1.05)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=12, help="part 1: rounds of the CLI and the two raw scripts")
    ap.add_argument("--view-pairs", type=int, default=5, help="part 2: alternating view on/off pairs")
    ap.add_argument("--only", type=int, choices=[1, 2])
    ap.add_argument("--cold-caches", action="store_true",
                    help="part 1: a new cache dir per CLI run (every module file hashed, the view's asset copied)")
    args = ap.parse_args()
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True, check=False).stdout.strip()}; {os.cpu_count()} CPUs")
    if args.only in (None, 1):
        part1(args.pairs, args.cold_caches)
    if args.only in (None, 2):
        part2(args.view_pairs)
    print(f"uptime at the end: {subprocess.run(['uptime'], capture_output=True, text=True, check=False).stdout.strip()}")


if __name__ == "__main__":
    main()
