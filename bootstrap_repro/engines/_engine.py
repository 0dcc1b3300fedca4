"""The Engine: loops train and eval epochs and fires named hooks.

The loop owns iteration, counters and hooks; everything else (checkpoint files,
logs, views) is a collaborator: the :class:`Checkpointer` writes files, the
:class:`~bootstrap_repro.logger.Logger` keeps values, views attach to hooks.
Shared data lives on :attr:`Engine.state`, which hooks read.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from bootstrap_repro.engines._console import ConsoleLine
from bootstrap_repro.engines._distributed import all_reduce_sum, dist_info, shard_dataset, unwrap
from bootstrap_repro.engines._hooks import adapt_hook, check_hook_name
from bootstrap_repro.engines._precision import Determinism, DeviceSkip, Precision, deterministic_error
from bootstrap_repro.engines._prefetch import CudaPrefetcher, to_device
from bootstrap_repro.engines._seed_api import SeedEngineAPI, never_logged
from bootstrap_repro._metric_names import resolve, split_criterion
from bootstrap_repro.errors import OptionsError

__all__ = ["Engine", "EngineState", "SavingCriterion", "parse_saving_criteria", "StopRun"]


class StopRun(Exception):
    """Raised by :meth:`Engine.check_stop` to leave the loop at a batch boundary."""


@dataclass(frozen=True)
class SavingCriterion:
    """``acctop1:max`` → keep ``ckpt_best_acctop1_*`` for the highest eval value."""

    name: str
    mode: str  # "min" | "max"

    def better(self, new: float, old: float | None) -> bool:
        if new is None or (isinstance(new, float) and math.isnan(new)):
            return False
        if old is None:
            return True
        return new < old if self.mode == "min" else new > old


def parse_saving_criteria(values: Any) -> list[SavingCriterion]:
    """Parse ``engine.saving_criteria`` (a list of ``name:min|max``)."""
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    out = []
    for v in values:
        name, mode = split_criterion(str(v))  # NAME:min|max, or the seed's older NAME:lt|gt
        if not name or mode not in ("min", "max"):
            raise OptionsError(
                f"engine.saving_criteria: expected 'name:min' or 'name:max' (e.g. loss:min, acctop1:max), got {v!r}"
            )
        out.append(SavingCriterion(name, mode))
    return out


@dataclass
class EngineState:
    """What hooks can read: counters, the last batch output, the epoch metrics."""

    epoch: int = 0  #: current epoch (0-based); equals nb_epochs once training ended
    mode: str = "train"  #: "train", "eval", or another mode (``eval_epoch(..., mode='val')``)
    batch: int = -1  #: index of the current batch in its epoch
    nb_batches: int = 0  #: batches in the current epoch (0 when unknown)
    out: dict[str, Any] | None = None  #: the last batch's model output
    batch_size: int = 0  #: size of the last batch
    train_metrics: dict[str, float] = field(default_factory=dict)  #: last train epoch means
    eval_metrics: dict[str, float] = field(default_factory=dict)  #: last eval epoch means
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)  #: last epoch means of every mode
    best: dict[str, float] = field(default_factory=dict)  #: best value per saving criterion
    nb_nan_skipped: int = 0  #: optimizer steps skipped for a non-finite loss, whole run
    checkpoint: str | None = None  #: name of the checkpoint just saved ("last", "best_loss")
    resumed_from: str | None = None  #: the checkpoint the run resumed from
    stop_reason: str | None = None  #: set by :meth:`Engine.request_stop`
    exception: BaseException | None = None  #: set before ``engine_on_exception``


def _batch_size(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    if type(batch) is dict or isinstance(batch, Mapping):  # a plain dict skips the slower ABC check
        batch = batch.values()
    elif not isinstance(batch, (list, tuple)):
        return 0
    for v in batch:
        # a tensor value answers without a call (the usual {'data': tensor, ...} batch)
        n = (int(v.shape[0]) if v.dim() else 1) if isinstance(v, torch.Tensor) else _batch_size(v)
        if n:
            return n
    return 0


def loggable(out: Mapping[str, Any]) -> dict[str, Any]:
    """The scalar entries of a model output (0-dim tensors and numbers)."""
    res = {}
    for k, v in out.items():
        if isinstance(v, torch.Tensor):
            if v.dim() == 0:
                res[k] = v.detach()
            elif v.numel() == 1:
                res[k] = v.detach().reshape(())
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            res[k] = v
    return res


#: The per-batch events, fired from the batch loop.
BATCH_EVENTS = ("start_batch", "forward", "backward", "update", "print", "end_batch")
#: Batches per epoch with the seed's ``engine.debug: true`` (train, eval).
DEBUG_BATCHES = (4, 12)


class Engine(SeedEngineAPI):
    """Train/eval loop of the seed, with validated hooks and bit-exact resume.

    Collaborators (set by the factory or the caller): ``dataset`` (a dict
    ``{'train': ds, 'eval': ds}``), ``model``, ``optimizer``, ``view``,
    ``logger`` and ``checkpointer`` (None: no checkpoint files).  ``Engine()``
    with no argument, as in the seed, reads the current ``Options()`` and
    ``Logger()`` and runs on the device they name (``engine.device``/``misc.cuda``).
    A subclass that overrides :meth:`hook` sees every hook through it, the
    per-batch ones included.
    """

    def __init__(self, options: Any = None, logger: Any = None, device: torch.device | None = None) -> None:
        if options is None:
            from bootstrap_repro.engines._distributed import init_process_group
            from bootstrap_repro.engines._factory import resolve_device
            from bootstrap_repro.options import Options

            options = Options.current()
            if device is None:
                device = init_process_group(dist_info(), resolve_device(options))
        if logger is None:
            from bootstrap_repro.logger import Logger

            logger = Logger.current()
        self.options = options
        self.logger = logger
        eng = options["engine"]
        self.nb_epochs: int = int(eng.get("nb_epochs", 1))
        self.print_freq: int = int(eng.get("print_freq", 10) or 0)
        #: The seed's per-batch ``<mode>_batch.{epoch,batch,timer.process,timer.load}`` in logs.json.
        self.log_batches: bool = bool(eng.get("log_batches", False))
        self.nan_check: bool = bool(eng.get("nan_check", True))
        self.saving_criteria = parse_saving_criteria(eng.get("saving_criteria"))
        self.seed: int = int(options.get("misc.seed", 0) or 0)
        self.device = device if device is not None else torch.device("cpu")
        self.precision = Precision(eng.get("amp", "none"), self.device)
        self.determinism = Determinism(bool(options.get("misc.deterministic", False)), self.device)
        self.compile: bool = bool(eng.get("compile", False))
        self.channels_last: bool = bool(eng.get("channels_last", False))
        self.debug: bool = bool(eng.get("debug", False))  # the seed's: a few batches per epoch
        self.dist = dist_info()
        self.dataset: dict[str, Any] = {}
        self.model: Any = None
        self.optimizer: Any = None
        self.view: Any = None
        self.checkpointer: Any = None
        self.progress: Callable[[Any, str, int], Any] | None = None
        self.state = EngineState()
        #: The seed's ``engine.hooks``: ``{name: [callables taking no argument]}`` (the engine bound in).
        self.hooks: dict[str, list[Callable[[], Any]]] = {}
        self._stop_now: str | None = None
        #: A :class:`~bootstrap_repro.engines._sync.SyncGuard` armed in every batch (tests; None: off).
        self.sync_guard: Any = None
        #: The non-finite-loss rule decided on the device (:class:`DeviceSkip`, no host sync per batch);
        #: False: read on the host, free on CPU where the loss already is in host memory.
        self._nan_on_device: bool = self.device.type != "cpu"

    # ------------------------------------------------------------------ hooks
    def register_hook(self, name: str, func: Callable[..., Any]) -> None:
        """Call ``func`` (taking no argument, or the engine) each time ``name`` fires.

        ``name`` is one of :data:`~bootstrap_repro.engines.HOOKS`, or ``<mode>_on_<event>`` for
        ``val``, ``test`` or a key of ``engine.dataset``; anything else raises :class:`HookError`.
        """
        check_hook_name(name, self.dataset if isinstance(self.dataset, Mapping) else ())
        self.hooks.setdefault(name, []).append(adapt_hook(func, self))

    def hook(self, name: str) -> None:
        """Fire every function registered for ``name``."""
        for fn in self.hooks.get(name, ()):
            fn()

    @property
    def epoch(self) -> int:
        """The seed's ``engine.epoch``: ``state.epoch``, settable."""
        return self.state.epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self.state.epoch = int(value)

    @property
    def is_rank0(self) -> bool:
        """Whether this process writes logs, checkpoints and views (rank 0, or not distributed)."""
        return self.dist.is_rank0

    def prepare(self) -> None:
        """Once before the first loop: memory format, ``torch.compile``, the DDP wrapper and samplers."""
        if getattr(self, "_prepared", False):
            return
        self._prepared = True
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if self.compile:
            self.model.compile()
        if self.device.type == "cuda":  # pinned batches: copied to the GPU without blocking the host
            for ds in self.dataset.values():
                if hasattr(ds, "pin_memory"):
                    ds.pin_memory = True
        if self.dist.enabled:
            for mode, ds in self.dataset.items():
                shard_dataset(ds, self.dist, train=(mode == "train"))
            if self.optimizer is not None:
                from torch.nn.parallel import DistributedDataParallel

                ids = [self.device.index] if self.device.type == "cuda" else None
                self.model = DistributedDataParallel(self.model, device_ids=ids)

    # ------------------------------------------------------------------ control
    def request_stop(self, reason: str) -> None:
        """Stop after the current epoch (its checkpoints are saved): pruning, early stop."""
        self.state.stop_reason = reason

    def interrupt(self, reason: str = "interrupted") -> None:
        """Stop at the next batch boundary (signal handlers call this)."""
        self._stop_now = reason

    def check_stop(self) -> None:
        if self._stop_now is not None:
            raise StopRun(self._stop_now)

    # ------------------------------------------------------------------ loops
    def train(self) -> None:
        """Train for ``engine.nb_epochs``, evaluating after each epoch when an eval split exists."""
        self.logger("Launching training procedures")
        self.prepare()
        self.hook("train_on_start")
        while self.state.epoch < self.nb_epochs and self.state.stop_reason is None:
            with self.determinism.applied():
                self.train_epoch(self.model, self.dataset["train"], self.optimizer, self.state.epoch)
                if "eval" in self.dataset:
                    self.eval_epoch(self.model, self.dataset["eval"], self.state.epoch)
            self.end_epoch()
        if self.checkpointer is not None:
            self.checkpointer.wait()  # the last checkpoint is on disk before train_on_end
        self.hook("train_on_end")
        self.logger("Ending training procedures")

    def eval(self) -> None:
        """Evaluate once (eval-only run, e.g. a resumed checkpoint)."""
        self.logger("Launching evaluation procedures")
        self.prepare()
        self.hook("eval_on_start")
        with self.determinism.applied():
            self.eval_epoch(self.model, self.dataset["eval"], max(self.state.epoch - 1, 0))
        self.hook("eval_on_end")
        self.logger("Ending evaluation procedures")

    def end_epoch(self) -> None:
        """Checkpoint ``best_*`` and ``last``, then move to the next epoch."""
        metrics = self.state.eval_metrics if "eval" in self.dataset else self.state.train_metrics
        to_save = []
        for crit in self.saving_criteria:
            if resolve(crit.name, metrics) is None and "." not in crit.name:  # a dotted name is read from the logger
                raise never_logged(crit.name, metrics, "eval_epoch" if "eval" in self.dataset else "train_epoch")
            if self.is_best(metrics, f"{crit.name}:{crit.mode}"):
                to_save.append(f"best_{crit.name}")
        self.state.epoch += 1  # a checkpoint holds the epoch to start from
        if self.dist.enabled:  # rank 0's decision (e.g. a sweep's pruning) holds for every rank
            import torch.distributed as dist

            box = [self.state.stop_reason]
            dist.broadcast_object_list(box, src=0)
            self.state.stop_reason = box[0]
        if self.checkpointer is not None and self.is_rank0:
            names = ["last", *to_save]
            self.checkpointer.save(self, names)
            for name in names:
                self.state.checkpoint = name
                self.hook("engine_on_checkpoint")
        self.hook("engine_on_end_epoch")

    def _finite(self, loss: torch.Tensor) -> bool:
        """Whether the loss is finite on every rank (all ranks must skip a step together), read on the host.

        The host rule, used on CPU (``_nan_on_device`` False): without DDP the batch loop reads the
        loss in place instead (``loss.item()``): it is already in host memory, so that moves nothing
        and costs ~0.2 us, where this op costs ~5 us.
        """
        finite = torch.isfinite(loss.detach())
        if self.dist.enabled:
            finite = all_reduce_sum(finite.to(torch.float32)) == self.dist.world_size
        return bool(finite)

    def _loop(self, mode: str, train: bool, model: Any, dataset: Any, optimizer: Any, epoch: int,
              flush: bool = True) -> dict[str, float]:
        try:
            return self._run_loop(mode, train, model, dataset, optimizer, epoch, flush)
        except RuntimeError as exc:
            error = deterministic_error(exc, self.device)
            if error is None:
                raise
            raise error from None

    def _run_loop(self, mode: str, train: bool, model: Any, dataset: Any, optimizer: Any, epoch: int,
                  flush: bool) -> dict[str, float]:
        st = self.state
        st.mode, st.batch = mode, -1
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        loader = dataset.make_batch_loader()
        try:
            st.nb_batches = len(loader)
        except TypeError:
            st.nb_batches = 0
        batches: Any = loader
        if self.debug:
            batches = itertools.islice(loader, DEBUG_BATCHES[0] if train else DEBUG_BATCHES[1])
            st.nb_batches = min(st.nb_batches, DEBUG_BATCHES[0] if train else DEBUG_BATCHES[1])
        device = self.device
        on_cpu = device.type == "cpu"
        if device.type == "cuda":  # the next batch is copied while this one computes
            batches = CudaPrefetcher(batches, device)
        model.train(train)
        if mode not in ("train", "eval"):  # a mode of its own: the model's criterion and metric of that mode
            inner = unwrap(model)
            parts = [getattr(inner, "criterions", None), getattr(inner, "metrics", None)]
            if any(isinstance(p, Mapping) and mode in p for p in parts):
                inner.mode = mode
        self.logger(f"{'Training' if train else 'Evaluating'} model on {getattr(dataset, 'split', mode)} set for epoch {epoch}",
                    level="DEBUG")
        self.hook(f"{mode}_on_start_epoch")
        values: dict[str, list[Any]] = defaultdict(list)
        sizes: list[int] = []
        bar = self.progress(batches, mode, epoch) if self.progress else None
        nan_skipped = 0
        # The hot path: per batch, only what the loop needs.  The hook lists are the live lists of
        # self.hooks (a hook registered during the epoch still fires); an empty one costs nothing.
        # A subclass's hook() override gets every per-batch hook instead (one partial per list).
        names = [f"{mode}_on_{e}" for e in BATCH_EVENTS]
        if type(self).hook is not Engine.hook:
            lists = [[functools.partial(self.hook, name)] for name in names]
        else:
            lists = [self.hooks.setdefault(name, []) for name in names]
        hs_start, hs_forward, hs_backward, hs_update, hs_print, hs_end = lists
        log_value, prefix = self.logger.log_value, f"{mode}_batch."
        slots: dict[str, tuple[list[Any], str]] = {}  # output key -> (its values, its logged name)
        precision, print_freq = self.precision, self.print_freq
        amp = precision.autocast() if precision.dtype is not None else None  # one context, entered per batch
        if precision.scaler is None:  # no gradient scaler: the plain calls, chosen once
            backward, step = torch.Tensor.backward, optimizer.step if train else None
        else:
            backward, step = precision.backward, functools.partial(precision.step, optimizer)
        nan_check = self.nan_check and train
        # The non-finite-loss rule: on the host (CPU: the loss is in host memory) or on the device
        # (a flag per batch, read at the epoch end: no host sync in the batch).
        skip = (DeviceSkip(optimizer, precision, step, self.dist.enabled, self._warn_host_rule)
                if nan_check and self._nan_on_device else None)
        flags: list[torch.Tensor] = []
        nan_check_on_host = nan_check and skip is None and on_cpu and not self.dist.enabled  # see _finite
        isfinite = math.isfinite
        log_batches = self.log_batches
        batch_keys = [f"{prefix}{k}" for k in ("epoch", "batch", "timer.process", "timer.load")]
        clock, load, waited = time.perf_counter, 0.0, 0.0
        t_end = clock()
        # A line every print_freq batches: to the screen without a visible bar; with one, to logs.txt only.
        console = ConsoleLine(mode, epoch, self.nb_epochs, st.nb_batches, t_end) if print_freq and self.is_rank0 else None
        echo = bar is None or bool(getattr(bar, "disable", False))
        timed = log_batches or console is not None  # otherwise no clock is read per batch
        move = not on_cpu and device.type != "cuda"  # other devices: copied in the loop
        guard = self.sync_guard
        # Batch values on CPU are Python numbers at once (what a flush would make of them, read in place
        # for ~0.3 us); on a device they stay tensors until the epoch end or the flush (no host sync).
        read_now = on_cpu and not self._nan_on_device and guard is None
        with torch.set_grad_enabled(train), (guard.watching() if guard is not None else contextlib.nullcontext()):
            for i, batch in enumerate(bar if bar is not None else batches):
                if timed:
                    load = clock() - t_end  # waiting for the loader (the seed's timer.load)
                    waited += load
                if self._stop_now is not None:
                    raise StopRun(self._stop_now)
                if guard is not None:
                    guard.arm(f"{mode} epoch {epoch} batch {i}", mode)
                st.batch = i
                if move:
                    batch = to_device(batch, device)
                for fn in hs_start:
                    fn()
                if train:
                    optimizer.zero_grad()
                if amp is not None:
                    with amp:
                        out = model(batch)
                else:
                    out = model(batch)
                st.out, st.batch_size = out, _batch_size(batch)
                for fn in hs_forward:
                    fn()
                if train:
                    loss = out["loss"]
                    if skip is not None:  # decided on the device: backward always, the step masked
                        bad = skip.flag(loss)
                        flags.append(bad)
                        skip.backward(loss, bad)
                        for fn in hs_backward:
                            fn()
                        skip.step(bad)
                        for fn in hs_update:
                            fn()
                    elif nan_check and not (isfinite(loss.item()) if nan_check_on_host else self._finite(loss)):
                        nan_skipped += 1
                        self.logger.warning(f"non-finite loss ({loss.item()}) at epoch {epoch} batch {i}: optimizer step skipped")
                    else:
                        backward(loss)
                        for fn in hs_backward:
                            fn()
                        step()
                        for fn in hs_update:
                            fn()
                if log_batches:  # host numbers, no device sync (on GPU, process is the time to queue the work)
                    log_value(batch_keys[0], epoch)
                    log_value(batch_keys[1], i)
                    log_value(batch_keys[2], clock() - t_end)
                    log_value(batch_keys[3], load)
                for k, v in out.items():  # the rule of loggable(), inlined: no dict per batch
                    if isinstance(v, torch.Tensor):
                        if v.dim() and v.numel() != 1:
                            continue
                        if read_now:  # in host memory: read in place, nothing kept alive
                            v = v.item()
                        else:  # a copy: a tensor the model updates in place (a running count) keeps this batch's value
                            v = v.detach().reshape(()).clone()
                    elif not isinstance(v, (int, float)) or isinstance(v, bool):
                        continue
                    slot = slots.get(k)
                    if slot is None:
                        slot = slots[k] = (values[k], prefix + k)
                    slot[0].append(v)
                    log_value(slot[1], v)
                sizes.append(st.batch_size)
                if print_freq and i % print_freq == 0:  # a print line reads values: syncs allowed
                    if guard is not None:
                        guard.disarm()
                    if bar is not None and "loss" in out:
                        bar.set_postfix(loss=f"{float(out['loss'].detach()):.4f}", refresh=False)
                    if console is not None:
                        self._print_line(console.line(i, out, sizes, waited), echo)
                    for fn in hs_print:
                        fn()
                    if guard is not None:
                        guard.arm(f"{mode} epoch {epoch} batch {i}")
                for fn in hs_end:
                    fn()
                if guard is not None:
                    guard.disarm()
                if timed:
                    t_end = clock()
        if bar is not None and hasattr(bar, "close"):
            bar.close()
        if flags:  # the device's decisions: one read for the epoch
            nan_skipped = self._report_skipped(flags, values.get("loss"), epoch)
        means = self._epoch_means(values, sizes)
        self.logger.log_value(f"{mode}_epoch.epoch", epoch)
        for k, v in means.items():
            self.logger.log_value(f"{mode}_epoch.{k}", v)
        if train:
            st.nb_nan_skipped += nan_skipped
            if self.nan_check:
                self.logger.log_value("train_epoch.nb_nan_skipped", nan_skipped)
        shown = "  ".join(f"{k} {v:.4g}" for k, v in means.items())
        self.logger(f"{mode} epoch {epoch} ({epoch + 1}/{self.nb_epochs}): {shown}")
        st.metrics[mode] = means
        if mode == "train":
            st.train_metrics = means
        elif mode == "eval":
            st.eval_metrics = means
        self.hook(f"{mode}_on_end_epoch")
        if flush:
            self.logger.flush()
        self.hook(f"{mode}_on_flush")
        return means

    def _warn_host_rule(self, reason: str) -> None:
        """Once per run: the device rule reads the flag on the host at every step, and why."""
        if getattr(self, "_host_rule_warned", False):
            return
        self._host_rule_warned = True
        self.logger.warning(f"engine.nan_check: {reason}, so each step reads the loss's finiteness on the host "
                            f"(a device sync per batch); a fused optimizer (--optimizer.fused true) or one with its "
                            f"state on {self.device} decides on the device, or --engine.nan_check false")

    def _report_skipped(self, flags: list[torch.Tensor], losses: list[Any] | None, epoch: int) -> int:
        """Warn about each batch whose step the device skipped; return how many (one host read)."""
        skipped = torch.stack(flags).nonzero().flatten().tolist()
        if losses is not None and len(losses) != len(flags):
            losses = None
        for i in skipped:
            shown = f" ({float(losses[i])})" if losses is not None else ""
            self.logger.warning(f"non-finite loss{shown} at epoch {epoch} batch {i}: optimizer step skipped")
        return len(skipped)

    def _print_line(self, line: str, echo: bool) -> None:
        """A progress line to logs.txt, and to the screen unless a progress bar shows it there."""
        if echo:
            self.logger(line)
            return
        shown, self.logger.echo = self.logger.echo, False
        try:
            self.logger(line)
        finally:
            self.logger.echo = shown

    def train_epoch(self, model: Any, dataset: Any, optimizer: Any, epoch: int, mode: str = "train") -> dict[str, float]:
        """One training epoch; returns the batch-size-weighted means of the outputs.

        Its hooks are ``<mode>_on_*``; another ``mode`` than ``train`` logs ``<mode>_batch.*``.
        """
        return self._loop(mode, True, model, dataset, optimizer, epoch)

    def eval_epoch(self, model: Any, dataset: Any, epoch: int, mode: str = "eval", logs_json: bool = True) -> dict[str, float]:
        """One evaluation epoch (no gradients); returns the weighted means.

        ``mode='val'`` (any name) fires ``val_on_*`` and logs ``val_epoch.*``; ``logs_json=False``
        does not write ``logs.json`` at its end (the seed's argument).
        """
        return self._loop(mode, False, model, dataset, None, epoch, logs_json)

    def _epoch_means(self, values: Mapping[str, list[Any]], sizes: list[int]) -> dict[str, float]:
        """Batch-size-weighted means over all ranks, with one host transfer per key."""
        keys = [k for k, vals in values.items() if len(vals) == len(sizes)]  # produced by every batch
        if self.dist.enabled:  # every rank must reduce the same keys, in the same order
            import torch.distributed as dist

            gathered: list[Any] = [None] * self.dist.world_size
            dist.all_gather_object(gathered, keys)
            keys = [k for k in gathered[0] if all(k in g for g in gathered)]
        w = torch.tensor(sizes, dtype=torch.float64, device=self.device)
        sums = [self._column(values[k]).mul(w).sum() if sizes else w.new_zeros(()) for k in keys]
        totals = all_reduce_sum(torch.stack([*sums, w.sum()]))
        if float(totals[-1]) == 0:
            return {}
        return {k: float(v) for k, v in zip(keys, (totals[:-1] / totals[-1]).tolist())}

    def _column(self, vals: list[Any]) -> torch.Tensor:
        """The batch values of one key as a float64 vector on the engine's device."""
        if self.device.type == "cpu":  # read in place, ~0.2 us a value (stacking costs more)
            try:
                return torch.tensor([v.item() if isinstance(v, torch.Tensor) else v for v in vals], dtype=torch.float64)
            except (TypeError, ValueError, RuntimeError):  # a value that is not a number
                pass
        first = vals[0] if vals else None
        if isinstance(first, torch.Tensor) and all(isinstance(v, torch.Tensor) and v.dtype is first.dtype for v in vals):
            try:  # the usual case, 0-dim tensors of one dtype: one op, not one per value
                col = torch.stack(vals)
                if col.shape == (len(vals),):
                    return col.to(device=self.device, dtype=torch.float64)
            except RuntimeError:  # tensors on several devices
                pass
        return torch.stack([torch.as_tensor(x, device=self.device).detach().reshape(()).to(torch.float64) for x in vals])

    def __repr__(self) -> str:
        return f"Engine(epoch={self.state.epoch}/{self.nb_epochs}, device={self.device}, hooks={sum(map(len, self.hooks.values()))})"

