"""Engine overhead: the Engine vs a hand-written PyTorch loop doing the same work.

Same data (the synthetic dataset and its seeded loader), same model (network +
criterion + metric), same optimizer, an eval epoch after every training epoch,
checkpoints every epoch, and every per-batch loss kept.  CPU, one thread; the
two are run alternately and the median of the per-pair fit-time ratios is
printed (goal: <= 1.03).  The Engine side also rebuilds view.html after every
flush and writes its checkpoints atomically (fsync + rename); the hand loop
calls plain ``torch.save``.

    python benchmarks/engine_overhead.py [--pairs 7] [--epochs 3] [--amp bf16]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bootstrap_repro import datasets, models  # noqa: E402
from bootstrap_repro.logger import Logger  # noqa: E402
from bootstrap_repro.options import DEFAULTS, Options, merge  # noqa: E402
from bootstrap_repro.run import run, seed_everything  # noqa: E402


AMP = "none"


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
        engine.register_hook("train_on_start", lambda: marks.__setitem__("start", time.perf_counter()))
        engine.register_hook("train_on_end", lambda: marks.__setitem__("end", time.perf_counter()))

    res = run(Options(tree(exp_dir, epochs, nb_items)), setup=setup, handle_signals=False, stream=open("/dev/null", "w"))
    assert res.status == "COMPLETED", res.error
    return marks["end"] - marks["start"]


def autocast() -> Any:
    # Without AMP a hand-written loop has no autocast at all (a disabled one costs ~6 us a
    # batch), as the Engine's forward pass has none.
    return torch.autocast("cpu", dtype=torch.bfloat16) if AMP == "bf16" else contextlib.nullcontext()


def hand_fit(exp_dir: Path, epochs: int, nb_items: int) -> float:
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
    start = time.perf_counter()
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
        if eval_loss < best:
            best = eval_loss
            torch.save(model.state_dict(), exp_dir / "best_model.pth")
            torch.save(optimizer.state_dict(), exp_dir / "best_optimizer.pth")
        torch.save(model.state_dict(), exp_dir / "last_model.pth")
        torch.save(optimizer.state_dict(), exp_dir / "last_optimizer.pth")
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=7)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--items", type=int, default=4096)
    p.add_argument("--amp", choices=["none", "bf16"], default="none", help="engine.amp on both sides")
    args = p.parse_args()
    global AMP
    AMP = args.amp
    torch.set_num_threads(1)
    ratios, t_engine, t_hand = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        engine_fit(Path(tmp) / "warmup", 1, 256)  # import/allocator warm-up of both sides, not measured
        hand_fit(Path(tmp) / "warmup-hand", 1, 256)
        for i in range(args.pairs):
            order = ("engine", "hand") if i % 2 == 0 else ("hand", "engine")
            got = {}
            for who in order:
                d = Path(tmp) / f"{who}{i}"
                got[who] = (engine_fit if who == "engine" else hand_fit)(d, args.epochs, args.items)
            t_engine.append(got["engine"])
            t_hand.append(got["hand"])
            ratios.append(got["engine"] / got["hand"])
            print(f"pair {i}: engine {got['engine']:.3f}s  hand {got['hand']:.3f}s  ratio {ratios[-1]:.3f}")
    print(f"\nmedian fit time: engine {statistics.median(t_engine):.3f}s, hand-written {statistics.median(t_hand):.3f}s")
    print(f"median ratio engine/hand-written: {statistics.median(ratios):.3f} (goal <= 1.03; "
          f"{args.pairs} alternating pairs, {args.epochs} epochs x {args.items // 64} batches, amp {args.amp}, 1 CPU thread)")


if __name__ == "__main__":
    main()
