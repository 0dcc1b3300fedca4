"""The ``bootstrap-repro`` command: the only module that reads ``sys.argv`` and exits.

Exit codes: 0 done, 1 the run failed (``rerun --verify``: a value differs), 2 bad
input (one ``error:`` line, no traceback), 130 interrupted (resumable).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import re
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bootstrap_repro import __version__
from bootstrap_repro.errors import ExperimentExistsError, OptionsError, ReproError

__all__ = ["main"]

SWEEP_USAGE = "bootstrap-repro sweep SWEEP.yaml [--n-trials N] [--jobs N] [--storage URL] [--key.path VALUE ...]"
RUN_USAGE = "bootstrap-repro run -o OPTIONS.yaml [--key.path VALUE ...] [--no-cache] [--nproc-per-node N] [--detach] [-h]"
COMPARE_USAGE = ("bootstrap-repro compare EXP_DIR [EXP_DIR ...] [-m [LOG:]KEY:min|max ...] [-b [LOG:]KEY:min|max] "
                 "[-n N]")


class _Parser(argparse.ArgumentParser):
    """argparse's errors as one ``error:`` line (exit 2), not a usage block (the subparsers are of this class too)."""

    def error(self, message: str) -> Any:
        where = self.prog.removeprefix("bootstrap-repro").strip()
        raise OptionsError(f"{where + ': ' if where else ''}{message} (see {self.prog} -h)")


