"""``rerun`` of an experiment dir whose record was damaged or edited: one error line naming the file and the
field, exit 2, no re-run started, nothing created (no ``EXP-rerun-N``, no temporary worktree)."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from conftest import cli, write_options
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from repro_helpers import tiny_tree

import bootstrap_repro.record._rerun as rerun_module
from bootstrap_repro.cli import main

pytestmark = pytest.mark.slow

DEL = object()  #: the field is removed
RECORD = Path("repro") / "record.json"
INPUTS = Path("repro") / "segments" / "0" / "inputs.json"
SEG_OPTIONS = Path("repro") / "segments" / "0" / "options.yaml"


class Launched(Exception):
    """The re-run was about to start: the record was accepted."""


def _launch(*args: Any, **kwargs: Any) -> Any:
    raise Launched(args[0] if args else kwargs.get("args"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A tiny finished run outside git (its re-run would run the current code)."""
    root = tmp_path_factory.mktemp("damaged")
    exp = root / "exp"
    opts = write_options(root / "tiny.yaml", tiny_tree(exp, {"engine": {"nb_epochs": 1}}))
    r = cli("run", "-o", str(opts), "--no-cache", cwd=root)
    assert r.returncode == 0, r.stderr
    assert (exp / INPUTS).is_file() and (exp / SEG_OPTIONS).is_file()
    return exp


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _tmp_leftovers() -> set[str]:
    return {p for p in os.listdir(tempfile.gettempdir()) if p.startswith("bootstrap-repro-rerun-")}


class Exp:
    """A copy of the finished run in a fresh dir, whose files are damaged in place, one case after another."""

    def __init__(self, source: Path, root: Path) -> None:
        self.root = root
        self.dir = root / "exp"
        shutil.copytree(source, self.dir, ignore=shutil.ignore_patterns(".lock"))
        self.original = {rel: (self.dir / rel).read_bytes() for rel in (RECORD, INPUTS, SEG_OPTIONS)}

    def json(self, rel: Path) -> Any:
        return json.loads(self.original[rel])

    def write(self, rel: Path, content: Any) -> None:
        for r, data in self.original.items():  # every other file as it was
            (self.dir / r).write_bytes(data)
        if isinstance(content, bytes):
            (self.dir / rel).write_bytes(content)
        elif isinstance(content, str):
            (self.dir / rel).write_text(content)
        else:
            (self.dir / rel).write_text(json.dumps(content))

    def rerun(self) -> tuple[int | None, str]:
        """``main(['rerun', dir])``: (exit code, stderr); (None, '') when the re-run was about to start."""
        err = io.StringIO()
        with mock.patch.object(rerun_module.subprocess, "run", _launch), contextlib.redirect_stderr(err), \
                contextlib.redirect_stdout(io.StringIO()):
            try:
                code = main(["rerun", str(self.dir)])
            except Launched:
                return None, ""
        return code, err.getvalue()

    def refused(self, rel: Path, content: Any, what: str) -> str:
        """Write ``content`` to ``rel``, re-run: it must be refused in one line naming ``rel``; returns the line."""
        self.write(rel, content)
        before, leftovers = _tree(self.root), _tmp_leftovers()
        code, err = self.rerun()
        assert code is not None, f"{what}: accepted, the re-run started"
        lines = err.splitlines()
        assert code == 2 and len(lines) == 1 and "Traceback" not in err, f"{what}: exit {code}\n{err}"
        assert lines[0].startswith(f"error: {self.dir / rel}") and "the record is damaged" in lines[0], \
            f"{what}: {lines[0]}"
        assert _tree(self.root) == before, f"{what}: files were created"
        assert not any(self.root.glob("exp-rerun-*")) and _tmp_leftovers() == leftovers
        return lines[0]


@pytest.fixture
def exp(finished, tmp_path) -> Exp:
    return Exp(finished, tmp_path)


