"""The result cache seen from ``run``: a hit trains nothing; any change of options, code or packages misses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from conftest import REPO, cli
from repro_helpers import NETPLUG, env_for, git, make_repo

from bootstrap_repro.cli import main
from bootstrap_repro.record import ResultCache, read_record

#: The network plugin, also noting every time it is built (proof that a run trained).
COUNTING = NETPLUG.replace("def factory(engine):\n", textwrap.dedent("""
    def factory(engine):
        import os
        with open(os.environ["BUILD_LOG"], "a") as f:
            f.write("built\\n")
"""))

NOT_RESULTS = {".lock", "options.yaml", "view.html"}


def result_files(exp: Path) -> dict[str, bytes]:
    return {str(p.relative_to(exp)): p.read_bytes() for p in sorted(exp.rglob("*"))
            if p.is_file() and p.relative_to(exp).parts[0] != "repro" and p.name not in NOT_RESULTS
            and not p.name.startswith("plotly-")}


@pytest.mark.slow
def test_second_identical_run_is_a_hit_that_trains_nothing(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    repo = make_repo(tmp_path / "repo", module="countnet", source=COUNTING, exp_dir=a,
                     changes={"view": ["logs:train_epoch.loss+logs:eval_epoch.loss"]})
    builds = tmp_path / "builds.txt"
    env = env_for(repo, BUILD_LOG=str(builds))
    r = cli("run", "-o", "configs/tiny.yaml", cwd=repo, env=env)
    assert r.returncode == 0 and "train epoch 1" in r.stdout, r.stderr
    key = read_record(a)["cache_key"]
    # the same run again, into b; the harness tells whether torch was imported
    harness = ("import sys; from bootstrap_repro.cli import main; rc = main(sys.argv[1:]); "
               "print('torch loaded:', 'torch' in sys.modules); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", harness, "run", "-o", "configs/tiny.yaml", "--exp.dir", str(b)],
                       cwd=repo, env={**os.environ, **env}, capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"cache hit: {key[:12]} (from {a}); not trained again", "torch loaded: False"]
    assert builds.read_text() == "built\n", "the hit must not build (nor train) anything"
    # a complete experiment dir, equal to the original
    files_a, files_b = result_files(a), result_files(b)
    assert files_a.keys() == files_b.keys() and {"logs.json", "ckpt_last_model.pth.tar"} <= files_a.keys()
    for name in files_a:
        if name == "logs.txt":
            assert files_b[name].startswith(files_a[name])
            assert files_b[name][len(files_a[name]):].decode().endswith(
                f"cache hit: {key[:12]} (from {a}); not trained again\n")
        else:
            assert files_b[name] == files_a[name], name
    assert yaml.safe_load((b / "options.yaml").read_text())["exp"]["dir"] == str(b)
    assert "eval_epoch.loss" in (b / "view.html").read_text()
    rec = read_record(b)
    assert rec["status"] == "COMPLETED" and rec["cache_key"] == key
    assert rec["cache_hit_of"]["exp_dir"] == str(a) and rec["cache_hit_of"]["key"] == key
    assert rec["code"]["fingerprint"] == read_record(a)["code"]["fingerprint"]
    # the materialised dir is an ordinary experiment: resuming it trains on, and leaves the store intact
    r = cli("run", "-o", str(b / "options.yaml"), "--exp.resume", "last", "--engine.nb_epochs", "3",
            cwd=repo, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads((b / "logs.json").read_text())["train_epoch.epoch"] == [0, 1, 2]
    assert ResultCache().lookup(key) is not None


def run_ok(capsys, *argv: str) -> str:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return out


def trained(out: str) -> bool:
    return "train epoch 1" in out and "cache hit" not in out


def test_each_change_is_a_miss(capsys, tmp_path, monkeypatch):
    site = tmp_path / "site"
    dist = site / "dummy_cache_pkg-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: dummy-cache-pkg\nVersion: 1.0\n")
    monkeypatch.syspath_prepend(str(site))
    repo = make_repo(tmp_path / "repo", changes={"model": {"network": {"import": ""}}})  # built-in mlp
    opts = str(repo / "configs" / "tiny.yaml")
    n = iter(range(100))

    def again(*argv: str) -> str:
        return run_ok(capsys, "run", "-o", opts, "--exp.dir", str(tmp_path / f"e{next(n)}"), *argv)

    assert trained(again())
    assert "cache hit" in again()
    assert trained(again("--optimizer.lr", "0.05")), "an option"
    (repo / "README.md").write_text("edited\n")
    assert trained(again()), "a tracked file"
    (repo / "notes.py").write_text("x = 1\n")
    assert trained(again()), "an untracked file"
    dist = dist.rename(site / "dummy_cache_pkg-1.1.dist-info")
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: dummy-cache-pkg\nVersion: 1.1\n")
    assert trained(again()), "a package version"
    # everything back as it was: the first result again
    dist.rename(site / "dummy_cache_pkg-1.0.dist-info")
    (site / "dummy_cache_pkg-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: dummy-cache-pkg\nVersion: 1.0\n")
    (repo / "notes.py").unlink()
    git(repo, "checkout", "README.md")
    assert f"(from {tmp_path / 'e0'})" in again()
    # non-result options do not matter
    assert "cache hit" in again("--engine.print_freq", "1", "--view", "logs:train_epoch.loss")
    assert (tmp_path / f"e{next(n) - 1}" / "view.html").is_file()


def test_damaged_entries_are_reported_and_ignored(capsys, tiny_file, tmp_path):
    opts = str(tiny_file())
    out = run_ok(capsys, "run", "-o", opts, "--exp.dir", str(tmp_path / "a"))
    key = read_record(tmp_path / "a")["cache_key"]
    store = ResultCache()
    for i, (damage, problem) in enumerate([
        (lambda e: (e / "files" / "logs.json").write_text("{}\n" + " " * 1000), "logs.json has 1003 bytes, expected"),
        (lambda e: (e / "files" / "logs.json").write_bytes(b"X" + (e / "files" / "logs.json").read_bytes()[1:]),
         "logs.json does not match its sha256"),
        (lambda e: (e / "files" / "ckpt_last_model.pth.tar").unlink(), "ckpt_last_model.pth.tar is missing"),
        (lambda e: (e / "manifest.json").unlink(), "no manifest.json"),
    ]):
        damage(store.entry_path(key))
        out = run_ok(capsys, "run", "-o", opts, "--exp.dir", str(tmp_path / f"b{i}"))
        [line] = [ln for ln in out.splitlines() if "cache entry" in ln]
        assert line.startswith("[W ") and f"cache entry {key[:12]} in {store.root} is damaged ({problem}" in line
        assert line.endswith("); ignored, the run trains (bootstrap-repro cache gc removes it)")
        assert trained(out)
        assert store.lookup(key) is not None, "the run that trained replaced the damaged entry"


def test_no_cache_neither_reads_nor_writes(capsys, tiny_file, tmp_path):
    opts = str(tiny_file())
    run_ok(capsys, "run", "-o", opts, "--exp.dir", str(tmp_path / "a"))
    assert trained(run_ok(capsys, "run", "-o", opts, "--exp.dir", str(tmp_path / "b"), "--no-cache"))
    assert trained(run_ok(capsys, "run", "-o", opts, "--exp.dir", str(tmp_path / "c"), "--engine.nb_epochs", "3",
                          "--no-cache"))
    assert len(ResultCache().keys()) == 1


@pytest.mark.parametrize("action, status, code", [
    ("e.request_stop('pruned')", "STOPPED", 0),
    ("e.interrupt('test')", "INTERRUPTED", 130),
    ("1 / 0", "FAILED", 1),
])
def test_only_completed_runs_enter_the_cache(capsys, tiny_file, tmp_path, monkeypatch, action, status, code):
    module = f"hook_{status.lower()}_cache_test"
    (tmp_path / f"{module}.py").write_text(
        f"def register(engine):\n    engine.register_hook('train_on_end_epoch', lambda e: {action})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    opts = str(tiny_file())
    assert main(["run", "-o", opts, "--exp.dir", str(tmp_path / "x"), "--engine.hooks", module]) == code
    capsys.readouterr()
    assert read_record(tmp_path / "x")["status"] == status
    assert ResultCache().keys() == []
    run_ok(capsys, "run", "-o", opts, "--exp.dir", str(tmp_path / "ok"))  # control: a completed run enters
    assert ResultCache().keys() == [read_record(tmp_path / "ok")["cache_key"]]


def test_cli_cache_ls_rm_gc(capsys, tiny_file, tmp_path):
    opts = str(tiny_file())
    run_ok(capsys, "run", "-o", opts, "--exp.dir", str(tmp_path / "a"))
    run_ok(capsys, "run", "-o", opts, "--exp.dir", str(tmp_path / "b"), "--optimizer.lr", "0.3")
    store = ResultCache()
    ka, kb = read_record(tmp_path / "a")["cache_key"], read_record(tmp_path / "b")["cache_key"]
    lines = run_ok(capsys, "cache", "ls").splitlines()
    assert lines[0].split() == ["KEY", "CREATED", "LAST", "USED", "SIZE", "FROM"]
    assert [ln.split()[0] for ln in lines[1:3]] == [kb[:12], ka[:12]]  # most recently used first
    assert lines[1].endswith(str(tmp_path / "b"))
    assert lines[-1].startswith("2 entries, ") and lines[-1].endswith(f" in {store.root}")
    (store.entry_path(ka) / "files" / "logs.json").write_text("{}")
    assert "[damaged: logs.json has 2 bytes, expected" in run_ok(capsys, "cache", "ls")
    (store.root / ".tmp-0123456789ab-xyz").mkdir()  # a publisher killed half-way
    out = run_ok(capsys, "cache", "gc")
    assert f"removed {ka[:12]}: logs.json has 2 bytes, expected" in out
    assert "removed .tmp-0123456789ab-xyz: unfinished publish" in out
    assert out.splitlines()[-1].startswith("2 removed, ") and out.splitlines()[-1].endswith(f"1 kept in {store.root}")
    assert run_ok(capsys, "cache", "rm", kb[:8]) == f"removed {kb}\n"
    assert store.keys() == []
    assert main(["cache", "rm", "abc"]) == 2
    assert capsys.readouterr().err == f"error: cache: no entry 'abc' in {store.root}; list them with bootstrap-repro cache ls\n"
    assert main(["cache", "gc", "--max-size", "lots"]) == 2
    assert capsys.readouterr().err == "error: --max-size: expected a size like 500M or 20G, got 'lots'\n"


def test_layers_rule_lists_record_below_run():
    from test_layers import LAYERS

    assert LAYERS.index({"record"}) < LAYERS.index({"run"})
    assert Path(REPO / "bootstrap_repro" / "record" / "__init__.py").is_file()


@pytest.mark.slow
def test_a_ddp_run_is_stored_by_rank0_and_hit_before_torchrun(tiny_file, tmp_path):
    opts = str(tiny_file())
    r = cli("run", "-o", opts, "--exp.dir", str(tmp_path / "a"), "--nproc-per-node", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    key = read_record(tmp_path / "a")["cache_key"]
    assert ResultCache().keys() == [key]
    r = cli("run", "-o", opts, "--exp.dir", str(tmp_path / "b"), "--nproc-per-node", "2")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"cache hit: {key[:12]} (from {tmp_path / 'a'}); not trained again\n"
    assert (tmp_path / "b" / "logs.json").read_bytes() == (tmp_path / "a" / "logs.json").read_bytes()
    single = cli("run", "-o", opts, "--exp.dir", str(tmp_path / "c"))  # one process is another result
    assert single.returncode == 0 and "cache hit" not in single.stdout
