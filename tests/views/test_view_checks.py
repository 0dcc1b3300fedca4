"""The view option is checked before the experiment dir exists: the seed's ``views`` key, the tensorboard package."""

from __future__ import annotations

import importlib.util
import sys

import pytest
from conftest import cli
from test_cli import assert_bad_input

from bootstrap_repro import views
from bootstrap_repro.errors import OptionsError, PluginError
from bootstrap_repro.options import Options
from bootstrap_repro.run import validate

MISSING = "tensorboard export needs the tensorboard package; pip install 'bootstrap-repro[tensorboard]'"


def seed_views(tiny_file, value):
    """A tiny options file whose view is the seed's ``views:`` key (``view`` left out)."""
    path = tiny_file()
    text = path.read_text().replace("view: []\n", "")
    path.write_text(text + "views:\n" + "".join(f"  {line}\n" for line in value.splitlines()))
    return path


@pytest.mark.parametrize("value, expected", [
    ("names: [plotly]\nitems_plotly: 3", "views.items: expected a list of items like [logs:train_epoch.loss], got int 3"),
    ("name: plotlyy", ("views.name: unknown view 'plotlyy'; did you mean plotly? (valid: plotly, tensorboard; "
                      "or set views.import to a module with a factory)")),
])
def test_a_bad_seed_views_section_is_one_line_and_creates_nothing(capsys, tiny_file, tmp_path, value, expected):
    assert_bad_input(capsys, tmp_path, ["run", "-o", str(seed_views(tiny_file, value))], expected)


@pytest.mark.parametrize("key", ["view", "views"])
def test_tensorboard_missing_is_one_line_and_creates_nothing(capsys, tiny_file, tmp_path, monkeypatch, key):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    if key == "view":
        path = tiny_file({"view": {"name": "tensorboard"}})
    else:
        path = seed_views(tiny_file, "names: [plotly, tensorboard]\nitems_plotly: [logs:train_epoch.loss]")
    assert_bad_input(capsys, tmp_path, ["run", "-o", str(path)], f"{key}: {MISSING}")
    with pytest.raises(PluginError, match=f"^{key}: tensorboard export"):
        validate(Options.load(path, []))  # what launchers call first
    assert not (tmp_path / "exp").exists()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is not None, reason="tensorboard is installed")
def test_tensorboard_missing_through_the_cli_process(tiny_file, tmp_path):
    r = cli("run", "-o", str(tiny_file({"view": [{"name": "plotly"}, {"name": "tensorboard"}]})))
    assert r.returncode == 2 and r.stderr.strip() == f"error: view[1]: {MISSING}", r.stderr
    assert not (tmp_path / "exp").exists()


def test_check_view_option_reads_view_first_then_the_seed_key(monkeypatch):
    monkeypatch.setattr(views._tensorboard, "_check_installed", lambda: None)  # as if installed
    specs = views.check_view_option({"view": [], "views": {"names": ["plotly", "tensorboard"]}})
    assert [s.name for s in specs] == ["plotly", "tensorboard"]
    assert views.check_view_option({"view": ["logs:a.b"], "views": "garbage: ["}) != []  # view wins
    assert views.check_view_option({}) == []
    with pytest.raises(OptionsError, match=r"^views: expected a list of items"):
        views.check_view_option({"views": 3})
