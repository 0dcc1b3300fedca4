"""Models: networks, criterions, metrics, the Model and the factory with its errors."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from bootstrap_repro import models
from bootstrap_repro.datasets import Synthetic
from bootstrap_repro.errors import OptionsError, PluginError
from bootstrap_repro.models import (
    MLP,
    Accuracy,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    LeNet,
    Model,
    NLLLoss,
    SimpleModel,
    accuracy,
)
from bootstrap_repro.options import DEFAULTS, Options, merge

DIGITS_MODEL = {
    "network": {"name": "mlp", "hidden": 16},
    "criterion": {"name": "nll"},
    "metric": {"name": "accuracy", "topk": [1, 5]},
}


def make_engine(model: dict[str, Any], device: str = "cpu", dataset: Any = None) -> SimpleNamespace:
    """A stand-in for the engine; ``dataset`` becomes ``engine.dataset`` when given."""
    messages: list[str] = []
    engine = SimpleNamespace(options=Options(merge(DEFAULTS, {"model": model})), device=torch.device(device),
                             seed=0, register_hook=lambda name, fn: None, logger=messages.append,
                             messages=messages)
    if dataset is not None:
        engine.dataset = dataset
    return engine


def digits_batch(n: int = 6) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {"data": torch.rand(n, 1, 8, 8, generator=gen), "class_id": torch.arange(n) % 10, "index": torch.arange(n)}


# --------------------------------------------------------------------------- networks
def test_mlp_outputs_log_probabilities_from_a_batch_or_a_tensor():
    torch.manual_seed(0)
    net = MLP(hidden=[8, 8], nb_classes=3)
    batch = digits_batch()
    out = net(batch)
    assert out.shape == (6, 3)
    assert torch.allclose(out.exp().sum(1), torch.ones(6))
    assert torch.equal(net(batch["data"]), out)
    assert sum(isinstance(m, torch.nn.Linear) for m in MLP(hidden=[]).modules()) == 1


def test_mlp_input_dim_mismatch_says_how_to_fix_it():
    with pytest.raises(OptionsError) as info:
        MLP(input_dim=64)({"data": torch.zeros(2, 16)})
    assert str(info.value) == (
        "model.network.input_dim: is 64 but batch['data'] has 16 features per item; set model.network.input_dim: 16"
    )


@pytest.mark.parametrize("shape", [(3, 1, 8, 8), (3, 1, 28, 28), (3, 8, 8)])
def test_lenet_works_on_digits_and_mnist_sizes(shape):
    out = LeNet(nb_classes=4, channels=[4, 8], hidden=8)({"data": torch.rand(shape)})
    assert out.shape == (3, 4)
    assert torch.allclose(out.exp().sum(1), torch.ones(3))


# --------------------------------------------------------------------------- criterions
def test_nll_and_cross_entropy_match_torch_functional():
    logits = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    batch = {"class_id": torch.tensor([0, 3, 1, 1, 2])}
    log_probs = F.log_softmax(logits, 1)
    expected = F.cross_entropy(logits, batch["class_id"])
    assert torch.allclose(NLLLoss()(log_probs, batch)["loss"], expected)
    assert torch.allclose(CrossEntropyLoss()(log_probs, batch)["loss"], expected)  # log_softmax is idempotent
    assert torch.equal(CrossEntropyLoss()(logits, batch)["loss"], expected)
    smooth = F.cross_entropy(logits, batch["class_id"], label_smoothing=0.1)
    assert torch.equal(CrossEntropyLoss(label_smoothing=0.1)(logits, batch)["loss"], smooth)


def test_bce_uses_target_or_class_id_as_float():
    logits = torch.tensor([[0.3], [-1.2], [2.0]])
    class_id = torch.tensor([1, 0, 1])
    expected = F.binary_cross_entropy_with_logits(logits.squeeze(1), class_id.float())
    assert torch.equal(BCEWithLogitsLoss()(logits, {"class_id": class_id})["loss"], expected)
    multi = torch.tensor([[0.5, -0.5], [1.0, 0.0]])
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    got = BCEWithLogitsLoss(pos_weight=2.0)(multi, {"target": target, "class_id": torch.zeros(2)})["loss"]
    assert torch.equal(got, F.binary_cross_entropy_with_logits(multi, target, pos_weight=torch.tensor(2.0)))


def test_bce_trains_a_logits_network_from_options():
    engine = make_engine({"network": {"name": "mlp", "input_dim": 2, "nb_classes": 1, "output": "logits", "hidden": []},
                          "criterion": {"name": "bce"}})
    model = models.factory(engine).train()
    batch = {"data": torch.tensor([[1.0, 2.0], [-1.0, 0.5]]), "class_id": torch.tensor([1, 0])}
    out = model(batch)
    expected = F.binary_cross_entropy_with_logits(out["net_out"].squeeze(1), torch.tensor([1.0, 0.0]))
    assert out["net_out"].shape == (2, 1) and torch.equal(out["loss"], expected)
    with pytest.raises(OptionsError) as info:
        MLP(output="probs")
    assert str(info.value) == "model.network.output: expected one of log_softmax, logits, got 'probs'"


# --------------------------------------------------------------------------- metrics
def test_accuracy_on_a_hand_made_example():
    scores = torch.tensor([
        [0.9, 0.05, 0.05],  # target 0: top1
        [0.6, 0.3, 0.1],    # target 1: top2
        [0.1, 0.2, 0.7],    # target 0: top3
        [0.2, 0.5, 0.3],    # target 1: top1
    ], requires_grad=True)
    batch = {"class_id": torch.tensor([0, 1, 0, 1])}
    out = Accuracy(topk=[1, 2, 5])(None, scores, batch)
    assert list(out) == ["acctop1", "acctop2", "acctop5"]
    assert [v.dim() for v in out.values()] == [0, 0, 0]
    assert all(v.dtype == torch.float32 and not v.requires_grad for v in out.values())
    assert [float(v) for v in out.values()] == [50.0, 75.0, 100.0]  # k=5 > 3 classes: clipped to 3
    assert [float(v) for v in accuracy(scores, batch["class_id"], [3])] == [100.0]


@pytest.mark.parametrize("batch_size,nb_classes,topk", [(64, 10, [1, 5]), (7, 3, [5, 1, 2]), (0, 4, [1, 3]),
                                                       (33, 2, [2, 1, 9]), (1000, 100, [1, 5, 10, 50])])
def test_accuracy_equals_the_count_per_k_bitwise(batch_size, nb_classes, topk):
    """One cumulative count for every k: the same float32 values as counting each k's hits apart."""
    gen = torch.Generator().manual_seed(batch_size + nb_classes)
    scores = torch.randn(batch_size, nb_classes, generator=gen)
    target = torch.randint(0, nb_classes, (batch_size,), generator=gen)
    pred = scores.topk(min(max(topk), nb_classes), dim=1).indices
    want = [(pred[:, :k] == target[:, None]).any(1).sum(dtype=torch.float32) * (100.0 / max(batch_size, 1))
            for k in topk]
    got = accuracy(scores, target, topk)
    assert [v.shape for v in got] == [torch.Size([])] * len(topk)
    assert [v.item() for v in got] == [w.item() for w in want]


