"""The store of results: atomic publish under concurrency, verification, materialise, gc policies."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import pytest

from bootstrap_repro.record import CacheEntryNotFoundError, ResultCache, cache_root

KEY = "ab" * 32
OTHER = "cd" * 32


def make_exp(root: Path, payload: bytes = b"weights" * 1000) -> Path:
    root.mkdir(parents=True)
    (root / "logs.json").write_text('{"train_epoch.loss": [1.0]}\n')
    (root / "logs.txt").write_text("trained\n")
    (root / "ckpt_last_model.pth.tar").write_bytes(payload)
    os.link(root / "ckpt_last_model.pth.tar", root / "ckpt_best_loss_model.pth.tar")
    (root / "tb").mkdir()
    (root / "tb" / "events.out").write_bytes(b"tensorboard")
    for private in (".lock", "options.yaml", "plotly-2.0.min.js", ".logs.json.abc.tmp"):
        (root / private).write_text("not a result")
    (root / "repro").mkdir()
    (root / "repro" / "record.json").write_text("{}")
    return root


def test_store_location(monkeypatch, tmp_path):
    monkeypatch.setenv("BOOTSTRAP_REPRO_CACHE_DIR", str(tmp_path / "a"))
    assert cache_root() == tmp_path / "a" / "results"
    monkeypatch.delenv("BOOTSTRAP_REPRO_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_root() == tmp_path / "x" / "bootstrap-repro" / "results"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_root() == tmp_path / "home" / ".cache" / "bootstrap-repro" / "results"


def test_publish_lookup_materialise(tmp_path):
    store = ResultCache(tmp_path / "store")
    exp = make_exp(tmp_path / "exp")
    assert store.publish(KEY, exp, {"started": "t0", "environment": {"host": "h"}}) is True
    assert store.publish(KEY, exp, {}) is False  # a sound entry stays
    entry = store.lookup(KEY)
    assert set(entry.manifest["files"]) == {"logs.json", "logs.txt", "ckpt_last_model.pth.tar",
                                            "ckpt_best_loss_model.pth.tar", "tb/events.out"}
    files = entry.manifest["files"]
    assert files["ckpt_last_model.pth.tar"]["link"] == "ckpt_best_loss_model.pth.tar"  # stored once
    assert "link" not in files["ckpt_best_loss_model.pth.tar"]
    assert entry.hit_record()["exp_dir"] == str(exp) and entry.hit_record()["host"] == "h"
    new = tmp_path / "new"
    new.mkdir()
    written = ResultCache.materialise(entry, new)
    assert sorted(written) == sorted(entry.manifest["files"])
    for rel in written:
        assert (new / rel).read_bytes() == (exp / rel).read_bytes()
    a, b = (new / "ckpt_last_model.pth.tar").stat(), (new / "ckpt_best_loss_model.pth.tar").stat()
    assert a.st_ino == b.st_ino, "hard links of the experiment stay links"
    assert (new / "logs.txt").stat().st_ino != (entry.path / "files" / "logs.txt").stat().st_ino, "copies, not links"
    assert not list(new.glob(".*.tmp"))
    assert store.lookup(OTHER) is None


def _publish(args):
    root, exp, key = args
    return ResultCache(root).publish(key, Path(exp), {})


def test_concurrent_publishers_leave_one_sound_entry(tmp_path):
    store = ResultCache(tmp_path / "store")
    exp = make_exp(tmp_path / "exp", payload=os.urandom(4 << 20))
    with multiprocessing.get_context("fork").Pool(4) as pool:
        results = pool.map(_publish, [(str(store.root), str(exp), KEY)] * 8)
    assert sorted(results) == [False] * 7 + [True]
    assert store.lookup(KEY) is not None
    assert [p.name for p in store.root.iterdir() if p.name.startswith((".tmp-", ".trash-"))] == []


def test_a_killed_publisher_leaves_no_entry(tmp_path, monkeypatch):
    store = ResultCache(tmp_path / "store")
    exp = make_exp(tmp_path / "exp")

    def crash(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("bootstrap_repro.record._cache.atomic_write_json", crash)
    with pytest.raises(OSError):
        store.publish(KEY, exp, {})
    assert store.keys() == [] and [p.name for p in store.root.iterdir() if p.name.startswith(".tmp-")] == []


def test_resolve_and_remove(tmp_path):
    store = ResultCache(tmp_path / "store")
    exp = make_exp(tmp_path / "exp")
    store.publish(KEY, exp, {})
    store.publish("ac" + KEY[2:], exp, {})
    with pytest.raises(CacheEntryNotFoundError) as exc:
        store.resolve("a")
    assert str(exc.value) == f"cache: 'a' matches 2 entries in {store.root}; give more digits of the key"
    assert store.remove("ab") == KEY
    assert store.keys() == ["ac" + KEY[2:]]
    with pytest.raises(LookupError):
        store.remove("ab")


def test_gc_policies(tmp_path):
    store = ResultCache(tmp_path / "store")
    keys = [f"{i:02x}" * 32 for i in range(1, 5)]
    for i, key in enumerate(keys):
        store.publish(key, make_exp(tmp_path / f"exp{i}", payload=bytes([i]) * 100_000), {})
        used = time.time() - (4 - i) * 86400  # keys[0] unused for 4 days ... keys[3] for 1 day
        os.utime(store.entry_path(key) / "manifest.json", (used, used))
    (store.entry_path(keys[3]) / "files" / "logs.txt").write_text("tampered")
    report = store.gc()
    assert report.removed == [(keys[3], "logs.txt does not match its sha256")]
    assert store.keys() == keys[:3]
    report = store.gc(max_age_days=3.5)
    assert [k for k, _ in report.removed] == [keys[0]]
    size = sum(e.size for e in store.entries())
    report = store.gc(max_bytes=size - 1)  # one entry must go: the least recently used
    assert [k for k, _ in report.removed] == [keys[1]] and store.keys() == [keys[2]]
    assert report.removed[0][1] == "over --max-size (least recently used)"
