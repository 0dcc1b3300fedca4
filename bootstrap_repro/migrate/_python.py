"""Python sources: ``bootstrap.*`` imports rewritten to bootstrap-repro's, where the code's use allows it.

The rewrite is conservative: an import moves to bootstrap-repro's API only when the name there
behaves the same for every use the module makes of it (checked on its syntax tree); anything else is
left as it is (the compatibility layer keeps it working) with a :class:`~._notes.Note` saying why.
Only the import statements change, as text spans located by :mod:`ast`: the rest of the file, its
comments and formatting included, is untouched.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from bootstrap_repro.migrate._notes import Note

__all__ = ["Target", "IMPORTS", "MODULES", "SEED_ONLY_OPTIONS", "rewrite_python"]


@dataclass(frozen=True)
class Target:
    """Where a seed name lives in bootstrap-repro's API, and which use check it needs (None: any use)."""

    module: str
    name: str
    check: str | None = None


#: ``(seed module, name)`` -> bootstrap-repro's equivalent.  Each is the very object the compatibility
#: layer serves, or (with a check) one that behaves the same for the uses the check accepts.
IMPORTS: dict[tuple[str, str], Target] = {
    ("bootstrap.lib.options", "Options"): Target("bootstrap_repro.options", "Options", "options"),
    ("bootstrap.lib.logger", "Logger"): Target("bootstrap_repro.logger", "Logger", "logger"),
    ("bootstrap.datasets.dataset", "Dataset"): Target("bootstrap_repro.datasets", "Dataset", "dataset"),
    ("bootstrap.models.model", "Model"): Target("bootstrap_repro.models", "Model"),
    ("bootstrap.models.model", "DefaultModel"): Target("bootstrap_repro.models", "DefaultModel"),
    ("bootstrap.models.model", "SimpleModel"): Target("bootstrap_repro.models", "SimpleModel"),
    ("bootstrap.engines.engine", "Engine"): Target("bootstrap_repro.engines", "Engine", "engine"),
    ("bootstrap.engines.logger", "LoggerEngine"): Target("bootstrap_repro.engines", "Engine", "engine"),
    ("bootstrap.engines", "factory"): Target("bootstrap_repro.engines", "factory"),
    ("bootstrap.engines.factory", "factory"): Target("bootstrap_repro.engines", "factory"),
    ("bootstrap.datasets", "factory"): Target("bootstrap_repro.datasets", "factory"),
    ("bootstrap.datasets.factory", "factory"): Target("bootstrap_repro.datasets", "factory"),
    ("bootstrap.models", "factory"): Target("bootstrap_repro.models", "factory"),
    ("bootstrap.models.factory", "factory"): Target("bootstrap_repro.models", "factory"),
    ("bootstrap.models.networks.factory", "factory"): Target("bootstrap_repro.models", "network_factory"),
    ("bootstrap.models.criterions.factory", "factory"): Target("bootstrap_repro.models", "criterion_factory"),
    ("bootstrap.models.metrics.factory", "factory"): Target("bootstrap_repro.models", "metric_factory"),
    ("bootstrap.models.criterions.nll", "NLLLoss"): Target("bootstrap_repro.models", "NLLLoss"),
    ("bootstrap.models.criterions.cross_entropy", "CrossEntropyLoss"): Target("bootstrap_repro.models",
                                                                              "CrossEntropyLoss"),
    ("bootstrap.models.criterions.bce", "BCEWithLogitsLoss"): Target("bootstrap_repro.models", "BCEWithLogitsLoss"),
}

#: Seed modules whose names stay on the compatibility layer though bootstrap-repro has look-alikes: why.
KEPT: dict[str, str] = {
    "bootstrap.models.metrics.accuracy": "the seed's Accuracy logs accuracy_top<k> and its accuracy() takes "
                                         "ignore_index (bootstrap_repro.models.Accuracy logs acctop<k>); "
                                         "the compatibility layer keeps the seed's",
}

