"""GPU benchmark: the Engine vs a hand-written loop, ResNet-18 on random 32x32 images, bf16.

Same data (one uint8 tensor, batches sliced by ``__getitems__``, pinned memory, non-blocking
copies, persistent workers), same network, SGD with momentum (``--fused``: torch's fused SGD on
both sides), autocast (``--amp bf16`` default, ``fp16`` with a GradScaler, ``none``: fp32),
cuDNN autotuning on both sides, an eval epoch after every training epoch, checkpoints every
epoch, every per-batch loss kept.  The Engine runs with its defaults: the non-finite-loss rule
decided on the device (a masked step for the non-fused SGD, ``found_inf`` for the fused one)
and batches prefetched on a side stream; the hand loop checks nothing.  Runs alternate; prints
training images/s of both and the median ratio (goal: Engine >= 0.98x the raw loop).  Without
CUDA it says so and exits 0 (``--device cpu`` runs it on CPU, to check the script only).

    python benchmarks/gpu_engine.py [--pairs 3] [--epochs 2] [--items 50000] [--batch 256] [--amp bf16] [--fused]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from bootstrap_repro.logger import Logger  # noqa: E402
from bootstrap_repro.options import DEFAULTS, Options, merge  # noqa: E402
from bootstrap_repro.run import run, seed_everything  # noqa: E402
from resnet_plugins import data as rdata  # noqa: E402
from resnet_plugins import net as rnet  # noqa: E402


def tree(exp_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    return merge(DEFAULTS, {
        "exp": {"dir": str(exp_dir)},
        "misc": {"seed": 0},
        "dataset": {"import": "resnet_plugins.data", "nb_items": args.items, "batch_size": args.batch,
                    "nb_threads": args.workers},
        "model": {"name": "simple", "network": {"import": "resnet_plugins.net"}, "criterion": {"name": "nll"},
                  "metric": {"name": "accuracy", "topk": [1, 5]}},
        "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9, "fused": bool(args.fused)},
        "engine": {"nb_epochs": args.epochs, "saving_criteria": ["acctop1:max"], "progress_bar": False,
                   "amp": args.amp, "device": args.device, "print_freq": 0},
    })


def engine_fit(exp_dir: Path, args: argparse.Namespace) -> float:
    """Seconds spent in training epochs (eval and checkpoints excluded on both sides)."""
    spent = [0.0]
    t0 = [0.0]

    def setup(engine: Any) -> None:
        def start() -> None:
            torch.cuda.synchronize() if engine.device.type == "cuda" else None
            t0[0] = time.perf_counter()

        def end() -> None:
            torch.cuda.synchronize() if engine.device.type == "cuda" else None
            spent[0] += time.perf_counter() - t0[0]

        engine.register_hook("train_on_start_epoch", start)
        engine.register_hook("train_on_end_epoch", end)

    res = run(Options(tree(exp_dir, args)), setup=setup, handle_signals=False, stream=open("/dev/null", "w"))
    assert res.status == "COMPLETED", res.error
    return spent[0]


def hand_fit(exp_dir: Path, args: argparse.Namespace) -> float:
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    exp_dir.mkdir(parents=True)
    opt = Options(tree(exp_dir, args))
    engine = type("E", (), {"options": opt, "device": device, "seed": 0, "logger": Logger(activate=False, echo=False)})()
    seed_everything(0)
    data = rdata.factory(engine)
    model = rnet.ResNet18().to(device)
    optim = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, fused=bool(args.fused))
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)
    scaler = torch.amp.GradScaler(device.type) if args.amp == "fp16" else None
    torch.backends.cudnn.benchmark = device.type == "cuda"  # as the Engine does outside deterministic mode
    spent, losses = 0.0, []
    for epoch in range(args.epochs):
        data["train"].set_epoch(epoch)
        model.train()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for batch in data["train"].make_batch_loader():
            x = batch["data"].to(device, non_blocking=True)
            y = batch["class_id"].to(device, non_blocking=True)
            optim.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = torch.nn.functional.nll_loss(model(x), y)
            if scaler is None:
                loss.backward()
                optim.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(optim)
                scaler.update()
            losses.append(loss.detach())
        if device.type == "cuda":
            torch.cuda.synchronize()
        spent += time.perf_counter() - t0
        model.eval()
        with torch.no_grad():
            for batch in data["eval"].make_batch_loader():
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    losses.append(torch.nn.functional.nll_loss(model(batch["data"].to(device)), batch["class_id"].to(device)))
        torch.save(model.state_dict(), exp_dir / "model.pth")
        torch.save(optim.state_dict(), exp_dir / "optim.pth")
    return spent


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--items", type=int, default=50_000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--amp", default="bf16", choices=["none", "bf16", "fp16"], help="none: fp32")
    p.add_argument("--fused", action="store_true", help="torch's fused SGD on both sides")
    p.add_argument("--device", default="auto", help="auto | cuda | cpu (cpu only to check the script)")
    p.add_argument("--json", help="also write the figures to this file")
    args = p.parse_args()
    if args.device in ("auto", "cuda") and not torch.cuda.is_available():
        print("no CUDA device: the GPU benchmark did not run (use --device cpu only to check the script)")
        return
    device = "cpu"
    if torch.cuda.is_available() and args.device != "cpu":
        props = torch.cuda.get_device_properties(0)
        device = (f"{props.name} ({props.total_memory / 2**30:.0f} GiB), torch {torch.__version__}, "
                  f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}")
    print(f"device: {device}")
    images = args.items * args.epochs
    ratios, rates = [], {"engine": [], "hand": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.pairs):
            order = ("engine", "hand") if i % 2 == 0 else ("hand", "engine")
            got = {}
            for who in order:
                secs = (engine_fit if who == "engine" else hand_fit)(Path(tmp) / f"{who}{i}", args)
                got[who] = images / secs
                rates[who].append(got[who])
            ratios.append(got["engine"] / got["hand"])
            print(f"pair {i}: engine {got['engine']:.0f} img/s  hand {got['hand']:.0f} img/s  ratio {ratios[-1]:.3f}")
    print(f"\nmedian training throughput: engine {statistics.median(rates['engine']):.0f} img/s, "
          f"hand-written {statistics.median(rates['hand']):.0f} img/s")
    print(f"median ratio engine/hand-written: {statistics.median(ratios):.3f} (goal >= 0.98; amp {args.amp}, "
          f"{'fused ' if args.fused else ''}SGD, batch {args.batch}, {args.items} images x {args.epochs} epochs, "
          f"{args.pairs} pairs)")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "device": device, "amp": args.amp, "fused": args.fused, "batch": args.batch, "items": args.items,
            "epochs": args.epochs, "pairs": args.pairs, "engine_img_s": rates["engine"], "hand_img_s": rates["hand"],
            "ratios": ratios, "median_ratio": statistics.median(ratios)}, indent=1))


if __name__ == "__main__":
    main()
