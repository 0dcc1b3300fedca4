"""Atomic writes and the journalled multi-file commit."""

from __future__ import annotations

import json
import os
import stat

import pytest

from bootstrap_repro import fileio


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "f.json"
    fileio.atomic_write_json(p, {"a": 1})
    fileio.atomic_write_json(p, {"a": 2})
    assert json.loads(p.read_text()) == {"a": 2}
    assert os.listdir(tmp_path) == ["f.json"]


def test_failed_writer_keeps_old_file(tmp_path):
    p = tmp_path / "f.txt"
    fileio.atomic_write_text(p, "old")

    def boom(f):
        f.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        fileio.atomic_write(p, boom)
    assert p.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.txt"]


def _group(tmp_path, tag):
    return {name: (lambda f, n=name: f.write(f"{tag}-{n}".encode())) for name in ("a.bin", "b.bin", "c.bin")}


def _files(tmp_path):
    return sorted(os.listdir(tmp_path))


def test_commit_group_replaces_all(tmp_path):
    fileio.commit_group(tmp_path, "ckpt", _group(tmp_path, "v1"))
    fileio.commit_group(tmp_path, "ckpt", _group(tmp_path, "v2"))
    names = _files(tmp_path)
    assert names[:3] == ["a.bin", "b.bin", "c.bin"]
    assert len(names) == 4 and names[3].startswith("ckpt.") and names[3].endswith(".commit")  # one marker
    fileio.settle_group(tmp_path, "ckpt")  # the deferred directory fsync; the marker goes
    assert _files(tmp_path) == ["a.bin", "b.bin", "c.bin"]
    assert {p.read_text() for p in tmp_path.iterdir()} == {"v2-a.bin", "v2-b.bin", "v2-c.bin"}


def test_links_share_the_staged_file(tmp_path):
    fileio.commit_group(tmp_path, "ckpt", _group(tmp_path, "v1"), links={"a2.bin": "a.bin"})
    fileio.settle_group(tmp_path, "ckpt")
    assert _files(tmp_path) == ["a.bin", "a2.bin", "b.bin", "c.bin"]
    assert os.path.samefile(tmp_path / "a.bin", tmp_path / "a2.bin")


def count_fsyncs(monkeypatch):
    """Count os.fsync calls by what they sync: 'dir' or 'file'."""
    counts = {"file": 0, "dir": 0}
    real = os.fsync

    def counting(fd):
        counts["dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"] += 1
        return real(fd)

    monkeypatch.setattr(fileio.os, "fsync", counting)
    return counts


def test_a_commit_costs_five_fsyncs_and_the_sixth_is_shared(tmp_path, monkeypatch):
    fileio.commit_group(tmp_path, "ckpt", _group(tmp_path, "v0"))
    counts = count_fsyncs(monkeypatch)
    for i in range(4):  # steady state: the previous commit's deferred directory fsync is the staging one
        fileio.commit_group(tmp_path, "ckpt", _group(tmp_path, f"v{i}"), links={"a2.bin": "a.bin"})
    assert counts == {"file": 3 * 4, "dir": 2 * 4}  # before: 3 files + journal file, 3 directory fsyncs = 7
    fileio.settle_group(tmp_path, "ckpt")  # once at the end of training
    assert counts == {"file": 12, "dir": 9}
    fileio.settle_group(tmp_path, "ckpt")  # nothing left to settle: free
    assert counts == {"file": 12, "dir": 9}


