"""The ``view`` option's language: items, subplots, view specs and the series they draw.

An *item* is ``<logname>:<key>``: ``logname`` is a JSON file stem in the
experiment dir (``logs`` → ``logs.json``) and ``key`` a logged key
(``train_epoch.loss``).  Items joined with ``+`` overlay their curves in one
subplot.  The ``view`` option is a list of items, a dict ``{name, items,
file_name}`` (or the seed's ``{names, items_plotly, items_tensorboard}``), or a
list of such dicts.

Nothing here imports torch or plotly: it is plain data handling.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bootstrap_repro._metric_names import resolve
from bootstrap_repro.errors import OptionsError, did_you_mean
from bootstrap_repro.logger import load_log
from bootstrap_repro.views._base import Prefix

__all__ = [
    "Item",
    "Panel",
    "ViewSpec",
    "VIEW_NAMES",
    "DEFAULT_LOG",
    "parse_item",
    "parse_items",
    "parse_view_option",
    "default_items",
    "read_log",
    "check_log",
    "load_logs",
    "series",
    "unlogged",
    "unlogged_note",
]

#: Built-in view names.
VIEW_NAMES = ("plotly", "tensorboard")
#: The log every experiment has (``logs.json``).
DEFAULT_LOG = "logs"

_EXPECTED = (
    "expected '<logname>:<key>' such as 'logs:train_epoch.loss' "
    "(join several with '+' to overlay them in one subplot)"
)
_LOGNAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_SPEC_KEYS = ("name", "items", "file_name", "import")
#: Keys of the seed's multi-view form ``{names: [plotly, tensorboard], items_plotly: [...], ...}``.
_NAMES_KEYS = ("names", *(f"items_{name}" for name in VIEW_NAMES), "items", "file_name")
#: Keys of the seed's ``views`` section accepted and unused (bootstrap.pytorch's options/abstract.yaml).
_SEED_KEYS = ("plot_width",)


@dataclass(frozen=True)
class Item:
    """One curve: key ``key`` of log ``log`` (``<exp.dir>/<log>.json``)."""

    log: str
    key: str

    def __str__(self) -> str:
        return f"{self.log}:{self.key}"

    @property
    def label(self) -> str:
        """The legend name: the key alone for the default log."""
        return self.key if self.log == DEFAULT_LOG else str(self)

    @property
    def split(self) -> str:
        """``train_epoch`` for ``train_epoch.loss`` ('' when the key has no dot)."""
        head, dot, _ = self.key.partition(".")
        return head if dot else ""

    @property
    def is_epoch(self) -> bool:
        return self.split.endswith("_epoch")


@dataclass(frozen=True)
class Panel:
    """One subplot: the items overlaid in it and its title."""

    items: tuple[Item, ...]
    title: str


@dataclass
class ViewSpec:
    """One view of the ``view`` option; ``panels is None`` means "every epoch metric"."""

    name: str = "plotly"
    panels: list[Panel] | None = None
    file_name: str = "view.html"
    module: str | None = None  # ``import:`` a module whose factory builds the view
    where: str = "view"
    extra: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- parsing
def _bad_item(where: str, raw: Any, part: str | None = None) -> OptionsError:
    shown = repr(raw) if isinstance(raw, str) else f"{raw!r} ({type(raw).__name__})"
    which = f" (part {part!r})" if part is not None and part != raw else ""
    return OptionsError(f"{where}: bad item {shown}{which}; {_EXPECTED}")


def parse_item(raw: Any, where: str = "view") -> Panel:
    """Parse ``'logs:a+logs:b'`` into a :class:`Panel`; bad text raises :class:`OptionsError`."""
    if not isinstance(raw, str) or not raw.strip():
        raise _bad_item(where, raw)
    items = []
    for part in raw.split("+"):
        part = part.strip()
        log, colon, key = part.partition(":")
        log, key = log.strip(), key.strip()
        if (not colon or not _LOGNAME.match(log) or not key or ":" in key
                or any(c.isspace() for c in key)):
            raise _bad_item(where, raw, part)
        items.append(Item(log, key))
    return Panel(tuple(items), " + ".join(i.label for i in items))


def parse_items(raw: Any, where: str = "view") -> list[Panel]:
    """Parse a list of items (a single string counts as one item)."""
    if raw is None:
        return []
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, Sequence):
        raise OptionsError(
            f"{where}: expected a list of items like [logs:train_epoch.loss], got {type(raw).__name__} {raw!r}"
        )
    return [parse_item(r, where) for r in raw]


def _file_name(value: Any, where: str) -> str:
    if (not isinstance(value, str) or not value.endswith(".html") or "/" in value
            or "\\" in value or value.startswith(".")):
        raise OptionsError(
            f"{where}.file_name: expected a file name ending in .html such as 'view.html', got {value!r}"
        )
    return value


def _parse_spec(raw: Mapping[str, Any], where: str) -> list[ViewSpec]:
    if "names" in raw:  # the seed's multi-view form
        for key in raw:
            if key not in _NAMES_KEYS and key not in _SEED_KEYS and key != "import":
                raise OptionsError(
                    f"{where}.{key}: unknown view key{did_you_mean(str(key), _NAMES_KEYS)} "
                    f"(valid with names: {', '.join(_NAMES_KEYS)})"
                )
        names = raw["names"]
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, Sequence) or not names:
            raise OptionsError(f"{where}.names: expected a list of view names ({', '.join(VIEW_NAMES)}), got {names!r}")
        specs = []
        for name in names:
            sub: dict[str, Any] = {"name": name, "items": raw.get(f"items_{name}", raw.get("items"))}
            if "file_name" in raw and name == "plotly":
                sub["file_name"] = raw["file_name"]
            specs.extend(_parse_spec(sub, where))
        return specs
    for key in raw:
        if key not in _SPEC_KEYS and key not in _SEED_KEYS:
            raise OptionsError(
                f"{where}.{key}: unknown view key{did_you_mean(str(key), _SPEC_KEYS)} "
                f"(valid: {', '.join(_SPEC_KEYS)})"
            )
    if raw.get("import") is not None:
        module = raw["import"]
        if not isinstance(module, str) or not module.strip():
            raise OptionsError(f"{where}.import: expected a module name like 'my.pkg.views', got {module!r}")
        return [ViewSpec(name=str(raw.get("name") or module), module=module, where=where, extra=dict(raw))]
    name = raw.get("name") or "plotly"
    if name not in VIEW_NAMES:
        raise OptionsError(
            f"{where}.name: unknown view {name!r}{did_you_mean(str(name), VIEW_NAMES)} "
            f"(valid: {', '.join(VIEW_NAMES)}; or set {where}.import to a module with a factory)"
        )
    panels = parse_items(raw.get("items"), f"{where}.items") or None
    file_name = _file_name(raw.get("file_name") or "view.html", where)
    return [ViewSpec(name=name, panels=panels, file_name=file_name, where=where)]


def parse_view_option(value: Any, where: str = "view") -> list[ViewSpec]:
    """Parse the whole ``view`` option into view specs (``[]`` when it is empty).

    A dict whose ``items`` are empty means "one subplot per epoch metric".
    """
    if value is None or (isinstance(value, (list, tuple, str)) and not value):
        return []
    if isinstance(value, str):
        value = [value]
    if isinstance(value, Mapping):
        specs = _parse_spec(value, where)
    elif isinstance(value, Sequence):
        if all(isinstance(v, Mapping) for v in value):
            specs = [s for i, v in enumerate(value) for s in _parse_spec(v, f"{where}[{i}]")]
        elif any(isinstance(v, Mapping) for v in value):
            raise OptionsError(
                f"{where}: expected either a list of items or a list of view dicts, not a mix of both; got {value!r}"
            )
        else:
            specs = [ViewSpec(panels=parse_items(value, where), where=where)]
    else:
        raise OptionsError(
            f"{where}: expected a list of items like [logs:train_epoch.loss], a dict "
            f"{{name, items, file_name}} or a list of such dicts, got {type(value).__name__} {value!r}"
        )
    seen: dict[str, str] = {}
    for spec in specs:
        if spec.name == "plotly":
            if spec.file_name in seen:
                raise OptionsError(
                    f"{spec.where}.file_name: {spec.file_name!r} is already written by {seen[spec.file_name]}; "
                    f"give each plotly view its own file_name"
                )
            seen[spec.file_name] = spec.where
    return specs


# --------------------------------------------------------------------------- data
def default_items(logs: Mapping[str, Mapping[str, Any]], log_names: Sequence[str] | None = None) -> list[Panel]:
    """One subplot per epoch metric: ``train_epoch.loss`` and ``eval_epoch.loss`` overlaid."""
    groups: dict[str, list[Item]] = {}
    for log in log_names if log_names is not None else list(logs):
        for key, values in logs.get(log, {}).items():
            split, dot, metric = key.partition(".")
            if (not dot or not split.endswith("_epoch") or not metric or metric == "epoch"
                    or not isinstance(values, (list, Prefix))):
                continue
            title = metric if log == DEFAULT_LOG else f"{log}:{metric}"
            groups.setdefault(title, []).append(Item(log, key))
    return [Panel(tuple(items), title) for title, items in groups.items()]


def read_log(path: str | Path) -> dict[str, list[Any]]:
    """Read one ``<log>.json`` (and the values flushed to its journal since); a missing, partial or
    corrupt file reads as ``{}``."""

    def parse(text: bytes | None) -> Any:
        try:
            return json.loads(text.decode("utf-8")) if text is not None else {}
        except (ValueError, RecursionError):
            return {}

    try:
        data = load_log(path, parse)
    except OSError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): v for k, v in data.items() if isinstance(v, list)}


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and (isinstance(v, int) or math.isfinite(v))


def read_log_object(path: str | Path, fix: str) -> dict[str, Any]:
    """A logs file as the JSON object it must be; anything else is a one-line :class:`OptionsError` ending in ``fix``."""
    path = Path(path)
    damaged = "the logs file is damaged (was it edited or copied in part?)"
    try:  # the file, and the values flushed to its journal since it was last written whole
        data = load_log(path, lambda text: json.loads(text.decode("utf-8") if text is not None
                                                      else path.read_text(encoding="utf-8")))
    except OSError as exc:
        raise OptionsError(f"{path}: cannot be read ({exc.strerror or exc}); check its permissions") from None
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else " ".join(str(exc).split())[:120]
        if "integer string conversion" in reason:
            reason = "a number of more than 4300 digits"
        raise OptionsError(f"{path}: not valid JSON ({reason}); {damaged}: {fix}") from None
    if not isinstance(data, dict):
        raise OptionsError(f"{path}: expected a JSON object of lists, got {type(data).__name__}; {damaged}: {fix}")
    return data


def check_log(path: str | Path) -> list[str]:
    """Read ``<log>.json`` strictly (``bootstrap-repro view``): what the view will leave out or draw oddly.

    A file that is not UTF-8 JSON holding an object raises a one-line :class:`OptionsError`
    (the logger writes it whole, so it was damaged); keys whose value is not a list, and lists
    holding values that are not finite numbers (NaN, text, nested lists), give one warning each.
    """
    data = read_log_object(path, "restore it, then run view again")
    notes = []
    not_lists = [k for k, v in data.items() if not isinstance(v, list)]
    if not_lists:
        notes.append(f"{path}: {len(not_lists)} key(s) do not hold a list of values (e.g. {not_lists[0]!r}); "
                     f"the view leaves them out")
    odd = [(k, next(x for x in v if not _finite(x))) for k, v in data.items()
           if isinstance(v, list) and not all(_finite(x) for x in v)]
    if odd:
        k, x = odd[0]
        notes.append(f"{path}: {len(odd)} key(s) hold values that are not finite numbers (e.g. {k!r}: "
                     f"{repr(x)[:40]}); their curves may have gaps")
    return notes


def load_logs(exp_dir: Path, names: Sequence[str],
              given: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Mapping[str, Any]]:
    """The values of each log in ``names``: from ``given`` when there, else from disk."""
    out: dict[str, Mapping[str, Any]] = {}
    for name in names:
        if given is not None and name in given:
            out[name] = given[name]
        else:
            out[name] = read_log(exp_dir / f"{name}.json")
    return out


def series(logs: Mapping[str, Mapping[str, Any]], item: Item) -> tuple[Sequence[Any] | None, Sequence[Any]]:
    """``(x, y)`` of one item; ``x is None`` means the index ``0..n-1``.

    For ``<split>_epoch.<name>`` the x values are ``<split>_epoch.epoch`` of the
    same log when it has the same length; otherwise (and for batch keys) the index.
    Either spelling of a metric draws it (``accuracy_top1`` or ``acctop1``, see
    :mod:`bootstrap_repro._metric_names`).
    """
    values = logs.get(item.log, {})
    y = values.get(resolve(item.key, values) or item.key)
    if not isinstance(y, (list, Prefix)):
        return None, []
    if item.is_epoch and not item.key.endswith(".epoch"):
        x = values.get(f"{item.split}.epoch")
        if isinstance(x, (list, Prefix)) and len(x) == len(y):
            return x, y
    return None, y


def panels_and_logs(exp_dir: Any, panels: list[Panel] | None, logs: Any = None) -> tuple[list[Panel], Any]:
    """The panels to draw (the default ones when ``panels`` is None) and the logs they need.

    Logs missing from ``logs`` are read from ``exp_dir``.
    """
    if panels is None:
        names = [DEFAULT_LOG, *(n for n in (logs or {}) if n != DEFAULT_LOG)]
        data = load_logs(exp_dir, names, logs)
        return default_items(data, names), data
    names = list(dict.fromkeys(i.log for p in panels for i in p.items))
    return panels, load_logs(exp_dir, names, logs)


def unlogged(panels: Sequence[Panel], logs: Mapping[str, Mapping[str, Any]]) -> list[Item]:
    """The items of ``panels`` whose log holds no such key (under either metric spelling): empty curves."""
    return [i for i in dict.fromkeys(i for p in panels for i in p.items)
            if resolve(i.key, logs.get(i.log) or {}) is None]


def unlogged_note(items: Sequence[Item], logs: Mapping[str, Mapping[str, Any]], limit: int = 3) -> str:
    """One line naming the ``items`` never logged (the first ``limit``), and what to write instead."""
    parts = []
    for item in items[:limit]:
        have = logs.get(item.log) or {}
        head, dot, name = item.key.rpartition(".")
        siblings = [k[len(head + dot):] for k in have  # the values logged beside it (eval_epoch.*), not its counter
                    if k.rpartition(".")[0] == head and not k.endswith(".epoch")]
        why = (f"{item.log}.json has no such key{did_you_mean(name, siblings, head + dot)}" if have
               else f"no {item.log}.json or it is empty")
        parts.append(f"{item} ({why})")
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return (f"view: {len(items)} item{'s' if len(items) != 1 else ''} never logged, no curve drawn: "
            f"{', '.join(parts)}{more}; fix the view option")