@functools.lru_cache(maxsize=1)
def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="bootstrap-repro", allow_abbrev=False,
        description="Reproducible deep-learning experiments (the bootstrap.pytorch framework).",
    )
    p.add_argument("--version", action="version", version=f"bootstrap-repro {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    r = sub.add_parser("run", add_help=False, usage=RUN_USAGE, allow_abbrev=False,
                       help="run (or resume) an experiment from an options file")
    r.add_argument("-o", "--options", "--path_opts", dest="path_opts")  # --path_opts: the seed's spelling
    r.add_argument("-h", "--help", action="store_true")
    r.add_argument("--no-cache", action="store_true")
    r.add_argument("--detach", action="store_true", help="runtime.name slurm: submit and return at once")
    rr = sub.add_parser("rerun", help="run an experiment again from its record (recorded code, options, seed)",
                        description="Materialise the recorded code (commit + diff + untracked files) in a temporary "
                                    "git worktree and run the saved options.yaml there.")
    rr.add_argument("exp_dir", metavar="EXP_DIR")
    rr.add_argument("--exp.dir", dest="new_dir", metavar="NEW",
                    help="the new experiment dir (default: EXP_DIR-rerun-N, the first N free)")
    rr.add_argument("--verify", action="store_true",
                    help="compare every value of the new logs.json with the original; exit 1 on a difference")
    rr.add_argument("--ignore", action="append", default=[], metavar="KEY_PATTERN",
                    help="with --verify, skip logs.json keys matching this glob, e.g. '*.time' (repeatable)")
    rr.add_argument("--repo", metavar="PATH", help="the code repo, when it is no longer at the recorded path")
    rr.add_argument("--allow-changed", action="store_true",
                    help="run even when recorded inputs outside the code repo (data, helper libraries, installed "
                         "packages, secrets) changed; the differences are reported")
    ca = sub.add_parser("cache", help="list, remove or garbage-collect result-cache entries")
    cs = ca.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    cs.add_parser("ls", help="list the entries, most recently used first")
    rm = cs.add_parser("rm", help="remove one entry")
    rm.add_argument("key", metavar="KEY", help="the key or a unique prefix of it (cache ls shows 12 digits)")
    gc = cs.add_parser("gc", help="remove damaged entries and leftovers; optionally old or least-used ones")
    gc.add_argument("--max-size", metavar="SIZE", help="then evict least recently used entries down to SIZE (e.g. 20G)")
    gc.add_argument("--max-age", metavar="AGE", help="then remove entries unused for AGE (e.g. 30d, 12h; a number is days)")
    sw = sub.add_parser("sweep", usage=SWEEP_USAGE, allow_abbrev=False,
                        help="run (or resume) an Optuna study whose trials are experiments",
                        description="Run (or resume) the sweep of SWEEP.yaml: each trial is `run` in its own process "
                                    "in <sweep.dir>/trials/<number>; options overrides after the file apply to "
                                    "every trial.")
    sw.add_argument("sweep_file", metavar="SWEEP.yaml")
    sw.add_argument("--n-trials", help="trials to finish in total (overrides sweep.n_trials)")
    sw.add_argument("--jobs", help="parallel local workers (overrides sweep.jobs)")
    sw.add_argument("--storage", help="postgresql://user:password@host/db (overrides sweep.storage)")
    sw.add_argument("--detach", action="store_true",
                    help="runtime.name slurm: submit the workers and return at once (the same command re-attaches)")
    v = sub.add_parser("view", help="rebuild an experiment's view.html (or a sweep dir's report)")
    v.add_argument("exp_dir")
    c = sub.add_parser("compare", help="rank experiments by their best epoch", usage=COMPARE_USAGE,
                       description="Rank experiments by the best value of each metric. The seed's arguments work "
                                   "too: -d DIR [DIR ...] (NAME:DIR names a row), -m JSON KEY min|max, "
                                   "-b JSON KEY min|max, -n N.")
    c.add_argument("exp_dirs", nargs="*", metavar="EXP_DIR")
    c.add_argument("-d", "--dir_logs", nargs="+", action="extend", default=[], metavar="DIR",
                   help="experiment dirs, as the seed's compare took them (NAME:DIR names the row)")
    c.add_argument("-m", "--metric", "--metrics", action="append", default=None, metavar="[LOG:]KEY:min|max",
                   help="e.g. eval_epoch.acctop1:max (repeatable; default: acctop1:max and loss:min); LOG is the "
                        "logs file (logs_eval_val for <exp.dir>/logs_eval_val.json), logs by default; the seed's "
                        "form -m logs eval_epoch.accuracy_top1 max works too")
    c.add_argument("-b", "--best", metavar="[LOG:]KEY:min|max",
                   help="report every metric at the epoch where KEY is best (the seed's -b), not at its own best")
    c.add_argument("-n", "--nb_epochs", metavar="N", help="look at the first N epochs only (-1: all)")
    n = sub.add_parser("new", help="write a new project (dataset, network, criterion, metric, options) that runs at once",
                       description="Write <DIR>/<name>.bootstrap.pytorch/: a project on bootstrap-repro's API, "
                                   "made like bootstrap.pytorch's `new` (bootstrap.new writes the seed-API one).")
    n.add_argument("name", metavar="NAME", help="the project's name, a Python identifier (e.g. MyProject)")
    n.add_argument("--dir", default=".", metavar="DIR", help="where to write it (default: the current dir)")
    mg = sub.add_parser("migrate", help="rewrite a bootstrap.pytorch project to bootstrap-repro's API (prints a diff)",
                        description="Rewrite the `bootstrap.*` imports that have a bootstrap-repro equivalent and the "
                                    "seed's option and metric names in options files; print a unified diff, "
                                    "and the notes on what was left as it was. --write applies it.")
    mg.add_argument("path", metavar="PATH", help="the project dir (or one .py / .yaml file)")
    mg.add_argument("--write", action="store_true", help="apply the changes (each file replaced atomically)")
    return p


