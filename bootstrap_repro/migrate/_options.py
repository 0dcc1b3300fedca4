"""Options files: the seed's option and metric names rewritten to bootstrap-repro's, in place.

Two renames, each only where the result is the same experiment:

- ``misc.cuda: true|false`` -> ``engine.device: cuda|cpu`` (bootstrap-repro reads ``misc.cuda`` only
  when ``engine.device`` is ``auto``): not when some options file of the project sets
  ``engine.device`` (it would then win over the rewritten value) or when the project's Python code
  names ``'cuda'`` / ``'misc.cuda'`` (it may read the option);
- released metric names in ``engine.saving_criteria`` and ``view`` items (``accuracy_top1:max``,
  ``logs:eval_epoch.accuracy_top1``) -> bootstrap-repro's (``acctop1``): only in a file whose every
  experiment (the file, or each file that includes it through ``__include__``) uses the built-in
  ``accuracy`` metric, which logs ``acctop<k>``.  ``exp.resume: best_accuracy_top1`` is left: it names
  a checkpoint file that exists.

The files are edited as text at the spans PyYAML's composer reports (comments, order, quoting and
layout elsewhere are kept); each edited file is parsed again and must give the expected tree, or
it is left as it was (with a note).
"""

from __future__ import annotations

import copy
import posixpath
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from bootstrap_repro.migrate._notes import Note

__all__ = ["OPTION_KEYS", "rewrite_options"]

#: Top-level keys of which one marks a YAML file as an options file.
OPTION_KEYS = frozenset({"exp", "dataset", "model", "optimizer", "engine", "misc", "view", "views", "__include__"})
_RELEASED = re.compile(r"(?<![A-Za-z0-9_])accuracy_top([0-9]+)(?![A-Za-z0-9_])")
_BOOL = "tag:yaml.org,2002:bool"


@dataclass
class _File:
    rel: str
    text: str
    root: yaml.MappingNode
    tree: dict[str, Any]
    includes: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def _get(node: yaml.MappingNode, key: str) -> tuple[yaml.Node, yaml.Node] | None:
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value == key:
            return k, v
    return None


def _scalars(node: yaml.Node | None) -> Iterator[yaml.ScalarNode]:
    """The string scalars of a list (or the scalar itself)."""
    if isinstance(node, yaml.ScalarNode):
        yield node
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            if isinstance(item, yaml.ScalarNode):
                yield item


def _last_index(node: yaml.Node) -> int:
    """The end (char index) of the last scalar or flow collection inside ``node``."""
    if isinstance(node, yaml.ScalarNode) or getattr(node, "flow_style", False):
        return node.end_mark.index
    items = node.value if isinstance(node, yaml.SequenceNode) else [n for pair in node.value for n in pair]
    return max((_last_index(n) for n in items), default=node.start_mark.index)


def _rename_metric(text: str) -> str:
    return _RELEASED.sub(lambda m: f"acctop{m.group(1)}", text)


def _metric_scalars(f: _File) -> list[yaml.ScalarNode]:
    out: list[yaml.ScalarNode] = []
    engine = _get(f.root, "engine")
    if engine and isinstance(engine[1], yaml.MappingNode):
        crit = _get(engine[1], "saving_criteria")
        out += [n for n in _scalars(crit[1] if crit else None) if _RELEASED.search(n.value.rpartition(":")[0])]
    for key in ("view", "views"):
        view = _get(f.root, key)
        node = view[1] if view else None
        if isinstance(node, yaml.MappingNode):
            items = _get(node, "items")
            node = items[1] if items else None
        out += [n for n in _scalars(node) if _RELEASED.search(n.value)]
    return out


def _builtin_accuracy(tree: Mapping[str, Any]) -> bool:
    """Whether the experiment's metric is bootstrap-repro's built-in ``accuracy`` (it logs ``acctop<k>``)."""
    model = tree.get("model")
    if not isinstance(model, Mapping) or model.get("import"):
        return False
    metric = model.get("metric")
    if isinstance(metric, str):
        return metric == "accuracy"
    return isinstance(metric, Mapping) and metric.get("name") == "accuracy" and not metric.get("import")


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _effective(files: Mapping[str, _File], rel: str, chain: tuple[str, ...] = ()) -> dict[str, Any] | None:
    """The merged tree of ``rel`` and its includes (the seed's rule: the includes, then the file); None if unknown."""
    f = files[rel]
    if rel in chain or f.missing:
        return None
    tree: dict[str, Any] = {}
    for inc in f.includes:
        parent = _effective(files, inc, chain + (rel,))
        if parent is None:
            return None
        tree = _merge(tree, parent)
    return _merge(tree, {k: v for k, v in f.tree.items() if k != "__include__"})


