"""Console lines every ``engine.print_freq`` batches, the TTY decision, and ``engine.log_batches``."""

from __future__ import annotations

import fcntl
import io
import json
import math
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import textwrap
from pathlib import Path

import pytest
import torch
from conftest import REPO, TINY, cli, write_options

from bootstrap_repro.engines._console import ConsoleLine, format_number
from bootstrap_repro.options import merge
from bootstrap_repro.run import bar_shown

# 80 items / batch 16 = 5 batches per epoch, train and eval alike.
NB_BATCHES = 5
LINE = re.compile(
    r"^\[I \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] engines/_engine: \[(?P<mode>train|eval)\] epoch (?P<epoch>\d+)/2 "
    r"batch (?P<batch>\d+)/5 loss \d+\.\d{4} acctop1 \d+\.\d\d acctop2 \d+\.\d\d \| \d+ items/s, "
    r"\d+\.\d ms/batch \(load \d+\.\d ms\) \| ETA epoch \d+:\d\d:\d\d$"
)


def options(tmp_path: Path, **engine) -> Path:
    tree = merge(TINY, {"exp": {"dir": str(tmp_path / "exp")}, "dataset": {"nb_items": 80}, "engine": engine})
    return write_options(tmp_path / "options.yaml", tree)


def progress_lines(text: str) -> list[re.Match[str]]:
    return [m for m in map(LINE.match, text.splitlines()) if m]


@pytest.mark.slow
@pytest.mark.parametrize("print_freq", [1, 2])
def test_no_tty_prints_a_line_every_print_freq_batches(tmp_path, print_freq):
    # progress_bar true, as by default: with no terminal (a pipe here) the lines replace the bar.
    r = cli("run", "-o", str(options(tmp_path, print_freq=print_freq, progress_bar=True)), "--no-cache")
    assert r.returncode == 0, r.stderr
    shown = progress_lines(r.stdout)
    printed = list(range(1, NB_BATCHES + 1, print_freq))  # batches 0, print_freq, ... (1-based here)
    assert len(printed) == math.ceil(NB_BATCHES / print_freq)
    expected = [(mode, str(epoch), str(b)) for epoch in (1, 2) for mode in ("train", "eval") for b in printed]
    assert [(m["mode"], m["epoch"], m["batch"]) for m in shown] == expected
    logged = progress_lines((tmp_path / "exp" / "logs.txt").read_text())
    assert [m.group(0) for m in logged] == [m.group(0) for m in shown]  # the same lines in logs.txt
    assert "it/s" not in r.stderr and "\r" not in r.stderr  # no bar


@pytest.mark.slow
def test_tty_shows_the_bar_and_keeps_the_lines_for_logs_txt(tmp_path):
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a new pty is 0 columns wide
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "bootstrap_repro", "run", "-o",
                             str(options(tmp_path, print_freq=2, progress_bar=True)), "--no-cache"],
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=300) == 0, b"".join(chunks).decode(errors="replace")
    screen = b"".join(chunks).decode(errors="replace")
    assert "batch/s" in screen or "s/batch" in screen, screen  # tqdm's bar was drawn
    assert "[train] epoch" not in screen, screen  # not printed twice: the bar shows the progress
    assert "Ending training procedures" in screen  # other messages still reach the screen
    logged = progress_lines((tmp_path / "exp" / "logs.txt").read_text())
    assert len(logged) == 2 * 2 * math.ceil(NB_BATCHES / 2)


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("enabled, out, err, shown", [
    (True, True, True, True),
    (True, False, True, False),  # run ... > out.log: the lines go to out.log
    (True, True, False, False),  # 2> err.log
    (True, False, False, False),  # cluster logs
    (False, True, True, False),  # engine.progress_bar false
])
def test_bar_is_shown_only_when_asked_and_both_streams_are_a_terminal(enabled, out, err, shown):
    assert bar_shown(enabled, _Stream(out), _Stream(err)) is shown
    closed = io.StringIO()
    closed.close()  # isatty() raises ValueError
    assert bar_shown(True, closed, _Stream(True)) is False


def test_line_format_reads_values_and_measures_since_the_previous_line():
    times = iter([1.0, 2.0])
    line = ConsoleLine("train", 0, 5, 64, start=0.0)
    out = {"loss": torch.tensor(0.69314, requires_grad=True) * 1, "acctop1": torch.tensor(50.0),
           "logits": torch.zeros(4, 3), "n": 3, "flag": True}
    first = line.line(0, out, [16], load=0.0004, clock=lambda: next(times))
    assert first == ("[train] epoch 1/5 batch 1/64 loss 0.6931 acctop1 50.00 n 3.0000 | 16 items/s, "
                     "1000.0 ms/batch (load 0.4 ms) | ETA epoch 0:01:03")
    second = line.line(10, out, [16] * 11, load=0.0014, clock=lambda: next(times))
    assert second.endswith("| 160 items/s, 100.0 ms/batch (load 0.1 ms) | ETA epoch 0:00:05")
    assert ConsoleLine("eval", 2, 3, 0, 0.0).line(0, {}, [0], 0.0, lambda: 1.0) == (
        "[eval] epoch 3/3 batch 1/? | 1000.0 ms/batch (load 0.0 ms)")
    assert [format_number(v) for v in (0.5, 12.345, 3e7, float("nan"))] == ["0.5000", "12.35", "3e+07", "nan"]


