"""The composition root: one experiment run from its options.

:func:`run` validates everything that can be validated *before* the
experiment dir is created (so bad input leaves nothing behind), builds the
engine, dataset, model, optimizer and view through their factories, resumes
when asked, trains (or evaluates), and returns a :class:`RunResult`.  It never
prompts and never exits: the CLI maps the result to an exit code.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bootstrap_repro.errors import CheckpointError, ExperimentExistsError, OptionsError, ReproError
from bootstrap_repro.fileio import recover_groups
from bootstrap_repro.logger import Logger
from bootstrap_repro.options import Options

__all__ = ["RunResult", "run", "check_exp_dir", "RunLockedError", "EXIT_CODES"]

#: Exit code of each final status.
EXIT_CODES = {"COMPLETED": 0, "STOPPED": 0, "FAILED": 1, "INTERRUPTED": 130}
LOCK_NAME = ".lock"


class RunLockedError(ReproError, BlockingIOError):
    """Another process is running this experiment dir."""


@dataclass
class RunResult:
    """How a run ended."""

    status: str  #: COMPLETED, STOPPED (a hook asked, e.g. pruning), FAILED or INTERRUPTED
    exp_dir: Path
    engine: Any = None
    error: BaseException | None = None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (CPU and CUDA)."""
    import torch

    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:  # numpy is optional
        pass


def check_exp_dir(options: Options) -> tuple[Path, str | None]:
    exp_dir = options.get("exp.dir")
    if not exp_dir:
        raise OptionsError("exp.dir: not set; add `exp: {dir: logs/my_experiment}` to the file or pass --exp.dir DIR")
    path = Path(str(exp_dir))
    resume = options.get("exp.resume") or None
    if resume is None:
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ExperimentExistsError(
                f"exp.dir: {path} already exists; resume it with --exp.resume last (or best_<metric>), "
                f"or choose a new --exp.dir"
            )
    else:
        from bootstrap_repro.engines import checkpoint_names

        if not path.is_dir():
            raise CheckpointError(f"exp.resume: {resume!r} asked but exp.dir {path} does not exist; check --exp.dir")
        recover_groups(path)
        if str(resume) not in checkpoint_names(path):
            have = ", ".join(checkpoint_names(path)) or "none"
            raise CheckpointError(
                f"exp.resume: no checkpoint {str(resume)!r} in {path} (found: {have}); "
                f"use --exp.resume last or best_<metric>"
            )
        resume = str(resume)
    return path, resume