def test_before_commit_runs_with_the_files_staged_and_before_the_commit_point(tmp_path):
    fileio.commit_group(tmp_path, "ckpt", _group(tmp_path, "v1"))
    fileio.settle_group(tmp_path, "ckpt")
    seen = {}

    def before() -> None:  # e.g. the logs' fdatasync a checkpoint must never be ahead of
        seen["staged"] = sorted(n for n in _files(tmp_path) if n.endswith(".staged"))
        seen["markers"] = [n for n in _files(tmp_path) if n.endswith(".commit")]
        seen["targets"] = {p.name: p.read_text() for p in tmp_path.glob("*.bin")}

    fileio.commit_group(tmp_path, "ckpt", _group(tmp_path, "v2"), before_commit=before)
    assert len(seen["staged"]) == 3 and seen["markers"] == []  # written, not committed
    assert set(seen["targets"].values()) == {"v1-a.bin", "v1-b.bin", "v1-c.bin"}
    assert {p.read_text() for p in tmp_path.glob("*.bin")} == {"v2-a.bin", "v2-b.bin", "v2-c.bin"}


def test_a_failing_before_commit_leaves_the_old_files_and_no_staged_ones(tmp_path):
    fileio.commit_group(tmp_path, "ckpt", _group(tmp_path, "v1"))
    fileio.settle_group(tmp_path, "ckpt")

    def sync_failed() -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        fileio.commit_group(tmp_path, "ckpt", _group(tmp_path, "v2"), before_commit=sync_failed)
    assert _files(tmp_path) == ["a.bin", "b.bin", "c.bin"]
    assert {p.read_text() for p in tmp_path.iterdir()} == {"v1-a.bin", "v1-b.bin", "v1-c.bin"}


