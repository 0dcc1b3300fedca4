"""The plotly view: a small, self-contained ``view.html`` drawn by plotly.js.

The page embeds only the data (as JSON); plotly.js sits beside it as
``plotly-<version>.min.js``, hard-linked from a shared asset cache when the
filesystem allows (else copied), so an experiment dir stays self-contained and
copyable while each page stays small.  Building a page is JSON plus a string
template: no plotly Python API, no torch, milliseconds.

:func:`write_html` is the generic builder (the sweep report reuses it): it takes
a list of subplot specs::

    {"title": "loss", "xlabel": "epoch", "ylabel": "", "note": "",
     "traces": [{"name": "train", "x": [0, 1, 2], "y": [1.0, 0.5, 0.3], "mode": "lines"}]}

``x`` may be omitted (or None) for the index ``0..n-1``; any other trace key
(``type``, ``marker``, ``line`` ...) is passed to plotly.js as is.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

from bootstrap_repro.errors import PluginError
from bootstrap_repro.fileio import atomic_write, atomic_write_text
from bootstrap_repro.views._base import BaseView, Logs
from bootstrap_repro.views._items import Panel, panels_and_logs, parse_items, series

__all__ = [
    "View",
    "TraceSpec",
    "SubplotSpec",
    "render_html",
    "write_html",
    "ensure_plotly_js",
    "plotly_js_source",
    "plotly_js_version",
    "asset_cache_dir",
    "NO_DATA",
    "decimate",
]

#: The note drawn in a subplot whose keys have no values yet.
NO_DATA = "no data yet"
#: Significant digits kept for floats in the page (float32 has ~7.2).
DIGITS = 7

_SPLIT_COLORS = {
    "train": "#d62728",
    "trainval": "#d62728",
    "eval": "#1f77b4",
    "val": "#1f77b4",
    "test": "#2ca02c",
}


class _TraceRequired(TypedDict):
    name: str
    y: Sequence[Any]


class TraceSpec(_TraceRequired, total=False):
    """One curve; extra keys go to plotly.js unchanged."""

    x: Sequence[Any] | None
    mode: str  # "lines", "markers", "lines+markers"


class _SubplotRequired(TypedDict):
    title: str
    traces: list[TraceSpec]


class SubplotSpec(_SubplotRequired, total=False):
    """One subplot of a page."""

    xlabel: str
    ylabel: str
    note: str  # drawn in the middle (e.g. "no data yet")


# --------------------------------------------------------------------------- plotly.js asset
@functools.lru_cache(maxsize=1)
def plotly_js_source() -> Path:
    """The ``plotly.min.js`` bundled with the plotly package (found without importing plotly)."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("plotly")
    except (ImportError, ValueError):
        spec = None
    origin = getattr(spec, "origin", None)
    path = Path(origin).parent / "package_data" / "plotly.min.js" if origin else None
    if path is None or not path.is_file():
        raise PluginError(
            "view: plotly.js not found (it ships in the plotly package's package_data/plotly.min.js); "
            "pip install 'plotly>=5'"
        )
    return path


@functools.lru_cache(maxsize=8)
def _version_of(path: str, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as f:
        head = f.read(512).decode("latin-1")
    m = re.search(r"plotly\.js v(\d[\w.+\-]*)", head)
    if m:
        return m.group(1)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return "sha-" + digest.hexdigest()[:12]


def plotly_js_version(source: Path | None = None) -> str:
    """The version in the header of ``plotly.min.js`` (``4.1.1``), else a content hash."""
    source = source or plotly_js_source()
    st = source.stat()
    return _version_of(str(source), st.st_size, st.st_mtime_ns)


def asset_cache_dir() -> Path | None:
    """``$BOOTSTRAP_REPRO_CACHE_DIR/assets``, ``$XDG_CACHE_HOME/bootstrap-repro/assets`` or ``~/.cache/...``."""
    env = os.environ.get("BOOTSTRAP_REPRO_CACHE_DIR")
    if env:
        return Path(env) / "assets"
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg) / "bootstrap-repro" / "assets"
    try:
        return Path.home() / ".cache" / "bootstrap-repro" / "assets"
    except (RuntimeError, KeyError):  # no HOME and no passwd entry (e.g. docker --user)
        return None