def test_accuracy_rejects_bad_topk():
    with pytest.raises(OptionsError) as info:
        Accuracy(topk=[0, 1])
    assert str(info.value) == "model.metric.topk: expected a list of positive integers, got [0, 1]"


# --------------------------------------------------------------------------- Model
def test_model_merges_network_criterion_and_metric_outputs():
    torch.manual_seed(0)
    model = Model(MLP(hidden=8), criterions={"train": NLLLoss(), "eval": NLLLoss()},
                  metrics={"train": Accuracy(), "eval": Accuracy()})
    batch = digits_batch()
    model.train()
    assert model.mode == "train"
    out = model(batch)
    assert set(out) == {"net_out", "loss", "acctop1", "acctop5"}
    assert out["net_out"].shape == (6, 10) and out["loss"].dim() == 0 and out["loss"].requires_grad
    assert torch.equal(out["loss"], F.nll_loss(out["net_out"], batch["class_id"]))
    model.eval()
    assert model.mode == "eval" and set(model(batch)) == {"net_out", "loss", "acctop1", "acctop5"}


def test_model_modes_without_criterion_or_metric():
    batch = digits_batch()
    model = Model(MLP(hidden=8), criterions={"train": NLLLoss()})
    model.eval()
    assert set(model(batch)) == {"net_out"}  # eval needs no loss
    model.train()
    assert set(model(batch)) == {"net_out", "loss"}
    with pytest.raises(OptionsError) as info:
        Model(MLP(hidden=8)).train()(batch)
    assert str(info.value) == (
        "model.criterion: training needs a criterion that returns {'loss': tensor}; "
        "set model.criterion.name (e.g. nll) or model.criterion.import"
    )