def _set(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    data = copy.deepcopy(data)
    if not path:
        return value
    node = data
    for k in path[:-1]:
        node = node[k]
    if value is DEL:
        del node[path[-1]]
    else:
        node[path[-1]] = copy.deepcopy(value)
    return data


# Bad values by the kind of a field of record.json (DEL: the field is missing).
_NOT_STR = [5, 1.5, True, [], {"a": 1}]
BAD = {
    "str": [None, DEL, *_NOT_STR],
    "opt_str": _NOT_STR,
    "count": [None, DEL, "1", -1, 10**40, 1.5, True, []],
    "opt_count": ["1", -1, 10**40, 1.5, True, {}],
    "dict": [None, DEL, "x", 5, [], True],
    "opt_dict": ["x", 5, [1], True],
    "list": ["x", 5, {}, True, [5], ["x"], [None]],
    "str_list": ["x", 5, {}, [5], [None]],
    "bool": ["true", 1, [], {}],
    "req_bool": ["true", 1, None, DEL],
    "status": ["DONE", "", 5, None, []],
    "opt_status": ["DONE", 5, []],
    "path": [5, "", "a\0b", [], True],
    "req_path": [None, DEL, 5, "", "a\0b", []],
    "rel": [None, DEL, "/abs/file", "../outside", "a/../../b", "", 5, []],
    "opt_rel": ["/etc/passwd", "../../outside", "", 5, []],
    "commit": ["not-hex", "--upload-pack=touch x", "", 5, [], DEL],
    "mode": ["train ", "x", 5, None],
}

#: Every field of record.json a reader uses, and its kind (a record made outside git).
FIELDS = {
    ("status",): "status", ("mode",): "mode", ("cache_key",): "str", ("cache_hit_of",): "opt_dict",
    ("started_from_checkpoint",): "opt_str", ("started",): "opt_str", ("ended",): "opt_str", ("error",): "opt_str",
    ("exp_dir",): "opt_str", ("command",): "opt_dict",
    ("code",): "dict", ("code", "git"): "req_bool", ("code", "plugins"): "list", ("code", "cwd"): "path",
    ("code", "cwd_in_repo"): "bool", ("code", "framework_root"): "path", ("code", "framework_in_repo"): "bool",
    ("code", "fingerprint"): "str",
    ("environment",): "dict", ("environment", "fingerprint"): "opt_str", ("environment", "env_vars"): "opt_dict",
    ("runtime",): "opt_dict", ("runtime", "kind"): "str",
    ("resumes",): "list", ("segments",): "list",
    ("segments", 0, "index"): "count", ("segments", 0, "code_dir"): "rel", ("segments", 0, "options"): "rel",
    ("segments", 0, "resumed_from"): "opt_str", ("segments", 0, "overrides"): "opt_dict",
    ("segments", 0, "cache_key"): "opt_str", ("segments", 0, "start_epoch"): "opt_count",
    ("segments", 0, "end_epoch"): "opt_count", ("segments", 0, "status"): "opt_status",
    ("segments", 0, "inputs"): "opt_dict", ("segments", 0, "inputs", "file"): "opt_rel",
    ("segments", 0, "inputs", "unfingerprintable"): "str_list",
}

#: The same for the fields of a record made in a git repo (and of its plugins and submodules).
GIT_FIELDS = {
    ("code", "root"): "req_path", ("code", "commit"): "commit", ("code", "remote"): "opt_str",
    ("code", "diff"): "dict", ("code", "diff", "sha256"): "opt_str", ("code", "submodules"): "list",
    ("code", "submodules", 0, "path"): "rel", ("code", "submodules", 0, "commit"): "commit",
    ("code", "cwd"): "opt_rel", ("code", "framework_root"): "opt_rel",
    ("code", "plugins", 0, "key"): "str", ("code", "plugins", 0, "module"): "str",
    ("code", "plugins", 0, "in_repo"): "bool", ("code", "plugins", 0, "file"): "path",
    ("code", "plugins", 0, "root"): "path", ("code", "plugins", 0, "sha256"): "opt_str",
}


def _git_record(record: dict[str, Any], root: Path) -> dict[str, Any]:
    """The record as if made in a git repo (that is not there any more: its re-run is refused)."""
    record = copy.deepcopy(record)
    record["code"].update(
        git=True, root=str(root / "gone"), commit="0123456789abcdef0123456789abcdef01234567", remote=None,
        diff={"file": "code.diff", "sha256": "0" * 64}, cwd="src", cwd_in_repo=True, framework_root="lib",
        framework_in_repo=True,
        submodules=[{"path": "vendor/lib", "commit": "89abcdef0123456789abcdef0123456789abcdef", "remote": None}],
        plugins=[{"key": "model.network.import", "module": "netplug", "file": "src/netplug.py", "root": "src",
                  "in_repo": True, "sha256": "0" * 64}],
    )
    return record


def test_each_field_of_the_record_with_a_wrong_value(exp):
    record = exp.json(RECORD)
    cases = [(record, path, kind) for path, kind in FIELDS.items()]
    git = _git_record(record, exp.root)
    cases += [(git, path, kind) for path, kind in GIT_FIELDS.items()]
    exp.write(RECORD, git)  # a git record whose repo is gone: refused for that, not for a field
    code, err = exp.rerun()
    assert code == 2 and "is not a git repository here" in err, err
    n = 0
    for base, path, kind in cases:
        for value in BAD[kind]:
            what = f"{'.'.join(map(str, path))} = {'<missing>' if value is DEL else repr(value)[:30]}"
            exp.refused(RECORD, _set(base, path, value), what)
            n += 1
    assert n > 250


def test_field_errors_name_the_file_and_the_field(exp):
    rpath = exp.dir / RECORD
    record = exp.json(RECORD)
    suffix = "; the record is damaged (was it edited?)"
    assert exp.refused(RECORD, _set(record, ("code", "git"), "yes"), "git") == \
        f"error: {rpath}: field 'code.git' must be true or false{suffix}"
    assert exp.refused(RECORD, _set(record, ("segments", 0, "options"), "../../../etc/passwd"), "options") == \
        f"error: {rpath}: field 'segments[0].options' must be a relative path inside the dir (no '..'){suffix}"
    assert exp.refused(RECORD, _set(record, ("segments", 0, "end_epoch"), -3), "epoch") == \
        f"error: {rpath}: field 'segments[0].end_epoch' must be an integer >= 0 or null{suffix}"
    assert exp.refused(RECORD, _set(record, ("environment",), DEL), "environment") == \
        f"error: {rpath}: field 'environment' must be present (an object){suffix}"
    git = _git_record(record, exp.root)
    assert exp.refused(RECORD, _set(git, ("code", "commit"), "--upload-pack=touch /tmp/x"), "commit") == \
        f"error: {rpath}: field 'code.commit' must be a hexadecimal commit id or null{suffix}"
    assert exp.refused(RECORD, [record], "array") == f"error: {rpath}: not a JSON object{suffix}"


def test_whole_record_files_that_are_not_json(exp):
    text = exp.original[RECORD]
    variants = {
        "empty": b"", "truncated": text[: len(text) // 2], "invalid UTF-8": b"\xff\xfe{}",
        "an array": b"[1, 2]", "null": b"null", "a string": b'"record"', "NaN": b"NaN",
        "deeply nested": b"[" * 100_000 + b"]" * 100_000,
        "a 5000-digit number": b'{"schema_version": ' + b"1" * 5000 + b"}",
        "schema_version 0": b'{"schema_version": 0}', "schema_version -1": b'{"schema_version": -1}',
        "schema_version text": b'{"schema_version": "1"}', "schema_version missing": b'{"status": "COMPLETED"}',
    }
    for what, content in variants.items():
        exp.refused(RECORD, content, what)
    for what, content in variants.items():
        if what not in ("schema_version 0", "schema_version -1", "schema_version text", "schema_version missing"):
            exp.refused(INPUTS, content, f"inputs.json {what}")
    line = exp.refused(RECORD, b"[" * 100_000 + b"]" * 100_000, "deep")
    assert line == f"error: {exp.dir / RECORD}: unreadable (nested too deeply); the record is damaged"
    line = exp.refused(RECORD, b'{"schema_version": ' + b"1" * 5000 + b"}", "digits")
    assert line == f"error: {exp.dir / RECORD}: unreadable (a number of more than 4300 digits); the record is damaged"


def test_inputs_manifest_with_wrong_shapes(exp):
    inputs = exp.json(INPUTS)
    a_module = next(iter(inputs["modules"]))
    cases = {
        ("modules",): ["x", 5, [], {"relative/path.py": {}}, {"/a.py": 5}, {"/a\0b.py": {}}],
        ("files",): ["x", [1], {"/a": "meta"}],
        ("dirs",): ["x", {"/d": []}],
        ("secrets",): [5, {"/s": None}],
        ("env",): ["x", [1], {"X": 5}, {"X": {"hmac": 5}}, {"X": ["a"]}],
        ("links",): [5, "x", {"/l": 5}, {"/l": "/t\0"}],
        ("absent",): [5, "x", {"a": 1}, [5], ["/a\0"]],
        ("resolution",): [5, [], {"m": 5}],
        ("archived",): ["x", [5]],
        ("unfingerprintable",): ["x", [None]],
        ("modules", a_module, "size"): ["big", None, 1.5, True],
        ("modules", a_module, "mtime_ns"): ["x", None, []],
        ("modules", a_module, "hashed_ns"): ["x", None, {}],
        ("modules", a_module, "sha256"): [5, []],
        ("modules", a_module, "kind"): [5, {}],
    }
    for path, values in cases.items():
        for value in values:
            line = exp.refused(INPUTS, _set(inputs, path, value), f"inputs {path} = {value!r}")
            assert line.startswith(f"error: {exp.dir / INPUTS}: "), line


def test_segment_options_that_are_not_options(exp):
    seg = exp.dir / SEG_OPTIONS
    variants = {"a list": "[1, 2]\n", "YAML syntax": "dataset: [\n", "empty": "", "null": "null\n",
                "invalid UTF-8": b"exp: \xff\n", "deep": "a: " + "[" * 5000 + "]" * 5000 + "\n",
                "a 5000-digit number": "misc: {seed: " + "9" * 5000 + "}\n"}
    for what, content in variants.items():
        line = exp.refused(SEG_OPTIONS, content, f"options.yaml {what}")
        assert line.startswith(f"error: {seg}") and line.endswith("; the record is damaged (was it edited?)"), line


def test_verify_against_a_damaged_logs_file_is_refused_before_the_rerun(exp):
    logs = exp.dir / "logs.json"
    for content in (b'{"train_epoch.loss": [0.5,', b"[1, 2]", b"\xff", b"[" * 100_000 + b"]" * 100_000):
        logs.write_bytes(content)
        before = _tree(exp.root)
        err = io.StringIO()
        with mock.patch.object(rerun_module.subprocess, "run", _launch), contextlib.redirect_stderr(err):
            code = main(["rerun", str(exp.dir), "--verify"])  # Launched (not caught): the re-run started
        lines = err.getvalue().splitlines()
        assert code == 2 and len(lines) == 1, err.getvalue()
        assert lines[0].startswith(f"error: {logs}: cannot be compared (") and \
            lines[0].endswith("); the experiment dir is damaged"), lines[0]
        assert _tree(exp.root) == before


# ----------------------------------------------------------------------------- any value anywhere
def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node[:2]):
            out += _paths(v, (*prefix, i))
    return out


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12)
    | st.sampled_from(["", "/", "..", "../x", "repro", "segments/0/options.yaml", "a\0b", "COMPLETED"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)


def test_any_value_anywhere_in_the_record_ends_in_one_line_or_a_rerun(finished, tmp_path_factory):
    """A JSON value of any type at any place (or a removed key): one error line and nothing created, or,
    when the record stays valid, the re-run starts; never a traceback."""
    exp = Exp(finished, tmp_path_factory.mktemp("anyvalue"))
    record = exp.json(RECORD)
    paths = [p for p in _paths(record) if p]

    @settings(max_examples=120, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(path=st.sampled_from(paths), value=_JSON | st.just(DEL))
    def check(path: tuple[Any, ...], value: Any) -> None:
        exp.write(RECORD, _set(record, path, value))
        before = _tree(exp.root)
        code, err = exp.rerun()
        if code is None:
            return  # still a valid record: the re-run started
        lines = err.splitlines()
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
        assert _tree(exp.root) == before

    check()
