"""Resolution of names to components: built-in registries and ``import:`` modules.

An options subtree either names a built-in (``name: mlp``) or imports a user
module (``import: my.pkg.networks``) whose ``factory(...)`` builds the
component.  Both paths fail with one clear line.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import sys
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from bootstrap_repro.errors import OptionsError, PluginError, did_you_mean

__all__ = ["is_module_name", "import_module", "build", "import_factory", "resolve", "options_kwargs"]


def is_module_name(name: Any) -> bool:
    """An absolute dotted module name (``my.pkg.module``): not relative (``.rel``), not a path, not empty."""
    return isinstance(name, str) and all(part.isidentifier() for part in name.split("."))


def import_module(module_name: str, key: str) -> ModuleType:
    """Import ``module_name`` named by option ``key`` (e.g. ``dataset.import``)."""
    if not is_module_name(module_name):
        raise PluginError(f"{key}: expected an absolute module name like 'my.pkg.module' (no leading dot, "
                          f"no path), got {module_name!r}")
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise PluginError(
                f"{key}: module '{module_name}' not found (sys.path starts with "
                f"{sys.path[0]!r}); check the name or make it importable (pip install -e, PYTHONPATH)"
            ) from None
        raise PluginError(
            f"{key}: importing '{module_name}' failed: {exc}; install the missing package"
        ) from None

def import_factory(module_name: str, key: str, attr: str = "factory") -> Callable[..., Any]:
    """Return ``module_name.factory`` (or ``attr``), with clear errors."""
    module = import_module(module_name, key)
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise PluginError(
            f"{key}: module '{module_name}' has no callable '{attr}'; "
            f"define `def {attr}(...)` in {getattr(module, '__file__', module_name)}"
        )
    return fn


def build(cls: Callable[..., Any], key: str, what: str, *args: Any, **kwargs: Any) -> Any:
    """``cls(*args, **kwargs)`` for a *built-in* class whose arguments all come from options under ``key``.

    A refusal (torch's ``ValueError: Invalid learning rate``, a negative size...) is then bad input:
    one :class:`OptionsError` line naming the key, not a traceback.
    """
    try:
        return cls(*args, **kwargs)
    except (ValueError, TypeError, RuntimeError, ArithmeticError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise OptionsError(f"{key}: {what} refused its options ({reason}); fix the values under {key}") from None


def resolve(registry: Mapping[str, Callable[..., Any]], name: Any, key: str) -> Callable[..., Any]:
    """Look ``name`` up in a built-in ``registry``; unknown names list the valid ones."""
    if name in registry:
        return registry[name]
    valid = ", ".join(sorted(registry))
    hint = did_you_mean(str(name), registry) if isinstance(name, str) else ""
    raise OptionsError(
        f"{key}: unknown name {name!r}{hint} (valid: {valid}; or set {key.rsplit('.', 1)[0]}.import "
        f"to a module with a factory)"
    )


def options_kwargs(
    fn: Callable[..., Any],
    opts: Mapping[str, Any],
    key: str,
    *,
    skip: tuple[str, ...] = (),
    hidden: tuple[str, ...] = ("self", "params"),
    what: str | None = None,
) -> dict[str, Any]:
    """Map the options subtree ``opts`` (at ``key``) to keyword arguments of ``fn``.

    Keys in ``skip`` are the caller's own; a key that is not a parameter of
    ``fn`` (minus ``hidden``) raises one line with a did-you-mean and the valid
    names.  YAML reads ``1e-3`` (no dot) as a string: numbers are converted
    where ``fn``'s default is a number.  Values are plain mutable copies.
    """
    signature = {
        p.name: p for p in inspect.signature(fn).parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in hidden
    }
    kwargs: dict[str, Any] = {}
    for name, value in opts.items():
        if name in skip:
            continue
        if name not in signature:
            problem = f"not an option of {what}" if what else "unknown option"
            raise OptionsError(
                f"{key}.{name}: {problem}{did_you_mean(name, signature, key + '.')} "
                f"(valid: {', '.join(signature) or 'none'})"
            )
        value = copy.deepcopy(value)
        default = signature[name].default
        if isinstance(value, str) and isinstance(default, (int, float)) and not isinstance(default, bool):
            try:
                value = float(value)
            except ValueError:
                raise OptionsError(f"{key}.{name}: expected a number, got {value!r}") from None
        kwargs[name] = value
    return kwargs
