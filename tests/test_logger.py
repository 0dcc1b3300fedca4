"""Logger: values (tensors kept until flush), atomic logs.json, messages, current accessor."""

from __future__ import annotations

import json
import math

import pytest
import torch

from bootstrap_repro._current import NoCurrentError
from bootstrap_repro.logger import JOURNAL_SUFFIX, Logger, read_logs


def test_values_flush_to_json_and_tensors_materialize(tmp_path):
    lg = Logger(tmp_path, activate=False, echo=False)
    for v in (torch.tensor(0.5), torch.tensor(0.25, dtype=torch.float64), 3):
        lg.log_value("train_batch.loss", v)
    lg.log_dict("train_epoch", {"loss": torch.tensor(1.5), "epoch": 0})
    assert isinstance(lg.values["train_batch.loss"][0], torch.Tensor)  # still a tensor before flush
    lg.flush()
    data = json.loads((tmp_path / "logs.json").read_text())
    assert data == {"train_batch.loss": [0.5, 0.25, 3], "train_epoch.loss": [1.5], "train_epoch.epoch": [0]}


def test_nan_written_as_valid_json_null(tmp_path):
    lg = Logger(tmp_path, activate=False, echo=False)
    lg.log_value("x", math.nan)
    lg.log_value("x", torch.tensor(float("nan")))
    lg.flush()
    assert json.loads((tmp_path / "logs.json").read_text()) == {"x": [None, None]}


def test_truncate_to_checkpoint_lengths(tmp_path):
    lg = Logger(tmp_path, activate=False, echo=False)
    for i in range(3):
        lg.log_value("a", i)
    lens = lg.lengths()
    lg.log_value("a", 3)
    lg.log_value("b", 9)
    lg.truncate(lens)
    assert lg.values == {"a": [0, 1, 2]}


def test_messages_buffered_until_attached_then_in_logs_txt(tmp_path, capsys):
    lg = Logger(activate=False)
    lg("before attach")
    lg.attach(tmp_path)
    lg.warning("after attach")
    lg.close()
    text = (tmp_path / "logs.txt").read_text().splitlines()
    assert text[0].startswith("[I ") and text[0].endswith("] test_logger: before attach")
    assert text[1].startswith("[W ") and text[1].endswith(": after attach")
    out = capsys.readouterr().out
    assert "before attach" in out and "after attach" in out


def test_current_logger_and_seed_style_constructor(tmp_path):
    lg = Logger(tmp_path, activate=False, echo=False)
    with lg.activate():
        assert Logger() is lg
        Logger().log_value("train_epoch.epoch", 1)
    assert not Logger.has_current()
    with pytest.raises(NoCurrentError, match=r"Logger\(\) was called but no experiment is active"):
        Logger()


def test_flush_encodes_only_new_values_and_writes_what_json_dumps_writes(tmp_path):
    lg = Logger(tmp_path, activate=False, echo=False)
    path = tmp_path / "logs.json"

    def expected():
        safe = {k: [None if isinstance(v, float) and math.isnan(v) else v for v in vs] if isinstance(vs, list) else vs
                for k, vs in lg.values.items()}
        return json.dumps(safe) + "\n"

    for epoch in range(3):
        for i in range(5):
            lg.log_value("train_batch.loss", torch.tensor(0.1 * i + epoch))
            lg.log_value("train_batch.n", i)
        lg.log_value("train_epoch.loss", torch.tensor(float("nan")) if epoch == 1 else 0.5)
        lg.log_value("train_epoch.state", {"epoch": epoch}, stack=False)
        lg.flush()
        assert read_logs(path) == json.loads(expected())  # the file and its journal
    lg.compact()
    assert path.read_text() == expected()  # written whole: what json.dumps writes
    lens = lg.lengths()
    lg.log_value("train_batch.loss", torch.tensor(9.0))
    lg.flush()
    lg.truncate(lens)  # a resume drops values logged after the checkpoint
    lg.flush()
    assert path.read_text() == expected() and read_logs(path) == json.loads(expected())
    lg.values["train_batch.n"][2] = 42  # edited in place, behind the logger's back: a flush writes only
    lg.flush()                          # new values (O(new)); compact() writes everything again
    lg.compact()
    assert read_logs(path)["train_batch.n"][2] == 42 and path.read_text() == expected()
    lg.values["train_batch.n"].pop()
    lg.values["train_batch.n"].append(7)  # same length, new last value
    lg.flush()
    assert read_logs(path) == json.loads(expected())
    lg.log_value("train_batch.n", 8)
    lg.flush()
    lg.close()
    assert path.read_text() == expected() and not (tmp_path / ("logs.json" + JOURNAL_SUFFIX)).exists()


