"""The aggregated sweep report ``<sweep.dir>/view.html``: static, offline, built from the study.

Four subplots drawn by views' page builder (optimisation history, parameter importances,
parallel coordinates, every trial's objective per epoch) and a table of trials below them
(params, value, state, duration, link to each trial's own ``view.html``).  Everything comes
from the study's storage, so a report built on any machine of a distributed sweep shows
every trial; links point to the trial dirs found in this sweep dir.

Importances are each param's main effect (:mod:`~bootstrap_repro.sweep._importance`):
milliseconds at 1,000 trials, where Optuna's fANOVA takes ~12 s and needs scikit-learn.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bootstrap_repro.errors import OptionsError
from bootstrap_repro.fileio import atomic_write_text
from bootstrap_repro.sweep._importance import main_effect_importances
from bootstrap_repro.sweep._trial import MAX_ATTEMPTS, attempt_of, counts_toward_n_trials, is_lost, lost_reason
from bootstrap_repro.views import ensure_plotly_js, render_html

if TYPE_CHECKING:
    import optuna

__all__ = ["REPORT_NAME", "MARKER", "build_report", "rebuild_report", "is_sweep_dir", "read_marker"]

REPORT_NAME = "view.html"
#: The file that makes a directory a sweep dir (``bootstrap-repro view DIR`` looks for it).
MARKER = "sweep.json"
_STYLES = {"COMPLETE": ("complete", "solid", "#1f77b4"), "PRUNED": ("pruned", "dash", "#ff7f0e"),
           "FAIL": ("failed", "dot", "#d62728"), "RUNNING": ("running", "dashdot", "#7f7f7f")}


def is_sweep_dir(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` holds a sweep (its ``sweep.json`` marker)."""
    return (Path(path) / MARKER).is_file()


