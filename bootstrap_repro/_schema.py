"""The declared type and range of every platform option, checked before anything is created.

The schema is a set of pydantic (v2) models in strict mode: a value has the declared type or the
run is refused (``engine.compile: "abc"`` is not "truthy", ``engine.nb_epochs: 2.0`` is not an int),
numbers are range-checked and must be finite, enums are ``Literal``. pydantic was chosen over
hand-written checks or ``jsonschema`` because its models are typed Python (the schema *is* the
documentation of each key), it reports every error with its location and the offending input, and
its strict mode refuses coercions YAML users trip on. Keys the platform does not know (a plugin's
``dataset.my_key``) pass through (``extra="allow"``). A near miss of a platform key (:func:`typo`:
``engine.nb_epoch``, ``exp.resum``, a top-level ``enigne``) is refused when that key is not set and
no plugin owns the section (the platform would silently use its default), else it is one warning
(:func:`near_misses`). The options of the built-in network, criterion and metric are declared too
(``model.network.hidden``, ``model.metric.topk``) when one of them is used, and :func:`check`
turns any refusal into one :class:`OptionsError` line naming the key, the file where it is
written (an ``__include__``d file included) or the ``--key`` flag, and what is expected.

Every ``import`` key of the tree and every ``engine.hooks`` entry must be an absolute module name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model

from bootstrap_repro._metric_names import split_criterion
from bootstrap_repro.errors import OptionsError
from bootstrap_repro.plugins import is_module_name

__all__ = ["check", "typo", "near_misses", "MAX_EPOCHS", "MAX_SEED", "MAX_COUNT", "MAX_THREADS"]

#: Upper bounds that no real run reaches, so that a typo (``1e9``) is refused instead of looping for ever.
MAX_EPOCHS = 10**6
MAX_SEED = 2**63 - 1
#: Bound of a size or a count (``dataset.batch_size``, ``engine.print_freq``...): a C int, as torch and the
#: ``DataLoader`` take them; a bigger value fails deep in the run (``islice``, ``sys.maxsize``).
MAX_COUNT = 2**31 - 1
#: Bound of ``dataset.nb_threads`` here; the run then allows 8 per CPU and says so (``run.py``).
MAX_THREADS = MAX_COUNT
#: Where an experiment dir can never be (kernel and device file systems).
_SYSTEM_ROOTS = ("/proc", "/sys", "/dev")
_PATH_MAX = 4095
_NAME_MAX = 255


class _Section(BaseModel):
    """An options section: strict types, unknown keys allowed (plugins add their own)."""

    model_config = ConfigDict(extra="allow", strict=True, hide_input_in_errors=False)


def check_dir_path(value: str | None) -> str | None:
    if value is None:
        return None
    if "\x00" in value:
        raise ValueError("a path cannot hold a NUL character")
    raw = os.fsencode(value)
    if len(raw) > _PATH_MAX:
        raise ValueError(f"a path of {len(raw)} bytes is longer than the system's limit ({_PATH_MAX})")
    if any(len(part) > _NAME_MAX for part in raw.split(b"/")):
        raise ValueError(f"a path component is longer than the system's limit ({_NAME_MAX} bytes)")
    if not value.strip():
        raise ValueError("must name a directory")
    absolute = os.path.abspath(value)
    if any(absolute == root or absolute.startswith(root + "/") for root in _SYSTEM_ROOTS):
        raise ValueError("is under a kernel file system (/proc, /sys, /dev); choose a dir on a disk")
    return value


def _module_names(value: list[str]) -> list[str]:
    for name in value:
        if not is_module_name(name):
            raise ValueError(f"{name!r} is not an absolute module name like 'my.pkg.hooks'")
    return value


def _criteria(value: list[str]) -> list[str]:
    for item in value:
        name, way = split_criterion(item)  # the seed's older NAME:lt / NAME:gt are NAME:min / NAME:max
        if not name or way is None:
            raise ValueError(f"{item!r} is not NAME:min or NAME:max (e.g. loss:min, acctop1:max)")
    return value


def _env_names(value: Any) -> Any:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.isidentifier() for v in value):
        raise ValueError("expected a list of environment variable names like [MY_SCALE]")
    return value


def _globs(value: Any) -> Any:
    if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) and v for v in value)):
        raise ValueError("expected a list of path globs like ['*.log', 'cache/**'] (or null)")
    return value


PosInt = Annotated[int, Field(ge=1, le=MAX_COUNT)]
NonNegInt = Annotated[int, Field(ge=0, le=MAX_COUNT)]
Size = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1)]


class Exp(_Section):
    dir: Annotated[str | None, AfterValidator(check_dir_path)] = None
    resume: Name | None = None
    max_untracked_mb: Size | None = None
    env_keys: Annotated[Any, AfterValidator(_env_names)] = []
    env_ignore: Annotated[Any, AfterValidator(_env_names)] = []
    secret_globs: Annotated[Any, AfterValidator(_globs)] = None
    inputs_ignore: Annotated[Any, AfterValidator(_globs)] = []
    max_input_gb: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 20
    max_inputs_archive_mb: Size = 50


class Misc(_Section):
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] | None = 1337
    cuda: bool | None = None
    deterministic: bool = False


class Engine(_Section):
    name: Name = "default"
    import_: Name | None = Field(None, alias="import")
    nb_epochs: Annotated[int, Field(ge=1, le=MAX_EPOCHS)] = 1
    print_freq: NonNegInt = 10
    log_batches: bool = False
    saving_criteria: Annotated[list[str], AfterValidator(_criteria)] = []
    device: Name = "auto"
    nan_check: bool = True
    progress_bar: bool = True
    amp: Literal["none", "bf16", "fp16"] = "none"
    compile: bool = False
    channels_last: bool = False
    hooks: Annotated[list[str], AfterValidator(_module_names)] = []


class Dataset(_Section):
    name: Name | None = None
    train_split: str | None = "train"
    eval_split: str | None = "val"
    nb_threads: Annotated[int, Field(ge=0, le=MAX_THREADS)] = 0
    batch_size: PosInt = 64
    dir: str | None = None
    shuffle: bool = True
    pin_memory: bool = True


class Scheduler(_Section):
    name: Name | None = None
    step_size: PosInt = 1
    gamma: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 0.1
    T_max: PosInt | None = None  # noqa: N815 - torch's argument name


class Optimizer(_Section):
    name: Name | None = None
    lr: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1e-3
    momentum: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0
    weight_decay: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0
    grad_clip: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = None
    lr_scheduler: Scheduler | None = None


class Metric(_Section):
    topk: Annotated[list[PosInt], Field(min_length=1)] | PosInt = [1]


class Part(_Section):
    name: Name | None = None


class Model(_Section):
    name: Name = "default"
    network: Part | Name | None = None
    criterion: Part | Name | None = None
    metric: Metric | Name | None = None


class Docker(_Section):
    """``runtime.docker``: its values are checked by the Docker runtime (``runtimes/_docker.py``) when it is used."""

    #: Its keys (for :func:`typo`).
    keys: ClassVar[tuple[str, ...]] = ("image", "dockerfile", "build_args", "gpus", "shm_size", "env", "mounts",
                                       "network")


class Slurm(_Section):
    """``runtime.slurm``: the job's resources (sbatch parameters); the partition is checked with ``sinfo``."""

    partition: Name | None = None
    time: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 60  #: minutes
    nodes: PosInt = 1
    gpus_per_node: NonNegInt = 0
    cpus_per_task: PosInt | None = None
    mem_gb: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    account: Name | None = None
    qos: Name | None = None
    constraint: Name | None = None
    setup: list[str] = []
    additional: dict[str, Any] = {}
    folder: Name | None = None
    inner: Literal["local", "docker"] = "local"
    signal_delay_s: NonNegInt = 90
    max_requeues: NonNegInt = 3


