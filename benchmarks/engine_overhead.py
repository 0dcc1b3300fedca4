"""Engine overhead: the Engine vs a hand-written PyTorch loop doing the same work.

Same data (the synthetic dataset and its seeded loader), same model (network +
criterion + metric), same optimizer, an eval epoch after every training epoch,
checkpoints every epoch, and every per-batch loss kept.  CPU, one thread; the
two are run alternately and the median of the per-pair fit-time ratios is
printed, with a 95 % interval (bootstrap over the pairs: on a shared machine one
run's median moves by several percent).  Goal (issue 15): <= 1.05.  The Engine side
also rebuilds view.html after every flush and writes its checkpoints atomically
(fsync + rename); the hand loop calls plain ``torch.save``.  ``--durable`` adds a
third side, the hand loop writing its checkpoint files as durably as the Engine
(temporary file, fsync, rename, directory fsync): the ratio to it is what the
Engine costs beyond that guarantee.

    python benchmarks/engine_overhead.py [--pairs 7] [--epochs 3] [--amp bf16] [--breakdown] [--durable]

Issue 15's job is ``--epochs 5`` (5 epochs x 64 train + 64 eval batches).  ``--breakdown`` also
prints where the Engine's time goes besides the batches (flushes, checkpoints, epoch means).
``--baseline DIR`` adds a third side, the Engine of another copy of the package (e.g. ``git
archive HEAD bootstrap_repro | tar -x -C DIR``): each fit then runs in its own process (same
warm-up), alternating, and the before/after ratios are printed side by side.  The machine load
average is printed at the start and the end (the figures are wall-clock times).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from _stats import median_interval

#: The package timed: this repository's, or the one named by BENCH_ROOT (``--baseline``).
ROOT = os.environ.get("BENCH_ROOT") or str(Path(__file__).resolve().parents[1])
sys.path.insert(0, ROOT)

from bootstrap_repro import datasets, models  # noqa: E402
from bootstrap_repro.fileio import atomic_write  # noqa: E402
from bootstrap_repro.logger import Logger  # noqa: E402
from bootstrap_repro.options import DEFAULTS, Options, merge  # noqa: E402
from bootstrap_repro.run import run, seed_everything  # noqa: E402


AMP = "none"
#: Process CPU time (all threads, seconds) of the last fit of each side: less disturbed than wall
#: time by the other processes of a shared machine, blind to waits (fsync, preemption).
CPU: dict[str, float] = {}


def tree(exp_dir: Path, epochs: int, nb_items: int) -> dict[str, Any]:
    return merge(DEFAULTS, {
        "exp": {"dir": str(exp_dir)},
        "misc": {"seed": 0},
        "dataset": {"name": "synthetic", "nb_items": nb_items, "nb_classes": 10, "dim": 64,
                    "batch_size": 64, "nb_threads": 0},
        "model": {"name": "simple", "network": {"name": "mlp", "input_dim": 64, "hidden": [256, 256], "nb_classes": 10},
                  "criterion": {"name": "nll"}, "metric": {"name": "accuracy", "topk": [1, 5]}},
        "optimizer": {"name": "adam", "lr": 1e-3},
        "engine": {"nb_epochs": epochs, "saving_criteria": ["loss:min", "acctop1:max"], "progress_bar": False,
                   "amp": AMP},
        "view": ["logs:train_epoch.loss+logs:eval_epoch.loss", "logs:eval_epoch.acctop1", "logs:train_batch.loss"],
    })


def engine_fit(exp_dir: Path, epochs: int, nb_items: int) -> float:
    marks: dict[str, float] = {}

    def setup(engine: Any) -> None:
        engine.register_hook("train_on_start", lambda: marks.update(start=time.perf_counter(), cpu0=time.process_time()))
        engine.register_hook("train_on_end", lambda: marks.update(end=time.perf_counter(), cpu1=time.process_time()))

    res = run(Options(tree(exp_dir, epochs, nb_items)), setup=setup, handle_signals=False, stream=open("/dev/null", "w"))
    assert res.status == "COMPLETED", res.error
    CPU["engine"] = marks["cpu1"] - marks["cpu0"]
    return marks["end"] - marks["start"]


def autocast() -> Any:
    # Without AMP a hand-written loop has no autocast at all (a disabled one costs ~6 us a
    # batch), as the Engine's forward pass has none.
    return torch.autocast("cpu", dtype=torch.bfloat16) if AMP == "bf16" else contextlib.nullcontext()


def durable_save(obj: Any, path: Path) -> None:
    """``torch.save`` as durable as a checkpoint of the Engine: the project's ``atomic_write`` (a temporary
    file, fsync, rename, directory fsync)."""
    atomic_write(path, lambda f: torch.save(obj, f))


def hand_fit(exp_dir: Path, epochs: int, nb_items: int, durable: bool = False) -> float:
    opt = Options(tree(exp_dir, epochs, nb_items))
    exp_dir.mkdir(parents=True)
    engine = type("E", (), {"options": opt, "device": torch.device("cpu"), "seed": 0,
                            "register_hook": lambda *a: None, "logger": Logger(activate=False, echo=False)})()
    seed_everything(0)
    data = datasets.factory(engine)
    model = models.factory(engine)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    logs: dict[str, list[Any]] = {"train_batch.loss": [], "eval_batch.loss": []}
    best = float("inf")
    start, cpu0 = time.perf_counter(), time.process_time()
    for epoch in range(epochs):
        model.train()
        data["train"].set_epoch(epoch)
        for batch in data["train"].make_batch_loader():
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                out = model(batch)
            out["loss"].backward()
            optimizer.step()
            logs["train_batch.loss"].append(out["loss"].detach())
        model.eval()
        losses, sizes = [], []
        with torch.no_grad():
            for batch in data["eval"].make_batch_loader():
                with autocast():
                    out = model(batch)
                losses.append(out["loss"].detach())
                sizes.append(batch["data"].shape[0])
                logs["eval_batch.loss"].append(out["loss"].detach())
        w = torch.tensor(sizes, dtype=torch.float64)
        eval_loss = float((torch.stack(losses).double() * w).sum() / w.sum())
        save = durable_save if durable else torch.save
        if eval_loss < best:
            best = eval_loss
            save(model.state_dict(), exp_dir / "best_model.pth")
            save(optimizer.state_dict(), exp_dir / "best_optimizer.pth")
        save(model.state_dict(), exp_dir / "last_model.pth")
        save(optimizer.state_dict(), exp_dir / "last_optimizer.pth")
    CPU["durable" if durable else "hand"] = time.process_time() - cpu0
    return time.perf_counter() - start


PHASES = {  # (module, class, method): what the Engine does besides the batches
    "logger flush": ("bootstrap_repro.logger", "Logger", "flush"),
    "checkpoint save": ("bootstrap_repro.engines._checkpoint", "Checkpointer", "save"),
    "checkpoint wait": ("bootstrap_repro.engines._checkpoint", "Checkpointer", "wait"),
    "epoch means": ("bootstrap_repro.engines._engine", "Engine", "_epoch_means"),
    "print lines": ("bootstrap_repro.engines._engine", "Engine", "_print_line"),
}


def timed_phases() -> dict[str, float]:
    """Wrap the methods of :data:`PHASES` to add up their wall time (seconds) in the returned dict."""
    import importlib

    spent: dict[str, float] = {name: 0.0 for name in PHASES}
    for name, (module, cls_name, method) in PHASES.items():
        cls = getattr(importlib.import_module(module), cls_name)
        orig = getattr(cls, method)

        def wrapper(*a: Any, __orig: Any = orig, __name: str = name, **k: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return __orig(*a, **k)
            finally:
                spent[__name] += time.perf_counter() - t0

        setattr(cls, method, wrapper)
    return spent


def load() -> str:
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def one(who: str, epochs: int, items: int) -> None:
    """``--one engine|hand``: warm up, time one fit, print ``{"wall": s}`` (a subprocess of ``--baseline``)."""
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        engine_fit(Path(tmp) / "warmup", 1, 256)
        hand_fit(Path(tmp) / "warmup-hand", 1, 256)
        fit = engine_fit if who == "engine" else hand_fit
        wall = fit(Path(tmp) / "run", epochs, items)
        print(json.dumps({"wall": wall, "cpu": CPU[who]}))


def with_baseline(args: argparse.Namespace) -> None:
    """Hand loop, this Engine and the baseline's Engine, each fit in its own process, alternating."""
    sides = {"hand": ROOT, "engine": ROOT, "baseline": str(Path(args.baseline).resolve())}
    times: dict[str, list[float]] = {k: [] for k in sides}
    cpu: dict[str, list[float]] = {k: [] for k in sides}
    print(load())
    orders = list(itertools.permutations(sides))  # each side in each position, in turn
    for i in range(args.pairs):
        for who in orders[i % len(orders)]:
            cmd = [sys.executable, __file__, "--one", "hand" if who == "hand" else "engine", "--epochs",
                   str(args.epochs), "--items", str(args.items), "--amp", args.amp]
            out = subprocess.run(cmd, env={**os.environ, "BENCH_ROOT": sides[who]}, capture_output=True,
                                 text=True, check=True).stdout
            got = json.loads(out.strip().splitlines()[-1])
            times[who].append(got["wall"])
            cpu[who].append(got["cpu"])
        print(f"round {i}: hand {times['hand'][-1]:.3f}s  engine {times['engine'][-1]:.3f}s "
              f"({times['engine'][-1] / times['hand'][-1]:.3f})  baseline {times['baseline'][-1]:.3f}s "
              f"({times['baseline'][-1] / times['hand'][-1]:.3f})")
    for who in ("engine", "baseline"):
        ratios = [e / h for e, h in zip(times[who], times["hand"])]
        cpu_ratios = [e / h for e, h in zip(cpu[who], cpu["hand"])]
        print(f"{who:8s} ({sides[who]}): median fit {statistics.median(times[who]):.3f}s, median ratio to the "
              f"hand-written loop {statistics.median(ratios):.3f} (min-time ratio {min(times[who]) / min(times['hand']):.3f}); "
              f"CPU time: median ratio {statistics.median(cpu_ratios):.3f}, min-time ratio {min(cpu[who]) / min(cpu['hand']):.3f}")
    print(f"hand-written: median fit {statistics.median(times['hand']):.3f}s; {args.pairs} rounds, {args.epochs} epochs "
          f"x {args.items // 64} batches, amp {args.amp}, 1 CPU thread; {load()}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=7)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--items", type=int, default=4096)
    p.add_argument("--amp", choices=["none", "bf16"], default="none", help="engine.amp on both sides")
    p.add_argument("--breakdown", action="store_true", help="time the Engine's epoch-level work too")
    p.add_argument("--durable", action="store_true",
                   help="a third side: the hand loop with checkpoint files as durable as the Engine's (fsync)")
    p.add_argument("--baseline", metavar="DIR", help="another copy of the package to compare with (before/after)")
    p.add_argument("--one", choices=["engine", "hand"], help=argparse.SUPPRESS)
    args = p.parse_args()
    global AMP
    AMP = args.amp
    if args.one:
        one(args.one, args.epochs, args.items)
        return
    if args.baseline:
        with_baseline(args)
        return
    torch.set_num_threads(1)
    print(load())
    spent = timed_phases() if args.breakdown else None
    ratios, t_engine, t_hand, cpu_ratios, t_durable, durable_ratios = [], [], [], [], [], []
    sides = ("engine", "hand", "durable") if args.durable else ("engine", "hand")
    orders = list(itertools.permutations(sides))  # each side in each position, in turn
    fits = {"engine": engine_fit, "hand": hand_fit,
            "durable": lambda d, e, n: hand_fit(d, e, n, durable=True)}
    with tempfile.TemporaryDirectory() as tmp:
        engine_fit(Path(tmp) / "warmup", 1, 256)  # import/allocator warm-up of both sides, not measured
        hand_fit(Path(tmp) / "warmup-hand", 1, 256)
        if spent is not None:
            spent.update(dict.fromkeys(spent, 0.0))
        for i in range(args.pairs):
            got = {}
            for who in orders[i % len(orders)]:
                got[who] = fits[who](Path(tmp) / f"{who}{i}", args.epochs, args.items)
            t_engine.append(got["engine"])
            t_hand.append(got["hand"])
            ratios.append(got["engine"] / got["hand"])
            cpu_ratios.append(CPU["engine"] / CPU["hand"])
            line = f"pair {i}: engine {got['engine']:.3f}s  hand {got['hand']:.3f}s  ratio {ratios[-1]:.3f}"
            if args.durable:
                t_durable.append(got["durable"])
                durable_ratios.append(got["engine"] / got["durable"])
                line += f"  hand-durable {got['durable']:.3f}s  ratio {durable_ratios[-1]:.3f}"
            print(line)
    low, high = median_interval(ratios)
    print(f"\nmedian fit time: engine {statistics.median(t_engine):.3f}s, hand-written {statistics.median(t_hand):.3f}s")
    print(f"median ratio engine/hand-written: {statistics.median(ratios):.3f} (95 % interval {low:.3f}-{high:.3f}; "
          f"goal <= 1.05; {args.pairs} alternating pairs, {args.epochs} epochs x {args.items // 64} batches, "
          f"amp {args.amp}, 1 CPU thread)")
    print(f"min-time ratio: {min(t_engine) / min(t_hand):.3f}; CPU time (all threads) median ratio "
          f"{statistics.median(cpu_ratios):.3f}; {load()}")
    if args.durable:
        low, high = median_interval(durable_ratios)
        print(f"median ratio engine/hand-written with durable checkpoints: {statistics.median(durable_ratios):.3f} "
              f"(95 % interval {low:.3f}-{high:.3f}); hand-durable median fit {statistics.median(t_durable):.3f}s; "
              f"min-time ratio {min(t_engine) / min(t_durable):.3f}")
    if spent is not None:
        extra = statistics.median(t_engine) - statistics.median(t_hand)
        print(f"Engine fit minus hand-written fit (medians): {extra * 1e3:+.1f} ms; per Engine fit, mean:")
        for name, total in spent.items():
            print(f"  {name:16s} {total / args.pairs * 1e3:7.1f} ms")


if __name__ == "__main__":
    main()