@contextlib.contextmanager
def _lock(exp_dir: Path) -> Iterator[None]:
    """An exclusive lock on the experiment dir for the whole run."""
    fd = os.open(exp_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(
                f"exp.dir: {exp_dir} is being used by another running process; wait for it or choose another --exp.dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        os.close(fd)


def _probe_outputs(engine: Any) -> set[str] | None:
    """The scalar keys the model outputs, from one tiny batch (RNG untouched)."""
    import torch
    from torch.utils.data import default_collate

    from bootstrap_repro.engines._checkpoint import rng_state, set_rng_state
    from bootstrap_repro.engines._engine import loggable, to_device

    split = "eval" if "eval" in engine.dataset else "train"
    ds = engine.dataset.get(split)
    if ds is None or not hasattr(ds, "__getitem__") or not hasattr(ds, "__len__") or len(ds) == 0:
        return None
    collate = getattr(ds, "collate_fn", None) or default_collate
    state, was_training = rng_state(), engine.model.training
    try:
        batch = collate([ds[i] for i in range(min(2, len(ds)))])
        engine.model.train(split == "train")
        with torch.no_grad():
            out = engine.model(to_device(batch, engine.device))
        return set(loggable(out))
    except Exception:  # noqa: BLE001 - a model bug surfaces in the real run, with its logs
        return None
    finally:
        engine.model.train(was_training)
        set_rng_state(state)


def _check_saving_criteria(engine: Any) -> None:
    keys = _probe_outputs(engine)
    if keys is None:
        return
    mode = "eval_epoch" if "eval" in engine.dataset else "train_epoch"
    for crit in engine.saving_criteria:
        if crit.name not in keys:
            raise OptionsError(
                f"engine.saving_criteria: {crit.name!r} is never logged ({mode} has: "
                f"{', '.join(sorted(keys)) or 'nothing'}); use one of those names"
            )


def _progress(engine: Any, enabled: bool) -> Callable[[Any, str, int], Any] | None:
    if not enabled:
        return None
    from tqdm import tqdm

    def make(loader: Any, mode: str, epoch: int) -> Any:
        return tqdm(
            loader, desc=f"{mode} {epoch + 1}/{engine.nb_epochs}", leave=False, dynamic_ncols=True,
            disable=None, file=sys.stderr, unit="batch",
        )

    engine.logger.print_fn = lambda line: tqdm.write(line, file=sys.stdout)
    return make


@contextlib.contextmanager
def _signals(engine: Any) -> Iterator[None]:
    """SIGINT/SIGTERM stop at the next batch; a second one aborts at once."""
    if threading_main() is False:
        yield
        return
    previous = {}

    def handler(signum: int, frame: Any) -> None:
        if engine._stop_now is not None or engine.dist.enabled:
            raise KeyboardInterrupt  # DDP ranks cannot agree on a batch to stop at: stop now
        engine.interrupt(signal.Signals(signum).name)

    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


#: Comma-separated modules whose ``register(engine)`` is called, like ``engine.hooks``; used by
#: drivers (e.g. a sweep) to attach hooks to a run without changing its options.
HOOKS_ENV = "BOOTSTRAP_REPRO_HOOKS"


def _register_hook_plugins(engine: Any, options: Options) -> None:
    """Call ``register(engine)`` of every module of ``engine.hooks`` and of ``$BOOTSTRAP_REPRO_HOOKS``."""
    from bootstrap_repro.plugins import import_factory

    names = options.get("engine.hooks") or []
    if isinstance(names, str):
        names = [names]
    for i, name in enumerate(names):
        import_factory(name, f"engine.hooks[{i}]", attr="register")(engine)
    for name in filter(None, (n.strip() for n in os.environ.get(HOOKS_ENV, "").split(","))):
        import_factory(name, HOOKS_ENV, attr="register")(engine)


def run(
    options: Options,
    *,
    setup: Callable[[Any], None] | None = None,
    handle_signals: bool = True,
    stream: IO[str] | None = None,
) -> RunResult:
    """Run one experiment.  Bad input raises :class:`ReproError` before anything is created.

    ``setup(engine)`` is called once everything is built (register hooks there).
    """
    from bootstrap_repro import datasets, engines, models, optimizers, views
    from bootstrap_repro.engines._distributed import dist_info

    writer = dist_info().is_rank0  # under torchrun, only rank 0 writes files
    if writer:
        exp_dir, resume = check_exp_dir(options)
    else:
        exp_dir, resume = Path(str(options["exp.dir"])), (str(options["exp.resume"]) if options.get("exp.resume") else None)
    eval_only = not options.get("dataset.train_split")
    if eval_only and not options.get("dataset.eval_split"):
        raise OptionsError("dataset.train_split and dataset.eval_split are both empty; set at least one")
    options.freeze()
    logger = Logger(name="logs_eval" if eval_only else "logs", activate=False, echo=writer)
    if stream is not None:
        logger.print_fn = lambda line: print(line, file=stream, flush=True)
    with options.activate(), logger.activate():
        engine = engines.factory(options, logger)
        seed_everything(engine.seed)
        engine.dataset = datasets.factory(engine)
        engine.model = models.factory(engine)
        if not eval_only:
            engine.optimizer = optimizers.factory(engine.model, engine)
        _check_saving_criteria(engine)
        views.parse_view_option(options.get("view"))
        if not writer:
            return _run_locked(engine, options, logger, exp_dir, resume, eval_only, setup, handle_signals, False)
        exp_dir.mkdir(parents=True, exist_ok=True)
        with _lock(exp_dir):
            return _run_locked(engine, options, logger, exp_dir, resume, eval_only, setup, handle_signals, True)


def _run_locked(
    engine: Any, options: Options, logger: Logger, exp_dir: Path, resume: str | None,
    eval_only: bool, setup: Callable[[Any], None] | None, handle_signals: bool, writer: bool,
) -> RunResult:
    from bootstrap_repro import views
    from bootstrap_repro.engines import Checkpointer, StopRun

    if writer:
        recover_groups(exp_dir)
        if not (eval_only and resume):
            options.save(exp_dir / "options.yaml")
        logger.attach(exp_dir, load=bool(resume) and not eval_only)
    if engine.dist.enabled:
        import torch.distributed as dist

        dist.barrier()  # rank 0 has recovered the checkpoints before anyone reads them
    checkpointer = Checkpointer(exp_dir)
    if not eval_only and writer:
        engine.checkpointer = checkpointer
    if resume:
        state = checkpointer.load(engine, resume)
        if not eval_only:
            logger.truncate(state.get("logs_lengths", {}))
            if writer:
                logger.flush()
        logger(f"Resumed from checkpoint '{resume}' at epoch {engine.state.epoch}")
    engine.view = views.factory(engine) if writer else None
    if resume and engine.view is not None and not eval_only:
        engine.view.build(None)
    engine.progress = _progress(engine, bool(options.get("engine.progress_bar", True)))
    _register_hook_plugins(engine, options)
    if setup is not None:
        setup(engine)
    if resume:
        engine.hook("engine_on_resume")
    status, error = "COMPLETED", None
    ctx = _signals(engine) if handle_signals else contextlib.nullcontext()
    try:
        with ctx:
            if eval_only:
                engine.eval()
            else:
                engine.train()
        if engine.state.stop_reason is not None:
            status = "STOPPED"
            logger(f"Stopped early: {engine.state.stop_reason}")
    except (StopRun, KeyboardInterrupt) as exc:
        status, error = "INTERRUPTED", exc
        logger.warning(f"Interrupted ({exc or 'KeyboardInterrupt'}); resume with --exp.resume last")
    except ReproError as exc:
        status, error = "FAILED", exc
        logger.error(str(exc))
    except Exception as exc:  # noqa: BLE001 - the run failed; record it, the CLI exits 1
        status, error = "FAILED", exc
        engine.state.exception = exc
        logger.error("Run failed:\n" + "".join(traceback.format_exception(exc)).rstrip())
        try:
            engine.hook("engine_on_exception")
        except Exception as hook_exc:  # noqa: BLE001 - keep the original error
            logger.error(f"engine_on_exception hook failed: {hook_exc!r}")
    finally:
        try:
            checkpointer.wait()  # an interrupted run still commits the checkpoint in flight
        except Exception as exc:  # noqa: BLE001 - a failed write fails the run
            status, error = "FAILED", exc
            logger.error(f"Writing the last checkpoint failed: {exc!r}")
        logger.close()
        if engine.dist.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
    return RunResult(status, exp_dir, engine, error)
