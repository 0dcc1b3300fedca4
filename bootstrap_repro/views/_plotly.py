"""The plotly view: a small, self-contained ``view.html`` drawn by plotly.js.

The page embeds only the data (as JSON; a long array as a base64 typed array
``{"dtype": "f4", "bdata": ...}``, which plotly.js >= 2.28 reads natively: 5.3
bytes per float32 value instead of ~10 as text); plotly.js sits beside it as
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

import base64
import functools
import hashlib
import html
import json
import math
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

from bootstrap_repro.errors import PluginError
from bootstrap_repro.fileio import atomic_write, atomic_write_text
from array import array

from bootstrap_repro.views._base import BaseView, Logs, Prefix
from bootstrap_repro.views._items import Item, Panel, panels_and_logs, parse_items, series

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
    "Decimation",
    "shares",
]

#: The note drawn in a subplot whose keys have no values yet.
NO_DATA = "no data yet"
#: Significant digits kept for floats in the page (float32 has ~7.2).
DIGITS = 7
#: Arrays longer than this are written as base64 typed arrays (float32 values, int32 or float64 x).
PACK_MIN = 64

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


def _float(v: Any) -> float:
    """``v`` as a finite float, else NaN (None, text, inf, NaN)."""
    if v is None or isinstance(v, str):
        return math.nan
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return math.nan
    return f if math.isfinite(f) else math.nan


def _packed(values: Sequence[Any], floats: bool = True) -> str | None:
    """``{"dtype": ..., "bdata": base64}`` for an array longer than :data:`PACK_MIN` (else None).

    y values as float32 (``f4``; ``f8`` when one is past float32's range), x values as int32
    (``i4``) when they are such ints, else ``f8``.  None, text and non-finite values become NaN:
    plotly.js leaves a gap, as for ``null`` in the JSON form.
    """
    if len(values) <= PACK_MIN:
        return None
    if not floats and set(map(type, values)) <= {int} and -(1 << 31) <= min(values) and max(values) < 1 << 31:
        arr = array("i", values)
        dtype = "i4"
    else:
        code = "f" if floats else "d"
        try:
            arr = array(code, values)
        except (TypeError, OverflowError):
            arr = array(code, map(_float, values))
        if any(map(math.isinf, arr)):  # inf logged, or past float32's range
            code = "d" if any(map(math.isinf, array("f", map(_float, values)))) else code
            arr = array(code, map(_float, values))
        dtype = "f4" if code == "f" else "f8"
    if sys.byteorder != "little":
        arr.byteswap()
    return '{"dtype":"%s","bdata":"%s"}' % (dtype, base64.b64encode(arr.tobytes()).decode("ascii"))


def _trace_json(trace: Mapping[str, Any]) -> str:
    """One trace; a scatter's numbers written compactly (an arithmetic x as ``x0``/``dx``, a long
    array as a base64 typed array, see :func:`_packed`)."""
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
                parts.append('"x":' + (_packed(x, floats=False) or _numbers(x)))
        y = trace.get("y") or []
        parts.append('"y":' + (_packed(y) or _numbers(y)))
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


def shares(lengths: Sequence[int], budget: int) -> list[int]:
    """Split ``budget`` points among curves of ``lengths`` (water-filling): a curve shorter than an
    even share keeps all its points and leaves the rest to the longer ones.  Each gets >= 2."""
    out = [0] * len(lengths)
    left, todo = budget, len(lengths)
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        out[i] = max(2, min(lengths[i], left // todo))
        left -= out[i]
        todo -= 1
    return out


def _minmax(chunk: list[Any]) -> tuple[int, float, int, float]:
    """Index and value of the min and the max of ``chunk`` among its finite numbers (NaN if none)."""
    try:
        total = sum(chunk)
        fast = total - total == 0  # no NaN, inf, None or text in it
    except TypeError:
        fast = False
    if fast:
        lo, hi = min(chunk), max(chunk)
        return chunk.index(lo), float(lo), chunk.index(hi), float(hi)
    finite = [(v, j) for j, v in enumerate(map(_float, chunk)) if v == v]
    if not finite:
        return 0, math.nan, 0, math.nan
    (lv, lj), (hv, hj) = min(finite), max(finite)
    return lj, lv, hj, hv


class Decimation:
    """Min/max decimation of one growing series, updated with its new values only.

    Buckets of :attr:`bucket` values (a power of two) each keep the index and value of their
    minimum and maximum (so spikes survive); past ``cap`` buckets, neighbours merge pairwise and
    the bucket doubles.  An update costs O(new values + buckets kept), never O(values logged),
    as long as the series is the same list, grown (a :class:`Prefix` of the logger's list);
    another list, or a shorter one, starts over.
    """

    __slots__ = ("source", "n", "last", "bucket", "lo_i", "lo_v", "hi_i", "hi_v")

    def __init__(self) -> None:
        self.reset(None)

    def reset(self, source: Any) -> None:
        self.source, self.n, self.last, self.bucket = source, 0, None, 1
        self.lo_i: list[int] = []
        self.lo_v: list[float] = []
        self.hi_i: list[int] = []
        self.hi_v: list[float] = []

    def update(self, y: Sequence[Any], cap: int) -> None:
        """Take in the values of ``y`` not seen yet; keep at most ``cap`` buckets."""
        src = y.source if isinstance(y, Prefix) else y
        n = len(y)
        if src is not self.source or n < self.n or (self.n and src[self.n - 1] is not self.last):
            self.reset(src)
        if self.n == 0:
            while self.bucket * cap < n:
                self.bucket *= 2
        b, lo_i, lo_v, hi_i, hi_v = self.bucket, self.lo_i, self.lo_v, self.hi_i, self.hi_v
        i = self.n
        while i < n:
            k = i // b
            stop = min((k + 1) * b, n)
            lj, lv, hj, hv = _minmax(src[i:stop])
            if k < len(lo_i):  # the last bucket was not full
                if lv == lv and not lv >= lo_v[k]:
                    lo_i[k], lo_v[k] = lj + i, lv
                if hv == hv and not hv <= hi_v[k]:
                    hi_i[k], hi_v[k] = hj + i, hv
            else:
                lo_i.append(lj + i), lo_v.append(lv), hi_i.append(hj + i), hi_v.append(hv)
            i = stop
        self.n = n
        self.last = src[n - 1] if n else None
        while len(self.lo_i) > max(1, cap):
            self._halve()

    def _halve(self) -> None:
        lo_i, lo_v, hi_i, hi_v = self.lo_i, self.lo_v, self.hi_i, self.hi_v
        for k in range(1, len(lo_i), 2):
            j = k - 1
            if lo_v[k] == lo_v[k] and not lo_v[k] >= lo_v[j]:
                lo_i[j], lo_v[j] = lo_i[k], lo_v[k]
            if hi_v[k] == hi_v[k] and not hi_v[k] <= hi_v[j]:
                hi_i[j], hi_v[j] = hi_i[k], hi_v[k]
        for lst in (lo_i, lo_v, hi_i, hi_v):
            del lst[1::2]
        self.bucket *= 2

    def points(self) -> tuple[list[int], list[float]]:
        """Indices and values kept, in order: one or two per bucket."""
        xs: list[int] = []
        ys: list[float] = []
        for li, lv, hi, hv in zip(self.lo_i, self.lo_v, self.hi_i, self.hi_v):
            if li == hi:
                xs.append(li), ys.append(lv)
            elif li < hi:
                xs.extend((li, hi)), ys.extend((lv, hv))
            else:
                xs.extend((hi, li)), ys.extend((hv, lv))
        return xs, ys


class View(BaseView):
    """The plotly view of an experiment: ``<exp_dir>/<file_name>``.

    ``items`` is the ``view`` option's list (``['logs:train_epoch.loss+logs:eval_epoch.loss', ...]``),
    or parsed :class:`~bootstrap_repro.views.Panel` objects; ``None`` (or empty) draws one
    subplot per epoch metric found in ``logs.json``.
    """

    name = "plotly"
    #: The page's budget of points, shared among its curves (see :func:`shares`); longer series
    #: are decimated (min and max of each bucket, incrementally) to keep the page small and fast.
    max_points = 20_000

    def __init__(self, exp_dir: str | os.PathLike[str], items: Sequence[str | Panel] | None = None,
                 file_name: str = "view.html") -> None:
        super().__init__(exp_dir)
        panels: list[Panel] = []
        for item in items or ():
            panels.extend([item] if isinstance(item, Panel) else parse_items(item, "view"))
        self.panels: list[Panel] | None = panels or None
        self.file_name = file_name
        self._decimated: dict[Item, Decimation] = {}
        self._build_lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self.exp_dir / self.file_name

    def subplots(self, logs: Logs | None = None) -> list[SubplotSpec]:
        """The subplot specs of the page for ``logs`` (missing logs read from disk).

        Cost: O(points drawn) plus the values logged since the last call for a decimated curve
        whose list was handed over as a :class:`Prefix` of the same list (O(values) otherwise).
        """
        panels, data = panels_and_logs(self.exp_dir, self.panels, logs)
        drawn = {item: series(data, item) for p in panels for item in p.items}
        curves = [item for p in panels for item in p.items if drawn[item][1]]
        share: dict[Item, int] = {}
        for item, n in zip(curves, shares([len(drawn[i][1]) for i in curves], self.max_points)):
            share[item] = min(n, share.get(item, n))
        for item in [i for i in self._decimated if len(drawn.get(i, (None, ()))[1]) <= share.get(i, 0)]:
            del self._decimated[item]  # gone, or short enough again: drawn whole
        return [self._subplot(p, drawn, share) for p in panels]

    def _subplot(self, panel: Panel, drawn: Mapping[Item, tuple[Any, Any]], share: Mapping[Item, int]) -> SubplotSpec:
        splits = {i.split for i in panel.items}
        color_by_split = len(splits) == len(panel.items)
        traces: list[TraceSpec] = []
        xlabel = ""
        for item in panel.items:
            x, y = drawn[item]
            if not y:
                continue
            trace: dict[str, Any] = {"name": item.label, "x": None, "y": None,
                                     "mode": "lines+markers" if item.is_epoch and len(y) <= 200 else "lines"}
            if len(y) <= share[item]:
                trace["x"], trace["y"] = None if x is None else x[:], y[:]
            else:
                dec = self._decimated.setdefault(item, Decimation())
                dec.update(y, max(1, share[item] // 2))
                idx, trace["y"] = dec.points()
                xs = x.source if isinstance(x, Prefix) else x
                trace["x"] = idx if xs is None else [xs[i] for i in idx]
                trace["name"] += f" (min/max per {dec.bucket})"
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
        with self._build_lock:  # the background worker and a caller may both build
            subplots = self.subplots(logs)
        header = f"{self.exp_dir.resolve()} · {len(subplots)} subplots · updated {time.strftime('%Y-%m-%d %H:%M:%S')}"
        return write_html(self.path, subplots, title=self.exp_dir.resolve().name or str(self.exp_dir), header=header)

    def __repr__(self) -> str:
        items = None if self.panels is None else [p.title for p in self.panels]
        return f"View({str(self.exp_dir)!r}, {items!r}, file_name={self.file_name!r})"
