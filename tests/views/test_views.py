"""Views: the item language, view.html (size, assets, drawing in Chromium), factory hooks, rebuild."""

from __future__ import annotations

import array
import base64
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bootstrap_repro import views
from bootstrap_repro.errors import OptionsError, PluginError
from bootstrap_repro.options import Options
from bootstrap_repro.views import _plotly, _tensorboard

try:
    from tests.chromium import drawn_subplots, error_banner, render_dom, require_chromium
except ImportError:  # tests/ is not a package: import the helper beside this directory
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from chromium import drawn_subplots, error_banner, render_dom, require_chromium

EXPECTED = ("expected '<logname>:<key>' such as 'logs:train_epoch.loss' "
            "(join several with '+' to overlay them in one subplot)")


@pytest.fixture(autouse=True)
def asset_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep the plotly.js cache inside the test's tmp dir (same filesystem as the exp dirs)."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("BOOTSTRAP_REPRO_CACHE_DIR", str(cache))
    return cache / "assets"


def epoch_logs(n: int = 5, metrics: tuple[str, ...] = ("loss", "acctop1"), splits=("train", "eval")) -> dict:
    values: dict[str, list] = {}
    for split in splits:
        values[f"{split}_epoch.epoch"] = list(range(n))
        for m in metrics:
            values[f"{split}_epoch.{m}"] = [round(math.exp(-i / 3) + 0.1 * len(split), 4) for i in range(n)]
    return values