def _closure(files: Mapping[str, _File], rel: str, seen: set[str] | None = None) -> set[str]:
    seen = set() if seen is None else seen
    if rel not in seen:
        seen.add(rel)
        for inc in files[rel].includes:
            _closure(files, inc, seen)
    return seen


def _read(rel: str, text: str) -> _File | None:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        tree = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    if not isinstance(root, yaml.MappingNode) or not isinstance(tree, dict) or not OPTION_KEYS & set(tree):
        return None
    return _File(rel, text, root, tree)


def _resolve_includes(files: dict[str, _File]) -> None:
    for f in files.values():
        raw = f.tree.get("__include__") or []
        for inc in [raw] if isinstance(raw, str) else raw if isinstance(raw, list) else []:
            if not isinstance(inc, str):
                continue
            near = posixpath.normpath(posixpath.join(posixpath.dirname(f.rel), inc))
            found = next((c for c in (near, posixpath.normpath(inc)) if c in files), None)
            (f.includes if found else f.missing).append(found or inc)


class _Edits:
    """Text edits of one file as ``(start, end, replacement)`` character spans."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.spans: list[tuple[int, int, str]] = []
        self.starts = [0]
        for line in text.splitlines(keepends=True):
            self.starts.append(self.starts[-1] + len(line))

    def line_start(self, line: int) -> int:
        return self.starts[min(line, len(self.starts) - 1)]

    def whole_lines(self, first: int, start_index: int, end_index: int) -> tuple[int, int] | None:
        """The span of the lines holding ``[start_index, end_index)`` when nothing else but a comment is on them."""
        begin = self.line_start(first)
        end_line = self.text.count("\n", 0, end_index)
        end = self.line_start(end_line + 1)
        tail = self.text[end_index:end].strip()
        if self.text[begin:start_index].strip() or (tail and not tail.startswith("#")):
            return None
        return begin, end

    def apply(self) -> str:
        out = self.text
        for start, end, new in sorted(set(self.spans), key=lambda s: (s[0], s[1]), reverse=True):  # an alias: once
            out = out[:start] + new + out[end:]
        return out


def _cuda_edit(f: _File, edits: _Edits) -> tuple[str, Any] | str | None:
    """Move ``misc.cuda`` to ``engine.device`` in ``edits``: ``(device, expected change)``; a str says why not."""
    misc = _get(f.root, "misc")
    if not misc or not isinstance(misc[1], yaml.MappingNode):
        return None
    entry = _get(misc[1], "cuda")
    if not entry:
        return None
    key, value = entry
    if not (isinstance(value, yaml.ScalarNode) and value.tag == _BOOL):
        return None
    device = "cuda" if yaml.safe_load(value.value) else "cpu"
    engine = _get(f.root, "engine")
    if misc[1].flow_style or (engine and (not isinstance(engine[1], yaml.MappingNode) or engine[1].flow_style)):
        return "misc.cuda is left: its section is in flow style ({...}); move it by hand"
    only = len(misc[1].value) == 1
    span = (edits.whole_lines(misc[0].start_mark.line, misc[0].start_mark.index, value.end_mark.index) if only else
            edits.whole_lines(key.start_mark.line, key.start_mark.index, value.end_mark.index))
    if span is None:
        return "misc.cuda is left: it shares its line with other options; move it by hand"
    indent = " " * max(key.start_mark.column, 2)
    if engine:
        first_key = engine[1].value[0][0] if engine[1].value else None
        child = " " * first_key.start_mark.column if first_key is not None else indent
        at = edits.line_start(edits.text.count("\n", 0, _last_index(engine[1])) + 1)
        edits.spans.append((span[0], span[1], ""))
        newline = "" if edits.text[:at].endswith("\n") or at == 0 else "\n"
        edits.spans.append((at, at, f"{newline}{child}device: {device}\n"))
    elif only:
        edits.spans.append((span[0], span[1], f"engine:\n{indent}device: {device}\n"))
    else:
        edits.spans.append((span[0], span[1], ""))
        end = len(edits.text)
        newline = "" if edits.text.endswith("\n") or not edits.text else "\n"
        edits.spans.append((end, end, f"{newline}engine:\n{indent}device: {device}\n"))
    return device, only


def rewrite_options(texts: Mapping[str, str], python: Mapping[str, str]) -> tuple[dict[str, str], list[Note]]:
    """The options files of ``texts`` (relative path -> YAML text) rewritten; and the notes about what was left.

    ``python`` (relative path -> source) is read for the names that make the ``misc.cuda`` rename unsafe.
    """
    files = {rel: f for rel, text in texts.items() if (f := _read(rel, text)) is not None}
    _resolve_includes(files)
    notes: list[Note] = []
    includers: dict[str, set[str]] = {rel: set() for rel in files}
    for rel, f in files.items():
        for inc in f.includes:
            includers[inc].add(rel)
    roots = [rel for rel in files if not includers[rel]]
    experiments = {rel: [r for r in roots if rel in _closure(files, r)] or [rel] for rel in files}
    device_set = sorted(rel for rel, f in files.items() if isinstance(f.tree.get("engine"), dict)
                        and "device" in f.tree["engine"])
    cuda_readers = sorted(f"{rel}:{node.lineno}" for rel, src in python.items() for node in _constants(src)
                          if node.value in ("cuda", "misc.cuda"))
    out: dict[str, str] = {}
    for rel, f in sorted(files.items()):
        edits = _Edits(f.text)
        expected = copy.deepcopy(f.tree)
        for inc in f.missing:
            notes.append(Note(rel, None, f"__include__ {inc!r} is not in the project: its metric names are left"))
        scalars = _metric_scalars(f)
        if scalars:
            trees = [_effective(files, r) for r in experiments[rel]]
            if all(t is not None and _builtin_accuracy(t) for t in trees):
                for node in scalars:
                    raw = f.text[node.start_mark.index:node.end_mark.index]
                    edits.spans.append((node.start_mark.index, node.end_mark.index, _rename_metric(raw)))
                _rename_expected(expected)
            else:
                notes.append(Note(rel, scalars[0].start_mark.line + 1,
                                  "left as it is: accuracy_top<k> names a metric of the project's own (the "
                                  "experiment does not use the built-in accuracy metric, which logs acctop<k>)"))
        misc = f.tree.get("misc")
        if isinstance(misc, dict) and isinstance(misc.get("cuda"), bool):
            node = _get(f.root, "misc")
            entry = _get(node[1], "cuda") if node and isinstance(node[1], yaml.MappingNode) else None
            line = entry[0].start_mark.line + 1 if entry else None
            if entry is None:
                notes.append(Note(rel, None, "misc.cuda is left: it comes from a YAML alias or merge key; "
                                             "move it by hand"))
            elif device_set:
                notes.append(Note(rel, line, f"misc.cuda is left: {device_set[0]} sets engine.device"))
            elif cuda_readers:
                notes.append(Note(rel, line, f"misc.cuda is left: Python code may read it ({cuda_readers[0]}); "
                                             f"engine.device: cpu|cuda is bootstrap-repro's name"))
            else:
                done = _cuda_edit(f, edits)
                if isinstance(done, str):
                    notes.append(Note(rel, line, done))
                elif done is not None:
                    device, only = done
                    del expected["misc"]["cuda"]
                    if only:
                        del expected["misc"]
                    expected["engine"] = {**(expected.get("engine") or {}), "device": device}
        if not edits.spans:
            continue
        new = edits.apply()
        try:
            got = yaml.safe_load(new)
        except yaml.YAMLError:
            got = None
        if got != expected:  # the layout defeated the text edit: leave the file as it was
            notes.append(Note(rel, None, "left as it is: its layout could not be edited safely; rename "
                                         "misc.cuda / accuracy_top<k> by hand"))
            continue
        out[rel] = new
    return out, notes


def _rename_expected(tree: dict[str, Any]) -> None:
    engine = tree.get("engine")
    if isinstance(engine, dict) and isinstance(engine.get("saving_criteria"), list):
        engine["saving_criteria"] = [_rename_metric(c) if isinstance(c, str) and _RELEASED.search(
            c.rpartition(":")[0]) else c for c in engine["saving_criteria"]]
    for key in ("view", "views"):
        view = tree.get(key)
        holder, name = (view, "items") if isinstance(view, dict) else (tree, key)
        items = holder.get(name) if isinstance(holder, dict) else None
        if isinstance(items, list):
            holder[name] = [_rename_metric(v) if isinstance(v, str) else v for v in items]
        elif isinstance(items, str):
            holder[name] = _rename_metric(items)


def _constants(source: str) -> Iterator[Any]:
    import ast

    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node
