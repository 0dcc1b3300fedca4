"""Logger.close: logs.json written whole in one file fsync and one directory fsync; the journal then removed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bootstrap_repro.logger import JOURNAL_SUFFIX, Logger, read_logs


def _logger_with_journal(tmp_path) -> Logger:
    lg = Logger(tmp_path, activate=False, echo=False)
    lg.log_value("train_batch.loss", 1.0)
    lg.flush()  # the first flush writes logs.json whole
    for i in range(3):
        lg.log_value("train_batch.loss", 2.0 + i)
        lg.flush()  # journal lines
    assert (tmp_path / ("logs.json" + JOURNAL_SUFFIX)).exists()
    return lg


def test_close_writes_the_file_in_two_fsyncs_and_drops_the_journal(tmp_path, monkeypatch):
    lg = _logger_with_journal(tmp_path)
    lg.sync()  # the flushes' own fdatasyncs (on the sync thread) are done
    syncs: list[int] = []
    real_fsync, real_fdatasync = os.fsync, os.fdatasync
    monkeypatch.setattr(os, "fsync", lambda fd: syncs.append(fd) or real_fsync(fd))
    monkeypatch.setattr(os, "fdatasync", lambda fd: syncs.append(fd) or real_fdatasync(fd))
    lg.close()
    monkeypatch.undo()
    assert len(syncs) == 2, "the new logs.json and its directory, nothing more"
    assert json.loads((tmp_path / "logs.json").read_text()) == {"train_batch.loss": [1.0, 2.0, 3.0, 4.0]}
    assert not (tmp_path / ("logs.json" + JOURNAL_SUFFIX)).exists()


def test_a_kill_between_the_rename_and_the_journal_removal_loses_and_repeats_nothing(tmp_path, monkeypatch):
    lg = _logger_with_journal(tmp_path)
    journal = tmp_path / ("logs.json" + JOURNAL_SUFFIX)
    real_unlink = Path.unlink

    def killed(self, missing_ok=False):
        if self == journal:
            raise KeyboardInterrupt  # the process stops here
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", killed)
    with pytest.raises(KeyboardInterrupt):
        lg.close()
    monkeypatch.undo()
    assert journal.exists()  # left behind, naming the file it extended (the one replaced)
    assert read_logs(tmp_path / "logs.json") == {"train_batch.loss": [1.0, 2.0, 3.0, 4.0]}  # not applied twice
    resumed = Logger(activate=False, echo=False)
    resumed.attach(tmp_path, load=True)
    assert resumed.values == {"train_batch.loss": [1.0, 2.0, 3.0, 4.0]}
    resumed.log_value("train_batch.loss", 5.0)
    resumed.flush()
    resumed.close()
    assert json.loads((tmp_path / "logs.json").read_text()) == {"train_batch.loss": [1.0, 2.0, 3.0, 4.0, 5.0]}
    assert not journal.exists()
