"""The code snapshot: repo found from the plugins and options file, diff, untracked files, fingerprint."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from conftest import REPO
from repro_helpers import git, make_dirty, make_repo

from bootstrap_repro.options import Options
from bootstrap_repro.record import (
    UntrackedTooLargeError,
    cache_key,
    environment,
    installed_packages,
    result_options,
    snapshot_code,
    take_snapshot,
)
from bootstrap_repro.record._git import sanitize_url


@pytest.fixture
def repo(tmp_path, monkeypatch):
    root = make_repo(tmp_path / "repo", exp_dir=tmp_path / "exp")
    monkeypatch.syspath_prepend(str(root / "src"))
    return root


def load(root: Path, *argv: str) -> Options:
    return Options.load(root / "configs" / "tiny.yaml", list(argv))


def test_repo_found_from_plugin_not_cwd(repo, tmp_path, monkeypatch):
    other = make_repo(tmp_path / "other", module="othermod")
    monkeypatch.chdir(other)
    snap = snapshot_code(load(repo))
    assert snap.root == repo
    rec = snap.to_record()
    assert rec["git"] is True and rec["commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert rec["branch"] == "main" and rec["dirty"] is False
    assert rec["options_file"] == "configs/tiny.yaml"
    assert rec["plugins"] == [{"key": "model.network.import", "module": "netplug", "file": "src/netplug.py",
                               "root": "src", "in_repo": True, "sha256": rec["plugins"][0]["sha256"]}]
    assert rec["cwd"] == str(other) and rec["cwd_in_repo"] is False


def test_options_file_decides_without_plugins(tmp_path, monkeypatch):
    root = make_repo(tmp_path / "repo")
    opt = load(root, "--model.network.import", "")
    monkeypatch.chdir(tmp_path)
    assert snapshot_code(opt).root == root


def test_dirty_tree_staged_unstaged_untracked(repo):
    make_dirty(repo)
    snap = snapshot_code(load(repo))
    diff = snap.git.diff.decode()
    assert "diff --git a/src/staged_mod.py b/src/staged_mod.py" in diff and "+OFFSET = 0.25" in diff  # staged
    assert "+SCALE = 0.5" in diff  # unstaged change of a tracked file
    assert [u.path for u in snap.untracked] == ["src/untracked_mod.py"]  # ignored notes.ignored is not
    assert snap.dirty and snap.to_record()["untracked"]["count"] == 1


def test_write_makes_an_appliable_diff_and_a_deterministic_archive(repo, tmp_path):
    make_dirty(repo)
    snap = snapshot_code(load(repo))
    out = tmp_path / "out"
    out.mkdir()
    snap.write(out)
    assert (out / "code.diff").read_bytes() == snap.git.diff
    with tarfile.open(out / "untracked.tar.gz") as tar:
        assert tar.getnames() == ["src/untracked_mod.py"]
        assert tar.extractfile("src/untracked_mod.py").read() == b"WIDTH = 12\n"
    first = (out / "untracked.tar.gz").read_bytes()
    snap.write(out)
    assert (out / "untracked.tar.gz").read_bytes() == first
    with gzip.open(io.BytesIO(first)) as gz:
        assert gz.read()  # a valid gzip stream
    clean = tmp_path / "clean"
    git(tmp_path, "clone", "-q", str(repo), str(clean))
    git(clean, "apply", "--check", "--binary", str(out / "code.diff"))


def test_fingerprint_stable_and_sensitive(repo):
    opt = load(repo)
    base = snapshot_code(opt).fingerprint()
    assert snapshot_code(opt).fingerprint() == base
    (repo / "README.md").write_text("changed\n")  # a tracked file
    tracked = snapshot_code(opt).fingerprint()
    (repo / "data.txt").write_text("new\n")  # an untracked file
    untracked = snapshot_code(opt).fingerprint()
    (repo / "data.txt").write_text("new!\n")  # its content
    content = snapshot_code(opt).fingerprint()
    (repo / "data.txt").unlink()
    git(repo, "add", "README.md")  # staged or not, the same change is the same code
    staged = snapshot_code(opt).fingerprint()
    assert len({base, tracked, untracked, content}) == 4
    assert staged == tracked


def test_untracked_over_the_bound(repo):
    (repo / "big.bin").write_bytes(b"x" * 300_000)
    (repo / "small.bin").write_bytes(b"x" * 120_000)
    with pytest.raises(UntrackedTooLargeError) as exc:
        snapshot_code(load(repo), max_untracked_mb=0.25)
    assert str(exc.value) == (
        f"untracked files of code repo {repo} weigh 0.4 MB, over exp.max_untracked_mb=0.25: big.bin (0.3 MB), "
        f"small.bin (0.1 MB); add them to .gitignore or raise the bound (--exp.max_untracked_mb 1)"
    )
    assert isinstance(exc.value, ValueError)
    assert len(snapshot_code(load(repo), max_untracked_mb=None).untracked) == 2


def test_experiment_dirs_inside_the_repo_are_not_code(repo):
    opt = load(repo)
    base = snapshot_code(opt, exp_dir=repo / "runs" / "b").fingerprint()
    (repo / "runs" / "a" / "repro").mkdir(parents=True)
    (repo / "runs" / "a" / "repro" / "record.json").write_text("{}")
    (repo / "runs" / "a" / "ckpt_last_model.pth.tar").write_bytes(b"\0" * 1000)
    (repo / "runs" / "b").mkdir()
    (repo / "runs" / "b" / "logs.txt").write_text("the run being made")
    assert snapshot_code(opt, exp_dir=repo / "runs" / "b").fingerprint() == base


def test_outside_git_the_plugin_source_is_the_fingerprint(tmp_path, monkeypatch):
    src = tmp_path / "plain"
    (src / "pkg").mkdir(parents=True)
    (src / "pkg" / "__init__.py").write_text("")
    (src / "pkg" / "net.py").write_text("def factory(engine): ...\n")
    (src / "pkg" / "helper.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(src))
    opt = Options({"exp": {"dir": "x"}, "model": {"network": {"import": "pkg.net"}}})
    snap = snapshot_code(opt)
    assert snap.to_record()["git"] is False
    assert snap.to_record()["reason"] == "the options file and the import: modules are in no git repository"
    assert snap.plugins[0].file == src / "pkg" / "net.py" and snap.plugins[0].root == src
    base = snap.fingerprint()
    (src / "pkg" / "helper.py").write_text("X = 2\n")  # a helper of the plugin's package is its code too
    assert snapshot_code(opt).fingerprint() != base


def test_repo_without_commits(tmp_path, monkeypatch):
    root = tmp_path / "fresh"
    root.mkdir()
    git(root, "init", "-q")
    (root / "mod_unborn.py").write_text("def factory(engine): ...\n")
    git(root, "add", "mod_unborn.py")
    monkeypatch.syspath_prepend(str(root))
    snap = snapshot_code(Options({"model": {"import": "mod_unborn"}}))
    assert snap.git.commit is None and b"+def factory" in snap.git.diff


def test_remote_credentials_are_removed(repo):
    git(repo, "remote", "add", "origin", "https://user:s3cr3t-token@example.org/team/project.git")
    assert snapshot_code(load(repo)).git.remote == "https://example.org/team/project.git"
    git(repo, "remote", "add", "fork", "ssh://me@example.org/me/project.git")
    git(repo, "config", "branch.main.remote", "fork")  # the branch's own remote wins over origin
    assert snapshot_code(load(repo)).git.remote == "ssh://example.org/me/project.git"
    assert sanitize_url("git@github.com:team/project.git") == "git@github.com:team/project.git"
    assert sanitize_url("--storage=postgresql://me:pw@db/x") == "--storage=postgresql://db/x"


def test_untracked_symlinks_round_trip(repo, tmp_path):
    from bootstrap_repro.record._rerun import _extract

    (repo / "data").symlink_to("/datasets/mnist")
    (repo / "run.sh").write_text("#!/bin/sh\n")
    (repo / "run.sh").chmod(0o755)
    snap = snapshot_code(load(repo))
    out, dest = tmp_path / "out", tmp_path / "dest"
    out.mkdir()
    dest.mkdir()
    snap.write(out)
    _extract(out / "untracked.tar.gz", dest)
    assert os.readlink(dest / "data") == "/datasets/mnist"
    assert os.access(dest / "run.sh", os.X_OK) and (dest / "run.sh").read_text() == "#!/bin/sh\n"


def test_key_ignores_non_result_options(repo):
    opt = load(repo)
    snap = take_snapshot(opt)
    same = take_snapshot(load(repo, "--exp.dir", "elsewhere", "--engine.print_freq", "3",
                              "--engine.progress_bar", "true", "--exp.max_untracked_mb", "9"))
    assert same.key == snap.key
    assert take_snapshot(load(repo, "--optimizer.lr", "0.2")).key != snap.key
    assert "exp.dir" not in result_options(opt) and "optimizer.lr" in result_options(opt)


def test_a_package_version_changes_the_key(repo, tmp_path, monkeypatch):
    site = tmp_path / "site"
    dist = site / "dummy_repro_pkg-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: dummy-repro-pkg\nVersion: 1.0\n")
    monkeypatch.syspath_prepend(str(site))
    assert ("dummy-repro-pkg", "1.0") in installed_packages()
    opt = load(repo)
    key = take_snapshot(opt).key
    assert take_snapshot(opt).key == key
    dist.rename(site / "dummy_repro_pkg-1.1.dist-info")
    (site / "dummy_repro_pkg-1.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: dummy-repro-pkg\nVersion: 1.1\n")
    assert take_snapshot(opt).key != key


def test_environment_keeps_allowlisted_variables_only(monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x-secret-value")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    env = environment()
    assert env["env_vars"]["OMP_NUM_THREADS"] == "2"
    assert "x-secret-value" not in json.dumps(env) and "AWS_SECRET_ACCESS_KEY" not in json.dumps(env)
    assert env["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert cache_key(Options({}), "c", env["fingerprint"]) != cache_key(Options({}), "c", "other env")


def test_importing_record_loads_neither_torch_nor_git():
    code = ("import sys, bootstrap_repro.record, bootstrap_repro.run;"
            "bad = [m for m in ('torch', 'git') if m in sys.modules]; assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False)
    assert r.returncode == 0, r.stderr