def test_model_accepts_plain_callables_and_dict_network_outputs():
    class DictNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mlp = MLP(hidden=4)

        def forward(self, batch):
            return {"scores": self.mlp(batch)}

    def criterion(net_out, batch):
        return F.nll_loss(net_out["scores"], batch["class_id"])

    model = Model(DictNet(), criterions={"train": criterion},
                  metrics={"train": lambda cri_out, net_out, batch: {"double": cri_out["loss"] * 2}})
    out = model.train()(digits_batch())
    assert set(out) == {"scores", "loss", "double"}
    assert not out["double"].requires_grad  # metrics run without autograd
    assert torch.equal(out["double"], out["loss"].detach() * 2)


def test_model_registers_module_components_and_moves_them():
    model = Model(MLP(hidden=4), criterions={"train": BCEWithLogitsLoss(pos_weight=1.0)})
    assert "criterion_train.pos_weight" in model.state_dict()
    model.to(torch.device("meta"))
    assert model.criterions["train"].pos_weight.device.type == "meta"


def test_simple_model_feeds_batch_data_to_the_network():
    seen = []

    class TensorNet(torch.nn.Module):
        def forward(self, x):
            seen.append(type(x))
            return F.log_softmax(x.flatten(1)[:, :10], 1)

    out = SimpleModel(TensorNet(), criterions={"eval": NLLLoss()}).eval()(digits_batch())
    assert seen == [torch.Tensor] and "loss" in out


# --------------------------------------------------------------------------- factory
def test_factory_builds_the_default_model():
    engine = make_engine(DIGITS_MODEL)
    model = models.factory(engine)
    assert type(model) is Model and isinstance(model.network, MLP)
    # one instance per mode, as the seed's factories built them
    assert isinstance(model.criterions["train"], NLLLoss) and model.criterions["eval"] is not model.criterions["train"]
    assert model.metrics["eval"].topk == [1, 5]
    assert model.network.input_dim == 64 and model.network.nb_classes == 10
    out = model.train()(digits_batch())
    assert {"loss", "acctop1", "acctop5"} <= set(out)


def test_factory_derives_sizes_from_the_dataset_unless_set():
    ds = {"train": Synthetic("train", nb_items=8, nb_classes=3, dim=5)}
    engine = make_engine({"network": {"name": "mlp"}, "criterion": {"name": "nll"}}, dataset=ds)
    net = models.factory(engine).network
    assert (net.input_dim, net.nb_classes) == (5, 3)
    assert "model.network.input_dim: 5 (from the dataset)" in engine.messages
    engine = make_engine({"network": {"name": "mlp", "nb_classes": 7}}, dataset=ds)
    assert models.factory(engine).network.nb_classes == 7


def test_factory_simple_model_shorthand_names_and_optional_metric():
    engine = make_engine({"name": "simple", "network": "lenet", "criterion": "cross_entropy"})
    model = models.factory(engine)
    assert type(model) is SimpleModel and isinstance(model.network, LeNet)
    assert isinstance(model.criterions["train"], CrossEntropyLoss) and model.metrics == {}
    assert set(model.train()(digits_batch())) == {"net_out", "loss"}


def test_factory_without_engine_uses_the_current_options_and_needs_a_model_section():
    with Options(merge(DEFAULTS, {"model": DIGITS_MODEL})).activate():
        assert isinstance(models.factory().network, MLP)
    with pytest.raises(OptionsError) as info:
        models.factory(SimpleNamespace(options=Options(DEFAULTS)))
    assert str(info.value) == (
        "model: missing; set model.network.name (valid: lenet, mlp) and "
        "model.criterion.name (valid: bce, cross_entropy, nll), or model.import"
    )


