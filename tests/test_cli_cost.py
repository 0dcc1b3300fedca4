"""What ``bootstrap-repro run`` adds around the training loop (issue 15): imports, checks, reads, exit.

Each test pins one saving so that it can fail when the cost comes back: a plain local run imports
none of the optional stacks, the options are checked once, a resume reads each checkpoint file once,
the process ends with the garbage collector frozen (Python's shutdown then has nothing to collect).
"""

from __future__ import annotations

import io
import json
import os
import textwrap
from pathlib import Path

import pytest

from bootstrap_repro.options import Options
from bootstrap_repro.run import run

from conftest import cli

#: Imported by no plain local run (options file, synthetic data, a plotly view, the record, the cache).
NOT_IMPORTED = ("plotly", "optuna", "docker", "submitit", "git", "sqlalchemy", "tensorboard", "psycopg2",
                "bootstrap_repro.runtimes", "bootstrap_repro.sweep", "bootstrap_repro.compat",
                "bootstrap_repro.migrate", "bootstrap_repro.record._rerun", "bootstrap_repro.record._verify")

#: A hook module whose atexit handler (registered first, so it runs last) writes what the process imported
#: and whether the garbage collector was frozen by then.
PROBE = textwrap.dedent("""
    import atexit, gc, json, os, sys

    def _report():
        with open(os.environ["PROBE_OUT"], "w") as f:
            json.dump({"modules": sorted(sys.modules), "frozen": gc.get_freeze_count()}, f)

    atexit.register(_report)

    def register(engine):
        pass
""")


@pytest.mark.slow
def test_plain_local_run_imports_no_optional_stack_and_ends_frozen(tmp_path, tiny_file):
    (tmp_path / "probe_hooks.py").write_text(PROBE)
    opts = tiny_file({"view": ["logs:train_epoch.loss+logs:eval_epoch.loss"]})
    out = tmp_path / "probe.json"
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
           "BOOTSTRAP_REPRO_HOOKS": "probe_hooks", "PROBE_OUT": str(out)}
    r = cli("run", "-o", str(opts), cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "exp" / "view.html").is_file()  # the view was built: its module ran, plotly's python API did not
    probe = json.loads(out.read_text())
    imported = [m for m in probe["modules"] if m in NOT_IMPORTED or m.split(".")[0] in NOT_IMPORTED
                or any(m.startswith(p + ".") for p in NOT_IMPORTED)]
    assert imported == [], f"a plain local run imported {imported}"
    assert probe["frozen"] > 0, "the objects alive at exit were not frozen (cli.prepare_exit)"
    record = json.loads((tmp_path / "exp" / "repro" / "record.json").read_text())
    assert record["status"] == "COMPLETED" and record["runtime"]["engine"]["device"] == "cpu"


def test_options_are_checked_once(tiny_file, monkeypatch):
    from bootstrap_repro import _schema

    calls = []
    real = _schema.check
    monkeypatch.setattr(_schema, "check", lambda *a, **k: calls.append(1) or real(*a, **k))
    opt = Options.load(tiny_file(), [])
    assert len(calls) == 1
    assert run(opt, handle_signals=False).status == "COMPLETED"
    assert len(calls) == 1, "run() checked options that Options.load had checked as they are"
    changed = Options.load(tiny_file(), [], check=False)
    changed["engine.nb_epochs"] = 3
    changed.check()
    changed["engine.nb_epochs"] = 0
    with pytest.raises(Exception, match="engine.nb_epochs"):
        changed.check()  # a changed tree is checked again
    assert len(calls) == 3


def test_resume_reads_each_checkpoint_file_once(tiny_file, monkeypatch):
    from bootstrap_repro.engines import _checkpoint

    assert run(Options.load(tiny_file(), []), handle_signals=False).status == "COMPLETED"
    reads: list[str] = []
    real = _checkpoint._load
    monkeypatch.setattr(_checkpoint, "_load", lambda path, loc: reads.append(Path(path).name) or real(path, loc))
    res = run(Options.load(tiny_file(), ["--exp.resume", "last", "--engine.nb_epochs", "3"]), handle_signals=False)
    assert res.status == "COMPLETED" and res.engine.state.epoch == 3
    assert sorted(reads) == ["ckpt_last_engine.pth.tar", "ckpt_last_model.pth.tar", "ckpt_last_optimizer.pth.tar"]