KILLER = textwrap.dedent("""
    import os, signal
    from bootstrap_repro.datasets import Synthetic

    def factory(engine):
        opt = engine.options['dataset']
        kw = dict(nb_items=opt['nb_items'], nb_classes=opt['nb_classes'], dim=opt['dim'],
                  batch_size=opt['batch_size'], nb_threads=opt['nb_threads'], seed=engine.seed)
        if os.environ.get('KILL_AT'):
            def kill(e):
                if e.epoch == 1 and e.state.batch == 2:
                    os.kill(os.getpid(), signal.SIGKILL)
            engine.register_hook('train_on_start_batch', kill)
        return {'train': Synthetic('train', **kw), 'eval': Synthetic('val', **kw)}
""")
BATCH_KEYS = ("epoch", "batch", "timer.process", "timer.load")


def _logged_batches(tmp_path: Path) -> dict:
    tmp_path.mkdir()
    (tmp_path / "killer_console.py").write_text(KILLER)
    tree = merge(TINY, {"exp": {"dir": str(tmp_path / "exp")}, "dataset": {"import": "killer_console", "nb_items": 80},
                        "engine": {"nb_epochs": 3, "log_batches": True}})
    return {"file": write_options(tmp_path / "options.yaml", tree), "env": {"PYTHONPATH": str(tmp_path)}}


@pytest.mark.slow
def test_log_batches_keys_and_bit_exact_resume(tmp_path):
    ref = _logged_batches(tmp_path / "ref")
    r = cli("run", "-o", str(ref["file"]), "--no-cache", env=ref["env"])
    assert r.returncode == 0, r.stderr
    expected = json.loads((tmp_path / "ref" / "exp" / "logs.json").read_text())
    for mode in ("train", "eval"):
        assert expected[f"{mode}_batch.epoch"] == [e for e in range(3) for _ in range(NB_BATCHES)]
        assert expected[f"{mode}_batch.batch"] == list(range(NB_BATCHES)) * 3
        for key in ("timer.process", "timer.load"):
            values = expected[f"{mode}_batch.{key}"]
            assert len(values) == 3 * NB_BATCHES and all(isinstance(v, float) and v >= 0 for v in values)
        assert len(expected[f"{mode}_batch.loss"]) == 3 * NB_BATCHES

    killed = _logged_batches(tmp_path / "killed")
    r = cli("run", "-o", str(killed["file"]), "--no-cache", env={**killed["env"], "KILL_AT": "1"})
    assert r.returncode == -9, r.stderr  # killed in epoch 1, batch 2 (its checkpoint is epoch 0's)
    exp = tmp_path / "killed" / "exp"
    r = cli("run", "-o", str(exp / "options.yaml"), "--exp.resume", "last", "--no-cache", env=killed["env"])
    assert r.returncode == 0, r.stderr
    got = json.loads((exp / "logs.json").read_text())
    assert got.keys() == expected.keys()
    timers = [k for k in got if ".timer." in k]
    assert sorted(timers) == sorted(f"{m}_batch.timer.{t}" for m in ("train", "eval") for t in ("process", "load"))
    assert {k: len(got[k]) for k in timers} == {k: len(expected[k]) for k in timers}
    assert {k: v for k, v in got.items() if k not in timers} == {k: v for k, v in expected.items() if k not in timers}


def test_log_batches_off_logs_no_seed_batch_keys(tiny_options):
    from bootstrap_repro.run import run

    res = run(tiny_options({"engine": {"nb_epochs": 1, "print_freq": 1}}), handle_signals=False)
    assert res.status == "COMPLETED", res.error
    logs = json.loads((res.exp_dir / "logs.json").read_text())
    assert not [k for k in logs if k.endswith(tuple(f"_batch.{k}" for k in BATCH_KEYS))]
    assert len(logs["train_batch.loss"]) == 3


def test_rerun_verify_does_not_compare_the_batch_timers():
    from bootstrap_repro.record import compare_logs

    a = {"train_batch.epoch": [0, 0], "train_batch.timer.process": [0.01, 0.02], "eval_batch.timer.load": [0.1]}
    b = {"train_batch.epoch": [0, 0], "train_batch.timer.process": [0.03, 0.01], "eval_batch.timer.load": [0.2]}
    assert compare_logs(a, b).divergence is None
    assert compare_logs(a, {**b, "train_batch.epoch": [0, 1]}).divergence.key == "train_batch.epoch"


@pytest.mark.parametrize("changes, argv, expected", [
    ({"engine": {"log_batches": 1}}, [], "engine.log_batches: must be true or false, got 1 (in options.yaml)"),
    ({}, ["--engine.log_batches", "maybe"], "--engine.log_batches: expected a bool (true/false), got 'maybe'"),
])
def test_log_batches_is_a_strict_bool(capsys, tiny_file, tmp_path, changes, argv, expected):
    from test_cli import assert_bad_input

    assert_bad_input(capsys, tmp_path, ["run", "-o", str(tiny_file(changes)), *argv], expected)