def test_factory_moves_the_model_to_the_engine_device():
    model = models.factory(make_engine(DIGITS_MODEL, device="meta"))
    assert {p.device.type for p in model.parameters()} == {"meta"}


@pytest.mark.parametrize("key, name, expected", [
    ("network", "mpl", "model.network.name: unknown name 'mpl'; did you mean mlp? "
                       "(valid: lenet, mlp; or set model.network.import to a module with a factory)"),
    ("criterion", "nl", "model.criterion.name: unknown name 'nl'; did you mean nll? "
                        "(valid: bce, cross_entropy, nll; or set model.criterion.import to a module with a factory)"),
    ("metric", "acc", "model.metric.name: unknown name 'acc' "
                      "(valid: accuracy; or set model.metric.import to a module with a factory)"),
])
def test_factory_unknown_component_names(key, name, expected):
    with pytest.raises(OptionsError) as info:
        models.factory(make_engine({**DIGITS_MODEL, key: {"name": name}}))
    assert str(info.value) == expected


def test_factory_unknown_model_name_option_and_missing_network():
    with pytest.raises(OptionsError) as info:
        models.factory(make_engine({**DIGITS_MODEL, "name": "defualt"}))
    assert str(info.value) == ("model.name: unknown name 'defualt'; did you mean default? "
                               "(valid: default, simple; or set model.import to a module with a factory)")
    with pytest.raises(OptionsError) as info:
        models.factory(make_engine({**DIGITS_MODEL, "network": {"name": "mlp", "hiden": 3}}))
    assert str(info.value) == ("model.network.hiden: unknown option; did you mean model.network.hidden? "
                               "(valid: input_dim, hidden, nb_classes, dropout, output)")
    with pytest.raises(OptionsError) as info:
        models.factory(make_engine({"criterion": {"name": "nll"}}))
    assert str(info.value) == (
        "model.network: missing; set model.network.name (valid: lenet, mlp) or model.network.import"
    )
    with pytest.raises(OptionsError) as info:
        models.factory(make_engine({"network": {"hidden": 3}}))
    assert str(info.value) == ("model.network.name: missing; set it to one of lenet, mlp "
                               "or set model.network.import")


def test_factory_component_plugins(plugin):
    name = plugin(
        "import torch\n"
        "from bootstrap_repro.models import MLP, NLLLoss\n"
        "def factory(engine):\n"
        "    return MLP(hidden=engine.options['model.network.width'])\n"
    )
    cri = plugin("def factory(engine):\n    return lambda net_out, batch: {'loss': net_out.mean()}\n")
    met = plugin("def factory(engine):\n    return lambda cri_out, net_out, batch: {'one': net_out.new_ones(())}\n")
    engine = make_engine({"network": {"import": name, "width": 5}, "criterion": {"import": cri},
                          "metric": {"import": met}})
    model = models.factory(engine)
    assert model.network.layers[0].out_features == 5
    out = model.train()(digits_batch())
    assert torch.equal(out["loss"], out["net_out"].mean()) and float(out["one"]) == 1.0


def test_factory_model_plugin_and_import_errors(plugin):
    name = plugin("from bootstrap_repro.models import MLP, Model\n"
                  "def factory(engine):\n    return Model(MLP(hidden=2))\n")
    model = models.factory(make_engine({"import": name}, device="meta"))
    assert model.network.layers[0].weight.device.type == "meta"

    with pytest.raises(PluginError) as info:
        models.factory(make_engine({**DIGITS_MODEL, "network": {"import": "no_such_module_xyz"}}))
    assert str(info.value).startswith("model.network.import: module 'no_such_module_xyz' not found")

    empty = plugin("x = 1\n")
    with pytest.raises(PluginError) as info:
        models.factory(make_engine({**DIGITS_MODEL, "criterion": {"import": empty}}))
    assert str(info.value).startswith(f"model.criterion.import: module '{empty}' has no callable 'factory'")

    bad = plugin("def factory(engine):\n    return 3\n")
    with pytest.raises(PluginError) as info:
        models.factory(make_engine({"import": bad}))
    assert str(info.value) == f"model.import: {bad}.factory(engine) returned int; expected a torch.nn.Module"
