"""The declared type and range of every platform option, checked before anything is created.

The schema is a set of pydantic (v2) models in strict mode: a value has the declared type or the
run is refused (``engine.compile: "abc"`` is not "truthy", ``engine.nb_epochs: 2.0`` is not an int),
numbers are range-checked and must be finite, enums are ``Literal``. pydantic was chosen over
hand-written checks or ``jsonschema`` because its models are typed Python (the schema *is* the
documentation of each key), it reports every error with its location and the offending input, and
its strict mode refuses coercions YAML users trip on. Keys the platform does not know (a plugin's
``dataset.my_key``) pass through (``extra="allow"``); the built-in classes check their own
arguments, and :func:`check` turns any refusal into one :class:`OptionsError` line naming the key,
where its value came from (the file or a ``--key`` flag) and what is expected.

Every ``import`` key of the tree and every ``engine.hooks`` entry must be an absolute module name.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from bootstrap_repro.errors import OptionsError
from bootstrap_repro.plugins import is_module_name

__all__ = ["check", "MAX_EPOCHS", "MAX_SEED"]

#: Upper bounds that no real run reaches, so that a typo (``1e9``) is refused instead of looping for ever.
MAX_EPOCHS = 10**6
MAX_SEED = 2**63 - 1
#: Where an experiment dir can never be (kernel and device file systems).
_SYSTEM_ROOTS = ("/proc", "/sys", "/dev")
_PATH_MAX = 4095
_NAME_MAX = 255


class _Section(BaseModel):
    """An options section: strict types, unknown keys allowed (plugins add their own)."""

    model_config = ConfigDict(extra="allow", strict=True, hide_input_in_errors=False)


def _exp_dir(value: str | None) -> str | None:
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
        name, sep, way = item.rpartition(":")
        if not sep or not name or way not in ("min", "max"):
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


PosInt = Annotated[int, Field(ge=1)]
NonNegInt = Annotated[int, Field(ge=0)]
Size = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1)]


class Exp(_Section):
    dir: Annotated[str | None, AfterValidator(_exp_dir)] = None
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
    nb_threads: NonNegInt = 0
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


def check(tree: Mapping[str, Any], *, overrides: Mapping[str, Any] = (), source: str | None = None) -> None:
    """Refuse ``tree`` in one :class:`OptionsError` line when a platform option has the wrong type or range.

    ``overrides`` (``{key: value}`` given as ``--key value``) and ``source`` (the options file) say
    where the value came from, so that the line names what to fix.
    """
    _check_imports(tree, "")
    try:
        Tree.model_validate(tree)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # One line: the first key in error (a union reports one error per member; keep the closest one).
        section = _key(errors[0]["loc"][:2], tree)
        err = _best([e for e in errors if _key(e["loc"][:2], tree) == section])
        key = _key(err["loc"], tree)
        value = err.get("input")
        said = list(dict.fromkeys(_message(e) for e in errors if _key(e["loc"], tree) == key))
        what = " or ".join([said[0]] + [m.removeprefix("must be ") for m in said[1:]]) if all(
            m.startswith("must be") for m in said) else _message(err)
        flag = next((k for k in sorted(overrides or {}, key=len, reverse=True)
                     if key == k or key.startswith(k + ".") or key.startswith(k + "[")), None)
        where = f"--{flag}" if flag else key
        origin = "" if flag or not source else f" (in {Path(source).name})"
        shows_value = err["type"] == "value_error" and isinstance(value, list) and any(
            repr(v) in what for v in value)  # the message names the bad item already
        got = f", got {_shown(value)}" if not isinstance(value, Mapping) and not shows_value else ""
        raise OptionsError(f"{where}: {what}{got}{origin}") from None


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
