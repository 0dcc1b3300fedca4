"""Atomic writes and the journalled multi-file commit."""

from __future__ import annotations

import json
import os

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


def test_commit_group_replaces_all(tmp_path):
    fileio.commit_group(tmp_path, "ckpt", _group(tmp_path, "v1"))
    fileio.commit_group(tmp_path, "ckpt", _group(tmp_path, "v2"))
    assert sorted(os.listdir(tmp_path)) == ["a.bin", "b.bin", "c.bin"]
    assert {p.read_text() for p in tmp_path.iterdir()} == {"v2-a.bin", "v2-b.bin", "v2-c.bin"}


def test_crash_after_journal_rolls_forward(tmp_path, monkeypatch):
    fileio.commit_group(tmp_path, "ckpt", _group(tmp_path, "v1"))
    calls = []
    real_replace = os.replace

    def crashing_replace(src, dst):
        # Crash after the journal and the first staged rename.
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
    assert fileio.recover_groups(tmp_path) == ["ckpt"]  # ...until recovery rolls it forward
    assert sorted(os.listdir(tmp_path)) == ["a.bin", "b.bin", "c.bin"]
    assert {p.read_text() for p in tmp_path.iterdir()} == {"v2-a.bin", "v2-b.bin", "v2-c.bin"}


def test_crash_before_journal_rolls_back(tmp_path, monkeypatch):
    fileio.commit_group(tmp_path, "ckpt", _group(tmp_path, "v1"))
    real = fileio.atomic_write_json

    def no_journal(*a, **k):
        raise KeyboardInterrupt("killed before the journal")

    monkeypatch.setattr(fileio, "atomic_write_json", no_journal)
    with pytest.raises(KeyboardInterrupt):
        fileio.commit_group(tmp_path, "ckpt", _group(tmp_path, "v2"))
    monkeypatch.setattr(fileio, "atomic_write_json", real)
    assert fileio.recover_groups(tmp_path) == []
    assert sorted(os.listdir(tmp_path)) == ["a.bin", "b.bin", "c.bin"]
    assert {p.read_text() for p in tmp_path.iterdir()} == {"v1-a.bin", "v1-b.bin", "v1-c.bin"}


def test_written_files_get_the_umask_mode_not_0600(tmp_path):
    p = tmp_path / "f.txt"
    fileio.atomic_write_text(p, "x")
    mask = os.umask(0)
    os.umask(mask)
    assert p.stat().st_mode & 0o777 == 0o666 & ~mask
