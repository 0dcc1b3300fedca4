"""The seed's Options and Logger API: on bootstrap-repro's classes, and through ``bootstrap.lib``."""

from __future__ import annotations

import argparse
import json
import pickle
import sys

import pytest
import yaml
from bootstrap.lib import logger as seed_logger
from bootstrap.lib import options as seed_options
from bootstrap.lib.logger import LoggedError, Logger
from bootstrap.lib.options import MissingOptionsException, Options, OptionsDict

from bootstrap_repro import logger as native_logger
from bootstrap_repro import options as native
from bootstrap_repro.errors import OptionsError, OptionsReadOnlyError


@pytest.fixture
def argv(monkeypatch):
    """``argv(*tokens)`` sets ``sys.argv``; the seed-API singletons start empty (restored after the test)."""
    monkeypatch.setattr(Options, "_Options__instance", None)
    monkeypatch.setattr(Logger, "_instance", None)

    def set_argv(*tokens: str) -> None:
        monkeypatch.setattr(sys, "argv", ["prog", *tokens])

    set_argv()
    return set_argv


@pytest.fixture
def seed_file(tmp_path):
    (tmp_path / "base.yaml").write_text("exp: {dir: logs/base, resume: null}\noptimizer: {name: sgd, lr: 0.1}\n")
    path = tmp_path / "opt.yaml"
    path.write_text("__include__: base.yaml\nexp: {dir: logs/x}\nmodel: {network: {name: mlp}}\nflags: [1, 2]\n")
    return path


# ------------------------------------------------------------------ bootstrap-repro's Options gains
def test_native_options_attribute_access_values_asdict_path_opts(tiny_options):
    opt = tiny_options()
    assert opt.exp.dir == opt["exp.dir"]
    assert opt.engine.nb_epochs == 2 and opt["engine"].nb_epochs == 2
    assert next(iter(opt.values())) is opt["exp"]
    assert opt.asdict() == opt.as_dict() and type(opt["exp"].asdict()) is dict
    assert opt.path_opts == opt.source
    with pytest.raises(AttributeError, match="no attribute or option 'nope'"):
        _ = opt.nope
    with pytest.raises(AttributeError, match="no option 'nope' here"):
        _ = opt.exp.nope
    assert pickle.loads(pickle.dumps(opt)).exp.dir == opt.exp.dir
    opt.check()  # the schema check still runs on the tree


def test_native_frozen_options_raise_a_permission_error(tiny_options):
    opt = tiny_options()
    assert not opt.islocked()
    opt.lock()
    assert opt.islocked() and opt["engine"].islocked()
    with pytest.raises(OptionsReadOnlyError, match="read-only once the run has started") as info:
        opt["engine.nb_epochs"] = 3
    assert isinstance(info.value, PermissionError) and isinstance(info.value, OptionsError)


def test_schema_check_still_refuses_bad_values(tiny_file):
    path = tiny_file({"engine": {"nb_epochs": -3}})
    with pytest.raises(OptionsError, match="engine.nb_epochs: must be >= 1, got -3"):
        native.Options.load(path)


# ------------------------------------------------------------------ inside a run: the run's options
def test_inside_a_run_options_is_the_runs_read_only_tree(tiny_options, argv):
    opt = tiny_options().freeze()
    with opt.activate():
        seed = Options()
        assert isinstance(seed, Options) and isinstance(seed, native.Options)
        assert seed.options is opt._tree and Options("ignored.yaml").options is opt._tree
        assert seed["engine.nb_epochs"] == 2 and seed.engine.nb_epochs == 2 and seed.exp.dir == opt["exp.dir"]
        assert seed["path_opts"] == seed.path_opts == opt.source
        assert seed.islocked() and seed["dataset"].asdict()["name"] == "synthetic"
        with pytest.raises(PermissionError):
            seed["engine.nb_epochs"] = 5
        with pytest.raises(OptionsReadOnlyError, match="stay read-only"):
            seed.unlock()
    with pytest.raises(MissingOptionsException):
        Options()  # the run is over and sys.argv has no -o