@functools.lru_cache(maxsize=1)
def _file_mode() -> int:
    """``0o666`` less the umask (read without changing it, from /proc when possible)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o644


def _make_readable(path: Path) -> None:
    # Temporary files are created 0600; a page and its script are meant to be shared.
    try:
        if path.stat().st_mode & 0o777 != _file_mode():
            os.chmod(path, _file_mode())
    except OSError:
        pass


def _copy_atomic(src: Path, dest: Path) -> None:
    def write(fout: Any) -> None:
        with open(src, "rb") as fin:
            shutil.copyfileobj(fin, fout, 1 << 20)
        os.chmod(fout.fileno(), _file_mode())

    atomic_write(dest, write, fsync=False)


def _cached_asset(source: Path, name: str) -> Path:
    """``<cache>/<name>``, filled from ``source`` if needed; ``source`` itself when there is no usable cache."""
    cache = asset_cache_dir()
    if cache is None:
        return source
    target = cache / name
    size = source.stat().st_size
    try:
        if target.stat().st_size == size:
            return target
    except OSError:
        pass
    try:
        cache.mkdir(parents=True, exist_ok=True)
        _copy_atomic(source, target)
    except OSError:
        return source
    return target


def ensure_plotly_js(dest_dir: str | os.PathLike[str]) -> Path:
    """Put ``plotly-<version>.min.js`` in ``dest_dir`` (hard link from the cache, else a copy).

    Cheap when it is already there (two ``stat`` calls).  Returns its path.
    """
    dest_dir = Path(dest_dir)
    source = plotly_js_source()
    name = f"plotly-{plotly_js_version(source)}.min.js"
    dest = dest_dir / name
    size = source.stat().st_size
    try:
        if dest.stat().st_size == size:
            return dest
    except OSError:
        pass
    cached = _cached_asset(source, name)
    fd, tmp_name = tempfile.mkstemp(dir=dest_dir, prefix=f".{name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        tmp.unlink()
        try:
            os.link(cached, tmp)
        except OSError:  # another filesystem, or links not allowed: copy
            shutil.copyfile(cached, tmp)
        _make_readable(tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


# --------------------------------------------------------------------------- HTML
_fmt_float = ("{:.%dg}" % DIGITS).format


def _number(v: Any) -> str:
    t = type(v)
    if t is float:
        return _fmt_float(v) if math.isfinite(v) else "null"
    if t is int:
        return str(v)
    if v is None:
        return "null"
    if t is bool:
        return "1" if v else "0"
    if isinstance(v, str):
        return _json(v)
    try:
        f = float(v)  # numpy scalars, Decimals, ...
    except (TypeError, ValueError):
        return "null"
    return _fmt_float(f) if math.isfinite(f) else "null"


def _numbers(values: Sequence[Any]) -> str:
    types = set(map(type, values))
    if types == {float}:  # the usual case, twice as fast: nan and inf are the only texts with an "n"
        text = ",".join(map(_fmt_float, values))
        if "n" not in text:
            return "[" + text + "]"
    elif types <= {int}:
        return "[" + ",".join(map(str, values)) + "]"
    return "[" + ",".join([_number(v) for v in values]) + "]"


def _json(obj: Any) -> str:
    # `<` escaped so that no text can close the <script> element holding the data.
    return json.dumps(obj, ensure_ascii=False, allow_nan=False, default=str).replace("<", "\\u003c")


def _arith(x: Sequence[Any]) -> tuple[int, int] | None:
    """``(x0, dx)`` when ``x`` is an arithmetic sequence of ints, else None."""
    n = len(x)
    if n == 0 or type(x[0]) is not int:
        return None
    x0 = x[0]
    dx = x[1] - x[0] if n > 1 and type(x[1]) is int else 1
    if dx == 0:
        return None
    for i, v in enumerate(x):
        if type(v) is not int or v != x0 + i * dx:
            return None
    return x0, dx


def _trace_json(trace: Mapping[str, Any]) -> str:
    """One trace; a scatter's numbers written compactly (an arithmetic x as ``x0``/``dx``)."""
    kind = trace.get("type", "scatter")
    parts = ['"type":' + _json(kind)]
    packed: tuple[str, ...] = ("type",)
    if kind == "scatter":
        packed = ("type", "x", "y")
        x = trace.get("x")
        if x is not None:
            ad = _arith(x)
            if ad is not None:
                if ad != (0, 1):
                    parts.append(f'"x0":{ad[0]},"dx":{ad[1]}')
            else:
                parts.append('"x":' + _numbers(x))
        parts.append('"y":' + _numbers(trace.get("y") or []))
        if "mode" not in trace:
            parts.append('"mode":"lines"')
    for key, value in trace.items():
        if key not in packed:
            parts.append(_json(str(key)) + ":" + _json(value))
    return "{" + ",".join(parts) + "}"


def _subplot_json(sp: Mapping[str, Any]) -> str:
    meta = {k: v for k, v in sp.items() if k != "traces"}
    meta.setdefault("title", "")
    traces = ",".join(_trace_json(t) for t in sp.get("traces", ()))
    return _json(meta)[:-1] + ',"traces":[' + traces + "]}"


@functools.lru_cache(maxsize=1)
def _template() -> str:
    return (Path(__file__).with_name("template.html")).read_text(encoding="utf-8")


def render_html(subplots: Sequence[Mapping[str, Any]], *, title: str,
                plotly_js: str, header: str = "") -> str:
    """The page: ``subplots`` (see :class:`SubplotSpec`) drawn by the script at URL ``plotly_js``."""
    data = ('{"plotly_js":' + _json(plotly_js) + ',"subplots":['
            + ",".join(_subplot_json(sp) for sp in subplots) + "]}")
    values = {
        "TITLE": html.escape(title),
        "HEADER": html.escape(header),
        "PLOTLY_JS": html.escape(plotly_js),
        "DATA": data,
    }
    return re.sub(r"\{\{([A-Z_]+)\}\}", lambda m: values[m.group(1)], _template())


