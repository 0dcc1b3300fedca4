"""``bootstrap.run``: the seed's entry point, running the experiment as ``bootstrap-repro run`` does.

``python -m bootstrap.run -o options.yaml [--key VALUE ...]`` and ``run(path_opts=None)`` hand the
command line to ``bootstrap-repro run`` in this process: the options get the platform defaults,
the schema check and typed flags; the experiment is recorded, checkpointed and resumable, with the
result cache, Docker and multi-process runtimes.  Where the seed prompted ``Erase?`` for an existing
``exp.dir``, bootstrap-repro refuses with one line (resume it with ``--exp.resume last``).
"""

from __future__ import annotations

import sys

from bootstrap_repro import cli

from .lib.options import Options, _split_argv

__all__ = ["run", "main", "RunFailed"]


class RunFailed(RuntimeError):
    """``run()`` ended with a non-zero exit code (the reason was printed, and is in ``<exp.dir>/logs.txt``)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"bootstrap-repro run failed with exit code {code}; see the lines above")
        self.code = code


def _argv(path_opts: str | None) -> list[str]:
    path, rest, wants_help = _split_argv(sys.argv[1:])
    singleton = Options._Options__instance  # type: ignore[attr-defined]
    if path_opts is None and path is None and singleton is not None and singleton.path_opts:
        path = singleton.path_opts  # the seed's Options(path) made earlier in this process
    path = path_opts if path_opts is not None else path
    return ["run", *(["-o", str(path)] if path is not None else []), *(["-h"] if wants_help else []), *rest]


def run(path_opts: str | None = None) -> None:
    """Run the experiment of ``path_opts`` (else ``-o/--path_opts``) with the ``--key VALUE`` flags of ``sys.argv``."""
    code = cli.main(_argv(path_opts))
    if code != 0:
        raise RunFailed(code)


def main(path_opts: str | None = None, run: object = None) -> None:
    """``python -m bootstrap.run``: exit with ``bootstrap-repro run``'s exit code."""
    sys.exit(cli.main(_argv(path_opts)))


if __name__ == "__main__":
    main()
