"""A damaged study journal (``view`` of a sweep dir, a resumed sweep) and garbage sweep files: one line, no traceback.

Decision for the journal (Optuna's ``study.journal``, append-only, one JSON entry a line): a line that is
not a journal entry Optuna can replay, or that leaves a trial with a non-numeric value or a param outside
its distribution, is an error naming the file and the line, with the fix (restore it, or cut the journal
before that line: the study as it was then).  A last line without its newline (a write cut short) is what
Optuna itself skips: ``view`` warns and reports the study of the complete lines.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from bootstrap_repro.cli import main

from sweep_helpers import write_sweep

LR = {"type": "float", "low": 0.01, "high": 0.5, "log": True}


def snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def one_line(capsys, root: Path, argv: list[str]) -> str:
    """Run ``argv``: exit 2, one ``error:`` line, nothing written under ``root``; returns the line."""
    before = snapshot(root)
    code = main(argv)
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, (code, out, err)
    assert snapshot(root) == before, "bad input must not write anything"
    return lines[0]


@pytest.fixture
def sweep_dir(tmp_path, monkeypatch, capsys) -> Path:
    """A sweep dir as the driver leaves it: sweep.json and a journal of three finished trials (no training)."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    monkeypatch.setenv("BOOTSTRAP_REPRO_CACHE_DIR", str(tmp_path / "cache"))
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    d = tmp_path / "sweep"
    d.mkdir()
    journal = d / "study.journal"
    study = optuna.create_study(study_name="s", direction="minimize",
                                storage=JournalStorage(JournalFileBackend(str(journal))))
    for i in range(3):
        trial = study.ask()
        trial.suggest_float("optimizer.lr", 0.01, 0.5, log=True)
        trial.set_user_attr("dir", f"trials/{trial.number:04d}")
        for epoch in range(2):
            trial.report(1.0 / (epoch + 1 + i), epoch)
        study.tell(trial, 0.5 / (i + 1))
    (d / "sweep.json").write_text(json.dumps({
        "kind": "bootstrap-repro sweep", "schema": 1, "study": "s", "storage": str(journal), "storage_url": None,
        "objective": "eval_epoch.loss", "direction": "minimize", "n_trials": 3, "max_retries": 2,
        "params": ["optimizer.lr"]}))
    assert main(["view", str(d)]) == 0  # the intact journal gives a report
    capsys.readouterr()
    (d / "view.html").unlink()
    return d


def _lines(d: Path) -> list[bytes]:
    return (d / "study.journal").read_bytes().splitlines(keepends=True)


def _edit(d: Path, n: int, change: Any) -> None:
    """Replace journal line ``n`` (1-based): ``change`` is bytes, or a function of the entry."""
    lines = _lines(d)
    lines[n - 1] = change if isinstance(change, bytes) else (json.dumps(change(json.loads(lines[n - 1]))) + "\n").encode()
    (d / "study.journal").write_bytes(b"".join(lines))


def _first(d: Path, op_code: int) -> int:
    return next(i for i, line in enumerate(_lines(d), 1) if json.loads(line)["op_code"] == op_code)


def _cut(path: Path, n: int) -> str:
    return (f"restore it from a backup, or keep the study as it was before that line: "
            f"head -n {n - 1} {path} > {path}.fixed && mv {path}.fixed {path}")


