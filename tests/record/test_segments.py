"""Resumed experiments: one recorded segment per start or resume, replayed in order by ``rerun``.

An experiment killed (-9) mid-training, resumed with changed code and an explicit option, then
resumed again for more epochs: ``rerun --verify`` replays the three segments (the first one up to
where the kill left its last checkpoint, each with its own code and options) and every value and
tensor comes out bit-identical.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import cli
from repro_helpers import NETPLUG, env_for, git, make_repo

pytestmark = pytest.mark.slow

#: A network slow enough to be killed between two checkpoints.
SLOW = NETPLUG.replace("    def forward(self, x):\n", "    def forward(self, x):\n        import time; time.sleep(0.05)\n")


def test_killed_then_resumed_twice_with_code_and_options_changed_reruns_bit_identically(tmp_path):
    exp = tmp_path / "exp"
    repo = make_repo(tmp_path / "repo", source=SLOW, exp_dir=exp, changes={"engine": {"nb_epochs": 8}})
    env = env_for(repo)
    # segment 0: killed with SIGKILL once its first checkpoint is on disk
    proc = subprocess.Popen([sys.executable, "-m", "bootstrap_repro", "run", "-o", "configs/tiny.yaml"], cwd=repo,
                            env={**os.environ, "PYTHONPATH": env["PYTHONPATH"]},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (exp / "ckpt_last_engine.pth.tar").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (exp / "ckpt_last_engine.pth.tar").exists()
    # segment 1: other code (uncommitted), an explicit option, fewer epochs
    (repo / "src" / "netplug.py").write_text(SLOW.replace("SCALE = 1.0", "SCALE = 0.7"))
    r = cli("run", "-o", str(exp / "options.yaml"), "--exp.resume", "last", "--optimizer.lr", "0.05",
            "--engine.nb_epochs", "3", cwd=repo, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    # segment 2: committed code moves on again; more epochs
    git(repo, "commit", "-qam", "scale 0.7")
    (repo / "src" / "netplug.py").write_text(SLOW.replace("SCALE = 1.0", "SCALE = 0.9"))
    r = cli("run", "-o", str(exp / "options.yaml"), "--exp.resume", "last", "--engine.nb_epochs", "5",
            cwd=repo, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    rec = json.loads((exp / "repro" / "record.json").read_text())
    segs = rec["segments"]
    assert [s["resumed_from"] for s in segs] == [None, "last", "last"]
    assert segs[0]["status"] == "RUNNING" and segs[0]["end_epoch"] is None  # killed: never closed
    assert segs[1]["overrides"] == {"optimizer.lr": 0.05, "engine.nb_epochs": 3}
    assert segs[2]["overrides"] == {"engine.nb_epochs": 5}
    assert (segs[1]["end_epoch"], segs[2]["start_epoch"], segs[2]["end_epoch"]) == (3, 3, 5)
    assert segs[1]["code_dir"] != segs[0]["code_dir"] != segs[2]["code_dir"]
    assert len({json.dumps(s["cache_key"]) for s in segs}) == 3
    # the repo moves on once more, then the experiment is re-run from its record
    (repo / "src" / "netplug.py").write_text(SLOW.replace("SCALE = 1.0", "SCALE = 5.0"))
    new = tmp_path / "again"
    r = cli("rerun", str(exp), "--exp.dir", str(new), "--verify", cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[-1].endswith(f"; {exp} vs {new} (3 segments replayed)")
    assert " tensors identical (" in r.stdout.splitlines()[-1]
    again = json.loads((new / "repro" / "record.json").read_text())
    assert [s["resumed_from"] for s in again["segments"]] == [None, "last", "last"]
    assert [s["cache_key"] for s in again["segments"]] == [s["cache_key"] for s in segs]
    # a segment replayed with other code diverges, and --verify names the segment
    bad = json.loads((exp / "repro" / "record.json").read_text())
    bad["segments"][2]["overrides"] = {"engine.nb_epochs": 6}
    (exp / "repro" / "record.json").write_text(json.dumps(bad))
    r = cli("rerun", str(exp), "--exp.dir", str(tmp_path / "bad"), "--verify", cwd=tmp_path, env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert [line for line in r.stdout.splitlines() if line.startswith("first divergence")][0].startswith(
        "first divergence (segment 2): logs.json: ")