#: ``from bootstrap import X`` -> ``from bootstrap_repro import X`` when the module only uses ``X.factory``.
MODULES: dict[str, str] = {"engines": "bootstrap_repro.engines", "datasets": "bootstrap_repro.datasets",
                           "models": "bootstrap_repro.models"}

#: Attributes of the seed-API ``Options`` that bootstrap-repro's lacks (a test keeps this list complete).
SEED_ONLY_OPTIONS = frozenset({"MissingOptionsException", "add_options", "has_key", "load_yaml_opts", "options",
                               "save_yaml_opts", "str_to_bool", "unlock"})
#: ``Logger()`` methods that bootstrap-repro's logger has with the seed's meaning: name -> keywords allowed.
LOGGER_METHODS: dict[str, frozenset[str]] = {"log_value": frozenset({"should_print"}), "flush": frozenset(),
                                             "log_message": frozenset()}

_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
_RELEASED_METRIC = re.compile(r"(?<![A-Za-z0-9_])accuracy_top[0-9]+(?![A-Za-z0-9_])")


class _Module:
    """A parsed module with parent links and helpers for the use checks."""

    def __init__(self, tree: ast.Module) -> None:
        self.tree = tree
        self.parent: dict[ast.AST, ast.AST] = {}
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                self.parent[child] = node

    def loads(self, name: str, within: ast.AST | None = None) -> Iterator[ast.Name]:
        for node in ast.walk(within or self.tree):
            if isinstance(node, ast.Name) and node.id == name:
                yield node

    def function_of(self, node: ast.AST) -> ast.AST | None:
        while node in self.parent:
            node = self.parent[node]
            if isinstance(node, _FUNCTIONS):
                return node
        return None


def _bare_call(mod: _Module, name: ast.Name) -> ast.Call | None:
    """``name()`` (no argument) inside a function, or None."""
    call = mod.parent.get(name)
    if (isinstance(call, ast.Call) and call.func is name and not call.args and not call.keywords
            and mod.function_of(call) is not None):
        return call
    return None


def _check_uses(mod: _Module, local: str, use_ok: Callable[[ast.Call], str | None]) -> str | None:
    """Why ``local`` cannot move (the first use that is not ``local()`` with an accepted use), or None."""
    for name in mod.loads(local):
        if not isinstance(name.ctx, ast.Load):
            return f"{local} is reassigned (line {name.lineno})"
        call = _bare_call(mod, name)
        if call is None:
            return f"{local} is used other than as {local}() inside a function (line {name.lineno})"
        why = use_ok(call)
        if why:
            return why
    return None


def _options_use(mod: _Module, call: ast.expr, depth: int = 0) -> str | None:
    """``Options()[...]``, ``Options().get(...)``, ``k in Options()``, ``opt = Options()`` then the same on ``opt``."""
    parent = mod.parent.get(call)
    if isinstance(parent, ast.Attribute):
        if parent.attr in SEED_ONLY_OPTIONS:
            return f"Options().{parent.attr} is the seed's API only (line {parent.lineno})"
        return None
    if isinstance(parent, ast.Subscript) and parent.value is call:
        return None
    if isinstance(parent, ast.Compare) and call in parent.comparators and all(
            isinstance(op, (ast.In, ast.NotIn)) for op in parent.ops):
        return None
    if (depth == 0 and isinstance(parent, ast.Assign) and len(parent.targets) == 1
            and isinstance(parent.targets[0], ast.Name)):
        var, scope = parent.targets[0].id, mod.function_of(call)
        for use in mod.loads(var, scope):
            why = _options_use(mod, use, depth + 1) if isinstance(use.ctx, ast.Load) else None
            if why:
                return why
        return None
    return f"Options() is passed on or kept as a whole (line {call.lineno})"