def _flush_io(monkeypatch, lg):
    """``(bytes written, fsyncs, json file rewritten)`` by one ``lg.flush()``."""
    import os

    written, syncs = [], []
    real_write, real_fsync, real_fdatasync = os.write, os.fsync, os.fdatasync
    monkeypatch.setattr(os, "write", lambda fd, b: written.append(len(b)) or real_write(fd, b))
    monkeypatch.setattr(os, "fsync", lambda fd: syncs.append(fd) or real_fsync(fd))
    monkeypatch.setattr(os, "fdatasync", lambda fd: syncs.append(fd) or real_fdatasync(fd))
    inode = (lg.json_path.stat().st_ino, lg.json_path.stat().st_mtime_ns)
    lg.flush()
    lg._journal.wait()
    monkeypatch.undo()
    return sum(written), len(syncs), (lg.json_path.stat().st_ino, lg.json_path.stat().st_mtime_ns) != inode


@pytest.mark.parametrize("logged", [1_000, 100_000])
def test_flush_writes_only_the_new_values_with_one_fsync(tmp_path, monkeypatch, logged):
    """The cost of a flush does not grow with the values logged before it: same bytes, one fsync,
    the json file untouched (it is rewritten on a background thread once the journal outgrows it)."""
    lg = Logger(tmp_path, activate=False, echo=False)
    lg.values["train_batch.loss"] = [0.125 * i for i in range(logged)]
    lg.flush()  # the first flush writes the file whole
    for i in range(10):
        lg.log_value("train_batch.loss", 0.5 + i)
    lg.log_value("train_epoch.loss", 0.25)
    nbytes, fsyncs, rewritten = _flush_io(monkeypatch, lg)
    assert (nbytes, fsyncs, rewritten) == (len(b'{"a": {"train_batch.loss": [0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5, '
                                                 b'9.5], "train_epoch.loss": [0.25]}}\n'), 1, False)
    assert read_logs(lg.json_path)["train_batch.loss"][-10:] == [0.5 + i for i in range(10)]


def test_journal_outgrowing_the_file_rewrites_it_in_the_background(tmp_path, monkeypatch):
    monkeypatch.setattr("bootstrap_repro.logger._JournalWriter.MIN_BYTES", 100)
    lg = Logger(tmp_path, activate=False, echo=False)
    for i in range(200):
        lg.log_value("x", float(i))
        lg.flush()
        if i % 37 == 0:
            lg._journal.wait()
            assert read_logs(lg.json_path)["x"] == [float(j) for j in range(i + 1)]
    lg._journal.wait()
    assert len((tmp_path / "logs.json").read_bytes()) > 200 * 3  # rewritten meanwhile
    assert read_logs(lg.json_path)["x"] == [float(j) for j in range(200)]


def _journal(tmp_path):
    return tmp_path / ("logs.json" + JOURNAL_SUFFIX)


