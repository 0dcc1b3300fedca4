"""``views.factory(engine)`` (the seed's entry point) and ``rebuild(exp_dir)`` (``bootstrap-repro view DIR``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bootstrap_repro.errors import OptionsError, PluginError
from bootstrap_repro.views._base import BaseView, Logs, MultiView
from bootstrap_repro.views._items import (DEFAULT_LOG, ViewSpec, check_log, panels_and_logs, parse_view_option,
                                          unlogged, unlogged_note)
from bootstrap_repro.views._plotly import View

__all__ = ["factory", "rebuild", "make_view", "check_logged", "check_view_option"]


def _get(opt: Any, key: str, default: Any = None) -> Any:
    """``opt['a.b']`` for an :class:`Options` or a plain nested mapping."""
    try:
        return opt[key]
    except (KeyError, TypeError, IndexError):
        pass
    node = opt
    for part in key.split("."):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            return default
    return node


def _view_option(opt: Any) -> Any:
    value = _get(opt, "view")
    if not value:
        value = _get(opt, "views", value)  # the seed also read `views`
    return value


def _view_key(opt: Any) -> str:
    """The key :func:`_view_option` reads: ``view``, or the seed's ``views`` when ``view`` is empty."""
    return "view" if _get(opt, "view") or not _get(opt, "views") else "views"


def check_view_option(opt: Any) -> list[ViewSpec]:
    """Parse ``opt``'s view option (``view``, or the seed's ``views``) and check what its views need.

    A bad value or a tensorboard view without the tensorboard package raises a one-line
    :class:`~bootstrap_repro.errors.ReproError` naming the key; nothing is created (a run
    calls this before its experiment dir exists).
    """
    from bootstrap_repro.views import _tensorboard

    specs = parse_view_option(_view_option(opt), _view_key(opt))
    for spec in specs:
        if spec.name == "tensorboard" and spec.module is None:
            try:
                _tensorboard._check_installed()
            except PluginError:
                raise PluginError(_tensorboard.MISSING_TENSORBOARD.replace("view", spec.where, 1)) from None
    return specs


class _PluginView(BaseView):
    """Adapts a view built by an ``import:`` module (with ``build(logs)`` or the seed's ``generate()``)."""

    def __init__(self, exp_dir: str | os.PathLike[str], obj: Any, where: str) -> None:
        super().__init__(exp_dir)
        if not callable(getattr(obj, "build", None)) and not callable(getattr(obj, "generate", None)):
            raise OptionsError(
                f"{where}.import: the factory returned {type(obj).__name__}, which has neither "
                f"build(logs) nor generate(); return a bootstrap_repro.views.BaseView"
            )
        self.view = obj
        self.name = getattr(obj, "name", type(obj).__name__)

    def build(self, logs: Logs | None = None) -> Any:
        if callable(getattr(self.view, "build", None)):
            return self.view.build(logs)
        return self.view.generate()


def make_view(spec: ViewSpec, exp_dir: str | os.PathLike[str], engine: Any = None) -> BaseView:
    """Build the view object of one parsed spec."""
    if spec.module is not None:
        import inspect

        from bootstrap_repro.plugins import import_factory

        fn = import_factory(spec.module, f"{spec.where}.import")
        try:
            takes_arg = any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
                            for p in inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):
            takes_arg = True
        obj = fn(engine) if takes_arg else fn()
        return obj if isinstance(obj, BaseView) else _PluginView(exp_dir, obj, spec.where)
    if spec.name == "tensorboard":
        from bootstrap_repro.views._tensorboard import TensorboardView

        return TensorboardView(exp_dir, spec.panels)
    return View(exp_dir, spec.panels, spec.file_name)