# ------------------------------------------------------------------ outside a run: the seed's singleton
def test_options_from_argv_with_typed_overrides(seed_file, argv):
    argv("-o", str(seed_file), "--optimizer.lr", "0.5", "--flags", "3", "4", "--exp.resume", "last")
    opt = Options()
    assert Options() is opt and Options(lock=True) is opt and opt.islocked()
    assert next(iter(opt.keys())) == "path_opts" and opt.path_opts == str(seed_file) == opt.source
    assert opt.options == {
        "path_opts": str(seed_file), "exp": {"dir": "logs/x", "resume": "last"},
        "optimizer": {"name": "sgd", "lr": 0.5}, "model": {"network": {"name": "mlp"}}, "flags": [3, 4]}
    assert opt.overrides == {"optimizer.lr": 0.5, "flags": [3, 4], "exp.resume": "last"}
    assert opt.model.network.name == "mlp" and opt["model.network.name"] == "mlp"
    assert isinstance(opt.options["model"], OptionsDict)


def test_options_from_a_path_or_a_dict_without_the_command_line(seed_file, argv, monkeypatch):
    opt = Options(str(seed_file), run_parser=False)
    assert "path_opts" not in opt.options and opt.path_opts == str(seed_file)
    assert opt["optimizer.lr"] == 0.1
    monkeypatch.setattr(Options, "_Options__instance", None)
    opt = Options({"model.name": "m", 1: "int key", "a": {"b.c": 2}}, run_parser=False)
    assert opt.options == {"model": {"name": "m"}, 1: "int key", "a": {"b": {"c": 2}}}
    opt["dataset.loader.batch_size"] = 8
    assert opt.options["dataset"] == {"loader": {"batch_size": 8}} and opt[1] == "int key"
    assert Options({"other": 1}, run_parser=False) is opt  # the seed's singleton: the first one stays


def test_missing_path_opts_and_help(argv, seed_file, capsys):
    with pytest.raises(MissingOptionsException, match="no options to build from; pass -o/--path_opts FILE"):
        Options()
    with pytest.raises(MissingOptionsException, match="-o/--path_opts: missing from the command line"):
        Options({"a": 1})  # run_parser=True needs -o, as in the seed
    argv("-o", str(seed_file), "-h")
    with pytest.raises(MissingOptionsException):
        Options()
    out = capsys.readouterr().out
    assert out.startswith(f"usage: -o PATH_OPTS [--key.path VALUE ...]; options (from {seed_file}):")
    assert "--optimizer.lr" in out


def test_bad_flags_are_one_line_errors(argv, seed_file):
    argv("-o", str(seed_file), "--optimizer.lrr", "1")
    with pytest.raises(OptionsError, match=r"^--optimizer.lrr: unknown option; did you mean --optimizer.lr\?"):
        Options()
    argv("-o", str(seed_file), "--optimizer.lr", "fast")
    with pytest.raises(OptionsError, match="^--optimizer.lr: expected a float, got 'fast'$"):
        Options()
    with pytest.raises(TypeError, match="expected the path of a YAML file or a dict of options, got int"):
        Options(123, run_parser=False)


def test_arguments_callback(argv, seed_file):
    argv("-o", str(seed_file), "--optimizer.name", "adam")

    def callback(instance, arguments, options_dict):
        assert isinstance(arguments, argparse.Namespace) and options_dict["optimizer"]["name"] == "sgd"
        setattr(arguments, "optimizer.name", getattr(arguments, "optimizer.name").upper())
        return arguments

    assert Options(arguments_callback=callback)["optimizer.name"] == "ADAM"


def test_includes_resolve_next_to_the_file_then_as_given(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "shared.yaml").write_text("a: 1\nb: 1\n")
    (tmp_path / "sub" / "main.yaml").write_text("__include__: shared.yaml\nb: 2\n")
    monkeypatch.chdir(tmp_path)  # shared.yaml is not next to main.yaml: found relative to the cwd
    assert Options.load_yaml_opts("sub/main.yaml") == {"a": 1, "b": 2}
    (tmp_path / "loop.yaml").write_text("__include__: loop.yaml\n")
    with pytest.raises(OptionsError, match="__include__ cycle"):
        Options.load_yaml_opts("loop.yaml")
    (tmp_path / "missing.yaml").write_text("__include__: nope.yaml\n")
    with pytest.raises(OptionsError, match="__include__ 'nope.yaml' not found"):
        Options.load_yaml_opts("missing.yaml")