def test_a_crash_in_the_middle_of_a_journal_append_keeps_every_complete_flush(tmp_path):
    lg = Logger(tmp_path, activate=False, echo=False)
    for i in range(3):
        lg.log_value("x", i)
        lg.log_value("s", {"epoch": i}, stack=False)
        lg.flush()
    before = _journal(tmp_path).read_bytes()
    with open(_journal(tmp_path), "ab") as f:  # kill -9 while appending the fourth flush
        f.write(b'{"a": {"x": [3, 4')
    assert read_logs(tmp_path / "logs.json") == {"x": [0, 1, 2], "s": {"epoch": 2}}
    from bootstrap_repro.views import read_log

    assert read_log(tmp_path / "logs.json") == {"x": [0, 1, 2]}
    resumed = Logger(activate=False, echo=False)
    resumed.attach(tmp_path, load=True)  # what a resume does
    assert resumed.values == {"x": [0, 1, 2], "s": {"epoch": 2}}
    resumed.log_value("x", 5)
    resumed.flush()  # the torn line is cut before anything is appended
    assert read_logs(tmp_path / "logs.json") == {"x": [0, 1, 2, 5], "s": {"epoch": 2}}
    assert before  # the journal existed and held the three flushes


@pytest.mark.parametrize("stop", ["after_mark", "after_rename"])
def test_a_crash_while_the_file_is_rewritten_loses_nothing(tmp_path, monkeypatch, stop):
    """Kill -9 between the steps of a rewrite (mark in the journal, rename of the json file, new
    journal): readers and a resume see every flushed value, and not the truncated ones."""
    import os

    lg = Logger(tmp_path, activate=False, echo=False)
    for i in range(4):
        lg.log_value("x", i)
        lg.flush()
    lg.compact()
    lens = lg.lengths()
    lg.log_value("x", 99)
    lg.flush()
    lg.truncate(lens)  # the rewrite that follows gives the same bytes as the journal's base

    class Killed(BaseException):
        pass

    real_replace = os.replace

    def replace(src, dst):
        if stop == "after_mark" and str(dst).endswith("logs.json"):
            raise Killed
        real_replace(src, dst)
        if stop == "after_rename" and str(dst).endswith("logs.json"):
            raise Killed

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(Killed):
        lg.flush()
    monkeypatch.undo()
    # The file on disk already has the rewrite's bytes, and the journal's last mark names them: the
    # truncation is what a reader sees (not the journal replayed over it, which would bring 99 back).
    assert read_logs(tmp_path / "logs.json")["x"] == [0, 1, 2, 3]
    resumed = Logger(activate=False, echo=False)
    resumed.attach(tmp_path, load=True)
    assert resumed.values == {"x": [0, 1, 2, 3]}


def test_a_crash_during_a_background_rewrite_keeps_the_records_flushed_meanwhile(tmp_path, monkeypatch):
    import os

    lg = Logger(tmp_path, activate=False, echo=False)
    for i in range(3):
        lg.log_value("x", i)
        lg.flush()
    w = lg._journal
    with w.lock:
        snapshot, at = w._snapshot(), w.lines - 1
    tmp, fp = w._write_json(snapshot)
    for i in range(3, 5):  # flushed while the rewrite runs
        lg.log_value("x", i)
        lg.flush()
    w._append(json.dumps({"mark": fp, "at": at}).encode() + b"\n")
    os.replace(tmp, lg.json_path)  # killed here, before the journal restarts
    assert json.loads(lg.json_path.read_text()) == {"x": [0, 1, 2]}
    assert read_logs(lg.json_path) == {"x": [0, 1, 2, 3, 4]}


def test_cpu_and_tensor_values_materialize_in_place_to_the_same_numbers(tmp_path):
    lg = Logger(tmp_path, activate=False, echo=False)
    vals = [torch.tensor(0.1), torch.tensor(0.2, dtype=torch.bfloat16), torch.tensor([0.3]), torch.tensor(3),
            torch.tensor([1.0, 2.0]), 0.5]
    for v in vals:
        lg.log_value("x", v)
    same = lg.values["x"]
    lg.materialize()
    assert lg.values["x"] is same
    assert same == [torch.tensor(0.1).item(), torch.tensor(0.2, dtype=torch.bfloat16).item(), torch.tensor(0.3).item(), 3,
                    [1.0, 2.0], 0.5]
    assert type(same[3]) is int