class Runtime(_Section):
    nproc_per_node: PosInt = 1
    nnodes: PosInt = 1
    node_rank: NonNegInt = 0
    rdzv_endpoint: Name | None = None
    rdzv_id: str | int | None = None
    name: Literal["local", "docker", "slurm"] = "local"
    docker: Docker = Docker()
    slurm: Slurm = Slurm()


class Tree(_Section):
    exp: Exp = Exp()
    misc: Misc = Misc()
    engine: Engine = Engine()
    dataset: Dataset = Dataset()
    optimizer: Optimizer | None = None
    model: Model | None = None
    runtime: Runtime = Runtime()


# ---- the options of the built-in network, criterion and metric (checked when ``name`` picks one, without ``import``)
# Their types only: the classes check the ranges themselves (``hidden: -1`` is the network's refusal).
class _Part(_Section):
    model_config = ConfigDict(extra="allow", strict=True, hide_input_in_errors=False, defer_build=True)  # on first use


# (made with create_model: real types, not annotation strings to evaluate, and built on first use)
MLP = create_model("MLP", __base__=_Part, input_dim=(int, 64), hidden=(int | list[int], 64), nb_classes=(int, 10),
                   dropout=(float, 0.0), output=(str, "log_softmax"))
LeNet = create_model("LeNet", __base__=_Part, nb_classes=(int, 10), channels=(list[int], [32, 64]),
                     in_channels=(int, 1), hidden=(int, 128), dropout=(float, 0.0), output=(str, "log_softmax"))