def _logger_use(mod: _Module, call: ast.Call) -> str | None:
    """``Logger()(msg, ...)``, ``Logger().log_value(name, value[, should_print=])``, ``Logger().flush()``."""
    parent = mod.parent.get(call)
    if isinstance(parent, ast.Call) and parent.func is call:
        return None if not parent.keywords else (
            f"Logger()(..., {parent.keywords[0].arg}=...) is the seed's API only (line {parent.lineno})")
    if isinstance(parent, ast.Attribute) and parent.attr in LOGGER_METHODS:
        method = mod.parent.get(parent)
        if isinstance(method, ast.Call) and method.func is parent:
            allowed = LOGGER_METHODS[parent.attr]
            extra = [k.arg for k in method.keywords if k.arg not in allowed]
            if not extra and (parent.attr != "log_value" or len(method.args) <= 2):
                return None
        return f"Logger().{parent.attr}(...) with the seed's other arguments (line {parent.lineno})"
    what = f"Logger().{parent.attr}" if isinstance(parent, ast.Attribute) else "Logger() kept as a whole"
    return f"{what} is the seed's API only (line {call.lineno})"


def _init_calls(mod: _Module, cls: ast.ClassDef, base: str) -> Iterator[tuple[ast.Call, list[ast.expr]]]:
    """Each ``super().__init__(...)`` / ``Base.__init__(self, ...)`` call of ``cls``, with its arguments (no self)."""
    for node in ast.walk(cls):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "__init__"):
            continue
        owner = node.func.value
        if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
            yield node, list(node.args)
        elif isinstance(owner, ast.Name) and owner.id == base:
            yield node, list(node.args[1:])


def _subclasses(mod: _Module, base: str) -> Iterator[ast.ClassDef]:
    for node in ast.walk(mod.tree):
        if isinstance(node, ast.ClassDef) and any(isinstance(b, ast.Name) and b.id == base for b in node.bases):
            yield node


def _base_uses_only(mod: _Module, local: str, call_ok: Callable[[ast.Call, list[ast.expr]], bool],
                    what: str) -> str | None:
    """Why ``local`` cannot move, or None: it must be a base class whose ``__init__`` calls pass ``call_ok``,
    or be called (inside functions) as ``call_ok`` allows."""
    bases = {id(b) for c in _subclasses(mod, local) for b in c.bases}
    for name in mod.loads(local):
        if id(name) in bases:
            continue
        parent = mod.parent.get(name)
        if isinstance(parent, ast.Attribute) and parent.attr == "__init__":
            continue  # Base.__init__(self, ...): checked below
        if (isinstance(parent, ast.Call) and parent.func is name and mod.function_of(parent) is not None
                and call_ok(parent, list(parent.args))):
            continue
        return f"{local} is used other than as a base class (line {name.lineno})"
    for cls in _subclasses(mod, local):
        for call, args in _init_calls(mod, cls, local):
            if not call_ok(call, args):
                return f"{cls.name}: {what} (line {call.lineno})"
    return None


def _seed_dataset_call(call: ast.Call, args: list[ast.expr]) -> bool:
    """The seed's ``Dataset(dir_data, split, ...)`` told apart as bootstrap-repro's ``Dataset`` tells it apart."""
    if any(isinstance(a, ast.Starred) for a in args) or any(k.arg is None for k in call.keywords):
        return False
    if len(args) >= 2:
        return not (isinstance(args[1], ast.Constant) and not isinstance(args[1].value, str))
    return len(args) == 1 and any(k.arg == "split" for k in call.keywords)


def _no_arguments(call: ast.Call, args: list[ast.expr]) -> bool:
    return not args and not call.keywords


def _why_not(mod: _Module, local: str, target: Target) -> str | None:
    if target.check == "options":
        return _check_uses(mod, local, lambda call: _options_use(mod, call))
    if target.check == "logger":
        return _check_uses(mod, local, lambda call: _logger_use(mod, call))
    if target.check == "dataset":
        return _base_uses_only(mod, local, _seed_dataset_call,
                               "the dataset's __init__ call is not Dataset(dir_data, split, ...) with positional "
                               "dir_data and split, which bootstrap-repro's Dataset reads as the seed's")
    if target.check == "engine":
        return _base_uses_only(mod, local, _no_arguments,
                               "Engine.__init__ with arguments (bootstrap.pytorch's Engine took none)")
    return None


