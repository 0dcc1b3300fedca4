"""Logger: values (tensors kept until flush), atomic logs.json, messages, current accessor."""

from __future__ import annotations

import json
import math

import pytest
import torch

from bootstrap_repro._current import NoCurrentError
from bootstrap_repro.logger import Logger


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
        assert (tmp_path / "logs.json").read_text() == expected()
    lens = lg.lengths()
    lg.log_value("train_batch.loss", torch.tensor(9.0))
    lg.flush()
    lg.truncate(lens)  # a resume drops values logged after the checkpoint
    lg.flush()
    assert (tmp_path / "logs.json").read_text() == expected()
    lg.values["train_batch.n"][2] = 42  # edited in place, behind the logger's back
    lg.flush()
    assert json.loads((tmp_path / "logs.json").read_text())["train_batch.n"][2] == 42
    lg.values["train_batch.n"].pop()
    lg.values["train_batch.n"].append(7)  # same length, new last value
    lg.flush()
    assert (tmp_path / "logs.json").read_text() == expected()


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
