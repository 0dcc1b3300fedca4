"""The trial side of a sweep: a hook plugin loaded into each trial's run.

The driver starts ``bootstrap-repro run`` with ``$BOOTSTRAP_REPRO_HOOKS`` naming this module and
``$BOOTSTRAP_REPRO_TRIAL`` holding a :class:`~bootstrap_repro.sweep._trial.TrialContext`.
:func:`register` then

* writes ``sweep_trial.json`` (study, trial number, params) into the experiment dir;
* after every epoch of the objective's split, reports the objective to the study from this
  process (``trial.report(value, epoch)``) and, when the pruner rejects the trial, marks it
  ``PRUNED`` and asks the engine to stop after this epoch (checkpoints, logs and view stay
  intact; under DDP the engine broadcasts rank 0's decision);
* stops the run when the objective is not among the logged values (the driver then stops the
  study with a clear error), and when the driver process dies (``PR_SET_PDEATHSIG`` on Linux).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from bootstrap_repro._metric_names import resolve
from bootstrap_repro.errors import PluginError
from bootstrap_repro.sweep._trial import HOOK_MODULE, TRIAL_ENV, TrialContext, update_trial_file

__all__ = ["register", "TrialReporter"]


def _stop_with_driver(engine: Any, driver_pid: int) -> None:
    """End this process when the driver dies (a ``kill -9`` of the driver leaves no orphan trial)."""
    from bootstrap_repro.record import CONTAINER_ENV

    from bootstrap_repro.runtimes import die_with_parent

    if os.environ.get("TORCHELASTIC_RUN_ID") or CONTAINER_ENV in os.environ:
        return  # under torchrun or in a container the parent is a launcher, not the driver (see TrialReporter)
    if not die_with_parent(driver_pid):  # the driver died before the signal was armed
        engine.interrupt("the sweep driver exited")


class TrialReporter:
    """``<mode>_on_end_epoch`` hook: report the objective, stop the run when the pruner says so.

    A trial whose study entry is no longer RUNNING (its driver died and another one failed it)
    stops at its next epoch end: the fallback where the driver's death cannot be signalled.
    """

    def __init__(self, ctx: TrialContext, exp_dir: Path) -> None:
        self.ctx = ctx
        self.exp_dir = exp_dir
        self.mode, self.metric = ctx.objective.split("_epoch.", 1)
        self._trial: Any = None

    def trial(self) -> Any:
        """The study's trial, opened on first use (costs one storage read)."""
        if self._trial is None:
            import optuna

            from bootstrap_repro.sweep._algorithms import AlgoSpec, make_pruner
            from bootstrap_repro.sweep._storage import open_trial_storage, quiet_optuna

            spec = dict(self.ctx.pruner)
            pruner = make_pruner(AlgoSpec(spec.pop("name"), spec))
            with quiet_optuna():
                study = optuna.load_study(study_name=self.ctx.study, storage=open_trial_storage(self.ctx.storage),
                                          sampler=optuna.samplers.RandomSampler(), pruner=pruner)
                self._trial = optuna.trial.Trial(study, self.ctx.trial_id)
        return self._trial

    def __call__(self, engine: Any) -> None:
        metrics = engine.state.eval_metrics if self.mode == "eval" else engine.state.train_metrics
        metric = resolve(self.metric, metrics) or self.metric  # accuracy_top1 finds acctop1
        if metric not in metrics:
            logged = sorted(f"{self.mode}_epoch.{k}" for k in metrics)
            update_trial_file(self.exp_dir, state="OBJECTIVE_MISSING", logged=logged)
            engine.logger.error(f"sweep: the objective {self.ctx.objective} is not logged "
                                f"(logged: {', '.join(logged) or 'nothing'}); stopping the trial")
            engine.request_stop("objective not logged")
            return
        import optuna

        value, epoch = float(metrics[metric]), int(engine.state.epoch)
        try:
            trial = self.trial()
            with warnings.catch_warnings():  # a resumed retry was given the lost trial's values: the same epochs
                warnings.filterwarnings("ignore", message="The reported value is ignored because")
                trial.report(value, epoch)
            prune = trial.should_prune()
        except optuna.exceptions.UpdateFinishedTrialError:
            update_trial_file(self.exp_dir, state="ORPHANED")
            engine.logger.warning(f"sweep: trial {self.ctx.number} is no longer running in study "
                                  f"{self.ctx.study!r} (its driver stopped); stopping")
            engine.request_stop("orphaned")
            return
        if prune:
            update_trial_file(self.exp_dir, state="PRUNED", pruned_epoch=epoch)
            engine.logger(f"sweep: trial {self.ctx.number} pruned at epoch {epoch} ({self.ctx.objective} {value:.6g})")
            engine.request_stop("pruned")


def register(engine: Any) -> None:
    """Attach the reporter to ``engine`` (called by the run for ``$BOOTSTRAP_REPRO_HOOKS``)."""
    ctx = TrialContext.from_env()
    if ctx is None:
        raise PluginError(f"{HOOK_MODULE}: reports to a sweep's study and only runs in trials started by "
                          f"`bootstrap-repro sweep` (${TRIAL_ENV} is not set)")
    _stop_with_driver(engine, ctx.driver_pid)
    if not engine.is_rank0:
        return
    exp_dir = Path(str(engine.options["exp.dir"]))
    update_trial_file(exp_dir, study=ctx.study, number=ctx.number, storage=ctx.storage_desc,
                      objective=ctx.objective, direction=ctx.direction, params=ctx.params, state="RUNNING")
    mode = ctx.objective.split("_epoch.", 1)[0]
    engine.register_hook(f"{mode}_on_end_epoch", TrialReporter(ctx, exp_dir))
