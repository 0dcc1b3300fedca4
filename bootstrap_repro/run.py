"""The composition root: one experiment run from its options.

:func:`run` validates everything that can be validated *before* the
experiment dir is created (so bad input leaves nothing behind), builds the
engine, dataset, model, optimizer and view through their factories, resumes
when asked, trains (or evaluates), and returns a :class:`RunResult`.  It never
prompts and never exits: the CLI maps the result to an exit code.

Every run is recorded (:mod:`bootstrap_repro.record`): the code and the
environment are snapshotted before anything is built, ``<exp.dir>/repro/`` is
written when the dir is created (status RUNNING) and closed when the run ends.
With ``cache=True`` the result cache is looked up first (a hit materialises the
experiment dir without importing torch) and a COMPLETED run is stored in it.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from bootstrap_repro._metric_names import resolve, resolve_checkpoint
from bootstrap_repro.errors import (CheckpointError, ExperimentExistsError, HookRegistrationError, OptionsError,
                                    ReproError)
from bootstrap_repro.fileio import atomic_write_text, group_pending, recover_groups
from bootstrap_repro.logger import Logger
from bootstrap_repro.options import Options, check_resume_options
from bootstrap_repro.record._env import requeue_note, scheduler_facts
from bootstrap_repro.record import (
    LOCK_NAME,
    REPRO_DIR,
    STOP_AFTER_EPOCH_ENV,
    CacheEntry,
    InputRecorder,
    ResultCache,
    RecordError,
    RunLockedError,
    RunRecord,
    Snapshot,
    check_inputs,
    exp_dir_in_use,
    exp_dir_lock,
    inputs_problem,
    read_record,
    record_path,
    take_snapshot,
)

__all__ = ["RunResult", "CacheHit", "run", "validate", "verify_resume", "engine_facts", "check_exp_dir", "RunLockedError",
           "EXIT_CODES", "log_names"]

#: Exit code of each final status.
EXIT_CODES = {"COMPLETED": 0, "STOPPED": 0, "FAILED": 1, "INTERRUPTED": 130}

#: A split name that can name files: ``logs_eval_<split>.json``.
_SPLIT_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}")


def log_names(options: Options, resume: str | None) -> tuple[str, str]:
    """``(logs name, options file)`` of a run, as bootstrap.pytorch named them.

    The evaluation of a checkpoint (``dataset.train_split`` empty and ``exp.resume`` set) writes
    ``logs_eval_<eval_split>.{json,txt}`` and ``options_eval_<eval_split>.yaml``, so evaluating on
    ``test`` keeps the result on ``val``; every other run writes ``logs.{json,txt}`` and
    ``options.yaml``.  A split name that cannot name a file is an :class:`OptionsError`.
    """
    if options.get("dataset.train_split") or not resume:
        return "logs", "options.yaml"
    split = options.get("dataset.eval_split")
    if not isinstance(split, str) or not _SPLIT_FILE_NAME.fullmatch(split):
        raise OptionsError(
            f"dataset.eval_split: {split!r} cannot name the files of an evaluation (logs_eval_<split>.json); "
            f"use letters, digits, '_', '-' or '.' (e.g. val, test)"
        )
    return f"logs_eval_{split}", f"options_eval_{split}.yaml"


@dataclass(frozen=True)
class CacheHit:
    """The cache entry a run was materialised from instead of training."""

    key: str
    source: str | None  #: the experiment dir that trained it
    entry: Path

    def describe(self) -> str:
        return f"cache hit: {self.key[:12]} (from {self.source}); not trained again"


@dataclass
class RunResult:
    """How a run ended."""

    status: str  #: COMPLETED, STOPPED (a hook asked, e.g. pruning), FAILED or INTERRUPTED
    exp_dir: Path
    engine: Any = None
    error: BaseException | None = None
    cache_hit: CacheHit | None = None  #: set when the result came from the cache (nothing trained)
    record: RunRecord | None = None  #: the experiment's record (rank 0)
    warnings: list[str] = field(default_factory=list)  #: one-line notes for the user (the CLI prints them)

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
    """``(exp.dir, exp.resume)`` once they are known to fit the dir as it is; a one-line error otherwise.

    A dir whose run stopped before its first checkpoint (killed, failed, interrupted) is
    resumed with ``--exp.resume last``: its training starts from the beginning there.
    Every other refusal about such a dir names ``rm -r DIR``.  Imports no torch for a new run.
    """
    exp_dir = options.get("exp.dir")
    if not exp_dir:
        raise OptionsError("exp.dir: not set; add `exp: {dir: logs/my_experiment}` to the file or pass --exp.dir DIR")
    path = Path(str(exp_dir))
    resume = options.get("exp.resume") or None
    in_use = exp_dir_in_use(path) if path.is_dir() else None
    if in_use is not None:  # a run is going on there: that, not what its files say so far
        raise RunLockedError(in_use)
    if path.exists() and not path.is_dir():
        raise ExperimentExistsError(f"exp.dir: {path} is a file, not a directory; choose another --exp.dir")
    if resume is None:
        if path.exists() and (not path.is_dir() or any(p.name != LOCK_NAME for p in path.iterdir())):
            # a checkpoint: a committed file, or a commit whose marker (or journal) was written (staged files alone are not)
            checkpointed = any(path.glob("ckpt_*.pth.tar")) or group_pending(path, "ckpt")
            if path.is_dir() and not checkpointed and _uncheckpointed(path) == "early":
                see = " (see its logs.txt)" if (path / "logs.txt").is_file() else ""
                raise ExperimentExistsError(
                    f"exp.dir: {path} holds a run that stopped before its first checkpoint{see}; "
                    f"train it from the start there with --exp.resume last, remove it (rm -r {path}), "
                    f"or choose a new --exp.dir"
                )
            raise ExperimentExistsError(
                f"exp.dir: {path} already exists; resume it with --exp.resume last (or best_<metric>), "
                f"or choose a new --exp.dir"
            )
    else:
        from bootstrap_repro.engines import checkpoint_names

        if not path.is_dir():
            raise CheckpointError(f"exp.resume: {resume!r} asked but exp.dir {path} does not exist; check --exp.dir")
        # No recovery here: another run may hold the dir; names of a commit in flight count.
        names = checkpoint_names(path)
        resume = resolve_checkpoint(str(resume), names)  # best_accuracy_top1 finds ckpt_best_acctop1_* and back
        if str(resume) not in names:
            _refuse_incomplete(path, str(resume), names)
            state = None if names else _uncheckpointed(path)
            if state == "ended":
                raise CheckpointError(
                    f"exp.resume: no checkpoint in {path}: the run there ended without saving one; "
                    f"remove it (rm -r {path}) or choose a new --exp.dir"
                )
            if state == "early" and (str(resume) != "last" or not options.get("dataset.train_split")):
                raise CheckpointError(
                    f"exp.resume: no checkpoint {str(resume)!r} in {path} (found: none): its run stopped before "
                    f"the first one; train it from the start with --exp.resume last, or remove it (rm -r {path})"
                )
            if state != "early":
                raise CheckpointError(
                    f"exp.resume: no checkpoint {str(resume)!r} in {path} (found: {', '.join(names) or 'none'}); "
                    f"use --exp.resume last or best_<metric>"
                )
        check_resume_options(options, path)  # other values than the saved ones: explicit overrides only
        resume = str(resume)
    return path, resume


def _refuse_incomplete(path: Path, resume: str, names: list[str]) -> None:
    """Checkpoint files in ``path`` that make no complete checkpoint (a seed dir whose optimizer files were
    deleted...): one error line, so that such a dir is never taken for a run that stopped before its first one."""
    from bootstrap_repro.engines._checkpoint import PARTS

    complete = {f"ckpt_{n}_{part}.pth.tar" for n in names for part in PARTS}
    stray = sorted(p.name for p in path.glob("ckpt_*.pth.tar") if p.name not in complete)
    if not stray:
        return
    mine = [f"ckpt_{resume}_{part}.pth.tar" for part in PARTS]
    if any(name in stray for name in mine):
        missing = ", ".join(name for name in mine if name not in stray)
        raise CheckpointError(
            f"exp.resume: checkpoint {resume!r} in {path} is incomplete (no {missing}); restore the missing "
            f"file, or resume another checkpoint (complete: {', '.join(names) or 'none'})"
        )
    raise CheckpointError(
        f"exp.resume: no checkpoint {resume!r} in {path} (complete: {', '.join(names) or 'none'}; files of "
        f"incomplete ones: {stray[0]}{' ...' if len(stray) > 1 else ''}); resume a complete one, restore the "
        f"missing files, or train in a new --exp.dir"
    )


def _uncheckpointed(path: Path) -> str:
    """What a dir without checkpoints holds: ``early`` (a run of ours that stopped before its first one, or
    nothing), ``ended`` (a run that ended normally without one) or ``other`` (files that are not a run's)."""
    if record_path(path).is_file():
        try:
            status = read_record(path).get("status")
        except (RecordError, OSError):
            status = None  # a record cut by the kill
        return "ended" if status in ("COMPLETED", "STOPPED") else "early"
    ours = (LOCK_NAME, REPRO_DIR, "options.yaml", "logs.txt", "logs.json")
    if all(p.name == LOCK_NAME for p in path.iterdir()) or any((path / name).exists() for name in ours):
        return "early"
    return "other"


def _start_over(exp_dir: Path, logger: Logger) -> bool:
    """Under the lock, for ``--exp.resume last``: True when ``exp_dir`` holds no checkpoint, made ready to train anew.

    The record and ``logs.json`` of the attempt that left no checkpoint are removed
    (``logs.txt`` keeps its lines); the caller then runs as a new run in that dir.
    """
    from bootstrap_repro.engines import checkpoint_names

    recover_groups(exp_dir)  # a first checkpoint cut before its journal: none
    if checkpoint_names(exp_dir):
        return False
    repro = exp_dir / REPRO_DIR
    if repro.is_dir() and not repro.is_symlink():  # a link (not ours) is never followed to delete
        shutil.rmtree(repro)
    (exp_dir / "logs.json").unlink(missing_ok=True)
    logger(f"exp.resume: no checkpoint in {exp_dir} yet (its run stopped before the first one); "
           f"training from the start")
    return True


def _make_dir(exp_dir: Path) -> None:
    """Create ``exp_dir`` (and its parents); a path that cannot be one is a one-line :class:`OptionsError`."""
    try:
        exp_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OptionsError(f"exp.dir: cannot create {exp_dir} ({exc.strerror or exc}); "
                           f"choose a --exp.dir in a writable directory") from None


def _check_still_empty(exp_dir: Path, resume: str | None) -> None:
    """Under the lock: a new run's dir must still be empty (another run may have finished there meanwhile)."""
    if resume is None and any(p.name != LOCK_NAME for p in exp_dir.iterdir()):
        raise ExperimentExistsError(
            f"exp.dir: {exp_dir} was filled by another run meanwhile; choose a new --exp.dir"
        )


def _under_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ


def cached_run(options: Options, *, logger: Logger | None = None) -> RunResult | None:
    """Materialise the experiment from the result cache if its key is there; None on a miss.

    Checks ``exp.dir`` first (bad input raises); imports no torch.  A damaged
    entry is reported in one line (through ``logger``) and counts as a miss.
    """
    exp_dir, resume = check_exp_dir(options)
    if resume is not None:
        return None
    options.freeze()
    logger = logger or Logger(name="logs", activate=False)
    return _from_cache(options, exp_dir, take_snapshot(options, exp_dir=exp_dir), logger)


def _from_cache(options: Options, exp_dir: Path, snap: Snapshot, logger: Logger) -> RunResult | None:
    from bootstrap_repro import views

    store = ResultCache()
    stale: list[list[str]] = []  # per entry made from other inputs: what changed
    for key in store.candidates(snap.key):  # the key, then its entries made from other inputs
        with store.reading(key, warn=logger.warning) as entry:
            if entry is None:
                continue
            changed = changed_inputs(entry)
            if changed:
                stale.append(changed)
                continue
            views.check_view_option(options)  # a bad view option fails before anything is created
            _make_dir(exp_dir)
            with exp_dir_lock(exp_dir):
                _check_still_empty(exp_dir, None)
                mode = "train" if options.get("dataset.train_split") else "eval"
                rec = RunRecord.begin(exp_dir, snap, mode=mode, cache_hit_of=entry.hit_record())
                try:
                    hit = _materialise(options, exp_dir, entry, logger, snap.key)
                except BaseException as exc:
                    rec.end("INTERRUPTED" if isinstance(exc, KeyboardInterrupt) else "FAILED", exc)
                    raise
                rec.end("COMPLETED")
            return RunResult("COMPLETED", exp_dir, cache_hit=hit, record=rec)
    if stale:
        closest = min(stale, key=len)  # the variant nearest to the inputs as they are now
        more = f" and {len(closest) - 1} more" if len(closest) > 1 else ""
        logger.warning(f"cache: {'an entry' if len(stale) == 1 else f'{len(stale)} entries'} of key {snap.key[:12]} "
                       f"{'was' if len(stale) == 1 else 'were'} computed from other inputs "
                       f"({closest[0]}{more}); training again")
    return None


def changed_inputs(entry: CacheEntry) -> list[str]:
    """The recorded inputs of a cache entry that are not as they were, one line each (empty: all match)."""
    manifest = entry.manifest.get("inputs")
    if not isinstance(manifest, dict) or inputs_problem(manifest):
        return ["the entry records no readable inputs"]
    return [c.describe() for c in check_inputs(manifest)]


def _materialise(options: Options, exp_dir: Path, entry: CacheEntry, logger: Logger, key: str) -> CacheHit:
    from bootstrap_repro import views

    ResultCache.materialise(entry, exp_dir)
    options.save(exp_dir / "options.yaml")
    hit = CacheHit(key, entry.source.get("exp_dir"), entry.path)
    logger.attach(exp_dir)  # appends to the copied logs.txt; logs.json is never flushed here
    echo, logger.echo = logger.echo, False  # the CLI prints the one line
    try:
        logger(hit.describe())
    finally:
        logger.echo = echo
        logger.close()
    if views.parse_view_option(options.get("view")):
        views.rebuild(exp_dir)
    return hit


def _probe_outputs(engine: Any) -> set[str] | None:
    """The scalar keys the model outputs, from one tiny batch on a copy of the model (the run is untouched)."""
    from bootstrap_repro.engines._probe import probe_outputs

    return probe_outputs(engine)


def _check_saving_criteria(engine: Any) -> None:
    keys = _probe_outputs(engine)
    if keys is None:
        return
    mode = "eval_epoch" if "eval" in engine.dataset else "train_epoch"
    for crit in engine.saving_criteria:
        if resolve(crit.name, keys) is None and "." not in crit.name:  # a dotted name is a logger key (eval_epoch.x)
            raise OptionsError(
                f"engine.saving_criteria: {crit.name!r} is never logged ({mode} has: "
                f"{', '.join(sorted(keys)) or 'nothing'}); use one of those names"
            )


def bar_shown(enabled: bool, stdout: Any = None, stderr: Any = None) -> bool:
    """Whether the run draws a progress bar: asked for, and both stdout and stderr are a terminal.

    Otherwise (cluster logs, ``run ... > out.log``) the engine prints a line every
    ``engine.print_freq`` batches to the screen instead (see :mod:`bootstrap_repro.engines._console`).
    """
    def tty(stream: Any) -> bool:
        try:
            return bool(stream.isatty())
        except (AttributeError, ValueError, OSError):  # closed or not a file
            return False

    return enabled and tty(sys.stdout if stdout is None else stdout) and tty(sys.stderr if stderr is None else stderr)


def _progress(engine: Any, enabled: bool) -> Callable[[Any, str, int], Any] | None:
    if not bar_shown(enabled):
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


def _stop_after_epoch(engine: Any, epoch: int) -> None:
    def check() -> None:
        if engine.state.epoch >= epoch:
            engine.request_stop(f"segment replayed up to epoch {epoch}")

    engine.register_hook("engine_on_end_epoch", check)


def _hook_registrations(options: Options) -> list[tuple[str, Callable[[Any], Any]]]:
    """``(key, register)`` of every module of ``engine.hooks`` and ``$BOOTSTRAP_REPRO_HOOKS`` (bad ones raise)."""
    from bootstrap_repro.plugins import import_factory

    names = options.get("engine.hooks") or []
    if isinstance(names, str):
        names = [names]
    out = [(f"engine.hooks[{i}]", import_factory(name, f"engine.hooks[{i}]", attr="register"))
           for i, name in enumerate(names)]
    for name in filter(None, (n.strip() for n in os.environ.get(HOOKS_ENV, "").split(","))):
        out.append((HOOKS_ENV, import_factory(name, HOOKS_ENV, attr="register")))
    return out


def _register_hook_plugins(engine: Any, options: Options) -> None:
    """Call ``register(engine)`` of every module of ``engine.hooks`` and of ``$BOOTSTRAP_REPRO_HOOKS``.

    One that raises is a :class:`HookRegistrationError` naming the module and the line that raised.
    """
    for key, register in _hook_registrations(options):
        try:
            register(engine)
        except Exception as exc:  # noqa: BLE001 - the plugin's own bug, reported as one line
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            reason = (str(exc).splitlines() or [""])[0]
            raise HookRegistrationError(
                f"{key}: {register.__module__}.register(engine) raised {type(exc).__name__}: {reason} "
                f"({Path(frame.filename).name}:{frame.lineno}); fix the plugin"
            ) from exc


def _build(options: Options, logger: Logger, eval_only: bool) -> Any:
    """Engine, datasets, model and optimizer from the options; checks what a tiny forward pass can."""
    from bootstrap_repro import datasets, engines, models, optimizers, views

    engine = engines.factory(options, logger)
    seed_everything(engine.seed)
    engine.dataset = datasets.factory(engine)
    engine.model = models.factory(engine)
    if not eval_only:
        engine.optimizer = optimizers.factory(engine.model, engine)
        if engine.optimizer is None:
            raise OptionsError(
                "optimizer: a training run needs an optimizer section (e.g. optimizer: {name: adam, lr: 0.001}); "
                "for an eval-only run set --dataset.train_split ''"
            )
    _check_saving_criteria(engine)
    views.check_view_option(options)  # `view` or the seed's `views`, and the tensorboard package: before exp.dir exists
    _hook_registrations(options)  # a missing or broken hooks module fails here, before the exp dir exists
    return engine


def validate(options: Options) -> None:
    """Check everything :func:`run` checks before it creates anything (launchers call it first)."""
    options.check()
    exp_dir, resume = check_exp_dir(options)
    eval_only = not options.get("dataset.train_split")
    if eval_only and not options.get("dataset.eval_split"):
        raise OptionsError("dataset.train_split and dataset.eval_split are both empty; set at least one")
    log_names(options, options.get("exp.resume") or None)
    opt = options.copy()
    for key in ("runtime.nproc_per_node", "runtime.nnodes"):
        if key in opt:
            opt[key] = 1
    opt.freeze()
    logger = Logger(activate=False, echo=False)
    with opt.activate(), logger.activate():
        engine = _build(opt, logger, eval_only)
        if resume is not None:
            verify_resume(engine, exp_dir, resume, eval_only)


def verify_resume(engine: Any, exp_dir: Path, resume: str, eval_only: bool) -> Any:
    """Check, reading only, that checkpoint ``resume`` of ``exp_dir`` (ours or bootstrap.pytorch's) can be used.

    An unreadable file, another network or optimizer, or a damaged ``logs.json`` (a training
    resume continues it) is one error line, raised before the dir is touched (no record, no lock).
    Returns the :class:`~bootstrap_repro.engines.Checkpointer` that read it: its ``load`` uses what
    was read (the files are read once), unless they changed meanwhile.
    """
    from bootstrap_repro.engines import Checkpointer
    from bootstrap_repro.logger import read_logs

    checkpointer = Checkpointer(exp_dir)
    checkpointer.verify(engine, resume, train=not eval_only)
    logs = exp_dir / "logs.json"
    if not eval_only and logs.is_file():
        try:
            read_logs(logs)
        except (OSError, ValueError, RecursionError) as exc:
            reason = " ".join(str(exc).split())[:120] or type(exc).__name__
            raise CheckpointError(f"{logs}: cannot be read ({reason}); a resumed run continues it: restore it, "
                                  f"or train in a new --exp.dir") from None
    return checkpointer


def engine_facts(engine: Any) -> dict[str, Any]:
    """What the record says about how the engine ran: device, precision, determinism, processes."""
    return {"device": str(engine.device), "amp": engine.precision.mode, "compile": engine.compile,
            "world_size": engine.dist.world_size, **engine.determinism.describe()}


def run(
    options: Options,
    *,
    setup: Callable[[Any], None] | None = None,
    handle_signals: bool = True,
    stream: IO[str] | None = None,
    cache: bool = False,
) -> RunResult:
    """Run one experiment.  Bad input raises :class:`ReproError` before anything is created.

    ``setup(engine)`` is called once everything is built (register hooks there).
    ``cache=True`` looks the result cache up first (a hit trains nothing, calls
    no ``setup``) and stores the experiment there when it COMPLETES.
    """
    options.check()  # every option's type and range, before anything is created
    if _under_torchrun():
        from bootstrap_repro.engines._distributed import dist_info

        writer = dist_info().is_rank0  # under torchrun, only rank 0 writes files
    else:
        writer = True
    if writer:
        exp_dir, resume = check_exp_dir(options)
    else:
        exp_dir, resume = Path(str(options["exp.dir"])), (str(options["exp.resume"]) if options.get("exp.resume") else None)
    eval_only = not options.get("dataset.train_split")
    if eval_only and not options.get("dataset.eval_split"):
        raise OptionsError("dataset.train_split and dataset.eval_split are both empty; set at least one")
    logs_name, _ = log_names(options, resume)
    options.freeze()
    logger = Logger(name=logs_name, activate=False, echo=writer)
    if stream is not None:
        logger.print_fn = lambda line: print(line, file=stream, flush=True)
    snap = take_snapshot(options, exp_dir=exp_dir) if writer else None
    if cache and snap is not None and resume is None and not _under_torchrun():
        hit = _from_cache(options, exp_dir, snap, logger)
        if hit is not None:
            return hit

    sched = scheduler_facts() if writer else None  # asks scontrol: before the inputs are watched
    # Inputs are discovered from here on: what the factories and the training open, import and read.
    recorder = InputRecorder.from_options(options, exp_dir).start() if writer else None
    try:
        with options.activate(), logger.activate():
            engine = _build(options, logger, eval_only)
            if not writer:
                return _run_locked(engine, options, logger, exp_dir, resume, eval_only, setup, handle_signals, False)
            verified = None
            if resume is not None:  # before anything is written into the dir
                verified = verify_resume(engine, exp_dir, resume, eval_only)
            _make_dir(exp_dir)
            with exp_dir_lock(exp_dir):
                if resume == "last" and not eval_only and _start_over(exp_dir, logger):
                    resume = None  # nothing to resume: a new run in this dir
                else:
                    _check_still_empty(exp_dir, resume)
                assert snap is not None and recorder is not None
                rec = RunRecord.begin(exp_dir, snap, resume=resume, mode="eval" if eval_only else "train",
                                      overrides=check_resume_options(options, exp_dir) if resume else None,
                                      engine=engine_facts(engine), scheduler=sched)
                done: list[bool] = []

                def record_inputs() -> None:  # once; under DDP before the ranks part (see _run_locked)
                    if not done:
                        done.append(True)
                        _record_inputs(rec, recorder, snap, options, engine)

                try:
                    result = _run_locked(engine, options, logger, exp_dir, resume, eval_only, setup, handle_signals,
                                         True, rec, record_inputs, verified)
                except HookRegistrationError:
                    if resume is None:  # a new run that never started: leave no half-written dir behind
                        shutil.rmtree(exp_dir, ignore_errors=True)
                    else:
                        record_inputs()
                        rec.end("FAILED", sys.exc_info()[1])
                    raise
                except BaseException as exc:
                    record_inputs()
                    rec.end("INTERRUPTED" if isinstance(exc, KeyboardInterrupt) else "FAILED", exc)
                    raise
                record_inputs()
                rec.end(result.status, result.error)
                result.record = rec
                if cache and rec.cacheable:
                    _publish(rec, exp_dir, result)
                elif cache and result.status == "COMPLETED" and rec.not_cacheable_reason:
                    result.warnings.append(f"cache: not stored, an input cannot be fingerprinted: "
                                           f"{rec.not_cacheable_reason}")
                return result
    finally:
        if recorder is not None:
            recorder.stop()


def _record_inputs(rec: RunRecord, recorder: InputRecorder, snap: Snapshot, options: Options, engine: Any) -> None:
    """Fingerprint what the run used into its segment's ``inputs.json``, and note the epoch it ended at."""
    rec.set_epochs(end=engine.state.epoch)
    rec.set_inputs(recorder.finish(snap.code.root), snap.code.root, options.get("exp.max_inputs_archive_mb", 50))


def _publish(rec: RunRecord, exp_dir: Path, result: RunResult) -> None:
    """Store a COMPLETED experiment in the result cache; a failure to store does not fail the run."""
    try:
        ResultCache().publish(rec.key, exp_dir, rec.data, inputs=rec.inputs_manifest())
    except OSError as exc:
        result.warnings.append(f"cache: the result was not stored ({exc}); the run itself is complete")


def _run_locked(
    engine: Any, options: Options, logger: Logger, exp_dir: Path, resume: str | None,
    eval_only: bool, setup: Callable[[Any], None] | None, handle_signals: bool, writer: bool,
    rec: RunRecord | None = None, before_teardown: Callable[[], None] | None = None,
    checkpointer: Any = None,
) -> RunResult:
    from bootstrap_repro import views
    from bootstrap_repro.engines import Checkpointer, StopRun, checkpoint_names

    if writer:
        recover_groups(exp_dir)
        options_file = log_names(options, resume)[1]
        if options_file == "options.yaml":
            options.save(exp_dir / options_file)
        else:  # an evaluation's options_eval_<split>.yaml names the checkpoint it evaluated
            atomic_write_text(exp_dir / options_file, options.to_yaml(drop_actions=False))
        logger.attach(exp_dir, load=bool(resume) and not eval_only)
    if engine.dist.enabled:
        import torch.distributed as dist

        dist.barrier()  # rank 0 has recovered the checkpoints before anyone reads them
    if checkpointer is None:
        checkpointer = Checkpointer(exp_dir)
    if resume == "last" and not writer and not eval_only and not checkpoint_names(exp_dir):
        resume = None  # rank 0 started the run over (see _start_over)
    if not eval_only and writer:
        engine.checkpointer = checkpointer
    if resume:
        state = checkpointer.load(engine, resume)
        if not eval_only:
            logger.truncate(state.get("logs_lengths", {}))
            if writer:
                logger.flush()
        logger(f"Resumed from checkpoint '{resume}' at epoch {engine.state.epoch}")
    if rec is not None:
        rec.set_epochs(start=engine.state.epoch)
    stop_after = os.environ.get(STOP_AFTER_EPOCH_ENV)
    if stop_after and not eval_only:  # a rerun replaying a segment that ended (or was killed) at this epoch
        _stop_after_epoch(engine, int(stop_after))
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
        logger.warning(f"Interrupted ({exc or 'KeyboardInterrupt'}); "
                       f"{requeue_note() or 'resume with --exp.resume last'}")
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
        if before_teardown is not None and engine.dist.enabled:
            try:  # rank 0's fingerprinting while the other ranks wait at the barrier, not after they exit
                before_teardown()
            except Exception as exc:  # noqa: BLE001 - reported by the caller's second call
                logger.error(f"Recording the inputs failed: {exc!r}")
        if engine.dist.enabled:
            import torch.distributed as dist

            if dist.is_initialized():
                if status in ("COMPLETED", "STOPPED"):
                    dist.barrier()  # no rank tears gloo down while another still talks to it
                dist.destroy_process_group()
    result = RunResult(status, exp_dir, engine, error)
    if writer and status in ("COMPLETED", "STOPPED"):  # a key missing now was never logged
        note = views.check_logged(exp_dir, options, views.engine_logs(engine))
        if note is not None:
            result.warnings.append(note)
    return result


if __name__ == "__main__":  # `python -m bootstrap_repro.run -o FILE ...` is `bootstrap-repro run -o FILE ...`
    from bootstrap_repro.cli import main as _cli_main, prepare_exit

    try:
        sys.exit(_cli_main(["run", *sys.argv[1:]]))
    finally:
        prepare_exit()
