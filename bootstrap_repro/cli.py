"""The ``bootstrap-repro`` command: the only module that reads ``sys.argv`` and exits.

Exit codes: 0 done, 1 the run failed, 2 bad input (one ``error:`` line, no
traceback), 130 interrupted (resumable).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bootstrap_repro import __version__
from bootstrap_repro.errors import OptionsError, ReproError

__all__ = ["main"]

RUN_USAGE = "bootstrap-repro run -o OPTIONS.yaml [--key.path VALUE ...] [--nproc-per-node N] [-h]"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bootstrap-repro",
        description="Reproducible deep-learning experiments (the bootstrap.pytorch framework).",
    )
    p.add_argument("--version", action="version", version=f"bootstrap-repro {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    r = sub.add_parser("run", add_help=False, usage=RUN_USAGE,
                       help="run (or resume) an experiment from an options file")
    r.add_argument("-o", "--options", dest="path_opts")
    r.add_argument("-h", "--help", action="store_true")
    v = sub.add_parser("view", help="rebuild an experiment's view.html")
    v.add_argument("exp_dir")
    c = sub.add_parser("compare", help="rank experiments by their best epoch")
    c.add_argument("exp_dirs", nargs="+", metavar="EXP_DIR")
    c.add_argument("-m", "--metric", action="append", default=None,
                   help="KEY:min|max, e.g. eval_epoch.acctop1:max (repeatable; default: acctop1:max and loss:min)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    try:
        args, rest = parser.parse_known_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        if args.command != "run" and rest:
            raise OptionsError(f"{args.command}: unexpected arguments {' '.join(rest)}")
        if args.command == "run":
            return _cmd_run(args, rest)
        if args.command == "view":
            return _cmd_view(args.exp_dir)
        return _cmd_compare(args.exp_dirs, args.metric)
    except ReproError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


def _cmd_run(args: argparse.Namespace, overrides: list[str]) -> int:
    from bootstrap_repro.options import Options

    if args.path_opts is None:
        if args.help:
            print(f"usage: {RUN_USAGE}\n\nWith -o, -h lists every option of that file with its value.")
            return 0
        raise OptionsError("run: -o OPTIONS.yaml is required (e.g. bootstrap-repro run -o examples/digits/options.yaml)")
    if args.help:
        # -h lists the options even when some overrides are wrong: apply the valid ones.
        opt = Options.load(args.path_opts)
        try:
            opt.apply_overrides(overrides)
        except OptionsError as exc:
            print(f"note: {exc}", file=sys.stderr)
        print(f"usage: {RUN_USAGE}\n")
        print(opt.help_text())
        return 0
    overrides = _torchrun_flags(overrides)
    opt = Options.load(args.path_opts, overrides)
    from bootstrap_repro.runtimes import launch_distributed, wants_distributed

    if wants_distributed(opt):
        from bootstrap_repro.run import check_exp_dir

        check_exp_dir(opt)
        return launch_distributed(opt, ["-o", args.path_opts, *overrides])
    from bootstrap_repro.run import run

    result = run(opt)
    if isinstance(result.error, ReproError):
        print(f"error: {result.error}", file=sys.stderr)
        return result.error.exit_code
    if result.status == "FAILED":
        print(f"error: run failed ({type(result.error).__name__}: {result.error}); see {result.exp_dir / 'logs.txt'}",
              file=sys.stderr)
    elif result.status == "INTERRUPTED":
        print(f"interrupted; resume with: bootstrap-repro run -o {result.exp_dir / 'options.yaml'} --exp.resume last",
              file=sys.stderr)
    return result.exit_code


#: torchrun-style flags of ``run`` and the option each one sets.
TORCHRUN_FLAGS = {"--nproc-per-node": "runtime.nproc_per_node", "--nnodes": "runtime.nnodes",
                  "--node-rank": "runtime.node_rank", "--rdzv-endpoint": "runtime.rdzv_endpoint"}


def _torchrun_flags(argv: list[str]) -> list[str]:
    """``--nproc-per-node 2`` → ``--runtime.nproc_per_node 2`` (also ``--nproc-per-node=2``)."""
    out = []
    for tok in argv:
        flag, eq, value = tok.partition("=")
        if flag in TORCHRUN_FLAGS:
            out.append(f"--{TORCHRUN_FLAGS[flag]}")
            if eq:
                out.append(value)
        else:
            out.append(tok)
    return out


def _cmd_view(exp_dir: str) -> int:
    from bootstrap_repro.views import rebuild

    for path in rebuild(exp_dir):
        print(path)
    return 0


def _parse_metric(spec: str) -> tuple[str, str]:
    key, sep, mode = spec.rpartition(":")
    if not sep or not key or mode not in ("min", "max"):
        raise OptionsError(f"--metric: expected KEY:min or KEY:max (e.g. eval_epoch.acctop1:max), got {spec!r}")
    return key, mode


def _read_logs(exp_dir: str) -> dict[str, list[Any]]:
    path = Path(exp_dir) / "logs.json"
    if not path.is_file():
        raise OptionsError(f"{exp_dir}: no logs.json; is it an experiment dir?")
    try:
        data = json.loads(path.read_text())
    except ValueError as exc:
        raise OptionsError(f"{path}: not valid JSON ({exc})") from None
    return data if isinstance(data, dict) else {}


def _best(values: list[Any], mode: str) -> tuple[int, float] | None:
    ok = [(i, float(v)) for i, v in enumerate(values) if isinstance(v, (int, float)) and not math.isnan(float(v))]
    if not ok:
        return None
    return (min if mode == "min" else max)(ok, key=lambda t: t[1])


def _cmd_compare(exp_dirs: list[str], metrics: list[str] | None) -> int:
    logs = {d: _read_logs(d) for d in exp_dirs}
    specs = [_parse_metric(m) for m in metrics] if metrics else [
        ("eval_epoch.acctop1", "max"), ("eval_epoch.loss", "min")]
    if not metrics:
        specs = [s for s in specs if any(s[0] in lg for lg in logs.values())]
        if not specs:
            raise OptionsError("compare: no eval_epoch.acctop1 or eval_epoch.loss in these logs; pass --metric KEY:min|max")
    width = max(len(d) for d in exp_dirs)
    for key, mode in specs:
        rows = []
        for d, lg in logs.items():
            vals = lg.get(key)
            best = _best(vals, mode) if isinstance(vals, list) else None
            if best is None:
                continue
            mode_name = key.split(".", 1)[0]
            epochs = lg.get(f"{mode_name}.epoch")
            epoch = epochs[best[0]] if isinstance(epochs, list) and len(epochs) == len(vals) else best[0]
            rows.append((d, epoch, best[1]))
        if not rows:
            print(f"\n## {key}:{mode}: no experiment logged it")
            continue
        rows.sort(key=lambda r: r[2], reverse=(mode == "max"))
        print(f"\n## {key}:{mode}")
        print(f"  {'rank':>4}  {'experiment':<{width}}  {'epoch':>5}  {'value':>12}")
        for rank, (d, epoch, value) in enumerate(rows, 1):
            print(f"  {rank:>4}  {d:<{width}}  {epoch:>5}  {value:>12.6g}")
        missing = [d for d in exp_dirs if d not in {r[0] for r in rows}]
        if missing:
            print(f"  (not logged by: {', '.join(missing)})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