def read_marker(sweep_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``sweep.json`` of a sweep dir: study, storage, objective, direction, n_trials, params."""
    path = Path(sweep_dir) / MARKER
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OptionsError(f"{path}: cannot read the sweep marker ({exc}); rerun the sweep to rewrite it") from None
    if not isinstance(data, dict) or "study" not in data:
        raise OptionsError(f"{path}: not a sweep marker (no `study`); rerun the sweep to rewrite it")
    for key, ok, what in _MARKER_FIELDS:  # what the report and the driver read (an edited marker: one line)
        if (key in data or key in ("objective", "direction", "n_trials")) and not ok(data.get(key)):
            raise OptionsError(f"{path}: field {key!r} must be {what}; the sweep marker is damaged (was it edited?): "
                               f"rerun the sweep to rewrite it")
    return data


def _int_at_least(low: int) -> Any:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


_MARKER_FIELDS: tuple[tuple[str, Any, str], ...] = (
    ("study", lambda v: isinstance(v, str) and bool(v), "a non-empty string"),
    ("storage_url", lambda v: v is None or isinstance(v, str), "a string or null"),
    ("storage", lambda v: v is None or isinstance(v, str), "a string or null"),
    ("objective", lambda v: isinstance(v, str) and bool(v), "a non-empty string"),
    ("direction", lambda v: v in ("maximize", "minimize"), "maximize or minimize"),
    ("n_trials", _int_at_least(1), "an integer >= 1"),
    ("max_retries", _int_at_least(0), "an integer >= 0"),
    ("params", lambda v: v is None or isinstance(v, list) and all(isinstance(p, str) for p in v),
     "a list of option names or null"),
)


# --------------------------------------------------------------------------- helpers
def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else str(v)


def _duration(t: optuna.trial.FrozenTrial) -> float | None:
    if t.datetime_start is None:
        return None
    end = t.datetime_complete or _dt.datetime.now()
    return (end - t.datetime_start).total_seconds()


def _curve(t: optuna.trial.FrozenTrial) -> list[tuple[int, float]]:
    return sorted((int(s), float(v)) for s, v in t.intermediate_values.items())


def _best_trial(complete: Sequence[optuna.trial.FrozenTrial], direction: str) -> optuna.trial.FrozenTrial | None:
    if not complete:
        return None
    pick = max if direction == "maximize" else min
    return pick(complete, key=lambda t: t.value)


def _note(sp: dict[str, Any], text: str) -> dict[str, Any]:
    sp["note"] = text
    sp["traces"] = []
    return sp


# --------------------------------------------------------------------------- subplots
def _history(trials: Sequence[Any], complete: Sequence[Any], meta: Mapping[str, Any]) -> dict[str, Any]:
    sp: dict[str, Any] = {"title": "optimisation history", "xlabel": "trial", "ylabel": meta["objective"], "traces": []}
    pruned = [t for t in trials if t.state.name == "PRUNED" and t.intermediate_values]
    if not complete and not pruned:
        return _note(sp, "no finished trial yet")
    if complete:
        xs = [t.number for t in complete]
        ys = [t.value for t in complete]
        pick = max if meta["direction"] == "maximize" else min
        best, run = [], None
        for y in ys:
            run = y if run is None else pick(run, y)
            best.append(run)
        sp["traces"] += [
            {"name": "complete", "x": xs, "y": ys, "mode": "markers", "marker": {"color": "#1f77b4", "size": 7}},
            {"name": "best so far", "x": xs, "y": best, "mode": "lines", "line": {"shape": "hv", "color": "#2ca02c"}},
        ]
    if pruned:
        sp["traces"].append({"name": "pruned (last value)", "x": [t.number for t in pruned],
                             "y": [_curve(t)[-1][1] for t in pruned], "mode": "markers",
                             "marker": {"color": "#ff7f0e", "symbol": "x", "size": 7}})
    return sp


def _importances(complete: Sequence[Any], names: Sequence[str]) -> dict[str, Any]:
    sp: dict[str, Any] = {"title": "parameter importances (share of variance, main effects)",
                          "ylabel": "importance", "traces": []}
    if len(complete) < 2 or not names:
        return _note(sp, "needs 2 complete trials")
    imp = main_effect_importances(complete, names)
    order = sorted(imp, key=lambda k: -imp[k])  # vertical bars: long names fit below the axis
    sp["traces"] = [{"name": "importance", "type": "bar", "x": order, "y": [imp[k] for k in order],
                     "marker": {"color": "#1f77b4"}}]
    return sp


def _dimension(name: str, values: list[Any], dist: Any) -> dict[str, Any]:
    from optuna.distributions import CategoricalDistribution

    if isinstance(dist, CategoricalDistribution):
        labels = [str(c) for c in dist.choices]
        index = {str(c): i for i, c in enumerate(dist.choices)}
        return {"label": name, "values": [index.get(str(v), 0) for v in values],
                "tickvals": list(range(len(labels))), "ticktext": labels}
    if getattr(dist, "log", False):
        lo, hi = min(values), max(values)
        ticks = sorted({m * 10.0 ** k for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
                        for m in (1, 2, 5) if lo <= m * 10.0 ** k <= hi} | {lo, hi})
        return {"label": f"{name} (log)", "values": [math.log10(v) for v in values],
                "tickvals": [math.log10(t) for t in ticks], "ticktext": [f"{t:.3g}" for t in ticks]}
    return {"label": name, "values": values}


def _parallel(complete: Sequence[Any], names: Sequence[str], meta: Mapping[str, Any]) -> dict[str, Any]:
    sp: dict[str, Any] = {"title": "parallel coordinates (complete trials)", "traces": []}
    rows = [t for t in complete if all(n in t.params for n in names)]
    if not rows:
        return _note(sp, "no complete trial yet")
    dims = [_dimension(n, [t.params[n] for t in rows], rows[-1].distributions[n]) for n in names]
    values = [t.value for t in rows]
    dims.append({"label": meta["objective"], "values": values})
    sp["traces"] = [{"name": "trials", "type": "parcoords", "dimensions": dims,
                     "domain": {"x": [0.1, 0.9], "y": [0, 0.82]}, "labelfont": {"size": 11},
                     "line": {"color": values, "colorscale": "Viridis", "showscale": True,
                              "reversescale": meta["direction"] == "minimize"}}]
    return sp


def _curves(trials: Sequence[Any], best: Any, meta: Mapping[str, Any]) -> dict[str, Any]:
    sp: dict[str, Any] = {"title": f"{meta['objective']} per epoch, every trial", "xlabel": "epoch",
                          "ylabel": meta["objective"], "traces": []}
    for state, (label, dash, color) in _STYLES.items():
        xs: list[Any] = []
        ys: list[Any] = []
        ids: list[Any] = []
        for t in trials:
            if t.state.name != state or not t.intermediate_values:
                continue
            for s, v in _curve(t):
                xs.append(s)
                ys.append(v if math.isfinite(v) else None)
                ids.append(t.number)
            xs.append(None)
            ys.append(None)
            ids.append(None)
        if xs:
            sp["traces"].append({"name": label, "x": xs, "y": ys, "customdata": ids, "mode": "lines",
                                 "connectgaps": False, "line": {"dash": dash, "color": color, "width": 1},
                                 "opacity": 0.6, "hovertemplate": "trial %{customdata}<br>epoch %{x}: %{y}<extra></extra>"})
    if best is not None and best.intermediate_values:
        pts = _curve(best)
        sp["traces"].append({"name": f"best (trial {best.number})", "x": [p[0] for p in pts],
                             "y": [p[1] for p in pts], "mode": "lines+markers", "line": {"color": "#2ca02c", "width": 3}})
    if not sp["traces"]:
        return _note(sp, "no epoch reported yet")
    return sp


# --------------------------------------------------------------------------- table
_TABLE_CSS = """<style>
#sweep-trials { margin: 0 20px 24px; background: #fff; border: 1px solid #e3e3e3; border-radius: 4px; overflow-x: auto; }
#sweep-trials h2 { font-size: 15px; margin: 10px 12px; }
#sweep-trials table { border-collapse: collapse; font: 13px/1.4 system-ui, sans-serif; width: 100%; }
#sweep-trials th, #sweep-trials td { padding: 3px 10px; border-top: 1px solid #eee; text-align: right; white-space: nowrap; }
#sweep-trials th { cursor: pointer; background: #f5f5f5; position: sticky; top: 0; }
#sweep-trials td.txt, #sweep-trials th.txt { text-align: left; }
#sweep-trials tr.PRUNED td { color: #a55a00; } #sweep-trials tr.FAIL td { color: #b71c1c; }
#sweep-trials tr.best td { font-weight: 600; }
</style>"""
_TABLE_JS = """<script>
(function () {
  var table = document.querySelector("#sweep-trials table");
  if (!table) { return; }
  table.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var dir = th.dataset.dir === "asc" ? -1 : 1;
      th.dataset.dir = dir === 1 ? "asc" : "desc";
      rows.sort(function (a, b) {
        var x = a.cells[col].dataset.v, y = b.cells[col].dataset.v;
        var nx = parseFloat(x), ny = parseFloat(y);
        if (!isNaN(nx) && !isNaN(ny)) { return dir * (nx - ny); }
        return dir * String(x).localeCompare(String(y));
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
})();
</script>"""


def _cell(value: Any, text: str | None = None, *, txt: bool = False, inner: str | None = None) -> str:
    shown = inner if inner is not None else html.escape(_fmt(value) if text is None else text)
    sort_key = "" if value is None else html.escape(str(value), quote=True)
    cls = ' class="txt"' if txt else ""
    return f'<td{cls} data-v="{sort_key}">{shown}</td>'


def _max_attempts(meta: Mapping[str, Any]) -> int:
    retries = meta.get("max_retries")
    return retries + 1 if isinstance(retries, int) else MAX_ATTEMPTS


def _retried_as(trials: Sequence[Any]) -> dict[int, int]:
    """``{lost trial number: the number of its retry}``."""
    return {t.user_attrs["retry_of"]: t.number for t in trials if isinstance(t.user_attrs.get("retry_of"), int)}


def _trial_note(t: Any, by_number: Mapping[int, Any], retried_as: Mapping[int, int], max_attempts: int) -> str:
    ua = t.user_attrs
    if is_lost(t):
        why = lost_reason(t)
        if t.number in retried_as:
            return f"{why}; retried as trial {retried_as[t.number]}"
        if attempt_of(t) >= max_attempts:
            return f"{why}; not retried (attempt {attempt_of(t)} of {max_attempts})"
        return f"{why}; retried when the sweep runs again"
    if ua.get("error"):
        return str(ua["error"])
    if t.state.name == "PRUNED" and t.intermediate_values:
        return f"pruned after epoch {max(t.intermediate_values)}"
    if "retry_of" in ua:
        previous = by_number.get(ua["retry_of"]) if isinstance(ua["retry_of"], int) else None  # (an edited journal)
        note = f"retry of trial {ua['retry_of']}" + (f" ({lost_reason(previous)})" if previous is not None else "")
        return note + (f", resumed from its {ua['resumed_from']} checkpoint" if ua.get("resumed_from") else "")
    return ""


def _trial_dir(t: Any) -> str:
    """The trial's dir in the sweep dir: its own, or the lost trial's that it resumed."""
    rel = t.user_attrs.get("dir")
    if isinstance(rel, str) and rel and not rel.startswith(("/", "..")) and "/../" not in rel:
        return rel
    return f"trials/{t.number:04d}"


def _table(trials: Sequence[Any], names: Sequence[str], sweep_dir: Path, best: Any,
           max_attempts: int = MAX_ATTEMPTS) -> str:
    head = ["trial", "state", "value", *names, "duration (s)", "started", "note"]
    txt_cols = {"state", "started", "note"}
    rows = []
    by_number = {t.number: t for t in trials}
    retried_as = _retried_as(trials)
    for t in trials:
        rel = _trial_dir(t)
        href = html.escape(rel, quote=True)
        if (sweep_dir / rel / REPORT_NAME).is_file():
            link = f'<a href="{href}/{REPORT_NAME}">{t.number}</a>'
        elif (sweep_dir / rel).is_dir():
            link = f'<a href="{href}/">{t.number}</a>'
        else:
            link = str(t.number)
        dur = _duration(t)
        started = t.datetime_start.strftime("%Y-%m-%d %H:%M:%S") if t.datetime_start else ""
        cells = [_cell(t.number, inner=link), _cell(t.state.name, txt=True), _cell(t.value)]
        cells += [_cell(t.params.get(n)) for n in names]
        cells += [_cell(None if dur is None else round(dur, 1)), _cell(started, txt=True), _cell(_trial_note(t, by_number, retried_as, max_attempts), txt=True)]
        cls = t.state.name + (" best" if best is not None and t.number == best.number else "")
        rows.append(f'<tr class="{cls}">' + "".join(cells) + "</tr>")
    ths = "".join(f'<th{" class=txt" if h in txt_cols else ""}>{html.escape(h)}</th>' for h in head)
    return (f'{_TABLE_CSS}<section id="sweep-trials"><h2>trials ({len(trials)})</h2><table><thead><tr>{ths}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></section>{_TABLE_JS}')


# --------------------------------------------------------------------------- page
def _header(trials: Sequence[Any], best: Any, meta: Mapping[str, Any]) -> str:
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
    lost = [t for t in trials if is_lost(t) and not counts_toward_n_trials(t, _max_attempts(meta))]
    retried = _retried_as(trials)
    killed = sum(1 for t in lost if t.number in retried and t.user_attrs.get("killed_by_signal"))
    others = sum(1 for t in lost if t.number in retried) - killed
    pending = len(lost) - killed - others
    parts = [f"{meta['direction']} {meta['objective']}", f"n_trials {meta['n_trials']}",
             f"{counts.get('COMPLETE', 0)} complete, {counts.get('PRUNED', 0)} pruned, "
             f"{counts.get('FAIL', 0) - len(lost)} failed, "
             f"{counts.get('RUNNING', 0) + counts.get('WAITING', 0)} running or waiting"
             + (f", {killed} killed and retried" if killed else "")
             + (f", {others} lost and retried" if others else "")
             + (f", {pending} lost (retried when the sweep runs again)" if pending else "")]
    if best is not None:
        params = ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())
        parts.append(f"best {best.value:.6g} in trial {best.number} ({params})")
    parts.append(f"storage {meta.get('storage') or 'study.journal'}")
    parts.append(f"built {_dt.datetime.now().strftime('%Y-%m-%d %H:%M:%S')}")
    return " · ".join(parts)


def build_report(sweep_dir: str | os.PathLike[str], trials: Sequence[optuna.trial.FrozenTrial],
                 meta: Mapping[str, Any], *, params: Sequence[str] | None = None) -> Path:
    """Write ``<sweep_dir>/view.html`` for ``trials`` (a study's trials); returns its path.

    ``meta`` holds ``study``, ``objective``, ``direction``, ``n_trials`` and ``storage`` (the
    ``sweep.json`` marker); ``params`` orders the param columns.
    """
    sweep_dir = Path(sweep_dir)
    trials = sorted(trials, key=lambda t: t.number)
    complete = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None and math.isfinite(t.value)]
    names = list(params) if params is not None else sorted({k for t in trials for k in t.params})
    best = _best_trial(complete, meta["direction"])
    subplots = [_history(trials, complete, meta), _importances(complete, names),
                _parallel(complete, names, meta), _curves(trials, best, meta)]
    sweep_dir.mkdir(parents=True, exist_ok=True)
    js = ensure_plotly_js(sweep_dir)
    page = render_html(subplots, title=f"sweep {meta['study']}", plotly_js=js.name, header=_header(trials, best, meta))
    head, body_end, tail = page.rpartition("</body>")
    if not body_end:
        raise RuntimeError("views.render_html returned a page without </body>")
    path = sweep_dir / REPORT_NAME
    atomic_write_text(path, head + _table(trials, names, sweep_dir, best, _max_attempts(meta)) + body_end + tail, fsync=False)
    return path


def rebuild_report(sweep_dir: str | os.PathLike[str]) -> Path:
    """Rebuild ``<sweep_dir>/view.html`` from the study named in ``sweep.json`` (``bootstrap-repro view``)."""
    import optuna

    from bootstrap_repro.sweep._storage import quiet_optuna, storage_for

    meta = read_marker(sweep_dir)
    storage = storage_for(meta.get("storage_url"), sweep_dir, meta["study"], read_only=True)
    storage.check()
    if not storage.exists():
        raise OptionsError(f"{sweep_dir}: the study's storage {storage.describe()} is missing; "
                           f"the sweep dir has lost its study")
    try:
        with quiet_optuna():
            study = optuna.load_study(study_name=meta["study"], storage=storage.open(),
                                      sampler=optuna.samplers.RandomSampler())
    except KeyError:
        raise OptionsError(f"{sweep_dir}: study {meta['study']!r} not found in {storage.describe()}") from None
    try:
        return build_report(sweep_dir, study.get_trials(deepcopy=False), meta, params=meta.get("params"))
    finally:
        storage.close()