#: What a Ctrl-C outside the training loop prints (the loop itself stops at a batch and says how to resume).
INTERRUPTED = "interrupted"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code.

    A Ctrl-C while the command starts (imports, options, building) or ends ends it with one
    ``interrupted`` line and exit code 130, not a traceback; :func:`~bootstrap_repro.run.run`
    marks an experiment it had begun INTERRUPTED (resumable), and one not begun is never created.
    With ``argv`` None (the console script, ``python -m bootstrap_repro``) the process ends after
    this returns: :func:`prepare_exit` makes the interpreter's shutdown cheap.
    """
    try:
        return _main_guarded(argv)
    finally:
        if argv is None:
            prepare_exit()


def prepare_exit() -> None:
    """Called when the process is about to end: keep the interpreter's shutdown from collecting garbage.

    Python's shutdown runs several full garbage collections over every object alive, and with
    torch loaded (plus its ``torch._dynamo`` and sympy) that is about 1 s: a quarter of a 4 s run
    (``benchmarks/cli_overhead.py``).  :func:`gc.freeze` takes the objects alive now out of the
    collector's reach, so those collections have nothing to walk.  Everything else happens as
    always: non-daemon threads are joined, atexit handlers run (the views' last page), modules
    are torn down and their files flushed and closed; only reference cycles still alive at exit
    are not collected, which Python never promised to finalise.  Nothing the platform writes
    waits for the shutdown: every file is complete and closed before the command returns.
    """
    import gc

    gc.freeze()


def _main_guarded(argv: Sequence[str] | None) -> int:
    seen: list[int] = []

    def on_sigint(signum: int, frame: Any) -> None:
        seen.append(signum)
        raise KeyboardInterrupt

    previous = None
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not a host's own handler
            previous = signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread: no handler to install
        previous = None
    try:
        return _main(argv, seen)
    except KeyboardInterrupt:
        print(INTERRUPTED, file=sys.stderr)
        return 130
    except Exception:
        if seen:  # a library turned the interrupt into another error half-way: it is still the interrupt
            print(INTERRUPTED, file=sys.stderr)
            return 130
        raise
    finally:
        if previous is not None:
            with contextlib.suppress(ValueError):
                signal.signal(signal.SIGINT, previous)


def _main(argv: Sequence[str] | None, seen: Sequence[int] = ()) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "" not in sys.path and os.getcwd() not in sys.path:
        # As with `python -m`, `import:` plugins of the current folder resolve under the console script.
        sys.path.insert(0, os.getcwd())
    parser = _parser()
    try:
        if argv[:1] == ["compare"]:
            argv = _seed_compare_argv(argv)
        args, rest = parser.parse_known_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        if args.command not in ("run", "sweep") and rest:
            raise OptionsError(f"{args.command}: unexpected arguments {' '.join(rest)}")
        if args.command == "run":
            return _cmd_run(args, rest)
        if args.command == "sweep":
            return _cmd_sweep(args, rest)
        if args.command == "rerun":
            return _cmd_rerun(args)
        if args.command == "cache":
            return _cmd_cache(args)
        if args.command == "view":
            return _cmd_view(args.exp_dir)
        if args.command == "new":
            return _cmd_new(args.name, args.dir)
        if args.command == "migrate":
            return _cmd_migrate(args.path, write=args.write)
        return _cmd_compare(args.exp_dirs + args.dir_logs, args.metric, best=args.best,
                            nb_epochs=_nb_epochs(args.nb_epochs))
    except ReproError as exc:
        if seen:  # a Ctrl-C that a library turned into bad input half-way: it is the interrupt
            print(INTERRUPTED, file=sys.stderr)
            return 130
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


def _cmd_run(args: argparse.Namespace, overrides: list[str]) -> int:
    from bootstrap_repro.options import Options

    if args.path_opts is None:
        if args.help:
            print(f"usage: {RUN_USAGE}\n\nWith -o, -h lists every option of that file with its value.")
            return 0
        raise OptionsError("run: -o OPTIONS.yaml is required (e.g. bootstrap-repro run -o examples/digits/options.yaml)")
    if args.help:
        # -h lists the options even when some overrides are wrong: apply the valid ones.
        opt = Options.load(args.path_opts, check=False)
        try:
            opt.apply_overrides(overrides)
            opt.check()
        except OptionsError as exc:
            print(f"note: {exc}", file=sys.stderr)
        print(f"usage: {RUN_USAGE}\n")
        print(opt.help_text())
        return 0
    overrides = _torchrun_flags(overrides)
    try:
        opt = Options.load(args.path_opts, overrides)
    except OptionsError:
        _refuse_unsaved_options(Path(args.path_opts))
        raise
    done = _already_done(opt)
    if done is not None:
        print(done)
        return 0
    from bootstrap_repro.record import NO_CACHE_ENV

    use_cache = not args.no_cache and os.environ.get(NO_CACHE_ENV, "").lower() not in ("1", "true", "yes")
    if _plain_local(opt):  # this process trains: the runtimes (Docker, Slurm, torchrun) are not even imported
        return _run_here(opt, use_cache)
    from bootstrap_repro.runtimes import launch_distributed, launch_docker, wants_distributed, wants_docker

    if wants_docker(opt):  # the same command, in a container (the record and cache work inside it)
        return launch_docker(opt, args.path_opts, overrides, cache=use_cache)
    from bootstrap_repro.runtimes._slurm import launch_slurm, wants_slurm

    if wants_slurm(opt):  # the same command, as a Slurm job (submitit); the record gains the scheduler's facts
        return launch_slurm(opt, args.path_opts, overrides, cache=use_cache, detach=args.detach)
    if wants_distributed(opt):
        from bootstrap_repro.run import cached_run, check_exp_dir

        node0 = int(opt.get("runtime.node_rank", 0) or 0) == 0  # other nodes: node 0 checks (shared exp.dir)
        if node0:
            check_exp_dir(opt)
        # the key as the ranks will compute it: torchrun's ranks get OMP_NUM_THREADS=1 unless it is set
        with _environ("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS", "1")):
            hit = cached_run(opt.copy()) if use_cache and node0 else None
        if hit is not None:
            print(hit.cache_hit.describe())  # type: ignore[union-attr]
            return 0
        with _environ(NO_CACHE_ENV, None if use_cache else "1"):  # torchrun's ranks inherit it
            return launch_distributed(opt, ["-o", args.path_opts, *overrides])
    return _run_here(opt, use_cache)


def _plain_local(opt: Any) -> bool:
    """Whether ``runtime`` certainly asks for this very process (no container, job or torchrun): the
    default ``runtime.name: local`` with one process on one node.  False only means "ask the runtimes"."""
    return (opt.get("runtime.name", "local") == "local" and opt.get("runtime.nproc_per_node", 1) in (None, 1)
            and opt.get("runtime.nnodes", 1) in (None, 1))


def _run_here(opt: Any, use_cache: bool) -> int:
    """Run the experiment in this process; the exit code."""
    from bootstrap_repro.run import run

    result = run(opt, cache=use_cache)
    for note in result.warnings:
        print(f"warning: {note}", file=sys.stderr)
    if result.cache_hit is not None:
        print(result.cache_hit.describe())
    if isinstance(result.error, ReproError):
        print(f"error: {result.error}", file=sys.stderr)
        return result.error.exit_code
    if result.status == "FAILED":
        print(f"error: run failed ({type(result.error).__name__}: {result.error}); see {result.exp_dir / 'logs.txt'}",
              file=sys.stderr)
    elif result.status == "INTERRUPTED":
        from bootstrap_repro.record._env import requeue_note

        print(requeue_note() or f"interrupted; resume with: bootstrap-repro run -o {result.exp_dir / 'options.yaml'} "
              f"--exp.resume last", file=sys.stderr)
    return result.exit_code


def _refuse_unsaved_options(path: Path) -> None:
    """``-o DIR/options.yaml`` of a run killed before it saved its options: say how to go on, in one line."""
    from bootstrap_repro.record import LOCK_NAME, REPRO_DIR

    exp = path.parent
    if path.name == "options.yaml" and not path.exists() and exp.is_dir() and (not any(exp.iterdir()) or any(
            (exp / name).exists() for name in (LOCK_NAME, REPRO_DIR, "logs.txt"))):
        raise OptionsError(
            f"{path}: not found; the run in {exp} stopped before it saved its options: train it from the start "
            f"with your options file (-o YOURS.yaml --exp.dir {exp} --exp.resume last), or remove it (rm -r {exp})"
        )


def _already_done(opt: Any) -> str | None:
    """A line when ``exp.dir`` already holds this very experiment, COMPLETED (same cache key); else None.

    Typing the same command twice is then a no-op instead of an "exp.dir exists" error.
    """
    from bootstrap_repro.record import RecordError, check_inputs, merged_inputs, read_record, take_snapshot

    exp_dir = opt.get("exp.dir")
    if not exp_dir or opt.get("exp.resume") or not (Path(str(exp_dir)) / "repro" / "record.json").is_file():
        return None
    try:
        rec = read_record(str(exp_dir))
    except RecordError:
        return None
    if rec.get("status") != "COMPLETED" or rec.get("resumes"):
        return None
    key = take_snapshot(opt.copy(), exp_dir=Path(str(exp_dir))).key
    if rec.get("cache_key") != key:
        return None
    try:  # the same key is not enough: every input the run read must still be as it was
        inputs = merged_inputs(Path(str(exp_dir)), rec)
    except RecordError:
        return None
    if inputs is None:
        return None
    changed = check_inputs(inputs, first_only=True)
    if changed:
        raise ExperimentExistsError(
            f"exp.dir: {exp_dir} holds this experiment, but an input it read is not as it was "
            f"({changed[0].describe()}); choose a new --exp.dir to train with the inputs as they are now"
        )
    return f"up to date: {exp_dir} already holds this experiment, completed (key {key[:12]}); not trained again"


#: torchrun-style flags of ``run`` and the option each one sets.
TORCHRUN_FLAGS = {"--nproc-per-node": "runtime.nproc_per_node", "--nnodes": "runtime.nnodes",
                  "--node-rank": "runtime.node_rank", "--rdzv-endpoint": "runtime.rdzv_endpoint"}


def _torchrun_flags(argv: list[str]) -> list[str]:
    """``--nproc-per-node 2`` → ``--runtime.nproc_per_node 2`` (also ``--nproc-per-node=2``)."""
    out = []
    for tok in argv:
        flag, eq, value = tok.partition("=")
        if flag in TORCHRUN_FLAGS:
            out.append(f"--{TORCHRUN_FLAGS[flag]}")
            if eq:
                out.append(value)
        else:
            out.append(tok)
    return out


@contextlib.contextmanager
def _environ(name: str, value: str | None) -> Iterator[None]:
    """Set (or, for None, leave alone) an environment variable inside the block."""
    old = os.environ.get(name)
    if value is not None:
        os.environ[name] = value
    try:
        yield
    finally:
        if value is not None:
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def _cmd_rerun(args: argparse.Namespace) -> int:
    from bootstrap_repro.record import rerun

    result = rerun(args.exp_dir, args.new_dir, verify=args.verify, ignore=args.ignore, repo=args.repo,
                   allow_changed=args.allow_changed)
    if result.returncode != 2:  # 2: the run refused its input and said why, in one line (nothing ran)
        for note in result.warnings:
            print(f"warning: {note}", file=sys.stderr)
    if result.returncode != 0:
        if result.returncode != 2:
            logs = result.exp_dir / "logs.txt"
            print(f"error: the re-run exited {result.returncode}" + (f"; see {logs}" if logs.is_file() else ""),
                  file=sys.stderr)
        return result.returncode
    out = result.outputs
    segments = f" ({result.segments} segments replayed)" if result.segments > 1 else ""
    if out is None:
        print(f"re-ran {args.exp_dir} into {result.exp_dir}{segments}")
    elif out.divergence is None:
        print(f"{out.summary()}; {args.exp_dir} vs {result.exp_dir}{segments}")
    else:
        print("input differences: " + ("; ".join(result.input_differences) or "none"))
        where = f" (segment {result.segment})" if result.segment is not None else ""
        print(f"first divergence{where}: {out.divergence}; {out.summary()}")
        print("environment differences: " + ("; ".join(result.env_differences) or "none"))
    return result.exit_code


_UNITS = {"": 1, "b": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2, "g": 1024**3, "gb": 1024**3,
          "t": 1024**4, "tb": 1024**4}


def _parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*([0-9]{1,30}(?:\.[0-9]{0,30})?|\.[0-9]{1,30})\s*([a-zA-Z]*)\s*", text)
    if not m or m.group(2).lower() not in _UNITS:
        raise OptionsError(f"--max-size: expected a size like 500M or 20G, got {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def _parse_age(text: str) -> float:
    m = re.fullmatch(r"\s*([0-9]{1,30}(?:\.[0-9]{0,30})?|\.[0-9]{1,30})\s*([dhm]?)\s*", text)
    if not m:
        raise OptionsError(f"--max-age: expected an age like 30d, 12h or 45m (a number is days), got {text!r}")
    return float(m.group(1)) / {"": 1, "d": 1, "h": 24, "m": 1440}[m.group(2)]


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _cmd_cache(args: argparse.Namespace) -> int:
    import datetime as dt

    from bootstrap_repro.record import ResultCache

    store = ResultCache()
    if args.cache_command == "rm":
        if not re.fullmatch(r"[0-9a-fA-F]{1,64}", args.key):
            raise OptionsError(f"cache rm: {args.key!r} is not a cache key (hex digits; bootstrap-repro cache ls "
                               f"shows the first 12 of each)")
        print(f"removed {store.remove(args.key)}")
        return 0
    if args.cache_command == "gc":
        report = store.gc(max_bytes=_parse_size(args.max_size) if args.max_size is not None else None,
                          max_age_days=_parse_age(args.max_age) if args.max_age is not None else None)
        for name, reason in report.removed:
            print(f"removed {name[:12] if not name.startswith('.') else name}: {reason}")
        print(f"{len(report.removed)} removed, {_human(report.freed)} freed, {report.kept} kept in {store.root}")
        return 0
    entries = store.entries()
    if entries:
        print(f"{'KEY':<12}  {'CREATED':<19}  {'LAST USED':<19}  {'SIZE':>9}  FROM")
    for e in entries:
        created = (e.created or "?")[:19].replace("T", " ")
        used = dt.datetime.fromtimestamp(e.last_used).strftime("%Y-%m-%d %H:%M:%S")
        state = f"  [damaged: {e.problem}]" if e.problem else ""
        print(f"{e.key[:12]}  {created:<19}  {used:<19}  {_human(e.size):>9}  {e.source or '?'}{state}")
    total = sum(e.size for e in entries)
    print(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}, {_human(total)} in {store.root}")
    return 0


def _cmd_sweep(args: argparse.Namespace, overrides: list[str]) -> int:
    from bootstrap_repro.sweep import Sweep, load_sweep

    from bootstrap_repro.sweep._slurm import run_on_slurm, wants_slurm_sweep
    from bootstrap_repro.sweep._spec import parse_count

    spec = load_sweep(args.sweep_file, overrides, n_trials=parse_count("--n-trials", args.n_trials),
                      jobs=parse_count("--jobs", args.jobs), storage=args.storage)
    if wants_slurm_sweep(spec):  # runtime.name slurm: the workers as a job array; --detach returns at once
        return run_on_slurm(spec, overrides, storage=args.storage, detach=args.detach)
    if args.detach:
        raise OptionsError("--detach: only with --runtime.name slurm (a local sweep runs in this process)")
    return Sweep(spec).run().exit_code


def _cmd_view(exp_dir: str) -> int:
    from bootstrap_repro.views import rebuild

    if (Path(exp_dir) / "sweep.json").is_file():  # a sweep dir: its aggregated report
        from bootstrap_repro.sweep import rebuild_report
        from bootstrap_repro.sweep._storage import JOURNAL_NAME, check_journal

        # A damaged journal line: one error (the fix: cut the journal before it); an incomplete last
        # line (a write cut short): a warning, and the report of the study as of the lines before it.
        journal = Path(exp_dir) / JOURNAL_NAME
        note = check_journal(journal) if journal.is_file() else None
        if note:
            print(f"warning: {note}", file=sys.stderr)
        print(rebuild_report(exp_dir))
        return 0
    # An unreadable logs file: one error, nothing written; readable ones with values that are not
    # numbers: a warning, and the view of what is there.
    for path in rebuild(exp_dir, warn=lambda note: print(f"warning: {note}", file=sys.stderr)):
        print(path)
    return 0


def _cmd_new(name: str, parent: str) -> int:
    from bootstrap_repro.migrate import new_project

    root = new_project(name, parent)
    lower = name.lower()
    print(f"created {root}")
    print(f"train it: cd {root} && bootstrap-repro run -o {lower}/options/{lower}.yaml")
    return 0


def _cmd_migrate(path: str, *, write: bool) -> int:
    """Print the diff of the migration of ``path`` (stdout) and its notes (stderr); ``write`` applies it."""
    from bootstrap_repro.migrate import plan

    migration = plan(path)
    sys.stdout.write(migration.diff())
    sys.stdout.flush()  # the diff, then the notes, in this order on a terminal
    for note in migration.notes:
        print(f"note: {note}", file=sys.stderr)
    n = len(migration.changes)
    if not n:
        print(f"migrate: nothing to change in {path}", file=sys.stderr)
    elif write:
        migration.write()
        print(f"migrate: {n} file{'s' if n > 1 else ''} rewritten in {path}", file=sys.stderr)
    else:
        print(f"migrate: {n} file{'s' if n > 1 else ''} to change; apply with: bootstrap-repro migrate {path} --write",
              file=sys.stderr)
    return 0


#: Flags of ``compare`` that take a metric, and the seed's order words (``lt``/``gt``: its older
#: saving-criterion spelling, ``loss:lt`` = min, ``acc:gt`` = max).
_METRIC_FLAGS = ("-m", "--metric", "--metrics", "-b", "--best")
_ORDERS = ("min", "max", "lt", "gt")


def _seed_compare_argv(argv: list[str]) -> list[str]:
    """The seed's ``-m JSON KEY ORDER`` (and ``-m KEY ORDER``, ``-b ...``) as ``-m JSON:KEY:ORDER`` (``KEY:ORDER``)."""
    out, i = [], 0
    while i < len(argv):
        tok = argv[i]
        out.append(tok)
        i += 1
        if tok not in _METRIC_FLAGS:
            continue
        words = argv[i:i + 3]
        plain = [w for w in words if ":" not in w and not w.startswith("-")]
        if len(words) == 3 and words[2] in _ORDERS and len(plain) == 3:
            out.append(":".join(words))
            i += 3
        elif len(words) >= 2 and words[1] in _ORDERS and plain[:2] == words[:2]:
            out.append(":".join(words[:2]))
            i += 2
    return out


_LOGNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")


def _parse_metric(spec: str, flag: str = "--metric") -> tuple[str, str, str]:
    """``[LOG:]KEY:min|max`` → ``(LOG, KEY, mode)``; LOG defaults to ``logs`` (``<exp.dir>/logs.json``)."""
    key, sep, mode = spec.rpartition(":")
    log, colon, name = key.partition(":")
    if not colon:
        log, name = "logs", key
    if not sep or not name or mode not in _ORDERS or not _LOGNAME.fullmatch(log):
        raise OptionsError(f"{flag}: expected KEY:min or KEY:max (e.g. eval_epoch.acctop1:max), got {spec!r}")
    from bootstrap_repro._metric_names import CRITERION_WAYS

    return log, name, CRITERION_WAYS[mode]


def _nb_epochs(text: str | None) -> int | None:
    if text is None or text.strip() == "-1":
        return None
    if not re.fullmatch(r"\s*[0-9]{1,9}\s*", text) or int(text) < 1:
        raise OptionsError(f"--nb_epochs: expected a positive number of epochs (or -1: all), got {text!r}")
    return int(text)


def _dir_label(raw: str) -> tuple[str, str]:
    """``(row name, dir)``: ``NAME:DIR`` names a row, as in the seed's ``-d``, when DIR exists and ``raw`` does not."""
    name, colon, path = raw.partition(":")
    if colon and name and not Path(raw).exists() and Path(path).is_dir():
        return name, path
    return raw, raw


def _read_logs(exp_dir: str, log: str = "logs") -> dict[str, Any]:
    """``<exp_dir>/<log>.json``; a missing or damaged one (not UTF-8 JSON holding an object): one error line."""
    path = Path(exp_dir) / f"{log}.json"
    if not path.is_file():
        raise OptionsError(f"{exp_dir}: no {log}.json; is it an experiment dir?")
    from bootstrap_repro.views._items import read_log_object

    data = read_log_object(path, f"restore it, or leave {exp_dir} out")
    return data


def _finite(v: Any) -> float | None:
    """``v`` as a finite float; None for NaN, infinities, ints too large for a float, booleans and non-numbers."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    try:
        f = float(v)
    except OverflowError:
        return None
    return f if math.isfinite(f) else None


def _best(values: list[Any], mode: str) -> tuple[tuple[int, float] | None, int]:
    """``((index, value) of the best finite value or None, how many values are not finite numbers)``."""
    ok = [(i, f) for i, f in enumerate(map(_finite, values)) if f is not None]
    best = (min if mode == "min" else max)(ok, key=lambda t: t[1]) if ok else None
    return best, len(values) - len(ok)


def _epoch_at(epochs: Any, index: int, n: int) -> int:
    """The epoch logged beside value ``index`` (``<mode>.epoch``), when it is a plausible one; else the index."""
    if isinstance(epochs, list) and len(epochs) == n:
        e = epochs[index]
        if isinstance(e, int) and not isinstance(e, bool) and 0 <= e <= 2**53:
            return e
    return index


def _series(logs: dict[str, Any], key: str, where: str, nb_epochs: int | None) -> tuple[list[Any], Any] | None:
    """``(values, epochs)`` of ``key`` (either metric spelling), cut to ``nb_epochs``; None when not logged."""
    from bootstrap_repro._metric_names import resolve

    found = resolve(key, logs) or key
    vals = logs.get(found)
    if vals is None:
        return None
    if not isinstance(vals, list):
        print(f"warning: {where} is not a list of values (a {type(vals).__name__}); left out", file=sys.stderr)
        return None
    epochs = logs.get(f"{found.split('.', 1)[0]}.epoch")
    if nb_epochs is not None:
        vals = vals[:nb_epochs]
        epochs = epochs[:nb_epochs] if isinstance(epochs, list) else epochs
    return vals, epochs


def _best_of(vals: list[Any], mode: str, where: str) -> tuple[int, float] | None:
    best, ignored = _best(vals, mode)
    if ignored:  # NaN, inf, text, booleans, numbers too large for a float: not ranked
        print(f"warning: {where}: {ignored} of {len(vals)} values are not finite numbers (NaN, inf, text, ...); "
              f"ranked by the others" if best is not None else
              f"warning: {where}: none of its {len(vals)} values is a finite number (NaN, inf, text, ...); left out",
              file=sys.stderr)
    return best


def _at_epoch(vals: list[Any], epochs: Any, epoch: int, index: int) -> int:
    """The index of ``vals`` logged at ``epoch`` (by its epoch list); else ``index`` (the seed's rule), kept in range."""
    if isinstance(epochs, list) and len(epochs) == len(vals) and epoch in epochs:
        return epochs.index(epoch)
    return min(index, len(vals) - 1)


def _cmd_compare(exp_dirs: list[str], metrics: list[str] | None, *, best: str | None = None,
                 nb_epochs: int | None = None) -> int:
    """Rank ``exp_dirs`` by each metric: its best value, or with ``best``, its value at the epoch where ``best`` is best."""
    from bootstrap_repro._metric_names import resolve

    if not exp_dirs:
        raise OptionsError("compare: no experiment dir given; pass EXP_DIR ... (or the seed's -d DIR ...)")
    dirs = dict(_dir_label(raw) for raw in exp_dirs)  # row name -> dir
    cache: dict[tuple[str, str], dict[str, Any]] = {}

    def logs_of(name: str, log: str) -> dict[str, Any]:
        if (name, log) not in cache:
            cache[name, log] = _read_logs(dirs[name], log)
        return cache[name, log]

    specs = [_parse_metric(m) for m in metrics] if metrics else [
        ("logs", "eval_epoch.acctop1", "max"), ("logs", "eval_epoch.loss", "min")]
    by = _parse_metric(best, "--best") if best else None
    for log in dict.fromkeys([s[0] for s in specs] + ([by[0]] if by else [])):
        for name in dirs:  # every file is read (a bad one is one error) before anything is printed
            logs_of(name, log)
    if not metrics:
        specs = [s for s in specs if any(resolve(s[1], logs_of(n, "logs")) for n in dirs)]
        if not specs:
            raise OptionsError("compare: no eval_epoch.acctop1 or eval_epoch.loss in these logs; pass --metric KEY:min|max")
    at_epoch: dict[str, tuple[int, int]] = {}  # row -> (epoch, index) where `by` is best
    if by is not None:
        for name in dirs:
            got = _series(logs_of(name, by[0]), by[1], f"{Path(dirs[name]) / (by[0] + '.json')}: {by[1]}", nb_epochs)
            top = _best_of(got[0], by[2], f"{Path(dirs[name]) / (by[0] + '.json')}: {by[1]}") if got else None
            if top is not None:
                at_epoch[name] = (_epoch_at(got[1], top[0], len(got[0])), top[0])  # type: ignore[index]
    width = max(len(n) for n in dirs)
    for log, key, mode in specs:
        rows = []
        for name in dirs:
            where = f"{Path(dirs[name]) / (log + '.json')}: {key}"
            got = _series(logs_of(name, log), key, where, nb_epochs)
            if not got or not got[0]:
                continue
            vals, epochs = got
            if by is None:
                top = _best_of(vals, mode, where)
                if top is None:
                    continue
                rows.append((name, _epoch_at(epochs, top[0], len(vals)), top[1]))
            elif name in at_epoch:
                epoch, index = at_epoch[name]
                value = _finite(vals[_at_epoch(vals, epochs, epoch, index)])
                if value is not None:
                    rows.append((name, epoch, value))
        shown = f"{key}:{mode}" if log == "logs" else f"{log}:{key}:{mode}"
        if by is not None:
            shown += f" at the best epoch of {by[1]}:{by[2]}"
        if not rows:
            print(f"\n## {shown}: no experiment logged it")
            continue
        rows.sort(key=lambda r: r[2], reverse=(mode == "max"))
        print(f"\n## {shown}")
        print(f"  {'rank':>4}  {'experiment':<{width}}  {'epoch':>5}  {'value':>12}")
        for rank, (name, epoch, value) in enumerate(rows, 1):
            print(f"  {rank:>4}  {name:<{width}}  {epoch:>5}  {value:>12.6g}")
        missing = [n for n in dirs if n not in {r[0] for r in rows}]
        if missing:
            print(f"  (not logged by: {', '.join(missing)})")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