def test_damaged_journal_lines_name_the_line_and_the_fix(capsys, sweep_dir):
    journal = sweep_dir / "study.journal"
    param, create, inter, state = (_first(sweep_dir, op) for op in (5, 4, 7, 6))
    attr = _first(sweep_dir, 8)
    cases = [
        (param, b"\x00\xff garbage\n", "not UTF-8 text"),
        (param, b"{not json\n", "not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        (param, b"[1, 2]\n", "not an object with a known op_code"),
        (param, b"null\n", "not an object with a known op_code"),
        (param, b"\n", "an empty line"),
        (param, b"[" * 100_000 + b"]" * 100_000 + b"\n", "nested too deeply"),
        (param, lambda e: {**e, "op_code": "5"}, "not an object with a known op_code"),
        (param, lambda e: {**e, "op_code": 99}, "not an object with a known op_code"),
        (param, lambda e: {k: v for k, v in e.items() if k != "op_code"}, "not an object with a known op_code"),
        (param, lambda e: {**e, "param_value_internal": "abc"},
         "trial 0: its param optimizer.lr='abc' is outside its distribution"),
        (param, lambda e: {**e, "param_value_internal": 7.0},
         "trial 0: its param optimizer.lr=7.0 is outside its distribution"),
        (param, lambda e: {**e, "distribution": "{not json"}, ("Optuna cannot replay it: JSONDecodeError: "
         "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)")),
        (create, lambda e: {**e, "datetime_start": "yesterday"},
         "Optuna cannot replay it: ValueError: Invalid isoformat string: 'yesterday'"),
        (attr, lambda e: {**e, "user_attr": [1, 2]}, "Optuna cannot replay it: AssertionError"),
        (inter, lambda e: {**e, "intermediate_value": "high"},
         "trial 0: its intermediate value 0: 'high' is not an epoch and a number"),
        (inter, lambda e: {**e, "step": "x"}, "trial 0: its intermediate value 'x': "),
        (state, lambda e: {**e, "values": ["low"]}, "trial 0: its values ['low'] are not numbers"),
        (1, lambda e: {**e, "directions": ["up"]}, "Optuna cannot replay it: ValueError: 'up' is not a valid StudyDirection"),
    ]
    original = journal.read_bytes()
    for n, change, reason in cases:
        journal.write_bytes(original)
        _edit(sweep_dir, n, change)
        line = one_line(capsys, sweep_dir, ["view", str(sweep_dir)])
        hint = _cut(journal, n) if n > 1 else "restore it from a backup"
        assert line.startswith(f"error: {journal}: line {n} is damaged ({reason}") and line.endswith(f"; {hint}"), \
            (reason, line)
    # the fix the message gives works: the study as it was before the damaged line
    journal.write_bytes(original)
    _edit(sweep_dir, param, b"\x00\xff garbage\n")
    (sweep_dir / "study.journal").write_bytes(b"".join(_lines(sweep_dir)[: param - 1]))
    assert main(["view", str(sweep_dir)]) == 0


def test_random_bytes_anywhere_in_the_journal(capsys, sweep_dir):
    journal = sweep_dir / "study.journal"
    original = journal.read_bytes()
    rnd = random.Random(0)
    for _ in range(30):
        at = rnd.randrange(len(original))
        junk = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 40)))
        journal.write_bytes(original[:at] + junk + original[at + len(junk):])
        before = snapshot(sweep_dir)
        code = main(["view", str(sweep_dir)])
        _out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert "Traceback" not in err and code in (0, 2), (code, err)
        if code == 2:  # damaged: one line naming the journal, nothing written
            assert len(lines) == 1 and lines[0].startswith(f"error: {journal}: ") and snapshot(sweep_dir) == before, err
        else:  # the junk kept the entries valid (inside a string), or only cut the last line short
            assert len(lines) <= 1 and all(x.startswith(f"warning: {journal}: its last line is incomplete") for x in lines)
            (sweep_dir / "view.html").unlink()


def test_journal_cut_short_gives_a_warning_and_the_study_of_the_complete_lines(capsys, sweep_dir):
    journal = sweep_dir / "study.journal"
    lines = _lines(sweep_dir)
    journal.write_bytes(b"".join(lines[:-1]) + lines[-1][:25])
    code = main(["view", str(sweep_dir)])
    out, err = capsys.readouterr()
    assert code == 0 and out == f"{sweep_dir / 'view.html'}\n"
    assert err == (f"warning: {journal}: its last line is incomplete (a write was cut short); the report shows the "
                   f"study as of the {len(lines) - 1} complete lines\n")
    journal.write_bytes(lines[0][:10])  # not even the study: nothing to report
    (sweep_dir / "view.html").unlink()
    assert one_line(capsys, sweep_dir, ["view", str(sweep_dir)]) == \
        f"error: {sweep_dir}: study 's' not found in {journal}"


def test_resuming_a_sweep_whose_journal_is_damaged(capsys, tmp_path):
    f = write_sweep(tmp_path)
    d = tmp_path / "sweep"
    d.mkdir()
    journal = d / "study.journal"
    journal.write_bytes(b'{"op_code": 0, "worker_id": "w", "study_name": "sweep", "directions": [1]}\n\xff\xfe\n')
    line = one_line(capsys, tmp_path, ["sweep", str(f)])
    assert line == f"error: {journal}: line 2 is damaged (not UTF-8 text); {_cut(journal, 2)}"


# ----------------------------------------------------------------------------- garbage sweep files
@pytest.mark.parametrize("sweep, params, expected", [
    ({"sampler": {"name": ["tpe"]}}, None,
     "sweep.sampler: unknown sampler ['tpe']; did you mean tpe? (valid: tpe, random, grid, cmaes)"),
    ({"pruner": {"name": {"a": 1}}}, None,
     "sweep.pruner: unknown pruner {'a': 1} (valid: median, hyperband, none)"),
    (None, {"optimizer.lr": {**LR, "high": float("inf")}}, "params.optimizer.lr.high: expected a finite number, got inf"),
    (None, {"optimizer.lr": {**LR, "low": float("nan")}}, "params.optimizer.lr.low: expected a finite number, got nan"),
    (None, {"optimizer.lr": {"type": "float", "low": 0.01, "high": 10**400}},
     f"params.optimizer.lr.high: expected a finite number, got {10**400}"),
    (None, {"optimizer.lr": {"type": "float", "low": 0.01, "high": 0.5, "step": float("inf")}},
     "params.optimizer.lr.step: expected a positive number, got inf"),
    (None, {"optimizer.lr": {"type": "categorical", "choices": [0.1, float("nan")]}},
     "params.optimizer.lr.choices: choices must be finite numbers, got nan"),
    ({"sampler": "grid"}, {"model.network.hidden": {"type": "int", "low": 1, "high": 10**12}},
     ("params.model.network.hidden: the grid would hold 1e+12 points with this param's 1e+12 values (at most "
     "1000000); narrow its range, raise its step, or use another sampler")),
    ({"sampler": "grid"}, {"optimizer.lr": {"type": "float", "low": 0.01, "high": 0.5, "step": 1e-300}},
     ("params.optimizer.lr: the grid would hold 4.9e+299 points with this param's 4.9e+299 values (at most "
     "1000000); narrow its range, raise its step, or use another sampler")),
    ({"jobs": 10**19}, None, None),  # the message names this machine's CPUs: checked below
    (None, {"optimizer.lr": {**LR, "low": 0.5, "high": 0.01}},
     "params.optimizer.lr: `low <= high` must hold, but got (low=0.5, high=0.01)"),
])
def test_sweep_file_with_garbage_values(capsys, tmp_path, sweep, params, expected):
    f = write_sweep(tmp_path, sweep=sweep, params=params)
    line = one_line(capsys, tmp_path, ["sweep", str(f)])
    if expected is None:
        assert line.startswith(f"error: sweep.jobs: {10**19} parallel trials asked, this machine has "), line
    else:
        assert line == f"error: {expected}"


