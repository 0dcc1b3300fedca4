"""Input discovery in one process: what the recorder sees, what it leaves out, how a manifest is checked."""

from __future__ import annotations

import glob
import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest

from bootstrap_repro.cli import main
from bootstrap_repro.record import InputRecorder, StatCache, check_inputs, read_record

OLD = time.time() - 3600  # an mtime outside the racy window: the stat fast path applies


def _old(path: Path) -> Path:
    os.utime(path, (OLD, OLD))
    return path


def record(tmp_path: Path, body, **kwargs) -> dict:
    exp = tmp_path / "exp"
    exp.mkdir(exist_ok=True)
    rec = InputRecorder(exp, stat_cache=StatCache(tmp_path / "stat.sqlite"), **kwargs).start()
    try:
        body()
    finally:
        inputs = rec.finish()
    return inputs.to_json()


def _child_reads(path: str) -> None:
    with open(path) as f:
        f.read()


def test_reads_listings_and_variables_are_seen_writes_and_bookkeeping_are_not(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("a.txt", "b.txt", "c.txt"):
        (data / name).write_text(name)
    monkeypatch.setenv("MY_SCALE", "2")
    monkeypatch.setenv("API_TOKEN", "tok-123")
    monkeypatch.delenv("NOT_SET_X", raising=False)

    def body() -> None:
        (data / "a.txt").read_text()                      # pathlib
        with open(os.open(data / "b.txt", os.O_RDONLY)) as f:  # os.open
            f.read()
        glob.glob(str(data / "*.txt"))                     # a listing
        (tmp_path / "exp" / "out.txt").write_text("x")     # the exp dir: an output
        (tmp_path / "made.txt").write_text("x")            # written by the run: not an input
        (tmp_path / "made.txt").read_text()
        os.environ.get("MY_SCALE")
        os.getenv("API_TOKEN")
        _ = "NOT_SET_X" in os.environ
        _ = os.environ.get("HOME")                         # bookkeeping, not an input
        dict(os.environ.items())                           # a walk over every variable: not a read of each
        ctx = multiprocessing.get_context("fork")
        p = ctx.Process(target=_child_reads, args=(str(data / "c.txt"),))  # a forked worker reads
        p.start()
        p.join()

    m = record(tmp_path, body)
    # (files read by earlier recordings of this process count too: only this test's dir is looked at)
    files = {Path(p).name: meta for p, meta in m["files"].items() if p.startswith(str(tmp_path.resolve()))}
    assert sorted(files) == ["a.txt", "b.txt", "c.txt"], m["files"]
    assert all(meta["kind"] == "external" and len(meta["sha256"]) == 64 for meta in files.values())
    assert list(m["dirs"]) == [str(data.resolve())]
    assert m["env"]["MY_SCALE"] == "2" and m["env"]["NOT_SET_X"] is None
    assert m["env"]["API_TOKEN"] == {"hmac": m["env"]["API_TOKEN"]["hmac"]} and "tok-123" not in json.dumps(m)
    assert "HOME" not in m["env"] and "PATH" not in m["env"]
    assert not any(k.startswith("PYTEST_") for k in m["env"])


def test_check_inputs_names_each_change_and_trusts_unchanged_stats(tmp_path, monkeypatch):
    f = tmp_path / "d.bin"
    f.write_bytes(b"x" * 1000)
    _old(f)
    monkeypatch.setenv("MY_SCALE", "2")
    m = record(tmp_path, lambda: (f.read_bytes(), os.environ.get("MY_SCALE")))
    cache = StatCache(tmp_path / "stat.sqlite")
    assert check_inputs(m, cache=cache) == []
    f.write_bytes(b"y" * 1000)
    _old(f)  # same size, same mtime: the inode is the same too, so only a hash would tell
    os.utime(f, (OLD + 1, OLD + 1))
    [change] = check_inputs(m, cache=cache)
    assert change.describe().startswith(f"{f.resolve()} changed (recorded ")
    f.write_bytes(b"x" * 1000)
    _old(f)
    assert check_inputs(m, cache=cache) == []  # touched, content as recorded: still the same input
    monkeypatch.setenv("MY_SCALE", "3")
    [change] = check_inputs(m, cache=cache)
    assert change.describe() == "$MY_SCALE changed (recorded '2', now '3')"
    f.unlink()
    monkeypatch.setenv("MY_SCALE", "2")
    [change] = check_inputs(m, cache=cache)
    assert change.describe().endswith("changed (recorded " + m["files"][str(f.resolve())]["sha256"][:12] + ", now missing)")


def test_secret_files_and_oversized_inputs(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("TOKEN=tok-456\n")
    big = tmp_path / "big.bin"
    big.write_bytes(b"z" * 4096)
    m = record(tmp_path, lambda: (env_file.read_text(), big.read_bytes()), max_input_gb=1e-6)
    assert list(m["secrets"]) == [str(env_file.resolve())] and "tok-456" not in json.dumps(m)
    assert str(env_file.resolve()) not in m["files"]
    assert f"{big.resolve()}: 0.0 GB, over exp.max_input_gb=1e-06" in m["unfingerprintable"]
    env_file.write_text("TOKEN=tok-789\n")
    assert [c.what for c in check_inputs(m)] == ["secret"]


def test_a_run_with_an_input_it_cannot_fingerprint_is_not_cached(capsys, tiny_file, tmp_path, monkeypatch):
    data = tmp_path / "big.bin"
    data.write_bytes(b"z" * 4096)
    (tmp_path / "readbig.py").write_text(f"def register(engine):\n    open({str(data)!r}, 'rb').read()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("BOOTSTRAP_REPRO_HOOKS", "readbig")
    opts = str(tiny_file({"exp": {"max_input_gb": 1e-6}}))
    assert main(["run", "-o", opts]) == 0
    err = capsys.readouterr().err
    assert (f"warning: cache: not stored, an input cannot be fingerprinted: {data.resolve()}: 0.0 GB, over "
            f"exp.max_input_gb=1e-06") in err
    assert main(["run", "-o", opts, "--exp.dir", str(tmp_path / "again")]) == 0
    assert "cache hit" not in capsys.readouterr().out
    assert read_record(tmp_path / "exp")["segments"][0]["inputs"]["unfingerprintable"]


@pytest.mark.parametrize("bad", ["API_TOKEN", [1, 2]])
def test_env_keys_must_be_names(capsys, tiny_file, bad):
    opts = str(tiny_file({"exp": {"env_keys": bad}}))
    assert main(["run", "-o", opts]) == 2
    assert capsys.readouterr().err == (
        f"error: exp.env_keys: expected a list of environment variable names like [MY_SCALE], got {bad!r} "
        f"(in options.yaml)\n")


def test_the_same_command_after_an_input_changed_says_so(capsys, tiny_file, tmp_path, monkeypatch):
    data = tmp_path / "table.csv"
    data.write_text("1,2\n")
    (tmp_path / "readtable.py").write_text(f"def register(engine):\n    open({str(data)!r}).read()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("BOOTSTRAP_REPRO_HOOKS", "readtable")
    opts = str(tiny_file({"engine": {"nb_epochs": 1}}))
    assert main(["run", "-o", opts]) == 0
    capsys.readouterr()
    assert main(["run", "-o", opts]) == 0
    assert capsys.readouterr().out.startswith(f"up to date: {tmp_path / 'exp'} already holds this experiment")
    data.write_text("1,3\n")
    assert main(["run", "-o", opts]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: exp.dir: {tmp_path / 'exp'} holds this experiment, but an input it read is not "
                          f"as it was ({data.resolve()} changed (recorded ")
    assert err.endswith("); choose a new --exp.dir to train with the inputs as they are now\n")


def test_what_an_adversarial_user_tried(tmp_path, monkeypatch):
    """Symlinks, optional files, sqlite, shadowed imports, preserved mtimes, library switches, secrets."""
    import sqlite3
    import subprocess
    import sys

    data = tmp_path / "data"
    data.mkdir()
    (data / "v1.txt").write_text("1")
    (data / "v2.txt").write_text("2")
    (data / "current.txt").symlink_to("v1.txt")
    db = tmp_path / "table.db"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE t (x)")
        c.execute("INSERT INTO t VALUES (1)")
    lib_a, lib_b = tmp_path / "libA", tmp_path / "libB"
    lib_a.mkdir()
    lib_b.mkdir()
    name = f"shadowed_{os.getpid()}"
    (lib_a / f"{name}.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(lib_a))
    same_size = tmp_path / "same.bin"
    same_size.write_bytes(b"a" * 64)
    _old(same_size)
    monkeypatch.setenv("DB_PASS", "hunter2")
    monkeypatch.setenv("DATABASE_URL", "postgres://u:pw-xyz@h/db")

    def body() -> None:
        (data / "current.txt").read_text()
        try:
            open(tmp_path / "override.yaml").read()   # optional: not there
        except FileNotFoundError:
            pass
        with sqlite3.connect(db) as c:
            c.execute("SELECT x FROM t").fetchall()
        __import__(name)
        same_size.read_bytes()
        os.environ.get("DB_PASS")
        os.environ.get("DATABASE_URL")

    m = record(tmp_path, body)
    assert m["links"] == {str(data / "current.txt"): str((data / "v1.txt").resolve())}
    assert [p for p in m["absent"] if p.startswith(str(tmp_path.resolve()))] == [str((tmp_path / "override.yaml").resolve())]
    assert str(db.resolve()) in m["files"]
    assert m["resolution"][name] == str((lib_a / f"{name}.py").resolve())
    text = json.dumps(m)
    assert "hunter2" not in text and "pw-xyz" not in text
    assert set(m["env"]["DB_PASS"]) == {"hmac"} and set(m["env"]["DATABASE_URL"]) == {"hmac"}
    assert not any(k.startswith("TORCHINDUCTOR") for k in m["env"])  # a library's own switches
    assert check_inputs(m) == []
    (data / "current.txt").unlink()
    (data / "current.txt").symlink_to("v2.txt")
    (tmp_path / "override.yaml").write_text("lr: 1\n")
    with sqlite3.connect(db) as c:
        c.execute("UPDATE t SET x = 2")
    (lib_b / f"{name}.py").write_text("X = 2\n")
    monkeypatch.syspath_prepend(str(lib_b))  # the same import now finds another file
    st = same_size.stat()
    same_size.write_bytes(b"b" * 64)
    os.utime(same_size, ns=(st.st_atime_ns, st.st_mtime_ns))  # cp -p / touch -r: mtime and size kept
    changes = [c.describe() for c in check_inputs(m)]
    assert f"symlink {data / 'current.txt'} points elsewhere (recorded {(data / 'v1.txt').resolve()}, now " \
           f"{(data / 'v2.txt').resolve()})" in changes
    assert f"{(tmp_path / 'override.yaml').resolve()} exists now (the run looked for it and found none)" in changes
    assert any(c.startswith(f"{db.resolve()} changed") for c in changes)
    assert any(c.startswith(f"{same_size.resolve()} changed") for c in changes)
    assert f"import {name} resolves elsewhere (recorded {(lib_a / f'{name}.py').resolve()}, now " \
           f"{(lib_b / f'{name}.py').resolve()})" in changes
    # a subprocess reads what the recorder cannot see: such a run is not cached
    m = record(tmp_path, lambda: subprocess.run([sys.executable, "-c", "pass"], check=True))
    assert any(u.startswith("a subprocess ran (") and u.endswith("): what it reads is not seen")
               for u in m["unfingerprintable"])


def test_second_round_of_attacks(tmp_path, monkeypatch):
    """Dangling and looping symlinks, globs over missing dirs, expandvars, r+ and read-then-append."""
    data = tmp_path / "d"
    data.mkdir()
    (data / "v2.txt").write_text("2")
    (data / "latest.txt").symlink_to("nowhere.txt")  # dangling
    (data / "loop").symlink_to("loop")
    rw = tmp_path / "rw.txt"
    rw.write_text("5")
    log = tmp_path / "seen.log"
    log.write_text("a\n")
    monkeypatch.setenv("ADV_SCALE", "3")

    def body() -> None:
        for name in ("latest.txt", "loop"):
            try:
                open(data / name).read()
            except OSError:
                pass
        glob.glob(str(tmp_path / "extra" / "*.txt"))
        os.path.expandvars("$ADV_SCALE")
        with open(rw, "r+") as f:
            f.seek(0)
            f.write(f.read())
        log.read_text()
        with open(log, "a") as f:
            f.write("b\n")

    m = record(tmp_path, body)
    assert str(data / "latest.txt") in m["links"] and str(data / "loop") in m["links"]
    assert str((tmp_path / "extra").resolve()) in m["absent"]
    assert m["env"]["ADV_SCALE"] == "3"
    assert str(rw.resolve()) in m["files"] and str(log.resolve()) in m["files"]
    (data / "latest.txt").unlink()
    (data / "latest.txt").symlink_to("v2.txt")
    (data / "loop").unlink()
    (data / "loop").write_text("now a file")
    (tmp_path / "extra").mkdir()
    changes = " | ".join(c.describe() for c in check_inputs(m))
    assert f"symlink {data / 'latest.txt'} points elsewhere" in changes
    assert f"symlink {data / 'loop'} points elsewhere" in changes
    assert f"{(tmp_path / 'extra').resolve()} exists now" in changes


def test_crafted_manifests_are_damaged_records_not_tracebacks(tmp_path):
    from bootstrap_repro.record import RecordError, inputs_problem
    from bootstrap_repro.record._rerun import _in_tree

    assert inputs_problem({"files": {"/tmp/a\0b": {}}}) == "'files' holds a path that is not absolute or has a NUL byte"
    assert inputs_problem({"links": {"/x": "/y\0"}}) == "'links' holds a path with a NUL byte"
    assert inputs_problem({"files": {"/a": 1}}) == "'files' is not an object of objects"
    assert inputs_problem({"files": {"/a": {"sha256": "x"}}, "absent": ["/b"]}) is None
    with pytest.raises(RecordError, match="leads outside the code repo; the record is damaged"):
        _in_tree(tmp_path, "../../../tmp/PWNED", tmp_path / "record.json")
    assert _in_tree(tmp_path, "data/x", tmp_path / "record.json") == tmp_path / "data" / "x"


def test_a_symlink_retargeted_is_a_cache_miss(capsys, tiny_file, tmp_path, monkeypatch):
    (tmp_path / "v1.txt").write_text("1")
    (tmp_path / "v2.txt").write_text("2")
    (tmp_path / "current.txt").symlink_to("v1.txt")
    (tmp_path / "readlink.py").write_text(
        f"def register(engine):\n    open({str(tmp_path / 'current.txt')!r}).read()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("BOOTSTRAP_REPRO_HOOKS", "readlink")
    opts = str(tiny_file({"engine": {"nb_epochs": 1}}))
    assert main(["run", "-o", opts, "--exp.dir", str(tmp_path / "a")]) == 0
    assert main(["run", "-o", opts, "--exp.dir", str(tmp_path / "b")]) == 0
    assert "cache hit" in capsys.readouterr().out
    (tmp_path / "current.txt").unlink()
    (tmp_path / "current.txt").symlink_to("v2.txt")
    assert main(["run", "-o", opts, "--exp.dir", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "cache hit" not in out and f"symlink {tmp_path / 'current.txt'} points elsewhere" in out