ClassLoss = create_model("ClassLoss", __base__=_Part, target_key=(str, "class_id"), label_smoothing=(float, 0.0))
BCELoss = create_model("BCELoss", __base__=_Part, pos_weight=(float | None, None))
Accuracy = create_model("Accuracy", __base__=_Part, topk=(list[int], [1, 5]), target_key=(str, "class_id"))

#: ``model.<part>.name`` -> the schema of that built-in part's options.
BUILTIN_PARTS: dict[str, dict[str, type[_Part]]] = {
    "network": {"mlp": MLP, "lenet": LeNet},
    "criterion": {"nll": ClassLoss, "cross_entropy": ClassLoss, "bce": BCELoss},
    "metric": {"accuracy": Accuracy},
}


def _builtin_parts(tree: Mapping[str, Any]) -> Iterator[tuple[str, type[_Part], Mapping[str, Any]]]:
    """``(part, schema, options)`` of each built-in part the model section picks (no ``import`` anywhere)."""
    model = tree.get("model")
    if not isinstance(model, Mapping) or model.get("import"):
        return
    for part, schemas in BUILTIN_PARTS.items():
        sub = model.get(part)
        if isinstance(sub, Mapping) and not sub.get("import") and isinstance(sub.get("name"), str) \
                and sub["name"] in schemas:
            yield part, schemas[sub["name"]], sub


# ---- near misses of platform keys
def _fields(model: type[BaseModel]) -> frozenset[str]:
    return frozenset(f.alias or name for name, f in model.model_fields.items())


#: The sections whose keys the platform owns -> the keys it reads there.  An unknown key of one of
#: them that is a near miss of one of these keys is a typo (:func:`near_misses`).  Not checked here:
#: ``model.network/criterion/metric`` and ``optimizer.lr_scheduler`` (the built-in classes refuse
#: unknown keys themselves, with a did-you-mean; a plugin's part owns its keys), and ``view``.
KNOWN_KEYS: dict[str, frozenset[str]] = {
    "": _fields(Tree) | {"view", "views"},  # the seed read `views` too
    "exp": _fields(Exp),
    "misc": _fields(Misc),
    "engine": _fields(Engine) | {"debug"},  # the seed's engine.debug (a few batches per epoch)
    "dataset": _fields(Dataset) | {"import"},
    "optimizer": _fields(Optimizer) | {"import"},
    "model": _fields(Model) | {"import"},
    "runtime": _fields(Runtime),
    "runtime.docker": frozenset(Docker.keys),
    "runtime.slurm": _fields(Slurm),
}
#: ``model.name`` values the platform builds (``bootstrap_repro.models._factory.MODELS``); any other is a plugin's.
BUILTIN_MODELS = frozenset({"default", "simple"})


