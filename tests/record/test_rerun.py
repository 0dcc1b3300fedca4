"""``rerun``: the recorded code (commit + staged + unstaged + untracked) runs again, whatever the repo is now."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest
from conftest import REPO, cli, write_options
from repro_helpers import NETPLUG, NOISY, env_for, git, make_dirty, make_repo, tiny_tree

from bootstrap_repro.cli import main

pytestmark = pytest.mark.slow


def _tmp_leftovers() -> set[str]:
    return {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("bootstrap-repro-rerun-")}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A run from a dirty tree; then HEAD moves on and the tree changes again."""
    tmp = tmp_path_factory.mktemp("rerun")
    repo = make_repo(tmp / "repo", exp_dir=tmp / "exp")
    make_dirty(repo)
    r = cli("run", "-o", "configs/tiny.yaml", cwd=repo, env=env_for(repo))
    assert r.returncode == 0, r.stderr
    # move on: commit everything with other values, then change the tree again
    (repo / "src" / "staged_mod.py").write_text("OFFSET = -1.0\n")
    (repo / "src" / "untracked_mod.py").write_text("WIDTH = 30\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "moved on")
    (repo / "src" / "untracked_mod.py").write_text("WIDTH = 5\n")
    (repo / "src" / "new_untracked.py").write_text("X = 1\n")
    return repo, tmp / "exp"


def test_rerun_verify_identical_after_head_moved_on(recorded, tmp_path):
    repo, exp = recorded
    head_before = git(repo, "rev-parse", "HEAD")
    status_before = git(repo, "status", "--porcelain")
    leftovers = _tmp_leftovers()
    new = tmp_path / "again"
    r = cli("rerun", str(exp), "--exp.dir", str(new), "--verify", cwd=tmp_path, env=env_for(repo))
    assert r.returncode == 0, r.stdout + r.stderr
    logs = json.loads((exp / "logs.json").read_text())
    n = sum(len(v) for v in logs.values())
    assert r.stdout.splitlines()[-1] == (f"{n} values identical (1 logs file), 27 tensors identical "
                                         f"(9 checkpoint files); {exp} vs {new}")
    original = json.loads((exp / "repro" / "record.json").read_text())
    again = json.loads((new / "repro" / "record.json").read_text())
    assert again["code"]["fingerprint"] == original["code"]["fingerprint"]  # the very same code ran
    if again["environment"]["fingerprint"] == original["environment"]["fingerprint"]:  # nobody edited the package
        assert again["cache_key"] == original["cache_key"]
    assert again["rerun_of"]["exp_dir"] == str(exp)
    # the user's repo is as it was: same HEAD, same dirty tree, no worktree left, no temp dir left
    assert git(repo, "rev-parse", "HEAD") == head_before
    assert git(repo, "status", "--porcelain") == status_before
    assert len(git(repo, "worktree", "list").splitlines()) == 1
    assert _tmp_leftovers() == leftovers


def test_the_current_tree_gives_other_values(recorded, tmp_path):
    """Control: the changed tree trains to other values, so the identical re-run above used the recorded code."""
    repo, exp = recorded
    r = cli("run", "-o", str(exp / "options.yaml"), "--exp.dir", str(tmp_path / "now"), "--no-cache",
            cwd=repo, env=env_for(repo))
    assert r.returncode == 0, r.stderr
    now = json.loads((tmp_path / "now" / "logs.json").read_text())
    assert now["train_batch.loss"] != json.loads((exp / "logs.json").read_text())["train_batch.loss"]


def _run_then_verify_fails(tmp_path: Path, module: str, source: str) -> list[str]:
    """Train ``source`` as plugin ``module`` in a new repo, then ``rerun --verify``: exit 1; its stdout lines."""
    repo = make_repo(tmp_path / "repo", module=module, source=source, exp_dir=tmp_path / "exp")
    r = cli("run", "-o", "configs/tiny.yaml", cwd=repo, env=env_for(repo))
    assert r.returncode == 0, r.stderr
    r = cli("rerun", str(tmp_path / "exp"), "--verify", cwd=tmp_path, env=env_for(repo))
    assert r.returncode == 1, r.stdout + r.stderr
    return r.stdout.splitlines()


def test_nondeterministic_plugin_fails_verify_naming_first_divergence(tmp_path):
    *_, inputs_line, first, env_line = _run_then_verify_fails(tmp_path, "noisy", NOISY)
    original = json.loads((tmp_path / "exp" / "logs.json").read_text())["train_batch.loss"][0]
    again = json.loads((tmp_path / "exp-rerun-1" / "logs.json").read_text())["train_batch.loss"][0]
    assert inputs_line == "input differences: none"
    assert first.startswith(f"first divergence: logs.json: train_batch.loss[0] (epoch 0): {original!r} (original) "
                            f"vs {again!r} (rerun); ")
    assert re.search(r"; \d+ values identical \(1 logs file\), \d+ tensors identical \(9 checkpoint files\)$", first)
    assert env_line == "environment differences: none"


#: NETPLUG whose network fails in training when the exp dir is a re-run's: the same recorded code and inputs
#: (a variable the plugin read would be replayed as recorded), a failing re-run.
FAILS_ON_DEMAND = NETPLUG + """

_factory = factory


def factory(engine):
    net = _factory(engine)
    if "-rerun-" in str(engine.options["exp.dir"]):
        def boom(*args, **kwargs):
            raise RuntimeError("boom on demand")

        net.forward = boom
    return net
"""


def test_a_failing_rerun_says_its_exit_code_and_where_its_log_is(tmp_path):
    repo = make_repo(tmp_path / "repo", source=FAILS_ON_DEMAND, exp_dir=tmp_path / "exp")
    r = cli("run", "-o", "configs/tiny.yaml", cwd=repo, env=env_for(repo))
    assert r.returncode == 0, r.stderr
    r = cli("rerun", str(tmp_path / "exp"), cwd=tmp_path, env=env_for(repo))
    assert r.returncode == 1, r.stdout + r.stderr
    assert "boom on demand" in r.stderr
    logs = tmp_path / "exp-rerun-1" / "logs.txt"
    assert r.stderr.splitlines()[-1] == f"error: the re-run exited 1; see {logs}" and logs.is_file()
    assert json.loads((logs.parent / "repro" / "record.json").read_text())["status"] == "FAILED"


# ----------------------------------------------------------------------------- bad input
def _snapshot(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _bad(capsys, argv: list[str], expected: str, root: Path) -> None:
    before, leftovers = _snapshot(root), _tmp_leftovers()
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert err.splitlines() == [f"error: {expected}"], err
    assert _snapshot(root) == before, "bad input must not write anything"
    assert _tmp_leftovers() == leftovers


def _copy_exp(exp: Path, dest: Path) -> Path:
    shutil.copytree(exp, dest, ignore=shutil.ignore_patterns(".lock"))
    return dest


def _edit_record(exp: Path, **changes) -> dict:
    path = exp / "repro" / "record.json"
    data = json.loads(path.read_text())
    for dotted, value in changes.items():
        node = data
        *head, last = dotted.split("__")
        for k in head:
            node = node[k]
        node[last] = value
    path.write_text(json.dumps(data))
    return data


def test_dir_without_record(capsys, tmp_path):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "options.yaml").write_text("exp: {dir: old}\n")
    _bad(capsys, ["rerun", str(tmp_path / "old")],
         f"{tmp_path / 'old'}: no repro/record.json; only a dir made by `bootstrap-repro run` has a record", tmp_path)
    _bad(capsys, ["rerun", str(tmp_path / "nope")],
         f"{tmp_path / 'nope'}: no such experiment dir; pass the exp.dir of a run", tmp_path)


def test_record_of_a_newer_schema(capsys, recorded, tmp_path):
    exp = _copy_exp(recorded[1], tmp_path / "exp")
    _edit_record(exp, schema_version=2)
    _bad(capsys, ["rerun", str(exp)],
         f"{exp / 'repro' / 'record.json'}: schema_version 2 is newer than this bootstrap-repro reads (1); "
         f"upgrade bootstrap-repro", tmp_path)


def test_commit_missing_from_the_repo(capsys, recorded, tmp_path):
    exp = _copy_exp(recorded[1], tmp_path / "exp")
    missing = "0123456789abcdef" * 2 + "01234567"
    _edit_record(exp, code__commit=missing)
    _bad(capsys, ["rerun", str(exp)],
         f"commit {missing} (recorded in {exp / 'repro' / 'record.json'}) is not in the repository {recorded[0]}; "
         f"fetch it (git -C {recorded[0]} fetch --all) and run again", tmp_path)


def test_repo_gone(capsys, recorded, tmp_path):
    exp = _copy_exp(recorded[1], tmp_path / "exp")
    _edit_record(exp, code__root=str(tmp_path / "moved"), code__remote="https://example.org/x.git")
    _bad(capsys, ["rerun", str(exp)],
         f"code repo {tmp_path / 'moved'} (recorded in {exp / 'repro' / 'record.json'}) is not a git repository here; "
         f"clone it there (git clone https://example.org/x.git {tmp_path / 'moved'}) or pass --repo PATH", tmp_path)


def test_diff_no_longer_applies(capsys, recorded, tmp_path):
    exp = _copy_exp(recorded[1], tmp_path / "exp")
    diff = exp / "repro" / "code.diff"
    text = diff.read_text()
    assert " import torch\n" in text  # a context line of the plugin's hunk
    diff.write_text(text.replace(" import torch\n", " import numpy\n", 1))
    _bad(capsys, ["rerun", str(exp)],
         f"{diff} does not apply to commit {json.loads((exp / 'repro' / 'record.json').read_text())['code']['commit'][:12]} "
         f"(error: patch failed: src/netplug.py:1); the diff was edited or damaged, so this experiment cannot be "
         f"re-run exactly", tmp_path)
    assert len(git(recorded[0], "worktree", "list").splitlines()) == 1


def test_new_dir_exists_and_verify_without_logs(capsys, recorded, tmp_path):
    exp = _copy_exp(recorded[1], tmp_path / "exp")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "x").write_text("mine")
    _bad(capsys, ["rerun", str(exp), "--exp.dir", str(tmp_path / "taken")],
         f"--exp.dir: {tmp_path / 'taken'} already exists; choose a new --exp.dir", tmp_path)
    (exp / "logs.json").unlink()
    _bad(capsys, ["rerun", str(exp), "--verify"],
         f"{exp}: no logs.json to verify against; rerun without --verify", tmp_path)