def factory(engine: Any = None) -> BaseView | None:
    """The view(s) of the ``view`` option, registered on ``engine``'s flush hooks.

    Reads ``engine.options`` (the current ``Options()`` when ``engine`` is None):
    ``view`` and ``exp.dir``.  Returns a :class:`View`, a :class:`TensorboardView`,
    a :class:`MultiView` when there are several, or None when ``view`` is empty.
    With an engine, ``view.on_flush`` is registered for ``train_on_flush`` and
    ``eval_on_flush``, so the view is rebuilt after each logger flush.
    """
    opt = getattr(engine, "options", None) if engine is not None else None
    if opt is None:
        from bootstrap_repro.options import Options

        opt = Options()
    specs = parse_view_option(_view_option(opt), _view_key(opt))
    if not specs:
        return None
    exp_dir = _get(opt, "exp.dir")
    if not exp_dir:
        raise OptionsError("exp.dir: the view needs the experiment dir, got none; set exp.dir")
    views = [make_view(spec, exp_dir, engine) for spec in specs]
    view = views[0] if len(views) == 1 else MultiView(views)
    if engine is not None:
        view.register(engine)
    return view


def rebuild(exp_dir: str | os.PathLike[str], warn: Callable[[str], None] | None = None) -> list[Path]:
    """Rebuild the HTML view(s) of an experiment dir from its files; returns the pages written.

    The plotly views of ``<exp_dir>/options.yaml`` (``view`` option) are rebuilt from the
    json logs; with no view items, one subplot per epoch metric of ``logs.json``.
    Tensorboard and ``import:`` views are left alone.  With ``warn`` (``bootstrap-repro view``),
    the logs files are checked first (:func:`check_log`): a damaged one raises
    :class:`OptionsError` before any page is written, odd values go to ``warn``, and so
    does one line naming the view items never logged (:func:`check_logged`).
    """
    exp_dir = Path(exp_dir)
    opt_path = exp_dir / "options.yaml"
    if not opt_path.is_file() and not (exp_dir / "logs.json").is_file():
        raise OptionsError(
            f"{exp_dir}: not an experiment dir (no options.yaml nor logs.json); pass the exp.dir of a run"
        )
    specs: list[ViewSpec] = []
    if opt_path.is_file():
        from bootstrap_repro.options import Options

        opt = Options.load(opt_path, check=False)  # only its view is read: old dirs stay viewable
        specs = [s for s in parse_view_option(_view_option(opt), f"{opt_path}: view")
                 if s.name == "plotly" and s.module is None]
    if not specs:
        specs = [ViewSpec()]
    if warn is not None:
        names = [DEFAULT_LOG] if any(not s.panels for s in specs) else []
        names += [i.log for s in specs for p in s.panels or () for i in p.items]
        for name in dict.fromkeys(names):
            if (exp_dir / f"{name}.json").is_file():
                for note in check_log(exp_dir / f"{name}.json"):
                    warn(note)
    pages = [View(exp_dir, s.panels, s.file_name).build() for s in specs]
    note = _unlogged(exp_dir, specs) if warn is not None else None
    if note is not None and warn is not None:
        warn(note)
    return pages


def _unlogged(exp_dir: str | os.PathLike[str], specs: list[ViewSpec], logs: Logs | None = None) -> str | None:
    panels = [p for s in specs if s.module is None for p in s.panels or ()]
    if not panels:
        return None
    _, data = panels_and_logs(Path(exp_dir), panels, logs)
    missing = unlogged(panels, data)
    return unlogged_note(missing, data) if missing else None


def check_logged(exp_dir: str | os.PathLike[str], opt: Any, logs: Logs | None = None) -> str | None:
    """One warning line naming the items of ``opt``'s ``view`` that the logs never hold; None when all are.

    Either metric spelling counts (``accuracy_top1``, ``acctop1``).  ``logs`` holds values
    in memory (the engine logger's); the other logs are read from ``exp_dir``.  Call it when
    the run has ended: before, a key may simply not be logged yet.
    """
    return _unlogged(exp_dir, parse_view_option(_view_option(opt)), logs)