def _crash_after_marker(monkeypatch, directory, name, writers):
    """Run commit_group until its marker exists, then 'kill -9' before any staged file is renamed."""
    real_replace = os.replace

    def killed(src, dst):
        if str(src).endswith(".staged"):
            raise KeyboardInterrupt("kill -9 after the marker")
        return real_replace(src, dst)

    monkeypatch.setattr(fileio.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        fileio.commit_group(directory, name, writers)
    monkeypatch.setattr(fileio.os, "replace", real_replace)


def _writers(**files):
    return {n: (lambda f, v=v: f.write(v.encode())) for n, v in files.items()}


@pytest.mark.parametrize("finish", ["recover", "settle", "next_commit"])
def test_hidden_member_files_roll_forward_with_the_others(tmp_path, monkeypatch, finish):
    fileio.commit_group(tmp_path, "grp", _writers(**{"data.bin": "old", ".meta": "old"}))
    fileio.settle_group(tmp_path, "grp")
    _crash_after_marker(monkeypatch, tmp_path, "grp", _writers(**{"data.bin": "new", ".meta": "new"}))
    if finish == "recover":
        assert fileio.recover_groups(tmp_path) == ["grp"]
    elif finish == "settle":
        fileio.settle_group(tmp_path, "grp")
    else:  # the next commit finishes the committed one first, then replaces it
        fileio.commit_group(tmp_path, "grp", _writers(**{"data.bin": "next", ".meta": "next"}))
        fileio.settle_group(tmp_path, "grp")
    want = "next" if finish == "next_commit" else "new"
    assert {n: (tmp_path / n).read_text() for n in ("data.bin", ".meta")} == {"data.bin": want, ".meta": want}
    assert sorted(os.listdir(tmp_path)) == [".meta", "data.bin"]


def test_a_hidden_groups_committed_marker_is_finished_by_its_next_commit(tmp_path, monkeypatch):
    _crash_after_marker(monkeypatch, tmp_path, ".grp", _writers(**{"state.bin": "v1"}))
    fileio.commit_group(tmp_path, ".grp", _writers(**{"state.bin": "v2"}))
    fileio.recover_groups(tmp_path)  # the next start: nothing may replay v1 over v2
    assert (tmp_path / "state.bin").read_text() == "v2"
    assert sorted(os.listdir(tmp_path)) == ["state.bin"]


def test_crash_after_marker_rolls_forward(tmp_path, monkeypatch):
    fileio.commit_group(tmp_path, "ckpt", _group(tmp_path, "v1"))
    calls = []
    real_replace = os.replace

    def crashing_replace(src, dst):
        # Crash after the marker and the first staged rename.
        if str(src).endswith(".staged"):
            calls.append(dst)
            if len(calls) == 2:
                raise KeyboardInterrupt("kill -9 here")
        return real_replace(src, dst)

    monkeypatch.setattr(fileio.os, "replace", crashing_replace)
    with pytest.raises(KeyboardInterrupt):
        fileio.commit_group(tmp_path, "ckpt", _group(tmp_path, "v2"))
    monkeypatch.setattr(fileio.os, "replace", real_replace)
    contents = {p.name: p.read_text() for p in tmp_path.glob("*.bin")}
    assert sorted(contents.values()) != ["v2-a.bin", "v2-b.bin", "v2-c.bin"]  # torn on disk...
    assert fileio.group_pending(tmp_path, "ckpt")
    assert fileio.recover_groups(tmp_path) == ["ckpt"]  # ...until recovery rolls it forward
    assert _files(tmp_path) == ["a.bin", "b.bin", "c.bin"]
    assert {p.read_text() for p in tmp_path.iterdir()} == {"v2-a.bin", "v2-b.bin", "v2-c.bin"}


def test_crash_before_marker_rolls_back(tmp_path, monkeypatch):
    fileio.commit_group(tmp_path, "ckpt", _group(tmp_path, "v1"))
    real = fileio._fsync_dir
    calls = []

    def no_marker(d):
        calls.append(d)
        if len(calls) == 1:  # the staging fsync happened; killed before the marker
            real(d)
            raise KeyboardInterrupt("killed before the marker")
        real(d)

    monkeypatch.setattr(fileio, "_fsync_dir", no_marker)
    with pytest.raises(KeyboardInterrupt):
        fileio.commit_group(tmp_path, "ckpt", _group(tmp_path, "v2"))
    monkeypatch.setattr(fileio, "_fsync_dir", real)
    assert any(n.endswith(".staged") for n in _files(tmp_path))
    assert not fileio.group_pending(tmp_path, "ckpt")
    assert fileio.recover_groups(tmp_path) == []
    assert _files(tmp_path) == ["a.bin", "b.bin", "c.bin"]
    assert {p.read_text() for p in tmp_path.iterdir()} == {"v1-a.bin", "v1-b.bin", "v1-c.bin"}


def test_a_stale_marker_does_not_adopt_the_next_commits_staged_files(tmp_path):
    # A power loss can resurrect commit N's marker (its removal was not yet durable) next to commit
    # N+1's staged files, written before N+1's own marker: the token in the names keeps them apart.
    fileio.commit_group(tmp_path, "ckpt", _group(tmp_path, "v1"))
    marker = next(tmp_path.glob("ckpt.*.commit"))
    for name in ("a.bin", "b.bin"):
        (tmp_path / f"{name}.{'f' * 22}.staged").write_text("v2-partial")
    assert not fileio.group_pending(tmp_path, "ckpt")
    assert fileio.recover_groups(tmp_path) == []
    assert not marker.exists()
    assert _files(tmp_path) == ["a.bin", "b.bin", "c.bin"]
    assert {p.read_text() for p in tmp_path.iterdir()} == {"v1-a.bin", "v1-b.bin", "v1-c.bin"}


def test_a_legacy_journal_still_rolls_forward(tmp_path):
    fileio.commit_group(tmp_path, "ckpt", _group(tmp_path, "v1"))
    fileio.settle_group(tmp_path, "ckpt")
    (tmp_path / "a.bin.staged").write_text("v2-a.bin")
    (tmp_path / "ckpt.commit.json").write_text(json.dumps({"files": {"a.bin": "a.bin.staged"}}))
    assert fileio.group_pending(tmp_path, "ckpt")
    assert fileio.recover_groups(tmp_path) == ["ckpt"]
    assert _files(tmp_path) == ["a.bin", "b.bin", "c.bin"]
    assert (tmp_path / "a.bin").read_text() == "v2-a.bin"


def test_written_files_get_the_umask_mode_not_0600(tmp_path):
    p = tmp_path / "f.txt"
    fileio.atomic_write_text(p, "x")
    mask = os.umask(0)
    os.umask(mask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~mask
