"""The pre-run probe (one 2-item forward pass that checks the saving criteria) changes nothing the run computes."""

from __future__ import annotations

import json
import threading
from typing import Any

import torch

from bootstrap_repro import datasets, models
from bootstrap_repro.engines import Engine
from bootstrap_repro.engines._probe import probe_outputs, shadow_copy
from bootstrap_repro.logger import Logger
from bootstrap_repro.run import run

#: A stateful metric: a Python counter, a buffer counter, and values logged from its forward pass.
COUNTING_METRIC = '''
import torch
from torch import nn
from bootstrap_repro.logger import Logger

class Count(nn.Module):
    def __init__(self, engine):
        super().__init__()
        self.engine, self.seen = engine, {"train": 0, "eval": 0}
        self.register_buffer("total", torch.zeros((), dtype=torch.long))
        engine.register_hook("train_on_end_epoch", lambda: self.report("train"))
        engine.register_hook("eval_on_end_epoch", lambda: self.report("eval"))

    def forward(self, cri_out, net_out, batch):
        mode = "train" if self.training else "eval"
        self.seen[mode] += len(net_out)
        self.total += len(net_out)
        Logger().log_value("metric_calls", 1)
        return {}

    def report(self, mode):
        self.engine.logger.log_value(f"{mode}_epoch.items", self.seen[mode])
        self.seen[mode] = 0

def factory(engine):
    return Count(engine)
'''


def test_a_stateful_metric_counts_only_the_run_items(tiny_options, plugin):
    name = plugin(COUNTING_METRIC)
    res = run(tiny_options({"model": {"metric": {"import": name}}, "engine": {"saving_criteria": ["loss:min"]}}),
              handle_signals=False)
    assert res.status == "COMPLETED", res.error
    logs = json.loads((res.exp_dir / "logs.json").read_text())
    assert logs["train_epoch.items"] == [48, 48] and logs["eval_epoch.items"] == [48, 48]  # not 50 on the first
    assert int(res.engine.model.metrics["eval"].total) == 4 * 48
    assert len(logs["metric_calls"]) == 4 * 3  # one per batch: the probe's call logged nothing


def built(tiny_options: Any, changes: dict[str, Any]) -> Engine:
    engine = Engine(tiny_options(changes), Logger(activate=False, echo=False))
    engine.dataset = datasets.factory(engine)
    engine.model = models.factory(engine)
    return engine


def test_the_probe_leaves_buffers_modes_and_rng_as_they_were(tiny_options, plugin):
    net = plugin("from torch import nn\n"
                 "def factory(engine):\n"
                 "    return nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 4),\n"
                 "                         nn.LogSoftmax(1))\n")
    engine = built(tiny_options, {"model": {"network": {"import": net}}, "dataset": {"eval_split": None}})
    engine.model.eval()
    before = {k: v.clone() for k, v in engine.model.state_dict().items()}
    torch.manual_seed(3)
    expected = torch.rand(())
    torch.manual_seed(3)
    assert probe_outputs(engine) == {"loss", "acctop1", "acctop2"}  # the train split, in train mode (dropout draws)
    assert torch.rand(()) == expected
    after = engine.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BatchNorm statistics untouched
    assert not engine.model.training and engine.model.mode == "eval"


def test_the_probe_copy_shares_the_parameters_and_the_engine(tiny_options, plugin):
    name = plugin(COUNTING_METRIC)
    engine = built(tiny_options, {"model": {"metric": {"import": name}}})
    copy = shadow_copy(engine.model, [engine])
    assert all(a is b for a, b in zip(copy.parameters(), engine.model.parameters()))  # no memory for them
    assert copy.metrics["eval"] is not engine.model.metrics["eval"] and copy.metrics["eval"].engine is engine
    assert copy.metrics["eval"].total is not engine.model.metrics["eval"].total


def test_a_model_that_cannot_be_copied_is_not_probed(tiny_options, plugin):
    name = plugin("import threading\nfrom torch import nn\n"
                  "class Locked(nn.Module):\n"
                  "    def __init__(self):\n        super().__init__()\n        self.lock = threading.Lock()\n"
                  "    def forward(self, c, n, b):\n        return {}\n"
                  "def factory(engine):\n    return Locked()\n")
    engine = built(tiny_options, {"model": {"metric": {"import": name}}})
    assert isinstance(engine.model.metrics["eval"].lock, type(threading.Lock()))
    assert probe_outputs(engine) is None  # the saving criteria are then checked at the end of epoch 0
