"""Options: YAML with includes, typed CLI overrides, read-only tree, errors as API."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bootstrap_repro.errors import OptionsError
from bootstrap_repro.options import Options, load_yaml


def w(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_include_list_merged_in_order_file_last(tmp_path):
    w(tmp_path / "a.yaml", "optimizer: {name: sgd, lr: 0.1}\nengine: {nb_epochs: 3}\n")
    (tmp_path / "sub").mkdir()
    w(tmp_path / "sub" / "b.yaml", "optimizer: {lr: 0.2, momentum: 0.9}\n")
    main = w(tmp_path / "main.yaml", "__include__: [a.yaml, sub/b.yaml]\noptimizer: {lr: 0.3}\n")
    tree = load_yaml(main)
    assert tree["optimizer"] == {"name": "sgd", "lr": 0.3, "momentum": 0.9}
    assert tree["engine"] == {"nb_epochs": 3}


def test_nested_include_is_relative_to_including_file(tmp_path):
    (tmp_path / "d").mkdir()
    w(tmp_path / "d" / "base.yaml", "x: {y: 1}\n")
    w(tmp_path / "d" / "mid.yaml", "__include__: base.yaml\nx: {z: 2}\n")
    top = w(tmp_path / "top.yaml", "__include__: d/mid.yaml\n")
    assert load_yaml(top) == {"x": {"y": 1, "z": 2}}


def test_typed_overrides(tmp_path):
    f = w(tmp_path / "o.yaml", "exp: {dir: x}\nmodel: {metric: {topk: [1, 5]}}\noptimizer: {lr: 0.01, name: sgd}\n")
    opt = Options.load(f, ["--model.metric.topk", "1", "2", "3", "--optimizer.lr", "1", "--engine.nb_epochs=4",
                           "--misc.deterministic", "true", "--exp.resume", "last", "--optimizer.name", "adam"])
    assert opt["model.metric.topk"] == [1, 2, 3]
    assert opt["optimizer.lr"] == 1.0 and isinstance(opt["optimizer.lr"], float)
    assert opt["engine"]["nb_epochs"] == 4
    assert opt["misc.deterministic"] is True
    assert opt["exp.resume"] == "last"
    assert opt["optimizer"]["name"] == "adam"
    assert isinstance(opt["engine"], dict)


def test_negative_numbers_and_empty_values(tmp_path):
    f = w(tmp_path / "o.yaml", "exp: {dir: x}\na: {b: 1, c: [0.5], s: txt}\n")
    opt = Options.load(f, ["--a.b", "-3", "--a.c", "-1.5", "2", "--a.s"])
    assert opt["a.b"] == -3 and opt["a.c"] == [-1.5, 2.0] and opt["a.s"] is None
    assert Options.load(f, ["--a.c"])["a.c"] == []


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--optimizer.lrr", "1"], "--optimizer.lrr: unknown option; did you mean --optimizer.lr? (`-h` lists them all)"),
        (["--optimizer.lr", "abc"], "--optimizer.lr: expected a float, got 'abc'"),
        (["--engine.nb_epochs", "2.5"], "--engine.nb_epochs: expected an int, got '2.5'"),
        (["--misc.deterministic", "maybe"], "--misc.deterministic: expected a bool (true/false), got 'maybe'"),
        (["--engine.nb_epochs", "1", "2"], "--engine.nb_epochs: expected one value, got 2 (1 2)"),
        (["--optimizer", "x"], "--optimizer: is a section, not a value; set one of its keys, e.g. --optimizer.lr"),
        (["stray"], "unexpected argument 'stray'; options are given as --key.path VALUE"),
    ],
)
def test_override_errors(tmp_path, argv, message):
    f = w(tmp_path / "o.yaml", "exp: {dir: x}\noptimizer: {lr: 0.01}\n")
    with pytest.raises(OptionsError) as exc:
        Options.load(f, argv)
    assert str(exc.value) == message


def test_file_errors(tmp_path):
    with pytest.raises(OptionsError, match=r"^nope.yaml: options file not found; check the path$"):
        load_yaml("nope.yaml")
    bad = w(tmp_path / "bad.yaml", "a: 1\nb: [1, 2\nc: 3\n")
    with pytest.raises(OptionsError) as exc:
        load_yaml(bad)
    assert str(exc.value) == f"{bad}:3:2: YAML syntax error: did not find expected ',' or ']'; fix the file"
    inc = w(tmp_path / "inc.yaml", "__include__: missing.yaml\n")
    with pytest.raises(OptionsError) as exc:
        load_yaml(inc)
    assert str(exc.value) == (f"{inc}: __include__ 'missing.yaml' not found (looked for {tmp_path / 'missing.yaml'}); "
                              "includes are relative to the including file")
    w(tmp_path / "c1.yaml", "__include__: c2.yaml\n")
    c2 = w(tmp_path / "c2.yaml", "__include__: c1.yaml\n")
    with pytest.raises(OptionsError) as exc:
        load_yaml(tmp_path / "c1.yaml")
    assert str(exc.value) == f"{c2.resolve()}: __include__ cycle c1.yaml -> c2.yaml -> c1.yaml; remove one of these includes"
    lst = w(tmp_path / "list.yaml", "- a\n- b\n")
    with pytest.raises(OptionsError, match="expected a mapping of options at the top level, got list"):
        load_yaml(lst)


def test_read_only_once_frozen_and_current(tmp_path):
    opt = Options.load(w(tmp_path / "o.yaml", "exp: {dir: x}\nm: {l: [1]}\n"))
    opt["m.new"] = 3
    opt.freeze()
    for mutate in (lambda: opt.__setitem__("m.l", 2), lambda: opt["m"].__setitem__("x", 1),
                   lambda: opt["m"]["l"].append(2), lambda: opt["m"].update(a=1), lambda: opt["m"].pop("l")):
        with pytest.raises(OptionsError, match="read-only"):
            mutate()
    with opt.activate():
        assert Options() is opt
        assert Options()["exp.dir"] == "x"


def test_save_round_trip_drops_resume(tmp_path):
    opt = Options.load(w(tmp_path / "o.yaml", "exp: {dir: x}\nv: [logs:a+logs:b]\n"), ["--exp.resume", "last"])
    opt.save(tmp_path / "saved.yaml")
    again = Options.load(tmp_path / "saved.yaml")
    assert again["exp.resume"] is None
    assert again.as_dict() == {**opt.as_dict(), "exp": {**opt.as_dict()["exp"], "dir": "x", "resume": None}}
    assert yaml.safe_load((tmp_path / "saved.yaml").read_text())["v"] == ["logs:a+logs:b"]


def test_help_lists_every_leaf_with_value(tmp_path):
    opt = Options.load(w(tmp_path / "o.yaml", "exp: {dir: logs/x}\nmodel: {metric: {topk: [1, 5]}}\n"))
    text = opt.help_text()
    assert "--exp.dir" in text and "logs/x" in text
    assert "--model.metric.topk" in text and "[1, 5]" in text and "(list[int])" in text
    assert "--engine.nb_epochs" in text