def test_sweep_files_that_are_not_sweep_files(capsys, tmp_path):
    f = write_sweep(tmp_path)
    good = yaml.safe_load(f.read_text())
    laughs = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip("abcdef", "bcdefg")) + "sweep: *g\n"
    variants = {
        "a 5000-digit number": ("sweep: {n_trials: " + "9" * 5000 + "}\n",
                                f"{f}: YAML error: a number of more than 4300 digits; fix the file"),
        "deep": ("sweep: " + "[" * 5000 + "]" * 5000 + "\n", None),
        "invalid UTF-8": (b"sweep: \xff\n", None),
        "billion laughs": (laughs, None),
        "a list": ("[1, 2]\n", f"{f}: expected a mapping with `sweep:` and `params:` at the top level"),
        "wrong types": (yaml.safe_dump({**good, "sweep": [good["sweep"]]}), None),
    }
    for what, (content, expected) in variants.items():
        if isinstance(content, bytes):
            f.write_bytes(content)
        else:
            f.write_text(content)
        line = one_line(capsys, tmp_path, ["sweep", str(f)])
        assert line.startswith("error: "), (what, line)
        if expected is not None:
            assert line == f"error: {expected}", (what, line)


@pytest.mark.parametrize("flag, value", [("--n-trials", "²"), ("--n-trials", "9" * 5000), ("--jobs", "-1"),
                                         ("--jobs", "1e3"), ("--n-trials", "")])
def test_sweep_count_flags_that_are_not_counts(capsys, tmp_path, flag, value):
    f = write_sweep(tmp_path)
    assert one_line(capsys, tmp_path, ["sweep", str(f), flag, value]) == \
        f"error: {flag}: expected a positive int, got {value!r}"


@pytest.mark.parametrize("key, value, what", [
    ("study", 5, "a non-empty string"), ("study", "", "a non-empty string"),
    ("storage_url", 5, "a string or null"), ("storage_url", ["postgresql://x"], "a string or null"),
    ("objective", None, "a non-empty string"), ("direction", "up", "maximize or minimize"),
    ("n_trials", "3", "an integer >= 1"), ("n_trials", 0, "an integer >= 1"), ("max_retries", -1, "an integer >= 0"),
    ("params", 5, "a list of option names or null"), ("params", [1], "a list of option names or null"),
])
def test_view_of_a_sweep_dir_whose_marker_was_edited(capsys, sweep_dir, key, value, what):
    marker = sweep_dir / "sweep.json"
    marker.write_text(json.dumps({**json.loads(marker.read_text()), key: value}))
    assert one_line(capsys, sweep_dir, ["view", str(sweep_dir)]) == (
        f"error: {marker}: field {key!r} must be {what}; the sweep marker is damaged (was it edited?): "
        f"rerun the sweep to rewrite it")


def test_resuming_a_sweep_whose_journal_was_cut_short_removes_the_partial_line(capsys, tmp_path):
    """A killed writer's half line would be glued to Optuna's next append: the resumed sweep cuts it first."""
    f = write_sweep(tmp_path, sweep={"n_trials": 1})
    assert main(["sweep", str(f)]) == 0
    journal = tmp_path / "sweep" / "study.journal"
    whole = journal.read_bytes()
    journal.write_bytes(whole + b'{"op_code": 4, "worker_id": "w", "tri')
    capsys.readouterr()
    assert main(["sweep", str(f), "--n-trials", "2"]) == 0
    err = capsys.readouterr().err
    assert f"warning: {journal}: its last line was incomplete (a write cut short, 37 bytes); removed before the " \
           f"study goes on" in err
    assert journal.read_bytes().startswith(whole) and journal.read_bytes().endswith(b"\n")
    assert main(["view", str(tmp_path / "sweep")]) == 0  # every line replays
