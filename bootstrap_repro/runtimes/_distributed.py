"""Launching a run on several processes through torchrun (``torch.distributed.run``).

``bootstrap-repro run -o cfg.yaml --nproc-per-node 2`` (or ``runtime.nproc_per_node: 2``)
re-executes the same command under torchrun, which starts one process per
rank; inside them, the Engine joins the process group (gloo on CPU, NCCL on
GPU).  Multi-node launches pass ``--nnodes``, ``--node-rank`` and
``--rdzv-endpoint`` through to torchrun.  Everything that can be checked is
checked here first, so bad input fails once, in one line, before any process starts.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from bootstrap_repro.errors import OptionsError

__all__ = ["wants_distributed", "launch_distributed", "torchrun_command"]


#: Processes per node per CPU at most (each rank is a Python process with torch: beyond that the machine thrashes).
PROCS_PER_CPU = 4


def _int(options: Any, key: str, default: int) -> int:
    value = options.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1 and key != "runtime.node_rank":
        raise OptionsError(f"{key}: expected a whole number >= 1, got {value!r}")
    if key == "runtime.nproc_per_node" and value > PROCS_PER_CPU * (os.cpu_count() or 1):
        cpus = os.cpu_count() or 1
        raise OptionsError(f"{key}: {value} processes asked, this machine has {cpus} CPU(s); use at most "
                           f"{PROCS_PER_CPU * cpus} (--nproc-per-node N, one per GPU on a GPU machine)")
    return value


def wants_distributed(options: Any) -> bool:
    """Whether this command must be relaunched under torchrun (and is not already running under it)."""
    if "LOCAL_RANK" in os.environ:
        return False
    return _int(options, "runtime.nproc_per_node", 1) > 1 or _int(options, "runtime.nnodes", 1) > 1


def torchrun_command(options: Any, run_argv: Sequence[str]) -> list[str]:
    """The torchrun command line that runs ``bootstrap-repro run <run_argv>`` on every rank."""
    nproc = _int(options, "runtime.nproc_per_node", 1)
    nnodes = _int(options, "runtime.nnodes", 1)
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc}", f"--nnodes={nnodes}"]
    if nnodes == 1 and not options.get("runtime.rdzv_endpoint"):
        cmd.append("--standalone")
    else:
        endpoint = options.get("runtime.rdzv_endpoint")
        if not endpoint:
            raise OptionsError("runtime.rdzv_endpoint: a multi-node run needs HOST:PORT of the rendezvous (node 0)")
        cmd += [f"--node-rank={int(options.get('runtime.node_rank', 0))}", "--rdzv-backend=c10d",
                f"--rdzv-endpoint={endpoint}", f"--rdzv-id={options.get('runtime.rdzv_id') or 'bootstrap-repro'}"]
    return [*cmd, "-m", "bootstrap_repro", "run", *run_argv]


def _check_devices(options: Any) -> str:
    """Refuse more processes than GPUs; returns the process group's backend (nccl or gloo)."""
    import torch

    from bootstrap_repro.engines import resolve_device

    device = resolve_device(options)
    nproc = _int(options, "runtime.nproc_per_node", 1)
    if device.type == "cuda" and nproc > torch.cuda.device_count():
        raise OptionsError(
            f"runtime.nproc_per_node: {nproc} processes asked but torch sees {torch.cuda.device_count()} GPU(s); "
            f"use at most one process per GPU, or --engine.device cpu"
        )
    return "nccl" if device.type == "cuda" else "gloo"


def launch_distributed(options: Any, run_argv: Sequence[str]) -> int:
    """Check what can be checked, then run torchrun and return its exit code."""
    from bootstrap_repro.run import validate

    backend = _check_devices(options)
    if int(options.get("runtime.node_rank", 0) or 0) == 0:  # node 0 checks exp.dir (other nodes may see it created)
        validate(options)  # bad input fails here, once, in one line: not once per rank
    cmd = torchrun_command(options, run_argv)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.setdefault("OMP_NUM_THREADS", "1")
    nproc, nnodes = _int(options, "runtime.nproc_per_node", 1), _int(options, "runtime.nnodes", 1)
    where = f" x {nnodes} nodes (this one: node rank {int(options.get('runtime.node_rank', 0))})" if nnodes > 1 else ""
    print(f"torchrun: {nproc} process(es) per node{where}, {backend} backend, OMP_NUM_THREADS={env['OMP_NUM_THREADS']}; "
          f"rank 0 writes {options.get('exp.dir')}", file=sys.stderr, flush=True)
    return subprocess.call(cmd, env=env)