def test_resume_reads_again_a_checkpoint_file_changed_since_it_was_verified(tiny_file, tmp_path):
    """What verify read is used only while the file is as it was: a file replaced meanwhile is read anew."""
    import torch

    from bootstrap_repro.engines import Checkpointer
    from bootstrap_repro.run import _build
    from bootstrap_repro.logger import Logger

    assert run(Options.load(tiny_file(), []), handle_signals=False).status == "COMPLETED"
    opt = Options.load(tiny_file(), ["--exp.resume", "last"]).freeze()
    logger = Logger(activate=False, echo=False)
    with opt.activate(), logger.activate():
        engine = _build(opt, logger, eval_only=False)
    ck = Checkpointer(tmp_path / "exp")
    ck.verify(engine, "last", train=True)
    path = ck.path("last", "model")
    state = torch.load(path, weights_only=True)
    state = {k: v + 1 if v.is_floating_point() else v for k, v in state.items()}
    torch.save(state, path.with_name("x.tmp"))
    os.replace(path.with_name("x.tmp"), path)  # replaced after the check: the load must see the new one
    ck.load(engine, "last")
    got = engine.model.state_dict()
    assert all(torch.equal(got[k], state[k]) for k in state if k in got)


def test_a_checkpoint_is_staged_while_its_logs_sync_and_commits_only_after(tiny_file, tmp_path):
    """The logs' fdatasync overlaps the checkpoint's writes, but the commit point waits for it."""
    import threading

    from bootstrap_repro.engines import Checkpointer

    res = run(Options.load(tiny_file(), []), handle_signals=False)
    assert res.status == "COMPLETED"
    synced, entered = threading.Event(), threading.Event()

    def slow_sync() -> None:
        entered.set()
        assert synced.wait(30)

    res.engine.logger.sync = slow_sync
    exp = tmp_path / "ck"
    exp.mkdir()
    ck = Checkpointer(exp)
    ck.save(res.engine, ["last"])
    assert entered.wait(30)
    names = sorted(p.name for p in exp.iterdir())
    assert len([n for n in names if n.endswith(".staged")]) == 3  # written while the logs sync
    assert not [n for n in names if n.endswith(".commit") or n.endswith(".pth.tar")]  # not committed
    synced.set()
    ck.wait()
    assert sorted(p.name for p in exp.iterdir()) == [
        "ckpt_last_engine.pth.tar", "ckpt_last_model.pth.tar", "ckpt_last_optimizer.pth.tar"]


def test_rng_words_are_saved_as_bytes_and_the_older_list_form_still_restores():
    """An engine file pickles the generators' words as two bytes objects, not ~1,250 ints (each a Python call
    on the commit thread); a file of the older form (lists of ints) restores the same generators."""
    import pickle
    import random

    import numpy as np
    import torch

    from bootstrap_repro.engines._checkpoint import rng_state, set_rng_state

    random.seed(3)
    np.random.seed(4)
    torch.manual_seed(5)
    np.random.randn()  # a cached gaussian is part of NumPy's state
    state = rng_state()
    assert isinstance(state["python"][1], bytes) and isinstance(state["numpy"][1], bytes)
    calls = []

    class Counting(pickle.Pickler):
        def persistent_id(self, obj):
            calls.append(obj)

    Counting(io.BytesIO()).dump(state)
    assert len(calls) < 60, len(calls)
    draws = (random.random(), np.random.rand(), np.random.randn(), torch.rand(1).item())
    older = {"python": random.getstate(), "torch": torch.get_rng_state()}
    name, keys, pos, has_gauss, cached = np.random.get_state()
    older["numpy"] = (name, keys.tolist(), pos, has_gauss, cached)
    later = (random.random(), np.random.rand())
    saved = io.BytesIO()
    torch.save(state, saved)
    saved.seek(0)
    set_rng_state(torch.load(saved, weights_only=True))  # what a resume reads back
    assert (random.random(), np.random.rand(), np.random.randn(), torch.rand(1).item()) == draws
    set_rng_state(older)
    assert (random.random(), np.random.rand()) == later


def test_an_engine_file_of_a_newer_format_is_one_line_and_nothing_is_written(tiny_file, tmp_path):
    """Format 2 (RNG words as bytes) is unreadable by the versions before it; from now on a version meeting a
    newer format than it reads says so in one line instead of failing inside ``random.setstate``."""
    import hashlib

    import torch

    opts = tiny_file()
    assert run(Options.load(opts, []), handle_signals=False).status == "COMPLETED"
    engine_file = tmp_path / "exp" / "ckpt_last_engine.pth.tar"
    state = torch.load(engine_file, weights_only=True)
    assert state["format"] == 2
    torch.save({**state, "format": 3}, engine_file)

    def digest() -> dict[str, str]:
        return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted((tmp_path / "exp").rglob("*"))
                if p.is_file()}

    before = digest()
    r = cli("run", "-o", str(opts), "--exp.resume", "last", "--engine.nb_epochs", "3")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip() == (
        f"error: {engine_file}: written by a newer bootstrap-repro (engine file format 3; this version reads up to "
        f"2); resume it with that version or a newer one (pip install -U bootstrap-repro)")
    assert digest() == before