def _edits(a: str, b: str) -> int:
    """The number of single-character edits (insert, delete, replace, swap two neighbours) from ``a`` to ``b``."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def _near(key: str, known: str, most: int = 2) -> int | None:
    """How far ``key`` is from ``known`` when it reads as a typo of it, else None.

    A typo is one edit (two for a key of 9+ characters, at ``most``); a key of 2-3 characters only has
    a doubled or a swapped letter (``lrr``, ``epx``): ``dim`` is not a typo of ``dir``. Case is ignored.
    """
    a, b = key.lower(), known.lower()
    if key == known or abs(len(a) - len(b)) > 2:
        return None
    d = _edits(a, b)
    if len(b) >= 9:
        return d if d <= min(2, most) else None
    if len(b) >= 4:
        return d if d <= 1 else None
    doubled = len(a) == len(b) + 1 and any(a == b[:i] + b[i] + b[i:] for i in range(len(b)))
    swapped = len(a) == len(b) and sorted(a) == sorted(b) and d <= 1
    return d if doubled or swapped or a == b else None


def typo(key: str, known: Iterable[str], most: int = 2) -> str | None:
    """The known key that ``key`` is a typo of (the nearest), or None; ``most``: the edits allowed to a long key."""
    found = [(d, k) for k in known if (d := _near(key, k, most)) is not None]
    return min(found)[1] if found else None


def _written(origins: Mapping[str, str] | None, overrides: Mapping[str, Any], tree: Mapping[str, Any]) -> set[str]:
    """Every dotted key the user set (in a file, ``__include__``d ones too, or as a flag), with its parent keys.

    Without ``origins`` (a tree not loaded from a file), every key of ``tree`` counts as set.
    """
    keys = set(overrides)
    if origins is None:
        stack: list[tuple[str, Any]] = [("", tree)]
        while stack:
            prefix, node = stack.pop()
            for k, v in node.items():
                key = f"{prefix}{k}"
                keys.add(key)
                if isinstance(v, Mapping):
                    stack.append((key + ".", v))
        return keys
    keys.update(origins)
    for key in list(keys):
        while "." in key:
            key = key.rpartition(".")[0]
            if key in keys:
                break
            keys.add(key)
    return keys


def _plugin_owned(section: str, node: Mapping[str, Any]) -> bool:
    """Whether a plugin provides the component of ``section`` (its ``import``; a plugin's ``model.name``)."""
    if node.get("import"):
        return True
    return section == "model" and isinstance(node.get("name"), str) and node["name"] not in BUILTIN_MODELS


def near_misses(tree: Mapping[str, Any], *, overrides: Mapping[str, Any] = (), origins: Mapping[str, str] | None = None,
                source: str | None = None, lenient: bool = False) -> list[str]:
    """Check the unknown keys that are near misses of platform keys; returns the warning lines.

    A near miss of platform key ``K`` (:func:`typo`; at the top level one edit only, so a GAN's
    ``optimizer_g`` is not one) is refused (:class:`OptionsError`) when ``K`` is not set in that
    section (the platform would silently use its default) and no plugin owns the section
    (``<section>.import``, a plugin's ``model.name``). Otherwise, and always when ``lenient`` (the
    saved options of an experiment that ran already), it is a warning line: the key is passed on.
    """
    overrides = overrides or {}
    written = _written(origins, overrides, tree)
    warnings: list[str] = []
    for section, known in KNOWN_KEYS.items():
        node: Any = tree
        for part in filter(None, section.split(".")):
            node = node.get(part) if isinstance(node, Mapping) else None
        if not isinstance(node, Mapping):
            continue
        owned = bool(section) and _plugin_owned(section, node)
        for name in node:
            if not isinstance(name, str) or name in known:
                continue
            near = typo(name, known, most=2 if section else 1)
            if near is None:
                continue
            key, right = (f"{section}.{name}", f"{section}.{near}") if section else (name, near)
            what = "option" if section else "section"
            if lenient or owned or right in written:
                warnings.append(f"{key}: not {'an' if section else 'a'} {what} of the platform (did you mean "
                                f"{right}?); passed on to plugins as is")
                continue
            flag = key in overrides
            origin = "" if flag else _origin(key, origins, source)
            dash = "--" if flag else ""
            raise OptionsError(f"{dash}{key}: unknown {what}; did you mean {dash}{right}? "
                               f"({f'in {origin}; ' if origin else ''}if it is a plugin's own "
                               f"{'key' if section else 'section'}, rename it)")
    return warnings


def _origin(key: str, origins: Mapping[str, str] | None, source: str | None) -> str:
    """The file where ``key`` is written, as the message shows it ('' when unknown).

    The main options file by its name, an ``__include__``d one by its path from the main file's folder.
    """
    path = None
    if origins:
        base = re.sub(r"\[[0-9]+\]", "", key)
        path = origins.get(base)
        if path is None:
            path = next((f for k, f in origins.items() if k.startswith(base + ".")), None)
        while path is None and "." in base:
            base = base.rpartition(".")[0]
            path = origins.get(base)
    if path is None:
        return Path(source).name if source else ""
    if source is None:
        return Path(path).name
    if os.path.normpath(path) == os.path.normpath(source):
        return Path(source).name
    return os.path.relpath(path, Path(source).parent)


_WHAT = {
    "int_type": "must be a whole number (int)",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "string_type": "must be a string (quote it in YAML)",
    "list_type": "must be a list",
    "dict_type": "must be a mapping (key: value)",
    "model_type": "must be a mapping (key: value)",
    "finite_number": "must be a finite number",
    "none_required": "must be null",
}


def _key(loc: tuple[Any, ...], tree: Any) -> str:
    """``('engine', 'hooks', 0)`` → ``engine.hooks[0]``, skipping the union member names pydantic adds."""
    out, node = "", tree
    for part in loc:
        if isinstance(node, Mapping) and part in node:
            out += ("." if out else "") + str(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            out += f"[{part}]"
            node = node[part]
        elif isinstance(node, Mapping) and not isinstance(part, int) and part.isidentifier() and part[0].islower():
            out += ("." if out else "") + str(part)  # a missing key (pydantic names it)
            node = None
    return out


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _message(err: Mapping[str, Any]) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind in _WHAT:
        return _WHAT[kind]
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        sign = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}[kind]
        bound = next(iter(ctx.values()))
        return f"must be {sign} {bound:g}" if isinstance(bound, float) else f"must be {sign} {bound}"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    if kind in ("too_short", "string_too_short"):
        return "must not be empty"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return str(err["msg"]).replace("Input should be", "must be")


def _best(errors: list[Mapping[str, Any]]) -> Mapping[str, Any]:
    """Of a union's errors, the one of the branch the value looks meant for (the deepest location)."""
    return max(errors, key=lambda e: e["type"] not in ("string_type", "model_type", "dict_type", "int_type",
                                                        "list_type"))


def check(tree: Mapping[str, Any], *, overrides: Mapping[str, Any] = (), source: str | None = None,
          origins: Mapping[str, str] | None = None, lenient: bool = False) -> list[str]:
    """Refuse ``tree`` in one :class:`OptionsError` line when a platform option has the wrong type or range.

    ``overrides`` (``{key: value}`` given as ``--key value``), ``source`` (the options file) and
    ``origins`` (dotted key -> the file it is written in, ``__include__``d files included) say where
    a value came from, so that the line names what to fix.  A near miss of a platform key
    (``engine.nb_epoch``) is refused too, or a warning (:func:`near_misses`; ``lenient``: always a
    warning).  Returns the warning lines (without ``warning:``); the caller prints them.
    """
    overrides = overrides or {}
    _check_imports(tree, "")
    warnings = near_misses(tree, overrides=overrides, origins=origins, source=source, lenient=lenient)
    errors = _errors(Tree, tree)
    for part, schema, sub in _builtin_parts(tree) if not errors else ():
        errors = errors or _errors(schema, sub, ("model", part))
    if errors:
        _refuse(errors, tree, overrides, source, origins)
    return warnings


def _errors(schema: type[BaseModel], value: Any, prefix: tuple[Any, ...] = ()) -> list[Any]:
    """pydantic's errors for ``value`` (their ``loc`` under ``prefix``); empty when it is valid."""
    try:
        schema.model_validate(value)
    except ValidationError as exc:
        return [{**e, "loc": (*prefix, *e["loc"])} for e in exc.errors(include_url=False)]
    return []


def _refuse(errors: list[Any], tree: Mapping[str, Any], overrides: Mapping[str, Any], source: str | None,
            origins: Mapping[str, str] | None = None) -> None:
    # One line: the first key in error (a union reports one error per member; keep the closest one).
    section = _key(errors[0]["loc"][:2], tree)
    err = _best([e for e in errors if _key(e["loc"][:2], tree) == section])
    key = _key(err["loc"], tree)
    value = err.get("input")
    said = list(dict.fromkeys(_message(e) for e in errors if _key(e["loc"], tree) == key))
    what = " or ".join([said[0]] + [m.removeprefix("must be ") for m in said[1:]]) if all(
        m.startswith("must be") for m in said) else _message(err)
    flag = next((k for k in sorted(overrides, key=len, reverse=True)
                 if key == k or key.startswith(k + ".") or key.startswith(k + "[")), None)
    where = f"--{flag}" if flag else key
    written = "" if flag else _origin(key, origins, source)
    origin = f" (in {written})" if written else ""
    shows_value = err["type"] == "value_error" and isinstance(value, list) and any(
        repr(v) in what for v in value)  # the message names the bad item already
    if err["type"].endswith("_type") and key in _EXAMPLES:
        what += f" (e.g. {_EXAMPLES[key]})"
    got = f", got {_shown(value)}" if not isinstance(value, Mapping) and not shows_value else ""
    raise OptionsError(f"{where}: {what}{got}{origin}") from None


#: An example value of the keys whose type is not obvious from the type's name.
_EXAMPLES = {"model.metric.topk": "[1, 5]", "model.network.hidden": "[64, 64]", "model.network.channels": "[32, 64]"}


def _check_imports(node: Any, prefix: str) -> None:
    """Every ``import`` key of the tree must name an absolute module (no ``.rel``, no path)."""
    if not isinstance(node, Mapping):
        return
    for k, v in node.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k == "import" and v not in (None, "") and not is_module_name(v):  # '' or null: no import
            raise OptionsError(f"{key}: expected an absolute module name like 'my.pkg.module' (no leading dot, "
                               f"no path), got {_shown(v)}")
        _check_imports(v, key)