def test_rerun_from_a_clone_at_another_path(recorded, tmp_path):
    repo, exp = recorded
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    moved = _copy_exp(exp, tmp_path / "exp")
    _edit_record(moved, code__root=str(tmp_path / "was-here"))
    r = cli("rerun", str(moved), "--repo", str(clone), "--verify", cwd=tmp_path, env=env_for(repo))
    assert r.returncode == 0, r.stdout + r.stderr
    assert " values identical (" in r.stdout.splitlines()[-1]
    assert len(git(clone, "worktree", "list").splitlines()) == 1


def test_rerun_outside_git_checks_the_plugin_is_unchanged(capsys, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "plainnet.py").write_text(NETPLUG)
    opts = write_options(tmp_path / "o.yaml", tiny_tree(tmp_path / "exp", {"model": {"network": {"import": "plainnet"}}}))
    env = {"PYTHONPATH": os.pathsep.join([str(REPO), str(plain)])}
    assert cli("run", "-o", str(opts), env=env).returncode == 0
    r = cli("rerun", str(tmp_path / "exp"), "--verify", cwd=tmp_path, env=env)
    assert r.returncode == 0 and " values identical (" in r.stdout, r.stdout + r.stderr
    assert f"warning: {tmp_path / 'exp'} was recorded outside git; re-running with the current (unchanged) plugin files" \
        in r.stderr
    changed = NETPLUG.replace("SCALE = 1.0", "SCALE = 3.0")
    (plain / "plainnet.py").write_text(changed)
    was, now = (hashlib.sha256(t.encode()).hexdigest()[:12] for t in (NETPLUG, changed))
    _bad(capsys, ["rerun", str(tmp_path / "exp")],
         f"rerun: 1 input(s) of {tmp_path / 'exp'} are not as recorded: module {plain / 'plainnet.py'} changed "
         f"(recorded {was}, now {now}) [external code or data]; restore them, or pass --allow-changed to run anyway "
         f"and report the differences", tmp_path)


#: NETPLUG with a buffer stamped from the clock at construction: never logged, only in the weights.
STAMPED = NETPLUG.replace("        self.scale, self.offset = scale, offset\n", """        self.scale, self.offset = scale, offset
        import time
        self.register_buffer("stamp", torch.tensor([time.time()], dtype=torch.float64))
""")
assert STAMPED != NETPLUG


def test_verify_fails_on_a_weights_only_difference_naming_the_tensor(tmp_path):
    lines = _run_then_verify_fails(tmp_path, "stamped", STAMPED)
    first = [line for line in lines if line.startswith("first divergence")]
    assert len(first) == 1 and first[0].startswith(
        "first divergence: ckpt_last_model.pth.tar: tensor 'network.stamp' differs (shape [1], float64; max abs diff ")
    logs = json.loads((tmp_path / "exp" / "logs.json").read_text())
    assert f"; {sum(len(v) for v in logs.values())} values identical (1 logs file), " in first[0]  # logs all equal
