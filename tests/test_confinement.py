"""An experiment dir or a cache entry you did not write must not make the platform write outside it."""

from __future__ import annotations

import json

from bootstrap_repro.cli import main
from bootstrap_repro.fileio import JOURNAL_SUFFIX, recover_groups
from bootstrap_repro.record import ResultCache, read_record


def test_a_crafted_commit_journal_renames_nothing_outside(tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("precious\n")
    (exp / "payload.staged").write_text("payload\n")
    (exp / "link.staged").symlink_to(outside)
    (exp / ("ckpt" + JOURNAL_SUFFIX)).write_text(json.dumps({"files": {
        "../outside.txt": "payload.staged",           # a target outside
        str(outside): "payload.staged",                # an absolute target
        "moved_in.txt": "../outside.txt",              # a source outside
        "ok.txt": "link.staged",                       # a staged symlink
    }}))
    recover_groups(exp)
    assert outside.read_text() == "precious\n"
    assert not (exp / "moved_in.txt").exists() and not (exp / "ok.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp", "outside.txt"]


def test_lock_and_logs_symlinks_are_refused_in_one_line(capsys, tiny_file, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("do not touch\n")
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / ".lock").symlink_to(victim)  # a dir whose only entry is a .lock symlink
    opts = str(tiny_file({"engine": {"nb_epochs": 1}}))
    assert main(["run", "-o", opts]) == 2
    assert capsys.readouterr().err == (f"error: {exp / '.lock'}: is a symlink; bootstrap-repro writes its own files "
                                       f"there and follows no link (remove it: rm {exp / '.lock'})\n")
    assert victim.read_text() == "do not touch\n"
    (exp / ".lock").unlink()
    assert main(["run", "-o", opts]) == 0
    (exp / "logs.txt").unlink()
    (exp / "logs.txt").symlink_to(victim)  # appended to on resume, were it followed
    capsys.readouterr()
    assert main(["run", "-o", str(exp / "options.yaml"), "--exp.resume", "last", "--engine.nb_epochs", "2"]) == 2
    assert capsys.readouterr().err.endswith(f"{exp / 'logs.txt'}: is a symlink; bootstrap-repro appends to its own "
                                            f"file only (remove it: rm {exp / 'logs.txt'})\n")
    assert victim.read_text() == "do not touch\n"


def test_a_cache_manifest_naming_paths_outside_is_a_damaged_entry(capsys, tiny_file, tmp_path):
    opts = str(tiny_file({"engine": {"nb_epochs": 1}}))
    assert main(["run", "-o", opts, "--exp.dir", str(tmp_path / "a")]) == 0
    key = read_record(tmp_path / "a")["cache_key"]
    entry = ResultCache().entry_path(key)
    manifest = json.loads((entry / "manifest.json").read_text())
    meta = manifest["files"]["logs.json"]
    manifest["files"]["../../escaped.json"] = dict(meta)
    (entry / "manifest.json").write_text(json.dumps(manifest))
    (entry.parent / "escaped.json").write_bytes((entry / "files" / "logs.json").read_bytes())  # files/../../
    capsys.readouterr()
    assert main(["run", "-o", opts, "--exp.dir", str(tmp_path / "b" / "c")]) == 0
    out = capsys.readouterr().out
    assert "manifest.json names '../../escaped.json', a path outside the entry" in out and "cache hit" not in out
    assert not (tmp_path / "escaped.json").exists() and not (tmp_path / "b" / "escaped.json").exists()


def test_a_url_with_a_password_in_an_error_is_not_recorded(tiny_file, tmp_path, monkeypatch):
    (tmp_path / "leaky.py").write_text(
        "def register(engine):\n"
        "    def boom():\n"
        "        raise RuntimeError('cannot reach postgresql://bob:s3cr3t-pw@db.example/exp')\n"
        "    engine.register_hook('train_on_start', boom)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("BOOTSTRAP_REPRO_HOOKS", "leaky")
    assert main(["run", "-o", str(tiny_file({"engine": {"nb_epochs": 1}}))]) == 1
    rec = read_record(tmp_path / "exp")
    assert rec["status"] == "FAILED"
    assert rec["error"] == "RuntimeError: cannot reach postgresql://db.example/exp"
    assert "s3cr3t-pw" not in (tmp_path / "exp" / "repro" / "record.json").read_text()


def test_huge_thread_and_process_counts_are_refused_before_anything_forks(capsys, tiny_file, tmp_path):
    import os

    cpus = os.cpu_count() or 1
    opts = str(tiny_file({"engine": {"nb_epochs": 1}}))
    assert main(["run", "-o", opts, "--dataset.nb_threads", str(10**6)]) == 2
    assert capsys.readouterr().err == (f"error: dataset.nb_threads: {10**6} DataLoader workers asked, this machine "
                                       f"has {cpus} CPU(s); use at most {8 * cpus} (8 per CPU)\n")
    assert main(["run", "-o", opts, "--dataset.nb_threads", str(10**30)]) == 2
    assert capsys.readouterr().err == f"error: --dataset.nb_threads: must be <= 2147483647, got {10**30}\n"
    assert main(["run", "-o", opts, "--nproc-per-node", str(10**6)]) == 2
    assert capsys.readouterr().err == (f"error: runtime.nproc_per_node: {10**6} processes asked, this machine has "
                                       f"{cpus} CPU(s); use at most {4 * cpus} (--nproc-per-node N, one per GPU on a "
                                       f"GPU machine)\n")
    assert main(["run", "-o", opts, "--dataset.nb_threads", "-3"]) == 2
    assert capsys.readouterr().err == "error: --dataset.nb_threads: must be >= 0, got -3\n"
    assert not (tmp_path / "exp").exists()


def test_a_broken_hooks_module_fails_before_the_exp_dir_exists(capsys, tiny_file, tmp_path, monkeypatch):
    (tmp_path / "brokenhooks.py").write_text("import not_a_module_anywhere_42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    opts = str(tiny_file({"engine": {"nb_epochs": 1, "hooks": ["brokenhooks"]}}))
    assert main(["run", "-o", opts]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: engine.hooks[0]: importing 'brokenhooks' failed: ") and err.count("\n") == 1
    assert not (tmp_path / "exp").exists()