def test_lock_unlock_save_str(argv, seed_file, tmp_path, capsys):
    argv("-o", str(seed_file))
    opt = Options()
    opt.lock()
    with pytest.raises(PermissionError):
        opt["exp.dir"] = "elsewhere"
    opt.unlock()
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("WARNING: Options unlocked by ") and err[0].endswith(
        "test_lock_unlock_save_str.")
    opt["exp.dir"] = "elsewhere"
    assert not opt.islocked() and not opt.options["exp"].islocked()
    opt.save(tmp_path / "saved.yaml")
    saved = yaml.safe_load((tmp_path / "saved.yaml").read_text())
    assert "path_opts" not in saved and saved["exp"]["dir"] == "elsewhere"
    assert json.loads(str(opt))["exp"]["dir"] == "elsewhere"
    assert opt.copy() == opt.options and not opt.copy().islocked()


def test_str_to_bool():
    assert Options.str_to_bool("YES") is True and seed_options.str_to_bool("False") is False
    with pytest.raises(argparse.ArgumentTypeError, match="cannot be converted to a bool"):
        Options.str_to_bool("maybe")


def test_options_dict_semantics():
    d = OptionsDict({"a": {"b": 1}})
    d.update({"a.c": 2})
    assert d == {"a": {"b": 1, "c": 2}} and "a.c" in d and "a.z" not in d and d.get("a.z", 0) == 0
    assert isinstance(d["a"], OptionsDict) and d.a.c == 2 and d.asdict() == {"a": {"b": 1, "c": 2}}
    d["x"] = 3
    with pytest.raises(OptionsError, match="'x' holds 3, not a mapping"):
        d["x.y"] = 1
    assert repr(OptionsDict({"k": 1})) == "OptionsDict({'k': 1})"


def test_activated_seed_options_are_current_for_bootstrap_repro_too(argv):
    opt = Options({"engine": {"nb_epochs": 2}}, run_parser=False)
    with opt.activate():
        assert native.Options() is opt


# ------------------------------------------------------------------ Logger
def test_logger_levels_and_errors(argv, tmp_path, capsys):
    log = Logger(dir_logs=str(tmp_path / "logs"))
    assert Logger() is log and log.dir_logs == str(tmp_path / "logs")
    log("hello", log_level=Logger.WARNING)
    Logger().log_value("train_epoch.loss", 0.25, should_print=True)
    with pytest.raises(LoggedError, match="^boom$"):
        Logger()("boom", log_level=Logger.ERROR)
    Logger()("kept going", log_level=Logger.ERROR, raise_error=False)
    Logger().set_level(Logger.WARNING)
    assert Logger()("dropped") == -1
    Logger().flush()
    lines = (tmp_path / "logs" / "logs.txt").read_text().splitlines()
    assert [line[:2] for line in lines] == ["[W", "[I", "[E", "[E"]
    assert lines[0].endswith("test_options_api: hello")  # the caller, not bootstrap/lib/logger
    assert json.loads((tmp_path / "logs" / "logs.json").read_text()) == {"train_epoch.loss": [0.25]}
    assert "dropped" not in capsys.readouterr().out


def test_logger_log_dict_keeps_the_seeds_rules(argv, capsys):
    log = Logger()
    assert "No logs files will be created" in capsys.readouterr().out
    log.log_dict("perf", {"a": 1}, should_print=True)
    log.log_dict("perf", {"a": 2})
    assert log.perf_memory == {"perf": {"a": [1, 2]}} and "perf.a" not in log.values
    with pytest.raises(LoggedError, match='Key "b" is unknown'):
        log.log_dict("perf", {"a": 3, "b": 1})


def test_logger_inside_a_run_is_the_runs_logger(argv, tmp_path):
    native = native_logger.Logger(tmp_path, activate=False, echo=False)
    with native.activate():
        assert Logger() is Logger() and Logger()._native is native
        Logger().log_value("x", 1)
        assert native.values == {"x": [1]} and Logger().values is native.values
    assert seed_logger.__name__ in native_logger.CALLER_SKIP
