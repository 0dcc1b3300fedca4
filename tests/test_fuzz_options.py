"""Property-based fuzzing of the options schema and the command line (Hypothesis).

Any generated bad value for a platform option, put in the options file or given as ``--key value``,
must end ``bootstrap-repro run`` with exit code 2, exactly one ``error:`` line naming the key, no
traceback and nothing created. The example budget is fixed (``BOOTSTRAP_REPRO_FUZZ_EXAMPLES``,
default 2,000 in all); ``python benchmarks/fuzz_options.py`` runs a deeper search.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from bootstrap_repro.cli import main
from bootstrap_repro.options import merge

from conftest import TINY

BUDGET = int(os.environ.get("BOOTSTRAP_REPRO_FUZZ_EXAMPLES", "2000"))
FUZZ = settings(max_examples=max(1, BUDGET * 3 // 4), deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FUZZ_CLI = settings(FUZZ, max_examples=max(1, BUDGET // 4))
CPUS = os.cpu_count() or 1

# ---------------------------------------------------------------------------- the schema, as the fuzzer sees it
#: key -> (kind, lowest valid, highest valid or None).
INTS = {
    "misc.seed": (0, 2**63 - 1), "engine.nb_epochs": (1, 10**6), "engine.print_freq": (0, None),
    "dataset.batch_size": (1, None), "dataset.nb_threads": (0, 8 * CPUS), "runtime.nproc_per_node": (1, 4 * CPUS),
    "runtime.nnodes": (1, None), "runtime.node_rank": (0, None),
}
FLOATS = {  # key -> (lowest, lowest allowed?)
    "optimizer.lr": (0.0, False), "optimizer.momentum": (0.0, True), "optimizer.weight_decay": (0.0, True),
    "optimizer.grad_clip": (0.0, True), "exp.max_input_gb": (0.0, False), "exp.max_inputs_archive_mb": (0.0, True),
}
BOOLS = ["engine.nan_check", "engine.progress_bar", "engine.compile", "engine.channels_last", "engine.log_batches",
         "misc.deterministic"]
ENUMS = {"engine.amp": ["none", "bf16", "fp16"], "runtime.name": ["local", "docker"]}
STRINGS = ["exp.dir", "dataset.train_split", "engine.name", "engine.device", "exp.resume"]
LISTS = ["engine.saving_criteria", "engine.hooks", "exp.env_keys", "exp.inputs_ignore", "model.metric.topk"]
SECTIONS = ["exp", "misc", "engine", "dataset", "runtime", "optimizer", "model"]
IMPORTS = ["dataset.import", "model.network.import", "model.criterion.import", "optimizer.import", "engine.import"]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
anything = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(min_size=1, max_size=5), inner, max_size=3), max_leaves=6)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def bad_int(key: str) -> st.SearchStrategy[Any]:
    low, high = INTS[key]
    out_of_range = st.integers(max_value=low - 1) | (st.integers(min_value=high + 1) if high is not None else st.nothing())
    return out_of_range | anything.filter(lambda v: not _is_int(v) and not (key == "misc.seed" and v is None))


def bad_float(key: str) -> st.SearchStrategy[Any]:
    low, inclusive = FLOATS[key]
    below = st.floats(max_value=low, exclude_max=inclusive, allow_nan=False) | st.integers(max_value=-1)
    non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
    nullable = key == "optimizer.grad_clip"
    return below | non_finite | anything.filter(lambda v: not _is_real(v) and not (nullable and v is None))


def bad_value(key: str) -> st.SearchStrategy[Any]:
    if key in INTS:
        return bad_int(key)
    if key in FLOATS:
        return bad_float(key)
    if key in BOOLS:
        return anything.filter(lambda v: not isinstance(v, bool))
    if key in ENUMS:
        return anything.filter(lambda v: v not in ENUMS[key])
    if key == "exp.dir":
        return (anything.filter(lambda v: not isinstance(v, str) and v is not None)
                | st.sampled_from(["a\x00b", "/proc/x", "/sys/y", "/dev/z", "/tmp/" + "n" * 300, "/" + "p/" * 2100, " "]))
    if key in STRINGS:
        nullable = key in ("exp.resume", "dataset.train_split")
        return anything.filter(lambda v: not isinstance(v, str) and not (nullable and v is None))
    if key in SECTIONS:
        return anything.filter(lambda v: not isinstance(v, dict) and not (key in ("optimizer", "model") and v is None))
    if key in IMPORTS:
        return (st.sampled_from([".rel", "..", "a..b", "a/b", "a.b.", "1abc", "my-mod", " x"])  # '': no import
                | anything.filter(lambda v: not isinstance(v, str) and v is not None))
    if key == "engine.saving_criteria":
        return (st.lists(st.sampled_from(["loss", "loss:", ":min", "loss:up", "loss:MIN"]), min_size=1, max_size=3)
                | anything.filter(lambda v: not isinstance(v, list)))
    if key == "engine.hooks":
        return (st.lists(st.sampled_from([".rel", "..", "a/b", "", "1x"]), min_size=1, max_size=2)
                | anything.filter(lambda v: not isinstance(v, list)))
    if key == "model.metric.topk":
        return (st.lists(st.integers(max_value=0), min_size=1, max_size=3) | st.just([])
                | anything.filter(lambda v: not _is_int(v) and not isinstance(v, list)))
    return anything.filter(  # exp.env_keys (a list of names), exp.inputs_ignore (a list of globs, or null)
        lambda v: not isinstance(v, list) and not (key == "exp.inputs_ignore" and v is None))


ALL_KEYS = [*INTS, *FLOATS, *BOOLS, *ENUMS, *STRINGS, *LISTS, *SECTIONS, *IMPORTS]


def nested(key: str, value: Any) -> dict[str, Any]:
    tree: Any = value
    for part in reversed(key.split(".")):
        tree = {part: tree}
    return tree


# ---------------------------------------------------------------------------- the property
_ROOT = Path(tempfile.mkdtemp(prefix="fuzz-options-"))


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Any:
    yield
    shutil.rmtree(_ROOT, ignore_errors=True)


@contextlib.contextmanager
def sandbox() -> Any:
    """One cwd for every example (made once: a dir per example would cost more than the example)."""
    old = os.getcwd()
    os.chdir(_ROOT)
    try:
        yield _ROOT
    finally:
        os.chdir(old)


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def check_refused(root: Path, tree: dict[str, Any], argv: list[str], key: str) -> None:
    opts = root / "o.yaml"
    opts.write_text(yaml.dump(tree, Dumper=yaml.CSafeDumper, allow_unicode=True))
    before = files(root)
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        code = main(["run", "-o", str(opts), *argv])
    lines = err.getvalue().strip().splitlines()
    shown = f"{key} -> argv={argv!r} stderr={err.getvalue()!r}"
    assert code == 2, shown
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err.getvalue(), shown
    first = key.split(".")[0]
    named = [first, key.rsplit(".", 1)[-1], *(w for w in argv[1:] if w)]  # the key, or the word that broke parsing
    assert any(n in lines[0] for n in named) or lines[0].startswith("error: run: argument "), shown  # argparse's
    assert files(root) == before, f"bad input created files: {shown}"


def tiny(root: Path) -> dict[str, Any]:
    return merge(TINY, {"exp": {"dir": str(root / "exp")}, "engine": {"nb_epochs": 1},
                        "optimizer": {"weight_decay": 0.0, "grad_clip": None}})


@FUZZ
@given(data=st.data(), key=st.sampled_from(ALL_KEYS))
def test_a_bad_value_in_the_file_is_refused_in_one_line(data: st.DataObject, key: str) -> None:
    value = data.draw(bad_value(key), label=key)
    with sandbox() as root:
        tree = tiny(root)
        if key in SECTIONS:
            tree[key] = value
        else:
            tree = merge(tree, nested(key, value))
        check_refused(root, tree, [], key)


def cli_token(key: str) -> st.SearchStrategy[list[str]]:
    """Command-line words that cannot be a valid value of ``key`` (an empty list: the flag alone)."""
    if key in INTS:
        low, high = INTS[key]
        numbers = st.integers(max_value=low - 1) | (st.integers(min_value=high + 1) if high else st.nothing())
        junk = st.sampled_from(["x", "1.5", "2.0", "1e3", "true", "nan", "", "0x10", "[1]", "1_000_0000000000000000000"])
        return st.lists(numbers.map(str) | junk, min_size=0, max_size=1).filter(
            lambda ws: not ws or not _fits_int(ws[0], low, high))
    if key in FLOATS:
        low, inclusive = FLOATS[key]
        junk = st.sampled_from(["x", "nan", "inf", "-inf", "1,5", "", "true", "1e999"])
        below = st.floats(max_value=low, exclude_max=inclusive, allow_nan=False).map(repr)
        return st.lists(below | junk, min_size=int(key == "optimizer.grad_clip"), max_size=1)  # alone: null (off)
    if key in BOOLS:
        return st.lists(st.text(min_size=1, max_size=6).filter(
            lambda t: t.lower() not in ("true", "false", "yes", "no", "on", "off", "1", "0") and not _flag_like(t)),
            min_size=1, max_size=1)
    return st.lists(st.text(min_size=1, max_size=8).filter(
        lambda t: t not in ENUMS[key] and not _flag_like(t)), min_size=1, max_size=1)


def _flag_like(word: str) -> bool:
    """``--x`` starts another option and ``-h`` asks for help (exit 0): neither is a value."""
    return word.startswith("--") or word in ("-h",)


def _fits_int(word: str, low: int, high: int | None) -> bool:
    try:
        n = int(word)
    except ValueError:
        return False
    return n >= low and (high is None or n <= high)


@FUZZ_CLI
@given(data=st.data(), key=st.sampled_from([*INTS, *FLOATS, *BOOLS, *ENUMS]))
def test_a_bad_value_on_the_command_line_is_refused_in_one_line(data: st.DataObject, key: str) -> None:
    words = data.draw(cli_token(key), label=key)
    assume(not (key in FLOATS and words and words[0] == "1e999" and FLOATS[key][0] < 0))
    with sandbox() as root:
        check_refused(root, tiny(root), [f"--{key}", *words], key)


@pytest.mark.parametrize("key", ALL_KEYS)
def test_every_fuzzed_key_has_a_valid_default_that_runs_the_schema(key: str) -> None:
    """The fuzzer's table names real keys: the tiny options with their own value pass the schema."""
    from bootstrap_repro import _schema
    from bootstrap_repro.options import DEFAULTS, flatten

    tree = merge(DEFAULTS, tiny(Path(tempfile.gettempdir())))
    _schema.check(tree)
    known = set(flatten(tree)) | set(SECTIONS) | set(IMPORTS) | {"optimizer.grad_clip", "exp.resume"}
    assert key in known or any(k.startswith(key + ".") for k in known), key
