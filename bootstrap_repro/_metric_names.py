"""Metric names of bootstrap.pytorch and of bootstrap-repro: one table, one resolver.

bootstrap.pytorch 0.0.13 logged top-k accuracy as ``accuracy_top1``, ``accuracy_top5``;
bootstrap-repro logs ``acctop1``, ``acctop5``.  Wherever a user names a logged value
(``engine.saving_criteria``, ``view`` items, ``compare --metric``, ``--exp.resume best_<name>``),
either spelling finds it, in an experiment dir of either version:

>>> resolve("eval_epoch.accuracy_top1", {"eval_epoch.acctop1": [90.0]})
'eval_epoch.acctop1'
>>> resolve("acctop5", ["loss", "accuracy_top5"])
'accuracy_top5'
>>> resolve("acctop1", ["loss"]) is None
True

The exact name always wins; an alias is used only when the exact name is absent.
Only the last dotted part of a key is renamed (``eval_epoch.`` stays).
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable

__all__ = ["ALIASES", "aliases", "resolve", "resolve_checkpoint", "split_criterion", "CRITERION_WAYS"]

#: Pairs of spellings of the same metric: ``(released name, bootstrap-repro name)``; ``{k}`` is an integer.
ALIASES: tuple[tuple[str, str], ...] = (("accuracy_top{k}", "acctop{k}"),)


#: The suffix of a saving criterion -> its direction. ``lt`` and ``gt`` are the seed's older spelling
#: (an older bootstrap.pytorch: ``loss:lt``, "new best < last best"; ``acc:gt``, "new best > last best").
CRITERION_WAYS: dict[str, str] = {"min": "min", "max": "max", "lt": "min", "gt": "max"}


def split_criterion(text: str) -> tuple[str, str | None]:
    """``'loss:min'`` → ``('loss', 'min')``; the seed's ``'loss:lt'`` → ``('loss', 'min')``, ``'acc:gt'`` → ``('acc', 'max')``.

    The name is what precedes the last ``:`` (the checkpoint is ``ckpt_best_<name>_*``, as the seed named it);
    the direction is None when the text is not ``NAME:min|max|lt|gt``.
    """
    name, sep, way = str(text).rpartition(":")
    return (name, CRITERION_WAYS.get(way)) if sep and name else (name, None)


def _pattern(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.escape(template).replace(re.escape("{k}"), "(?P<k>[0-9]+)") + "$")


_COMPILED = tuple((_pattern(a), b) for pair in ALIASES for a, b in (pair, pair[::-1]))


def aliases(key: str) -> list[str]:
    """The other spellings of ``key`` (``[]`` when the table has none).

    ``'eval_epoch.accuracy_top1'`` → ``['eval_epoch.acctop1']``; ``'acctop5'`` → ``['accuracy_top5']``.
    """
    head, dot, name = key.rpartition(".")
    out = []
    for pattern, other in _COMPILED:
        m = pattern.match(name)
        if m:
            out.append(f"{head}{dot}{other.format(**m.groupdict())}")
    return out


def resolve(key: str, available: Container[str]) -> str | None:
    """The key of ``available`` that ``key`` names: ``key`` itself, else one of its :func:`aliases`; else None."""
    if key in available:
        return key
    return next((other for other in aliases(key) if other in available), None)


def resolve_checkpoint(name: str, names: Iterable[str]) -> str:
    """The checkpoint of ``names`` that ``name`` asks for: ``best_accuracy_top1`` finds ``best_acctop1``.

    ``name`` itself when it is there or has no alias there (the caller reports a missing one).
    """
    names = set(names)
    if name in names or not name.startswith("best_"):
        return name
    found = resolve(name[len("best_"):], {n[len("best_"):] for n in names if n.startswith("best_")})
    return name if found is None else f"best_{found}"
