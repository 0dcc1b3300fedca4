"""When the view's pages are built: not at once on the first flush, at once on the run's last one."""

from __future__ import annotations

import time
from types import SimpleNamespace

from bootstrap_repro import views
from bootstrap_repro.options import Options

from test_views import FakeEngine, page_data


def _engine(tmp_path, epoch: int, nb_epochs: int, with_eval: bool = True) -> FakeEngine:
    engine = FakeEngine(Options({"exp": {"dir": str(tmp_path)}, "view": ["logs:train_epoch.loss"]}))
    engine.state = SimpleNamespace(epoch=epoch, stop_reason=None)
    engine.nb_epochs = nb_epochs
    engine.dataset = {"train": [], "eval": []} if with_eval else {"train": []}
    engine.logger.values = {"train_epoch.loss": [1.0]}
    return engine


def _built_within(path, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.02)
    return path.exists()


def test_first_page_waits_min_interval(tmp_path):
    engine = _engine(tmp_path, epoch=0, nb_epochs=5)
    view = views.factory(engine)
    view.min_interval = 30.0
    engine.fire("train_on_flush")
    engine.fire("eval_on_flush")
    assert not _built_within(tmp_path / "view.html", 0.3), "the first flush built a page at once"
    view.wait()  # the end of the run: built now
    assert page_data(tmp_path / "view.html")["subplots"][0]["traces"][0]["y"] == [1.0]


def test_last_flush_of_the_run_is_built_at_once(tmp_path):
    engine = _engine(tmp_path, epoch=4, nb_epochs=5)
    view = views.factory(engine)
    view.min_interval = 30.0
    engine.fire("train_on_flush")  # an eval epoch follows: not the last flush
    assert not _built_within(tmp_path / "view.html", 0.3)
    engine.fire("eval_on_flush")
    assert _built_within(tmp_path / "view.html", 10), "the run's last flush waited for min_interval"
    view.wait()


def test_last_train_flush_without_eval_is_built_at_once(tmp_path):
    engine = _engine(tmp_path, epoch=1, nb_epochs=2, with_eval=False)
    view = views.factory(engine)
    view.min_interval = 30.0
    engine.fire("train_on_flush")
    assert _built_within(tmp_path / "view.html", 10)
    view.wait()
