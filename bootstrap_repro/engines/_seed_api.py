"""The seed's Engine methods that are not the loop: best values, engine state, checkpoints, the view.

:class:`SeedEngineAPI` is a mixin of :class:`~bootstrap_repro.engines.Engine`; it reads and writes
``engine.state`` only, and saves through a :class:`~bootstrap_repro.engines.Checkpointer`.  A
subclass may override any method as in bootstrap.pytorch: the loop calls :meth:`is_best` for each
saving criterion, and checkpoints hold :meth:`state_dict` (restored with :meth:`load_state_dict`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bootstrap_repro._metric_names import resolve
from bootstrap_repro.errors import CheckpointError, OptionsError

__all__ = ["SeedEngineAPI", "never_logged"]


def never_logged(name: str, have: Mapping[str, Any], mode: str) -> OptionsError:
    """The error of a saving criterion that names no logged value."""
    return OptionsError(
        f"engine.saving_criteria: {name!r} is never logged ({mode} has: "
        f"{', '.join(sorted(have)) or 'nothing'}); use one of those names"
    )


class SeedEngineAPI:
    """``best_out``, ``state_dict``/``load_state_dict``, ``is_best``, ``resume``, ``load``, ``save``, ``generate_view``."""

    state: Any
    options: Any
    logger: Any
    view: Any
    model: Any
    optimizer: Any
    checkpointer: Any

    @property
    def best_out(self) -> dict[str, float]:
        """The seed's name for ``state.best``: the best value of each saving criterion."""
        return self.state.best

    @best_out.setter
    def best_out(self, value: Mapping[str, float]) -> None:
        self.state.best = dict(value)

    def state_dict(self) -> dict[str, Any]:
        """What the engine checkpoint holds of the engine: ``epoch`` (the one to start from) and ``best_out``."""
        return {"epoch": self.state.epoch, "best_out": dict(self.state.best),
                "nb_nan_skipped": self.state.nb_nan_skipped}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (``best`` is read when ``best_out`` is missing: older files of ours)."""
        self.state.epoch = int(state["epoch"])
        self.best_out = state.get("best_out", state.get("best", {}))
        self.state.nb_nan_skipped = int(state.get("nb_nan_skipped", 0))

    def is_best(self, out: Mapping[str, Any], saving_criteria: str) -> bool:
        """Whether ``out[name]`` beats the best so far for ``'name:min'`` or ``'name:max'``; if so, keep it.

        A name that ``out`` lacks is read from the logger (its last value, e.g.
        ``eval_epoch.recall_at_1``), as the seed's ``logger`` engine did.  Unlike the seed, the first
        value is a best (the seed saved no best checkpoint until a value improved on it).  Either
        spelling of a metric (``accuracy_top1``, ``acctop1``) finds its value and its best so far;
        ``state.best`` keeps the name it was first written with.
        """
        from bootstrap_repro.engines._engine import parse_saving_criteria

        crit = parse_saving_criteria([saving_criteria])[0]
        key = resolve(crit.name, out)  # accuracy_top1 or acctop1: either spelling
        if key is not None:
            value = out[key]
        else:
            values = getattr(self.logger, "values", {})
            logged = values.get(resolve(crit.name, values) or crit.name)
            if not isinstance(logged, list) or not logged:
                raise never_logged(crit.name, out, f"{self.state.mode}_epoch")
            value = logged[-1]
        value = None if value is None else float(value)
        best_key = resolve(crit.name, self.state.best) or crit.name  # a best kept under the other spelling counts
        if crit.better(value, self.state.best.get(best_key)):
            self.state.best[best_key] = value
            return True
        return False

    def resume(self, map_location: Any = None) -> None:
        """Load the checkpoint named by ``exp.resume`` from ``exp.dir``: the run goes on at the epoch after it."""
        name = self.options.get("exp.resume")
        if not name:
            raise CheckpointError("exp.resume: not set; set --exp.resume last (or best_<metric>) to resume")
        self.logger(f"Loading {name} checkpoint")
        self.load(self.options["exp.dir"], str(name), self.model, self.optimizer, map_location=map_location)

    def load(self, dir_logs: str | Path, name: str, model: Any, optimizer: Any, map_location: Any = None) -> None:
        """Load ``ckpt_<name>_{engine,model,optimizer}.pth.tar`` of ``dir_logs`` into the engine, ``model`` and ``optimizer``."""
        from bootstrap_repro.engines._checkpoint import Checkpointer

        Checkpointer(dir_logs).load(self, name, model=model, optimizer=optimizer, map_location=map_location)

    def save(self, dir_logs: str | Path, name: str, model: Any, optimizer: Any) -> None:
        """Write ``ckpt_<name>_{engine,model,optimizer}.pth.tar`` in ``dir_logs`` now (atomically).

        As in the seed, call it while epoch ``engine.epoch`` runs or right after it (its hooks, a
        ``train()`` override): a resume from it starts at ``engine.epoch + 1``.
        """
        from bootstrap_repro.engines._checkpoint import Checkpointer

        own = self.checkpointer
        same = own is not None and Path(own.dir).resolve() == Path(dir_logs).resolve()
        checkpointer = own if same else Checkpointer(dir_logs, background=False)
        checkpointer.save(self, [name], model=model, optimizer=optimizer, resume_epoch=self.state.epoch + 1)
        checkpointer.wait()

    def generate_view(self) -> None:
        """Rebuild the view in the background (it is also rebuilt after every logs flush)."""
        view = self.view
        if view is None:
            return
        on_flush = getattr(view, "on_flush", None)
        if callable(on_flush):
            on_flush(self)
        elif callable(getattr(view, "generate", None)):
            threading.Thread(target=view.generate, name="bootstrap-repro-view").start()