def _module_uses_only_factory(mod: _Module, local: str) -> str | None:
    for name in mod.loads(local):
        parent = mod.parent.get(name)
        if not (isinstance(name.ctx, ast.Load) and isinstance(parent, ast.Attribute) and parent.attr == "factory"):
            return f"{local}.{getattr(parent, 'attr', '?')} is the seed's API only (line {name.lineno})"
    return None


def _statement_span(lines: list[str], node: ast.stmt) -> tuple[int, int] | None:
    """``(first line, last line)`` (0-based) of ``node`` when it fills its lines alone (no ``;``)."""
    first, last = node.lineno - 1, (node.end_lineno or node.lineno) - 1
    if lines[first][: node.col_offset].strip():
        return None
    tail = lines[last][node.end_col_offset or 0:]
    if tail.strip() and not tail.strip().startswith("#"):
        return None
    return first, last


def _alias(name: str, asname: str | None) -> str:
    return f"{name} as {asname}" if asname and asname != name else name


def rewrite_python(source: str, path: str) -> tuple[str, list[Note]]:
    """``source`` with its movable ``bootstrap.*`` imports rewritten, and the notes about what was left."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError) as exc:
        line = getattr(exc, "lineno", None)
        return source, [Note(path, line, "left as it is: not valid Python 3 "
                                         f"({getattr(exc, 'msg', exc)}); migrate it by hand")]
    mod = _Module(tree)
    lines = source.splitlines(keepends=True)
    notes: list[Note] = []
    edits: list[tuple[int, int, str]] = []  # (first line, last line, new text)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name == "bootstrap" or a.name.startswith("bootstrap.")
                                                for a in node.names):
            notes.append(Note(path, node.lineno, "left as it is: `import bootstrap...` (module attributes); "
                                                 "import the names from bootstrap_repro by hand"))
            continue
        if not (isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                and (node.module == "bootstrap" or node.module.startswith("bootstrap."))):
            continue
        moved: dict[str, list[str]] = {}
        kept: list[str] = []
        for alias in node.names:
            local = alias.asname or alias.name
            if node.module == "bootstrap" and alias.name in MODULES:
                why = _module_uses_only_factory(mod, local)
                target: Target | None = Target("bootstrap_repro", alias.name) if why is None else None
            else:
                target = IMPORTS.get((node.module, alias.name))
                why = None if target is None else _why_not(mod, local, target)
                if target is None:
                    why = KEPT.get(node.module, "bootstrap-repro has no equivalent; the compatibility layer keeps it "
                                                "working")
            if target is None or why is not None:
                kept.append(_alias(alias.name, alias.asname))
                notes.append(Note(path, node.lineno, f"left as it is: `from {node.module} import {alias.name}`: {why}"))
                continue
            moved.setdefault(target.module, []).append(_alias(target.name, local))
        if not moved:
            continue
        span = _statement_span(lines, node)
        if span is None:
            notes.append(Note(path, node.lineno, "left as it is: the import shares its line with other code"))
            continue
        indent = lines[span[0]][: node.col_offset]
        new = [f"{indent}from {module} import {', '.join(names)}" for module, names in moved.items()]
        if kept:
            new.append(f"{indent}from {node.module} import {', '.join(kept)}")
        tail = lines[span[1]][node.end_col_offset or 0:].rstrip("\r\n")
        eol = lines[span[1]][len(lines[span[1]].rstrip("\r\n")):]
        edits.append((span[0], span[1], "\n".join(new) + tail + eol))
    for first, last, text in sorted(edits, reverse=True):
        lines[first:last + 1] = [text]
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _RELEASED_METRIC.search(node.value):
            notes.append(Note(path, node.lineno, f"left as it is: {node.value!r} names a metric by its released name; "
                                                 f"bootstrap-repro's accuracy logs acctop<k> (either spelling "
                                                 f"finds it in saving_criteria, views and compare)"))
    return "".join(lines), notes