def unpack(obj):
    """The page's data with each typed array ``{"dtype", "bdata"}`` decoded to a list (NaN as None), as plotly.js reads it."""
    if isinstance(obj, dict):
        if set(obj) == {"dtype", "bdata"}:
            values = array.array({"f4": "f", "f8": "d", "i4": "i"}[obj["dtype"]], base64.b64decode(obj["bdata"]))
            return [None if v != v else v for v in values]
        return {k: unpack(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unpack(v) for v in obj]
    return obj


def page_data(path: Path) -> dict:
    text = path.read_text()
    m = re.search(r'<script type="application/json" id="view-data">(.*?)</script>', text, re.S)
    assert m, "no embedded data"
    return unpack(json.loads(m.group(1)))


class FakeLogger:
    def __init__(self, name: str = "logs") -> None:
        self.name = name
        self.values: dict[str, list] = {}


class FakeEngine:
    def __init__(self, options: Options) -> None:
        self.options = options
        self.logger = FakeLogger()
        self.hooks: dict[str, list] = {}

    def register_hook(self, name: str, fn) -> None:
        self.hooks.setdefault(name, []).append(fn)

    def fire(self, name: str) -> None:
        for fn in self.hooks.get(name, []):
            fn(self)


# --------------------------------------------------------------------------- item language
def test_parse_item_and_overlay():
    panel = views.parse_item("logs:train_epoch.loss")
    assert panel.items == (views.Item("logs", "train_epoch.loss"),)
    panel = views.parse_item("logs:train_epoch.loss + logs_eval:eval_epoch.loss")
    assert [str(i) for i in panel.items] == ["logs:train_epoch.loss", "logs_eval:eval_epoch.loss"]
    assert panel.title == "train_epoch.loss + logs_eval:eval_epoch.loss"
    assert panel.items[0].is_epoch and panel.items[0].split == "train_epoch"
    assert not views.parse_item("logs:train_batch.loss").items[0].is_epoch


@pytest.mark.parametrize(
    "raw, message",
    [
        ("logs.train_epoch.loss", f"view: bad item 'logs.train_epoch.loss'; {EXPECTED}"),
        ("logs:", f"view: bad item 'logs:'; {EXPECTED}"),
        (":train_epoch.loss", f"view: bad item ':train_epoch.loss'; {EXPECTED}"),
        ("logs:a+", f"view: bad item 'logs:a+' (part ''); {EXPECTED}"),
        ("logs:a+eval_epoch.loss", f"view: bad item 'logs:a+eval_epoch.loss' (part 'eval_epoch.loss'); {EXPECTED}"),
        ("../etc:loss", f"view: bad item '../etc:loss'; {EXPECTED}"),
        ("logs:a:b", f"view: bad item 'logs:a:b'; {EXPECTED}"),
        (3, f"view: bad item 3 (int); {EXPECTED}"),
    ],
)
def test_bad_items_raise_one_line(raw, message):
    with pytest.raises(OptionsError) as exc:
        views.parse_view_option([raw])
    assert str(exc.value) == message
    assert isinstance(exc.value, ValueError) and "\n" not in str(exc.value)


def test_bad_item_in_dict_names_its_path():
    with pytest.raises(OptionsError) as exc:
        views.parse_view_option([{"name": "plotly", "items": ["logs:a", "oops"]}])
    assert str(exc.value) == f"view[0].items: bad item 'oops'; {EXPECTED}"


def test_view_option_forms():
    assert views.parse_view_option([]) == []
    assert views.parse_view_option(None) == []
    (spec,) = views.parse_view_option(["logs:train_epoch.loss", "logs:eval_epoch.acctop1"])
    assert spec.name == "plotly" and spec.file_name == "view.html" and len(spec.panels) == 2
    (spec,) = views.parse_view_option("logs:train_epoch.loss")
    assert len(spec.panels) == 1
    (spec,) = views.parse_view_option({"name": "plotly", "items": ["logs:a"], "file_name": "v2.html"})
    assert spec.file_name == "v2.html"
    (spec,) = views.parse_view_option({"name": "plotly"})
    assert spec.panels is None  # no items: every epoch metric
    specs = views.parse_view_option([{"name": "plotly", "items": ["logs:a"]},
                                     {"name": "tensorboard", "items": ["logs:a"]}])
    assert [s.name for s in specs] == ["plotly", "tensorboard"]
    specs = views.parse_view_option({"names": ["plotly", "tensorboard"], "items_plotly": ["logs:a"],
                                     "items_tensorboard": ["logs:b"]})  # the seed's multi-view form
    assert [(s.name, s.panels[0].items[0].key) for s in specs] == [("plotly", "a"), ("tensorboard", "b")]


@pytest.mark.parametrize(
    "value, message",
    [
        ({"name": "plotyl"}, "view.name: unknown view 'plotyl'; did you mean plotly? (valid: plotly, "
                             "tensorboard; or set view.import to a module with a factory)"),
        ({"name": "plotly", "itmes": []}, "view.itmes: unknown view key; did you mean items? "
                                          "(valid: name, items, file_name, import)"),
        ({"file_name": "../v.html"}, "view.file_name: expected a file name ending in .html such as "
                                     "'view.html', got '../v.html'"),
        (3, "view: expected a list of items like [logs:train_epoch.loss], a dict {name, items, file_name} "
            "or a list of such dicts, got int 3"),
        ([{"name": "plotly"}, {"name": "plotly"}], "view[1].file_name: 'view.html' is already written by "
                                                   "view[0]; give each plotly view its own file_name"),
    ],
)
def test_bad_view_option(value, message):
    with pytest.raises(OptionsError) as exc:
        views.parse_view_option(value)
    assert str(exc.value) == message


def test_x_axis_from_epoch_values():
    logs = {"logs": {"train_epoch.epoch": [1, 2, 3], "train_epoch.loss": [3.0, 2.0, 1.0],
                     "eval_epoch.epoch": [1, 3], "eval_epoch.loss": [2.5, 1.5, 0.5],
                     "train_batch.loss": [1.0, 0.9]}}
    item = lambda s: views.parse_item(s).items[0]  # noqa: E731
    assert views.series(logs, item("logs:train_epoch.loss")) == ([1, 2, 3], [3.0, 2.0, 1.0])
    assert views.series(logs, item("logs:eval_epoch.loss")) == (None, [2.5, 1.5, 0.5])  # length differs
    assert views.series(logs, item("logs:train_batch.loss")) == (None, [1.0, 0.9])
    assert views.series(logs, item("logs:test_epoch.loss")) == (None, [])


def test_default_items_overlay_train_and_eval():
    panels = views.default_items({"logs": {**epoch_logs(), "train_batch.loss": [1.0]}})
    assert [(p.title, [i.key for i in p.items]) for p in panels] == [
        ("loss", ["train_epoch.loss", "eval_epoch.loss"]),
        ("acctop1", ["train_epoch.acctop1", "eval_epoch.acctop1"]),
    ]


# --------------------------------------------------------------------------- the page
def test_build_overlays_and_epoch_axis(tmp_path):
    view = views.View(tmp_path, ["logs:train_epoch.loss+logs:eval_epoch.loss", "logs:train_epoch.acctop1"])
    logs = epoch_logs()
    logs["train_epoch.epoch"] = [1, 2, 3, 4, 5]
    path = view.build({"logs": logs})
    assert path == tmp_path / "view.html"
    data = page_data(path)
    first, second = data["subplots"]
    assert [t["name"] for t in first["traces"]] == ["train_epoch.loss", "eval_epoch.loss"]
    assert first["traces"][0]["x0"] == 1 and first["traces"][0]["dx"] == 1  # epochs 1..5
    assert "x" not in first["traces"][1] and "x0" not in first["traces"][1]  # epochs 0..4: the index
    assert first["traces"][0]["y"] == logs["train_epoch.loss"]
    assert first["xlabel"] == "epoch"
    assert len(second["traces"]) == 1
    assert "<title>" + tmp_path.name + "</title>" in path.read_text()


def test_missing_keys_draw_an_empty_subplot(tmp_path):
    path = views.View(tmp_path, ["logs:eval_epoch.acctop1", "logs:train_epoch.loss"]).build(
        {"logs": {"train_epoch.loss": [1.0]}})
    sub = page_data(path)["subplots"]
    assert sub[0]["traces"] == [] and sub[0]["note"] == views.NO_DATA == "no data yet"
    assert len(sub[1]["traces"]) == 1 and "note" not in sub[1]


def test_values_are_compact_and_non_finite_become_null(tmp_path):
    y = [0.3450000286102295, float("nan"), float("inf"), None, 2, True, 1e-12]
    path = views.View(tmp_path, ["logs:train_batch.loss"]).build({"logs": {"train_batch.loss": y}})
    assert page_data(path)["subplots"][0]["traces"][0]["y"] == [0.345, None, None, None, 2, 1, 1e-12]


def test_long_series_are_decimated_keeping_spikes(tmp_path):
    y = [1.0] * 100_000
    y[54_321] = 50.0
    y[77_777] = -3.0
    view = views.View(tmp_path, ["logs:train_batch.loss"])
    (trace,) = page_data(view.build({"logs": {"train_batch.loss": y}}))["subplots"][0]["traces"]
    assert len(trace["y"]) <= view.max_points and len(trace["x"]) == len(trace["y"])
    assert max(trace["y"]) == 50.0 and min(trace["y"]) == -3.0
    assert trace["x"][trace["y"].index(50.0)] == 54_321 and trace["x"][trace["y"].index(-3.0)] == 77_777
    assert trace["name"] == "train_batch.loss (min/max per 16)"  # buckets are powers of two (merged pairwise)
    x, y2, bucket = views.decimate([10 * i for i in range(10)], [1, None, 3, 0, 5, 6, 7, 8, 9, 2], 4)
    assert bucket == 5 and x == [0, 80, 90] and y2 == [1, 9, 2]  # None in a bucket: its first value


def test_decimation_grows_incrementally_as_if_built_at_once():
    import random

    rng = random.Random(1)
    values: list = []
    grown = views.Decimation()
    for step in range(40):
        values.extend(rng.gauss(0, 1) for _ in range(rng.randrange(1, 3000)))
        if step == 7:
            values.extend([None, float("nan"), "x", float("inf")])  # not numbers: left out of min/max
        grown.update(views.Prefix(values), 100)
        assert len(grown.lo_i) <= 100
    at_once = views.Decimation()
    at_once.update(values, 100)
    assert grown.bucket == at_once.bucket and grown.points() == at_once.points()
    xs, ys = grown.points()
    assert max(ys) == max(v for v in values if isinstance(v, float) and math.isfinite(v))
    assert values[xs[ys.index(min(ys))]] == min(ys)


def test_decimation_starts_over_on_another_or_shorter_list():
    dec = views.Decimation()
    values = [float(i) for i in range(1000)]
    dec.update(views.Prefix(values), 10)
    assert dec.points()[1][-1] == 999.0
    dec.update(views.Prefix(values[:500]), 10)  # truncated (the logger replaces the list)
    assert dec.points()[1][-1] == 499.0 and dec.n == 500


def test_budget_is_shared_and_the_page_stays_small_at_a_million_points(tmp_path):
    import random

    rng = random.Random(0)
    logs = epoch_logs(1000, metrics=("loss", "acctop1", "acctop5", "lr"))
    logs["train_batch.loss"] = [rng.random() for _ in range(1_000_000)]
    items = [f"logs:train_epoch.{m}+logs:eval_epoch.{m}" for m in ("loss", "acctop1", "acctop5", "lr")]
    items.append("logs:train_batch.loss")
    view = views.View(tmp_path, items)
    path = view.build({"logs": logs})
    assert path.stat().st_size < 300_000
    traces = [t for sp in page_data(path)["subplots"] for t in sp["traces"]]
    assert all(len(t["y"]) == 1000 for t in traces[:-1])  # short curves keep every point
    assert sum(len(t["y"]) for t in traces) <= view.max_points
    assert views.shares([10, 5000, 100_000], 1000) == [10, 495, 495]


def test_flush_hands_over_lengths_not_copies(tmp_path):
    engine = FakeEngine(make_options(tmp_path, ["logs:train_batch.loss"]))
    view = views.factory(engine)
    loss = [float(i) for i in range(100)]
    engine.logger.values = {"train_batch.loss": loss}
    logs = views.snapshot_logs(views.engine_logs(engine))
    assert logs["logs"]["train_batch.loss"].source is loss and len(logs["logs"]["train_batch.loss"]) == 100
    engine.fire("train_on_flush")
    loss.extend([1e6] * 50)  # logged after the flush: not on this page
    engine.fire("train_on_end")
    (trace,) = page_data(tmp_path / "view.html")["subplots"][0]["traces"]
    assert trace["y"] == loss[:100]


def test_background_rebuilds_are_spaced_and_wait_does_not_sleep(tmp_path):
    engine = FakeEngine(make_options(tmp_path, ["logs:train_epoch.loss"]))
    view = views.factory(engine)
    view.min_interval = 30.0
    engine.logger.values = {"train_epoch.loss": [1.0]}
    engine.fire("train_on_flush")
    view.wait()
    engine.logger.values["train_epoch.loss"].append(2.0)
    engine.fire("train_on_flush")  # within min_interval of the last build: waits
    time.sleep(0.2)
    assert page_data(tmp_path / "view.html")["subplots"][0]["traces"][0]["y"] == [1.0]
    t0 = time.perf_counter()
    view.wait()  # the end of a run: built now
    assert time.perf_counter() - t0 < 5
    assert page_data(tmp_path / "view.html")["subplots"][0]["traces"][0]["y"] == [1.0, 2.0]


def test_long_arrays_are_typed_arrays(tmp_path):
    y = [0.5, None, float("inf"), 1e39] + [float(i) for i in range(100)]
    path = views.View(tmp_path, ["logs:train_batch.loss"]).build({"logs": {"train_batch.loss": y}})
    raw = json.loads(re.search(r'id="view-data">(.*?)</script>', path.read_text(), re.S).group(1))
    packed = raw["subplots"][0]["traces"][0]["y"]
    assert packed["dtype"] == "f8"  # 1e39 is past float32's range
    assert page_data(path)["subplots"][0]["traces"][0]["y"] == [0.5, None, None, 1e39, *map(float, range(100))]
    path = views.View(tmp_path, ["logs:train_batch.loss"]).build({"logs": {"train_batch.loss": y[4:]}})
    assert json.loads(re.search(r'id="view-data">(.*?)</script>', path.read_text(), re.S).group(1))[
        "subplots"][0]["traces"][0]["y"]["dtype"] == "f4"


def test_missing_or_corrupt_json_reads_as_empty(tmp_path):
    (tmp_path / "logs.json").write_text('{"train_epoch.loss": [1.0, 0.5')  # torn
    (tmp_path / "logs_eval.json").write_text("[1, 2]")  # not a mapping
    path = views.View(tmp_path, ["logs:train_epoch.loss", "logs_eval:x", "other:y"]).build()
    assert all(sp["note"] == "no data yet" for sp in page_data(path)["subplots"])


def test_reads_json_files_when_no_logs_given(tmp_path):
    (tmp_path / "logs.json").write_text(json.dumps(epoch_logs()))
    (tmp_path / "logs_eval.json").write_text(json.dumps({"test_epoch.map": [0.1, 0.2]}))
    path = views.View(tmp_path, ["logs:train_epoch.loss", "logs_eval:test_epoch.map"]).build()
    sub = page_data(path)["subplots"]
    assert sub[0]["traces"][0]["y"] == epoch_logs()["train_epoch.loss"]
    assert sub[1]["traces"][0]["y"] == [0.1, 0.2] and sub[1]["traces"][0]["name"] == "logs_eval:test_epoch.map"


def test_page_is_small(tmp_path):
    import random

    rng = random.Random(0)
    n = 1000
    logs = {"train_epoch.epoch": list(range(n)), "eval_epoch.epoch": list(range(n))}
    items = []
    for k in range(5):
        logs[f"train_epoch.m{k}"] = [rng.random() for _ in range(n)]
        items.append(f"logs:train_epoch.m{k}")
    path = views.View(tmp_path, items).build({"logs": logs})
    size = path.stat().st_size
    assert size < 300_000, f"view.html is {size / 1000:.0f} KB for 5 subplots x 1000 points"
    assert "Plotly.newPlot" in path.read_text() and "plotly.js v" not in path.read_text()  # not embedded


def test_plotly_js_beside_page_is_a_hard_link(tmp_path, asset_cache):
    exp = tmp_path / "exp"
    path = views.View(exp, ["logs:train_epoch.loss"]).build({"logs": epoch_logs()})
    version = views.plotly_js_version()
    js = exp / f"plotly-{version}.min.js"
    assert js.is_file() and f'src="{js.name}"' in path.read_text()
    cached = asset_cache / js.name
    assert os.path.samefile(js, cached) and js.stat().st_nlink >= 2
    assert js.stat().st_size == views.plotly_js_source().stat().st_size
    assert js.stat().st_mode & 0o044 == 0o044  # readable by others, like a normal file
    views.View(tmp_path / "exp2", ["logs:a"]).build({})
    assert os.path.samefile(tmp_path / "exp2" / js.name, cached)


def test_plotly_js_is_copied_when_links_fail(tmp_path, monkeypatch):
    def no_link(*args, **kwargs):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(_plotly.os, "link", no_link)
    path = views.View(tmp_path, ["logs:a"]).build({})
    js = tmp_path / f"plotly-{views.plotly_js_version()}.min.js"
    assert js.is_file() and js.stat().st_nlink == 1
    assert js.stat().st_size == views.plotly_js_source().stat().st_size
    assert path.is_file()


def test_no_usable_cache_still_copies(tmp_path, monkeypatch):
    monkeypatch.setattr(_plotly, "asset_cache_dir", lambda: None)
    views.View(tmp_path, ["logs:a"]).build({})
    assert (tmp_path / f"plotly-{views.plotly_js_version()}.min.js").is_file()


def test_asset_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("BOOTSTRAP_REPRO_CACHE_DIR", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert views.asset_cache_dir() == tmp_path / "a" / "assets"
    monkeypatch.delenv("BOOTSTRAP_REPRO_CACHE_DIR")
    assert views.asset_cache_dir() == tmp_path / "x" / "bootstrap-repro" / "assets"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert views.asset_cache_dir() == Path.home() / ".cache" / "bootstrap-repro" / "assets"


def test_text_cannot_break_out_of_the_page(tmp_path):
    path = views.write_html(tmp_path / "r.html", [{"title": "</script><b>x", "traces": [
        {"name": "</script>", "y": [1, 2]}]}], title="<t>", header="a & b")
    text = path.read_text()
    assert "</script><b>" not in text and "<title>&lt;t&gt;</title>" in text and "a &amp; b" in text
    assert page_data(path)["subplots"][0]["title"] == "</script><b>x"


def test_build_is_fast(tmp_path):
    logs = epoch_logs(100, metrics=("loss", "acctop1", "acctop5", "lr"))
    logs["train_batch.loss"] = [1.0 / (i + 1) for i in range(20_000)]
    items = ["logs:train_epoch.loss+logs:eval_epoch.loss", "logs:train_batch.loss",
             *(f"logs:{s}_epoch.{m}" for s in ("train", "eval") for m in ("acctop1", "acctop5", "lr"))]
    view = views.View(tmp_path, items)
    view.build({"logs": logs})
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        view.build({"logs": logs})
        times.append(time.perf_counter() - t0)
    assert sorted(times)[2] < 0.25, f"median rebuild {sorted(times)[2] * 1000:.0f} ms"


def test_views_import_neither_torch_nor_plotly(tmp_path):
    code = (
        "import sys, bootstrap_repro.views as v;"
        f"v.View({str(tmp_path)!r}, ['logs:a']).build({{}});"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'plotly', 'numpy'));"
        "assert not bad, bad"
    )
    env = {**os.environ, "BOOTSTRAP_REPRO_CACHE_DIR": str(tmp_path / "c")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


# --------------------------------------------------------------------------- factory / hooks / rebuild
def make_options(exp_dir: Path, view) -> Options:
    return Options({"exp": {"dir": str(exp_dir)}, "view": view})


def test_factory_registers_flush_hooks_and_rebuilds(tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    engine = FakeEngine(make_options(exp, ["logs:train_epoch.loss+logs:eval_epoch.loss"]))
    view = views.factory(engine)
    assert isinstance(view, views.View)
    assert sorted(views.FLUSH_HOOKS) == ["eval_on_flush", "train_on_flush"]
    assert sorted(engine.hooks) == sorted(views.FLUSH_HOOKS + views.END_HOOKS)
    engine.logger.values = {"train_epoch.epoch": [0], "train_epoch.loss": [1.5]}
    engine.fire("train_on_flush")
    engine.fire("train_on_end")  # the rebuild runs in the background; the end hook waits for it
    sub = page_data(exp / "view.html")["subplots"][0]
    assert [t["name"] for t in sub["traces"]] == ["train_epoch.loss"]  # eval not there yet: no error
    engine.logger.values.update({"eval_epoch.epoch": [0], "eval_epoch.loss": [1.7]})
    engine.fire("eval_on_flush")
    view.wait()
    sub = page_data(exp / "view.html")["subplots"][0]
    assert [t["y"] for t in sub["traces"]] == [[1.5], [1.7]]


def test_failed_rebuild_in_a_hook_warns_and_training_goes_on(tmp_path, monkeypatch):
    engine = FakeEngine(make_options(tmp_path, ["logs:train_epoch.loss"]))
    view = views.factory(engine)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_plotly, "atomic_write_text", disk_full)
    with pytest.warns(RuntimeWarning, match=r"view: could not rebuild the plotly view in .*No space left"):
        engine.fire("train_on_flush")
        view.wait()


def test_factory_uses_the_logger_name(tmp_path):
    engine = FakeEngine(make_options(tmp_path, ["mylogs:train_epoch.loss"]))
    engine.logger = FakeLogger("mylogs")
    engine.logger.values = {"train_epoch.loss": [0.5]}
    view = views.factory(engine)
    engine.fire("train_on_flush")
    view.wait()
    assert page_data(tmp_path / "view.html")["subplots"][0]["traces"][0]["y"] == [0.5]


def test_factory_without_engine_reads_current_options(tmp_path):
    opt = make_options(tmp_path, {"name": "plotly", "items": ["logs:a"], "file_name": "v.html"})
    with opt.activate():
        view = views.factory()
    assert isinstance(view, views.View) and view.path == tmp_path / "v.html"
    with make_options(tmp_path, []).activate():
        assert views.factory() is None


def test_factory_several_views(tmp_path, monkeypatch):
    monkeypatch.setattr(_tensorboard, "_check_installed", lambda: None)
    engine = FakeEngine(make_options(tmp_path, [{"name": "plotly", "items": ["logs:a"]},
                                                {"name": "tensorboard"}]))
    view = views.factory(engine)
    assert isinstance(view, views.MultiView)
    assert [type(v) for v in view.views] == [views.View, views.TensorboardView]
    assert sum(len(fns) for fns in engine.hooks.values()) == 4  # the multi-view's flush and end hooks


def test_factory_imports_a_user_view_module(tmp_path, monkeypatch):
    (tmp_path / "my_views.py").write_text(
        "calls = []\n"
        "class Seedish:\n"
        "    def generate(self):\n"
        "        calls.append('generate')\n"
        "def factory():\n"
        "    return Seedish()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    engine = FakeEngine(make_options(tmp_path, {"import": "my_views"}))
    view = views.factory(engine)
    engine.fire("eval_on_flush")
    view.wait()
    import my_views

    assert my_views.calls == ["generate"] and isinstance(view, views.BaseView)
    with pytest.raises(PluginError, match=r"^view.import: module 'no_such_views' not found"):
        views.factory(FakeEngine(make_options(tmp_path, {"import": "no_such_views"})))


def test_tensorboard_missing_package_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    message = ("view: tensorboard export needs the tensorboard package; "
               "pip install 'bootstrap-repro[tensorboard]'")
    with pytest.raises(PluginError) as exc:
        views.factory(FakeEngine(make_options(tmp_path, {"name": "tensorboard"})))
    assert str(exc.value) == message and isinstance(exc.value, ImportError)
    monkeypatch.setattr(_tensorboard, "_check_installed", lambda: None)
    view = views.TensorboardView(tmp_path)
    with pytest.raises(PluginError) as exc:  # the lazy import itself fails the same way
        view.build({"logs": epoch_logs()})
    assert str(exc.value) == message


def test_tensorboard_writes_new_epoch_values_only(tmp_path, monkeypatch):
    written: list[tuple[str, float, int]] = []

    class FakeWriter:
        def __init__(self, log_dir: str) -> None:
            self.log_dir = log_dir

        def add_scalar(self, tag, value, step):
            written.append((tag, value, step))

        def flush(self):
            pass

        def close(self):
            pass

    monkeypatch.setattr(_tensorboard, "_check_installed", lambda: None)
    monkeypatch.setattr(_tensorboard, "_import_summary_writer", lambda: FakeWriter)
    view = views.TensorboardView(tmp_path)
    logs = {"train_epoch.epoch": [1], "train_epoch.loss": [0.9], "train_batch.loss": [1.0, 0.8]}
    assert view.build({"logs": logs}) == tmp_path / "tensorboard"
    assert written == [("loss/epoch/train_epoch", 0.9, 1)]
    logs = {"train_epoch.epoch": [1, 2], "train_epoch.loss": [0.9, 0.7], "eval_epoch.loss": [0.95]}
    view.build({"logs": logs})
    assert written[1:] == [("loss/epoch/train_epoch", 0.7, 2), ("loss/epoch/eval_epoch", 0.95, 0)]


def test_rebuild_uses_the_saved_view_option(tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    make_options(tmp_path / "elsewhere", ["logs:train_epoch.acctop1"]).save(exp / "options.yaml")
    (exp / "logs.json").write_text(json.dumps(epoch_logs()))
    assert views.rebuild(exp) == [exp / "view.html"]  # the given dir, not the saved exp.dir
    (sub,) = page_data(exp / "view.html")["subplots"]
    assert sub["title"] == "train_epoch.acctop1"


def test_rebuild_defaults_to_every_epoch_metric(tmp_path):
    (tmp_path / "logs.json").write_text(json.dumps(epoch_logs()))
    assert views.rebuild(tmp_path) == [tmp_path / "view.html"]  # no options.yaml
    sub = page_data(tmp_path / "view.html")["subplots"]
    assert [s["title"] for s in sub] == ["loss", "acctop1"]
    assert [t["name"] for t in sub[0]["traces"]] == ["train_epoch.loss", "eval_epoch.loss"]
    make_options(tmp_path, []).save(tmp_path / "options.yaml")  # empty view option
    views.rebuild(tmp_path)
    assert len(page_data(tmp_path / "view.html")["subplots"]) == 2


def test_rebuild_bad_dir(tmp_path):
    with pytest.raises(OptionsError) as exc:
        views.rebuild(tmp_path / "nope")
    assert str(exc.value) == (f"{tmp_path / 'nope'}: not an experiment dir (no options.yaml nor logs.json); "
                              f"pass the exp.dir of a run")


def test_rebuild_bad_item_names_the_file(tmp_path):
    make_options(tmp_path, ["logs.loss"]).save(tmp_path / "options.yaml")
    with pytest.raises(OptionsError) as exc:
        views.rebuild(tmp_path)
    assert str(exc.value) == f"{tmp_path / 'options.yaml'}: view: bad item 'logs.loss'; {EXPECTED}"


# --------------------------------------------------------------------------- in a browser
@pytest.mark.chromium
def test_chromium_draws_every_subplot(tmp_path):
    require_chromium()
    logs = epoch_logs(10)
    logs["train_batch.loss"] = [1.0 / (i + 1) for i in range(500)]
    path = views.View(tmp_path, ["logs:train_epoch.loss+logs:eval_epoch.loss", "logs:train_batch.loss",
                                 "logs:test_epoch.map"]).build({"logs": logs})
    dom = render_dom(path)
    assert error_banner(dom) == ""
    assert drawn_subplots(dom) == (3, 3)  # the "no data yet" one too


@pytest.mark.chromium
def test_chromium_draws_typed_arrays(tmp_path):
    """Decimated, base64-packed curves (f4 y, i4 x) are drawn as lines by the bundled plotly.js."""
    require_chromium()
    logs = epoch_logs(1000)
    logs["train_batch.loss"] = [math.sin(i / 50) for i in range(100_000)]
    path = views.View(tmp_path, ["logs:train_batch.loss", "logs:train_epoch.loss"]).build({"logs": logs})
    assert '"bdata"' in path.read_text()
    dom = render_dom(path)
    assert error_banner(dom) == "" and drawn_subplots(dom) == (2, 2)
    lines = re.findall(r'<path[^>]*class="js-line"[^>]*>', dom)
    assert sum(d.count("L") > 10 for d in lines) == 2, [d[:200] for d in lines]  # legend samples have none


@pytest.mark.chromium
def test_chromium_shows_the_error_banner_when_plotly_is_missing(tmp_path):
    require_chromium()
    path = views.View(tmp_path, ["logs:train_epoch.loss"]).build({"logs": epoch_logs()})
    (tmp_path / f"plotly-{views.plotly_js_version()}.min.js").unlink()
    dom = render_dom(path)
    assert "plotly.js is missing" in error_banner(dom)
    assert drawn_subplots(dom) == (0, 0)


@pytest.mark.chromium
def test_chromium_shows_script_errors(tmp_path):
    require_chromium()
    path = views.write_html(tmp_path / "r.html", [{"title": "</script>", "traces": [
        {"name": "a", "y": [1, 2, 3], "marker": {"color": "red"}}]}], title="report")
    dom = render_dom(path)
    assert error_banner(dom) == "" and drawn_subplots(dom) == (1, 1)
    path.write_text(path.read_text().replace("Plotly.newPlot(", "Plotly.noSuchFunction("))
    dom = render_dom(path)
    assert "script error" in error_banner(dom) and drawn_subplots(dom) == (0, 1)


def test_trace_json_keeps_the_trace_type_once():
    """A non-scatter trace (the sweep report's parallel coordinates) is written with its own type, no x/y."""
    def no_duplicates(pairs):
        keys = [k for k, _ in pairs]
        assert len(keys) == len(set(keys)), keys
        return dict(pairs)

    par = json.loads(_plotly._trace_json({"type": "parcoords", "dimensions": [{"label": "lr", "values": [1, 2]}]}),
                     object_pairs_hook=no_duplicates)
    assert par == {"type": "parcoords", "dimensions": [{"label": "lr", "values": [1, 2]}]}
    line = json.loads(_plotly._trace_json({"x": [0, 1, 2], "y": [3, 4, 5], "name": "loss"}), object_pairs_hook=no_duplicates)
    assert line == {"type": "scatter", "y": [3, 4, 5], "mode": "lines", "name": "loss"}  # x = 0, 1, 2 implied
