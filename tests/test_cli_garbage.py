"""Garbage given to ``view``, ``compare`` and ``cache``, and Ctrl-C while a command starts: one line, no traceback.

Decisions: a logs file that is not UTF-8 JSON holding an object is damaged (the logger writes it whole):
``view`` and ``compare`` refuse it in one error line and write nothing.  Values that are not finite numbers
(NaN, inf, text, booleans, ints too large for a float) are left out with one warning line each: ``view``
draws the rest, ``compare`` ranks by the rest.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bootstrap_repro.cli import main

from conftest import REPO, cli


def snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, root: Path, argv: list[str], expected: str) -> None:
    before = snapshot(root)
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and "Traceback" not in err, (out, err)
    assert err.splitlines() == [f"error: {expected}"], err
    assert snapshot(root) == before, "bad input must not write anything"


LOGS = {"train_epoch.epoch": [0, 1, 2], "train_epoch.loss": [0.9, 0.5, 0.4],
        "eval_epoch.epoch": [0, 1, 2], "eval_epoch.loss": [0.8, 0.6, 0.7], "eval_epoch.acctop1": [50.0, 70.0, 65.0]}

#: logs.json contents that are not a JSON object: (content, the reason in the message)
UNREADABLE = {
    "truncated": (json.dumps(LOGS)[:40].encode(), "not valid JSON (Unterminated string starting at: line 1 column 34 (char 33))"),
    "invalid UTF-8": (b'{"a": [1]}\xff', "not valid JSON ('utf-8' codec can't decode byte 0xff in position 10: invalid start byte)"),
    "deep": (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", "not valid JSON (nested too deeply)"),
    "5000 digits": (b'{"eval_epoch.loss": [' + b"7" * 5000 + b"]}", "not valid JSON (a number of more than 4300 digits)"),
    "an array": (b"[1, 2, 3]", "expected a JSON object of lists, got list"),
    "null": (b"null", "expected a JSON object of lists, got NoneType"),
}


def exp_with(root: Path, name: str, content: bytes | dict) -> Path:
    d = root / name
    d.mkdir()
    (d / "logs.json").write_bytes(content if isinstance(content, bytes) else json.dumps(content).encode())
    return d


# ----------------------------------------------------------------------------- view DIR
@pytest.mark.parametrize("case", list(UNREADABLE))
def test_view_of_a_damaged_logs_file(capsys, tmp_path, monkeypatch, case):
    monkeypatch.setenv("BOOTSTRAP_REPRO_CACHE_DIR", str(tmp_path / "cache"))
    content, reason = UNREADABLE[case]
    exp = exp_with(tmp_path, "exp", content)
    refused(capsys, tmp_path, ["view", str(exp)],
            f"{exp / 'logs.json'}: {reason}; the logs file is damaged (was it edited or copied in part?): "
            f"restore it, then run view again")
    assert not (exp / "view.html").exists()


def test_view_of_logs_with_odd_values_warns_and_draws_the_rest(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("BOOTSTRAP_REPRO_CACHE_DIR", str(tmp_path / "cache"))
    logs = {**LOGS, "eval_epoch.loss": ["NaN", 1e308, None, [1, 2]], "train_epoch.acctop1": {"a": 1},
            "train_batch.loss": ["x"] * 100_000, "eval_epoch.acctop1": [float("inf"), True, 3]}
    exp = exp_with(tmp_path, "exp", logs)
    code, out, err = run_cli(capsys, "view", str(exp))
    assert code == 0 and out == f"{exp / 'view.html'}\n" and (exp / "view.html").is_file()
    path = exp / "logs.json"
    assert err.splitlines() == [
        f"warning: {path}: 1 key(s) do not hold a list of values (e.g. 'train_epoch.acctop1'); the view leaves them out",
        (f"warning: {path}: 3 key(s) hold values that are not finite numbers (e.g. 'eval_epoch.loss': 'NaN'); "
        f"their curves may have gaps"),
    ]


# ----------------------------------------------------------------------------- compare
@pytest.mark.parametrize("case", list(UNREADABLE))
def test_compare_with_a_damaged_logs_file(capsys, tmp_path, case):
    content, reason = UNREADABLE[case]
    good = exp_with(tmp_path, "good", LOGS)
    bad = exp_with(tmp_path, "bad", content)
    refused(capsys, tmp_path, ["compare", str(good), str(bad)],
            f"{bad / 'logs.json'}: {reason}; the logs file is damaged (was it edited or copied in part?): "
            f"restore it, or leave {bad} out")


def test_compare_ranks_finite_numbers_and_warns_about_the_rest(capsys, tmp_path):
    a = exp_with(tmp_path, "a", LOGS)  # best loss 0.6 at epoch 1
    big = json.dumps({"eval_epoch.loss": ["NaN", 0.3, "1e-9", None, True, [0.0]], "eval_epoch.epoch": [5, 6, 7, 8, 9, 10]})
    b = exp_with(tmp_path, "b", big.replace('"NaN"', "NaN").replace("None", "null").encode())
    c = exp_with(tmp_path, "c", b'{"eval_epoch.loss": [1e400, -1e400, ' + b"9" * 4000 + b', 0.5], '
                                b'"eval_epoch.epoch": [0, 1, 2, "three"]}')
    d = exp_with(tmp_path, "d", {"eval_epoch.loss": [float("nan"), False]})
    e = exp_with(tmp_path, "e", {"eval_epoch.loss": {"best": 0.1}})
    code, out, err = run_cli(capsys, "compare", str(a), str(b), str(c), str(d), str(e), "-m", "eval_epoch.loss:min")
    assert code == 0 and "Traceback" not in err
    ranked = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert ranked == [["1", str(b), "6", "0.3"], ["2", str(c), "3", "0.5"], ["3", str(a), "1", "0.6"]]
    assert f"(not logged by: {d}, {e})" in out
    assert err.splitlines() == [
        (f"warning: {b / 'logs.json'}: eval_epoch.loss: 5 of 6 values are not finite numbers (NaN, inf, text, ...); "
        f"ranked by the others"),
        (f"warning: {c / 'logs.json'}: eval_epoch.loss: 3 of 4 values are not finite numbers (NaN, inf, text, ...); "
        f"ranked by the others"),
        (f"warning: {d / 'logs.json'}: eval_epoch.loss: none of its 2 values is a finite number (NaN, inf, text, ...); "
        f"left out"),
        f"warning: {e / 'logs.json'}: eval_epoch.loss is not a list of values (a dict); left out",
    ]


# ----------------------------------------------------------------------------- cache rm / gc
@pytest.mark.parametrize("argv, expected", [
    (["gc", "--max-size", "-5"], "--max-size: expected a size like 500M or 20G, got '-5'"),
    (["gc", "--max-size=-5"], "--max-size: expected a size like 500M or 20G, got '-5'"),
    (["gc", "--max-size", "1e999G"], "--max-size: expected a size like 500M or 20G, got '1e999G'"),
    (["gc", "--max-size", "1" * 400], f"--max-size: expected a size like 500M or 20G, got '{'1' * 400}'"),
    (["gc", "--max-size", "nan"], "--max-size: expected a size like 500M or 20G, got 'nan'"),
    (["gc", "--max-size", ""], "--max-size: expected a size like 500M or 20G, got ''"),
    (["gc", "--max-size", "5 parsecs"], "--max-size: expected a size like 500M or 20G, got '5 parsecs'"),
    (["gc", "--max-age", "nan"], "--max-age: expected an age like 30d, 12h or 45m (a number is days), got 'nan'"),
    (["gc", "--max-age", "inf"], "--max-age: expected an age like 30d, 12h or 45m (a number is days), got 'inf'"),
    (["gc", "--max-age=-1d"], "--max-age: expected an age like 30d, 12h or 45m (a number is days), got '-1d'"),
    (["gc", "--max-age", "-1d"], "cache gc: argument --max-age: expected one argument (see bootstrap-repro cache gc -h)"),
    (["gc", "--max-size"], "cache gc: argument --max-size: expected one argument (see bootstrap-repro cache gc -h)"),
    ([], "cache: the following arguments are required: ACTION (see bootstrap-repro cache -h)"),
    (["gc", "--max-age", ""], "--max-age: expected an age like 30d, 12h or 45m (a number is days), got ''"),
    (["gc", "--max-age", "9" * 5000], (f"--max-age: expected an age like 30d, 12h or 45m (a number is days), "
                                      f"got '{'9' * 5000}'")),
    (["rm", ""], "cache rm: '' is not a cache key (hex digits; bootstrap-repro cache ls shows the first 12 of each)"),
    (["rm", "../x"], ("cache rm: '../x' is not a cache key (hex digits; bootstrap-repro cache ls shows the first 12 "
                     "of each)")),
    (["rm", "/etc"], ("cache rm: '/etc' is not a cache key (hex digits; bootstrap-repro cache ls shows the first 12 "
                     "of each)")),
    (["rm", "a" * 65], (f"cache rm: '{'a' * 65}' is not a cache key (hex digits; bootstrap-repro cache ls shows the "
                       f"first 12 of each)")),
])
def test_cache_with_weird_arguments(capsys, tmp_path, _test_cache_dir, argv, expected):
    (_test_cache_dir / "results").mkdir(parents=True, exist_ok=True)
    refused(capsys, _test_cache_dir, ["cache", *argv], expected)


def test_cache_sizes_and_ages_that_are_fine(capsys, _test_cache_dir):
    for argv in (["--max-size", "1.5G"], ["--max-size", ".5k"], ["--max-size", "10"], ["--max-age", "2.5h"],
                 ["--max-age", "0"], ["--max-size", "9" * 30 + "T"]):
        code, out, err = run_cli(capsys, "cache", "gc", *argv)
        assert code == 0 and err == "" and out.startswith("0 removed, 0 B freed, 0 kept in "), (argv, out, err)


# ----------------------------------------------------------------------------- Ctrl-C while starting
def test_ctrl_c_while_the_command_starts(tmp_path, tiny_file):
    """SIGINT while `run` imports torch, loads options or builds: one line, exit 130, no exp dir left half-made."""
    opts = str(tiny_file({"engine": {"nb_epochs": 1}}))
    exp = tmp_path / "exp"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    # Python's own start-up (site, .pth files) runs before any code of the project: send after it.
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-c", "pass"], env=env, check=True)
    startup = (time.monotonic() - t0) * 1.5 + 0.02
    seen = []
    for delay in (0.0, 0.15, 0.4, 0.8, 1.5):
        shutil.rmtree(exp, ignore_errors=True)
        proc = subprocess.Popen([sys.executable, "-m", "bootstrap_repro", "run", "-o", opts, "--no-cache"], env=env,
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(startup + delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=300)
        lines = err.strip().splitlines()
        assert "Traceback" not in err, (delay, err)
        # 130; or death by SIGINT (which a shell also reports as 130): CPython exits so after it saw the interrupt
        # inside exec()'d source (a dataclass being made, say), even though the command handled it
        assert proc.returncode in (130, -signal.SIGINT, 0), (delay, proc.returncode, err)
        if proc.returncode != 0:
            assert len(lines) == 1 and lines[0].startswith("interrupted"), (delay, err)
            seen.append(lines[0])
        if exp.exists() and proc.returncode != 0:  # begun: resumable as the messages say
            r = cli("run", "-o", opts, "--no-cache", "--exp.resume", "last", cwd=tmp_path)
            assert r.returncode == 0, (delay, r.stderr)
    assert "interrupted" in seen  # at least one landed before training (the usual case: torch takes a while)


@pytest.mark.parametrize("flag", ["--=x", "--=", "--no-c"])
def test_no_abbreviations_and_no_nameless_options(capsys, tmp_path, flag):
    """argparse's prefix matching is off: ``--=x`` reaches the options parser, ``--no-c`` is not ``--no-cache``."""
    f = tmp_path / "o.yaml"
    f.write_text(f"exp: {{dir: {tmp_path / 'e'}}}\n")
    assert main(["run", "-o", str(f), flag]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {flag.split('=')[0]}"), err
    assert "ambiguous" not in err and not (tmp_path / "e").exists()