def write_html(path: str | os.PathLike[str], subplots: Sequence[Mapping[str, Any]], *,
               title: str, header: str = "") -> Path:
    """Write a self-contained page at ``path`` with plotly.js beside it; returns ``path``.

    Written atomically (not fsynced: a page is rebuilt from the logs at will).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    js = ensure_plotly_js(path.parent)
    atomic_write_text(path, render_html(subplots, title=title, plotly_js=js.name, header=header), fsync=False)
    _make_readable(path)
    return path


# --------------------------------------------------------------------------- the view
def _split_color(split: str) -> str | None:
    return _SPLIT_COLORS.get(split.rsplit("_", 1)[0]) if split else None


def decimate(x: Sequence[Any] | None, y: Sequence[Any], max_points: int) -> tuple[list[Any], list[Any], int]:
    """Keep the min and the max of each bucket so that at most ``max_points`` remain.

    Returns ``(x, y, bucket)``; spikes survive, which plain striding would drop.
    """
    n = len(y)
    bucket = max(1, math.ceil(n / max(1, max_points // 2)))
    xs: list[Any] = []
    ys: list[Any] = []
    for start in range(0, n, bucket):
        chunk = y[start:start + bucket]
        try:
            lo, hi = chunk.index(min(chunk)), chunk.index(max(chunk))
        except (TypeError, ValueError):  # None or text among the values
            lo = hi = 0
        for k in (lo, hi) if lo < hi else (hi, lo) if hi < lo else (lo,):
            xs.append(start + k if x is None else x[start + k])
            ys.append(chunk[k])
    return xs, ys, bucket


class View(BaseView):
    """The plotly view of an experiment: ``<exp_dir>/<file_name>``.

    ``items`` is the ``view`` option's list (``['logs:train_epoch.loss+logs:eval_epoch.loss', ...]``),
    or parsed :class:`~bootstrap_repro.views.Panel` objects; ``None`` (or empty) draws one
    subplot per epoch metric found in ``logs.json``.
    """

    name = "plotly"
    #: Longer series are decimated (min and max of each bucket) to keep the page small and fast.
    max_points = 20_000

    def __init__(self, exp_dir: str | os.PathLike[str], items: Sequence[str | Panel] | None = None,
                 file_name: str = "view.html") -> None:
        super().__init__(exp_dir)
        panels: list[Panel] = []
        for item in items or ():
            panels.extend([item] if isinstance(item, Panel) else parse_items(item, "view"))
        self.panels: list[Panel] | None = panels or None
        self.file_name = file_name

    @property
    def path(self) -> Path:
        return self.exp_dir / self.file_name

    def subplots(self, logs: Logs | None = None) -> list[SubplotSpec]:
        """The subplot specs of the page for ``logs`` (missing logs read from disk)."""
        panels, data = panels_and_logs(self.exp_dir, self.panels, logs)
        return [self._subplot(p, data) for p in panels]

    def _subplot(self, panel: Panel, data: Logs) -> SubplotSpec:
        splits = {i.split for i in panel.items}
        color_by_split = len(splits) == len(panel.items)
        traces: list[TraceSpec] = []
        xlabel = ""
        for item in panel.items:
            x, y = series(data, item)
            if not y:
                continue
            trace: dict[str, Any] = {"name": item.label, "x": x, "y": y,
                                     "mode": "lines+markers" if item.is_epoch and len(y) <= 200 else "lines"}
            if len(y) > self.max_points:
                trace["x"], trace["y"], bucket = decimate(x, y, self.max_points)
                trace["name"] += f" (min/max per {bucket})"
            color = _split_color(item.split) if color_by_split else None
            if color:
                trace["line"] = {"color": color}
                trace["marker"] = {"color": color}
            traces.append(trace)  # type: ignore[arg-type]
            xlabel = xlabel or ("epoch" if x is not None or item.is_epoch else "batch" if "_batch" in item.split else "index")
        spec: SubplotSpec = {"title": panel.title, "traces": traces, "xlabel": xlabel}
        if not traces:
            spec["note"] = NO_DATA
        return spec

    def build(self, logs: Logs | None = None) -> Path:
        """Rewrite the page from ``logs`` (``{'logs': {'train_epoch.loss': [...]}}``; None: the json files)."""
        subplots = self.subplots(logs)
        header = f"{self.exp_dir.resolve()} · {len(subplots)} subplots · updated {time.strftime('%Y-%m-%d %H:%M:%S')}"
        return write_html(self.path, subplots, title=self.exp_dir.resolve().name or str(self.exp_dir), header=header)

    def __repr__(self) -> str:
        items = None if self.panels is None else [p.title for p in self.panels]
        return f"View({str(self.exp_dir)!r}, {items!r}, file_name={self.file_name!r})"
