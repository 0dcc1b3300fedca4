"""kill -9 soak: random kills of ``bootstrap-repro run``, each resumed, all bitwise equal to one uninterrupted run.

For every ``dataset.nb_threads`` setting (default 0 and 2), a small deterministic
experiment (synthetic blobs, an MLP with dropout, SGD with momentum and a step
lr scheduler, an eval epoch and checkpoints after every epoch) is run once
uninterrupted: the reference, and its wall time T (the machine may be shared and
its speed vary: T is then updated to the wall time of every later uninterrupted
run, i.e. a run that exited before its kill time, which is not a kill point and
is drawn again, or a fresh run after an early kill).  Then, for each kill point:

1. ``bootstrap-repro run -o OPTIONS --no-cache --exp.dir DIR`` starts in a new
   session (its own process group, DataLoader workers included);
2. after a time drawn uniformly in [0, T) it gets SIGKILL, alternately
   - ``main``: the main pid only (what a real ``kill -9 PID`` or the OOM killer does:
     forked DataLoader workers are orphaned and exit by themselves later), and
   - ``group``: the whole process group (``kill -9 -PGID``: workers die at once);
3. it is brought to completion by following what the platform says
   (:func:`next_step`): ``bootstrap-repro run -o DIR/options.yaml --exp.resume last``
   first (the command an interrupted run prints); when that is refused because
   the kill came too early, what the refusal names: the original options file
   with ``--exp.dir DIR --exp.resume last``, a fresh run (no DIR yet), or
   ``rm -r DIR`` and a fresh run; messages that point back to a command already
   refused are a failure.  A refusal because the dir "is being used by another
   running process" (an orphaned worker holding the exp-dir lock) is counted,
   then the same command is retried once the killed run's orphans have exited
   (bounded wait);
4. the final ``logs.json`` and every ``ckpt_*.pth.tar`` file (``last`` and
   ``best_*``: engine, model and optimizer) are compared with the reference's:
   every tensor with ``torch.equal`` (same dtype and shape; equal bytes where NaNs
   make ``torch.equal`` false), every other value with ``==``, every logs.json
   list value by value.

logs.json holds no wall-clock field (its keys are ``{train,eval}_batch.<output>``
and ``{train,eval}_epoch.<output|epoch|lr|nb_nan_skipped>``), so
:data:`WALL_CLOCK_KEYS` is empty and nothing is excluded; a key that looks like
one (see :data:`WALL_CLOCK_HINTS`) would be listed in the output, and still
compared.

Every run imports one copy of ``bootstrap_repro/`` taken when the soak starts
(``--live-code``: the working tree as it is at each run), so that edits made to
the tree meanwhile cannot make a resume differ from its reference.

The runs are strictly one at a time (a killed run's orphaned workers may
overlap the resume by a few seconds).  It prints one line per kill point and::

    kill -9 soak: N kill points (nb_threads 0: a, 2: b), N resumed, K bitwise equal, F failed

then how the kills landed and were recovered, and every failure in detail; it
exits 1 when any kill point failed.

    python benchmarks/kill_soak.py [--kills 50] [--seed S] [--nb-threads 0 2]
                                   [--epochs 6] [--items 256] [--work DIR] [--keep] [--json FILE]
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]

#: logs.json keys holding wall-clock values, excluded from the comparison.  There are none:
#: the Engine logs batch outputs, epoch means, the epoch number, the lr and nb_nan_skipped only.
WALL_CLOCK_KEYS: tuple[str, ...] = ()
#: Substrings that would make a logs.json key look like a wall-clock field (reported, not excluded).
WALL_CLOCK_HINTS = ("time", "duration", "elapsed", "date", "stamp", "sec")

LOCKED = "being used by another running process"
#: What ``--exp.resume last`` says when the kill came before anything could be resumed: the dir (or its
#: options.yaml, which the resume command names) is not there yet, or it holds no checkpoint yet.
NOTHING_TO_RESUME = ("options file not found", "does not exist", "no checkpoint")
KILL_MODES = ("main", "group")


# ----------------------------------------------------------------------------- the experiment
@dataclass(frozen=True)
class Config:
    """The size of the soak's experiment."""

    nb_epochs: int = 6
    nb_items: int = 256
    batch_size: int = 16
    seed: int = 7


def options_tree(cfg: Config, nb_threads: int) -> dict[str, Any]:
    """Options of the experiment (``exp.dir`` is given on the command line)."""
    return {
        "exp": {"dir": None},
        "misc": {"seed": cfg.seed},
        "dataset": {
            "name": "synthetic", "train_split": "train", "eval_split": "val",
            "nb_items": cfg.nb_items, "nb_classes": 4, "dim": 8, "batch_size": cfg.batch_size,
            "nb_threads": nb_threads,
        },
        "model": {
            "name": "simple",
            # dropout draws from the global torch RNG: a resume must restore it
            "network": {"name": "mlp", "input_dim": 8, "hidden": 32, "nb_classes": 4, "dropout": 0.2},
            "criterion": {"name": "nll"},
            "metric": {"name": "accuracy", "topk": [1, 2]},
        },
        # momentum buffers and the scheduler's state must be restored too
        "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9,
                      "lr_scheduler": {"name": "step", "step_size": 2, "gamma": 0.5}},
        "engine": {"nb_epochs": cfg.nb_epochs, "print_freq": 0, "saving_criteria": ["loss:min", "acctop1:max"],
                   "progress_bar": False},
        "view": [],
    }


def cli_command() -> list[str]:
    """``bootstrap-repro`` of this interpreter's environment (else ``python -m bootstrap_repro``)."""
    script = Path(sys.executable).with_name("bootstrap-repro")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "bootstrap_repro"]


def child_env(work: Path, code: Path = REPO) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH")]))
    env["BOOTSTRAP_REPRO_CACHE_DIR"] = str(work / "cache")  # never the user's cache (and --no-cache anyway)
    env.pop("BOOTSTRAP_REPRO_NO_CACHE", None)
    env.pop("BOOTSTRAP_REPRO_HOOKS", None)
    return env


def freeze_code(work: Path) -> tuple[Path, str]:
    """Copy ``bootstrap_repro/`` into ``work/code``: every run of the soak runs this one version of it.

    Others may edit the tree while a soak runs for minutes; a reference from one version and a resume
    from another would differ for that reason alone.  Returns the copy's root and what it was copied from.
    """
    code = work / "code"
    shutil.rmtree(code, ignore_errors=True)
    shutil.copytree(REPO / "bootstrap_repro", code / "bootstrap_repro", ignore=shutil.ignore_patterns("__pycache__"))

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, check=True).stdout.decode().strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    import hashlib

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    diff = git("diff", "HEAD", "--", "bootstrap_repro")
    changes = f", local changes sha256 {hashlib.sha256(diff.encode()).hexdigest()[:12]}" if diff else ""
    return code, f"a copy of bootstrap_repro/ taken at start (HEAD {head}{changes})"


def check_import_root(env: dict[str, str], code: Path) -> None:
    """The runs import bootstrap_repro from ``code`` (PYTHONPATH comes before an editable install)."""
    out = subprocess.run([sys.executable, "-c", "import bootstrap_repro; print(bootstrap_repro.__file__)"], env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    if not Path(out).resolve().is_relative_to(code.resolve()):
        raise RuntimeError(f"the runs would import bootstrap_repro from {out}, not from {code}")


# ----------------------------------------------------------------------------- processes
def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group ``pgid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state ppid pgrp ...
        if fields[0] != "Z" and int(fields[2]) == pgid:
            out.append(int(entry.name))
    return out


def wait_group_gone(pgid: int, limit: float) -> tuple[bool, float]:
    """Wait up to ``limit`` s for every process of ``pgid`` to exit; (all gone, seconds waited)."""
    t0 = time.monotonic()
    while group_members(pgid):
        if time.monotonic() - t0 >= limit:
            return False, time.monotonic() - t0
        time.sleep(0.05)
    return True, time.monotonic() - t0


def kill_leftovers(pgid: int) -> list[int]:
    """SIGKILL, by pid, what is left of a process group this soak started; the pids."""
    pids = group_members(pgid)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


@dataclass
class Proc:
    argv: list[str]
    returncode: int
    wall: float
    stdout: str
    stderr: str
    pgid: int


def start(argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> tuple[subprocess.Popen, Any, Any]:
    out = open(log.with_suffix(".out"), "w")  # noqa: SIM115 - closed by the caller once the process ended
    err = open(log.with_suffix(".err"), "w")  # noqa: SIM115
    p = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    return p, out, err


def run_to_end(argv: list[str], cwd: Path, env: dict[str, str], log: Path, timeout: float) -> Proc:
    """Run one command (own process group) to its end; on ``timeout`` its group is killed."""
    t0 = time.monotonic()
    p, out, err = start(argv, cwd, env, log)
    try:
        rc = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        rc = p.wait()
    wall = time.monotonic() - t0
    out.close()
    err.close()
    return Proc(argv, rc, wall, log.with_suffix(".out").read_text(), log.with_suffix(".err").read_text(), p.pid)


# ----------------------------------------------------------------------------- comparison
def load_outputs(exp: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(logs.json, {checkpoint file name: its content}) of an experiment dir."""
    import torch

    logs = json.loads((exp / "logs.json").read_text())
    ckpts = {p.name: torch.load(p, map_location="cpu", weights_only=True) for p in sorted(exp.glob("ckpt_*.pth.tar"))}
    return logs, ckpts


def wall_clock_like(logs: dict[str, Any]) -> list[str]:
    return sorted(k for k in logs if any(h in k.lower() for h in WALL_CLOCK_HINTS) and k not in WALL_CLOCK_KEYS)


def _same(a: Any, b: Any, where: str, out: list[str], limit: int = 8) -> None:
    import torch

    if len(out) >= limit:
        return
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            out.append(f"{where}: {type(a).__name__} vs {type(b).__name__}")
        elif a.dtype != b.dtype or a.shape != b.shape:
            out.append(f"{where}: {a.dtype}{tuple(a.shape)} vs {b.dtype}{tuple(b.shape)}")
        elif not torch.equal(a, b):
            try:  # NaN != NaN: bitwise equal tensors holding NaNs
                if a.contiguous().view(torch.uint8).equal(b.contiguous().view(torch.uint8)):
                    return
            except RuntimeError:
                pass
            diff = (a.double() - b.double()).abs().max().item() if a.is_floating_point() else "n/a"
            out.append(f"{where}: tensors differ (max |diff| {diff})")
    elif isinstance(a, dict) and isinstance(b, dict):
        if list(a.keys()) != list(b.keys()):
            out.append(f"{where}: keys {sorted(map(str, a))} vs {sorted(map(str, b))}")
            return
        for k in a:
            _same(a[k], b[k], f"{where}[{k!r}]", out, limit)
    elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if type(a) is not type(b) or len(a) != len(b):
            out.append(f"{where}: {type(a).__name__}[{len(a)}] vs {type(b).__name__}[{len(b)}]")
            return
        for i, (x, y) in enumerate(zip(a, b)):
            _same(x, y, f"{where}[{i}]", out, limit)
    elif type(a) is not type(b) or a != b:
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
            return  # NaN
        out.append(f"{where}: {a!r} vs {b!r}")


def differences(ref: tuple[dict, dict], got: tuple[dict, dict]) -> list[str]:
    """What differs between two (logs, checkpoints); empty when bitwise equal."""
    out: list[str] = []
    logs_a = {k: v for k, v in ref[0].items() if k not in WALL_CLOCK_KEYS}
    logs_b = {k: v for k, v in got[0].items() if k not in WALL_CLOCK_KEYS}
    if sorted(logs_a) != sorted(logs_b):
        out.append(f"logs.json keys: only in reference {sorted(set(logs_a) - set(logs_b))}, "
                   f"only in resumed {sorted(set(logs_b) - set(logs_a))}")
    for k in sorted(set(logs_a) & set(logs_b)):
        a, b = logs_a[k], logs_b[k]
        if isinstance(a, list) and isinstance(b, list) and len(a) != len(b):
            out.append(f"logs.json[{k!r}]: {len(a)} values vs {len(b)}")
        elif a != b:
            first = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None) if isinstance(a, list) else None
            out.append(f"logs.json[{k!r}] differs" + (f" from index {first}: {a[first]!r} vs {b[first]!r}"
                                                      if first is not None else f": {a!r} vs {b!r}"))
    if sorted(ref[1]) != sorted(got[1]):
        out.append(f"checkpoint files: only in reference {sorted(set(ref[1]) - set(got[1]))}, "
                   f"only in resumed {sorted(set(got[1]) - set(ref[1]))}")
    for name in sorted(set(ref[1]) & set(got[1])):
        _same(ref[1][name], got[1][name], name, out)
    return out


# ----------------------------------------------------------------------------- one kill point
#: The commands a killed run is brought to completion with (DIR: its exp dir, OPTIONS: the soak's file):
#:   resume      run -o DIR/options.yaml --exp.resume last      (what an interrupted run prints: tried first)
#:   own+resume  run -o OPTIONS --no-cache --exp.dir DIR --exp.resume last
#:   fresh       run -o OPTIONS --no-cache --exp.dir DIR
#:   rm+fresh    rm -r DIR, then fresh
def next_step(label: str, stderr: str) -> str | None:
    """The command the refusal of command ``label`` points to (None: it points nowhere).

    A message offering several ways on is taken at its first one that keeps the dir.
    """
    if "your options file" in stderr or "-o YOURS.yaml" in stderr:  # DIR/options.yaml was never saved
        return "own+resume"
    if label == "resume" and any(m in stderr for m in NOTHING_TO_RESUME[:2]):  # no dir, or no options.yaml
        return "fresh"
    if label in ("fresh", "rm+fresh") and "--exp.resume last" in stderr:  # "train it from the start there with ..."
        return "own+resume"
    if "rm -r" in stderr:
        return "rm+fresh"
    if label == "resume" and NOTHING_TO_RESUME[2] in stderr:
        return "fresh"
    return None


def kill_phase(exp: Path) -> str:
    """Where the run was when it died, from what it left in its exp dir."""
    if not exp.is_dir():
        return "startup (no exp dir)"
    names = {p.name for p in exp.iterdir()}
    if any(n.endswith((".commit.json", ".staged")) or (n.startswith(".ckpt_") and n.endswith(".tmp"))
           for n in names):
        return "checkpoint commit in flight"
    if "options.yaml" not in names:
        return "setup (exp dir created, no options.yaml)"
    if not any(n.startswith("ckpt_last_") for n in names):
        return "epoch 0, before the first checkpoint"
    import torch

    try:
        epoch = int(torch.load(exp / "ckpt_last_engine.pth.tar", weights_only=True)["epoch"])
    except Exception as exc:  # noqa: BLE001 - reported as the phase
        return f"unreadable ckpt_last_engine ({type(exc).__name__})"
    try:
        logged = len(json.loads((exp / "logs.json").read_text()).get("train_epoch.epoch", []))
    except (OSError, ValueError):
        logged = -1
    options = yaml.safe_load((exp / "options.yaml").read_text())
    if epoch >= int(options["engine"]["nb_epochs"]):
        return "after the last checkpoint (teardown)"
    return f"epoch {epoch}, after checkpoint {epoch}" + (" (train epoch flushed)" if logged > epoch else "")


@dataclass
class KillPoint:
    index: int  #: the draw's number, from 1
    nb_threads: int
    mode: str  #: main (the main pid) or group (the process group)
    kill_at: float  #: seconds after the start
    span: float = 0.0  #: the kill time was drawn uniformly in [0, span)
    killed: bool = False  #: False: the run had exited before its kill time
    killed_rc: int | None = None
    phase: str = ""
    checkpoint_at_kill: bool = False  #: a committed ckpt_last (or its commit's journal) was on disk
    orphans: int = 0  #: live processes of the killed run's group right after a main-pid kill
    steps: list[str] = field(default_factory=list)  #: resume, fresh, rm+fresh, wait-orphans
    lock_refusals: int = 0
    orphan_wait_s: float = 0.0
    recovery: str = ""  #: the commands that brought it to completion (see next_step), e.g. resume>fresh
    completed: bool = False
    equal: bool = False
    detail: list[str] = field(default_factory=list)
    full_wall: float | None = None  #: wall time of an uninterrupted run seen here (no kill, or a fresh run)

    @property
    def failed(self) -> bool:
        return not (self.completed and self.equal)


def one_kill(kp: KillPoint, options_file: Path, trial: Path, env: dict[str, str], reference: tuple[dict, dict],
             *, timeout: float, orphan_wait: float) -> KillPoint:
    """Start, kill at ``kp.kill_at``, bring to completion as the platform says, compare."""
    cli = cli_command()
    exp = trial / "exp"
    trial.mkdir(parents=True, exist_ok=True)
    fresh = [*cli, "run", "-o", str(options_file), "--no-cache", "--exp.dir", str(exp)]
    resume = [*cli, "run", "-o", str(exp / "options.yaml"), "--exp.resume", "last"]

    t0 = time.monotonic()
    p, out, err = start(fresh, trial, env, trial / "killed")
    pgid = p.pid
    try:
        p.wait(timeout=kp.kill_at)
    except subprocess.TimeoutExpired:
        if kp.mode == "group":
            os.killpg(pgid, signal.SIGKILL)
        else:
            os.kill(p.pid, signal.SIGKILL)
    kp.killed_rc = p.wait()
    out.close()
    err.close()
    kp.killed = kp.killed_rc == -signal.SIGKILL
    if not kp.killed:
        kp.full_wall = time.monotonic() - t0
        kp.detail.append(f"exited with {kp.killed_rc} before its kill time")
        kill_leftovers(pgid)
        return kp
    kp.orphans = len(group_members(pgid))
    kp.phase = kill_phase(exp)
    kp.checkpoint_at_kill = (exp / "ckpt_last_engine.pth.tar").exists() or (exp / "ckpt.commit.json").exists()

    commands = {"resume": resume, "own+resume": [*fresh, "--exp.resume", "last"], "fresh": fresh, "rm+fresh": fresh}
    label, tried = "resume", []
    for attempt in range(8):
        if label == "rm+fresh":
            shutil.rmtree(exp, ignore_errors=True)
        r = run_to_end(commands[label], trial, env, trial / f"step{attempt}-{label}", timeout)
        kp.steps.append(f"{label}:{r.returncode}")
        if r.returncode == 0:
            kp.completed = True
            if label != "resume":
                kp.full_wall = r.wall
            break
        msg = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else f"exit {r.returncode}, no message"
        if LOCKED in r.stderr:
            kp.lock_refusals += 1
            gone, waited = wait_group_gone(pgid, orphan_wait)
            kp.orphan_wait_s += waited
            kp.steps.append(f"wait-orphans:{waited:.1f}s")
            if not gone:
                kp.detail.append(f"{label}: {msg}; orphans {group_members(pgid)} still alive after {orphan_wait:.0f} s")
                break
            continue  # the same command again
        tried.append((label, msg))
        step = next_step(label, r.stderr)
        if step is None:
            kp.detail.append(f"{label} failed (exit {r.returncode}): {msg}")
            break
        if step in (t for t, _ in tried):
            kp.detail.append("contradictory messages, no way forward: " + " / ".join(f"{t}: {m}" for t, m in tried))
            break
        label = step
    if kp.completed:
        kp.recovery = ">".join(s.split(":")[0] for s in kp.steps if not s.startswith("wait-"))
        if kp.recovery == "resume":
            kp.recovery += " (from a checkpoint)" if kp.checkpoint_at_kill else " (no checkpoint yet: from the start)"
    left = kill_leftovers(pgid)  # a main-pid kill's orphans that outlived the recovery
    if left:
        kp.detail.append(f"orphans {left} of the killed run still alive at the end (killed)")
    if not kp.completed:
        return kp
    diffs = differences(reference, load_outputs(exp))
    kp.equal = not diffs
    kp.detail.extend(diffs)
    return kp


# ----------------------------------------------------------------------------- the soak
@dataclass
class Soak:
    config: Config
    seed: int
    nb_threads: list[int]
    reference_wall: dict[int, float] = field(default_factory=dict)
    reference_reproduced: dict[int, bool | None] = field(default_factory=dict)
    wall_clock_like_keys: list[str] = field(default_factory=list)
    points: list[KillPoint] = field(default_factory=list)
    missed: int = 0  #: draws whose run exited before the kill time (drawn again)
    errors: list[str] = field(default_factory=list)  #: a reference that did not run
    code: str = "the working tree"  #: which bootstrap_repro the runs imported

    @property
    def kills(self) -> list[KillPoint]:
        return [p for p in self.points if p.killed]

    @property
    def failed(self) -> list[KillPoint]:
        return [p for p in self.kills if p.failed]

    def summary(self) -> str:
        kills = self.kills
        per = ", ".join(f"{n}: {sum(p.nb_threads == n for p in kills)}" for n in self.nb_threads)
        resumed = sum(p.completed for p in kills)
        equal = sum(p.completed and p.equal for p in kills)
        return (f"kill -9 soak: {len(kills)} kill points (nb_threads {per}), {resumed} resumed, "
                f"{equal} bitwise equal, {len(self.failed) + len(self.errors)} failed")

    def report(self) -> list[str]:
        kills = self.kills
        c = collections.Counter
        lines = [self.summary()]
        lines.append("  recovery: " + _counts(c(p.recovery or "not completed" for p in kills)))
        lines.append("  kill mode: " + _counts(c(p.mode for p in kills)))
        lines.append("  kill landed: " + _counts(c(_phase_group(p.phase) for p in kills)))
        main2 = [p for p in kills if p.mode == "main" and p.nb_threads > 0]
        if main2:
            lines.append(f"  main-pid kills with workers: {len(main2)}, orphaned workers alive after the kill in "
                         f"{sum(p.orphans > 0 for p in main2)}, resume refused (exp dir locked by an orphan) in "
                         f"{sum(p.lock_refusals > 0 for p in main2)} "
                         f"(waited {sum(p.orphan_wait_s for p in main2):.1f} s in all for orphans to exit)")
        other_locks = sum(p.lock_refusals > 0 for p in kills if p not in main2)
        if other_locks:
            lines.append(f"  resume refused (exp dir locked) after other kills: {other_locks}")
        spans = [p.span for p in kills]
        if spans:
            lines.append(f"  kill times: uniform in [0, T), T = wall time of the latest uninterrupted run "
                         f"(reference, a run that exited before its kill, a fresh run): T {min(spans):.2f}.."
                         f"{max(spans):.2f} s, kills at {min(p.kill_at for p in kills):.2f}.."
                         f"{max(p.kill_at for p in kills):.2f} s")
        lines.append("  references: " + ", ".join(
            f"nb_threads {n}: {self.reference_wall.get(n, float('nan')):.2f} s"
            + {True: ", reproduced bitwise by a 2nd run", False: ", NOT reproduced by a 2nd run", None: ""}[
                self.reference_reproduced.get(n)] for n in self.nb_threads))
        lines.append(f"  code: {self.code}")
        lines.append(f"  logs.json wall-clock keys excluded: {list(WALL_CLOCK_KEYS) or 'none (it has none)'}"
                     + (f"; keys that look like time (compared anyway): {self.wall_clock_like_keys}"
                        if self.wall_clock_like_keys else ""))
        if self.missed:
            lines.append(f"  {self.missed} draw(s) came after the run had exited (not killed): drawn again")
        for e in self.errors:
            lines.append(f"  FAILED reference: {e}")
        for p in self.failed:
            lines.append(f"  FAILED #{p.index} nb_threads {p.nb_threads} kill {p.mode} at {p.kill_at:.2f}s "
                         f"({p.phase}); steps {' '.join(p.steps)}")
            lines.extend(f"      {d}" for d in p.detail)
        notes = [p for p in kills if not p.failed and p.detail]
        for p in notes:
            lines.append(f"  note #{p.index}: " + "; ".join(p.detail))
        return lines


def _counts(counter: collections.Counter) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))) or "none"


def _phase_group(phase: str) -> str:
    if phase.startswith("epoch ") and "after checkpoint" in phase:
        return "mid-run (between checkpoints)"
    return phase


def reference_run(cfg: Config, nb_threads: int, work: Path, env: dict[str, str], timeout: float,
                  name: str = "reference") -> tuple[Proc, Path]:
    d = work / f"threads{nb_threads}"
    d.mkdir(parents=True, exist_ok=True)
    exp = d / name
    shutil.rmtree(exp, ignore_errors=True)
    argv = [*cli_command(), "run", "-o", str(d / "options.yaml"), "--no-cache", "--exp.dir", str(exp)]
    return run_to_end(argv, d, env, d / name, timeout), exp


def soak(kills: int = 50, seed: int = 0, nb_threads: Sequence[int] = (0, 2), config: Config = Config(),
         work: Path | None = None, *, check_reference: bool = True, frozen: bool = True, keep: bool = False,
         timeout: float = 300,
         orphan_wait: float = 30, print_fn: Callable[[str], None] = print) -> Soak:
    """Run the soak: ``kills`` kill points split evenly over the ``nb_threads`` settings."""
    own_work = work is None
    work = Path(tempfile.mkdtemp(prefix="kill-soak-")) if work is None else Path(work)
    work.mkdir(parents=True, exist_ok=True)
    result = Soak(config, seed, list(nb_threads))
    if frozen:
        code, result.code = freeze_code(work)
        env = child_env(work, code)
        check_import_root(env, code)
    else:
        env = child_env(work)
    rng = random.Random(seed)
    share = [kills // len(nb_threads) + (i < kills % len(nb_threads)) for i in range(len(nb_threads))]
    index = 0
    for n, count in zip(nb_threads, share):
        d = work / f"threads{n}"
        d.mkdir(parents=True, exist_ok=True)
        options_file = d / "options.yaml"
        options_file.write_text(yaml.safe_dump(options_tree(config, n), sort_keys=False))
        ref, ref_exp = reference_run(config, n, work, env, timeout)
        if ref.returncode != 0:
            result.errors.append(f"nb_threads {n}: reference run exited {ref.returncode}: {ref.stderr.strip()[-500:]}")
            continue
        result.reference_wall[n] = ref.wall
        reference = load_outputs(ref_exp)
        result.wall_clock_like_keys = sorted(set(result.wall_clock_like_keys) | set(wall_clock_like(reference[0])))
        if check_reference:
            again, again_exp = reference_run(config, n, work, env, timeout, name="reference2")
            diffs = differences(reference, load_outputs(again_exp)) if again.returncode == 0 else [again.stderr[-500:]]
            result.reference_reproduced[n] = not diffs
            if diffs:
                result.errors.append(f"nb_threads {n}: two uninterrupted runs differ: {diffs[:3]}")
            shutil.rmtree(again_exp, ignore_errors=True)
        else:
            result.reference_reproduced[n] = None
        print_fn(f"reference nb_threads {n}: {ref.wall:.2f} s, {len(reference[1])} checkpoint files, "
                 f"{len(reference[0])} logs.json keys")
        done, span = 0, ref.wall
        while done < count:
            mode = KILL_MODES[done % 2]
            index += 1  # every draw's number (1, 2, ...): the [n] of the progress lines, the trial dir killNNN
            kp = KillPoint(index, n, mode, rng.uniform(0.0, span), span)
            trial = d / f"kill{index:03d}"
            shutil.rmtree(trial, ignore_errors=True)
            one_kill(kp, options_file, trial, env, reference, timeout=timeout, orphan_wait=orphan_wait)
            if kp.full_wall is not None:  # the machine is shared: follow its current speed
                span = kp.full_wall
            if not kp.killed and kp.killed_rc != 0:  # an uninterrupted run failed: nothing to soak
                err = (trial / "killed.err").read_text().strip().splitlines()
                result.errors.append(f"nb_threads {n}: a run exited {kp.killed_rc} before its kill time: "
                                     f"{err[-1] if err else 'no message'} (see {trial})")
                print_fn(f"[{index:3d}] nb_threads {n}: the run failed on its own ({kp.killed_rc}); stopping")
                break
            if not kp.killed:
                result.missed += 1
                print_fn(f"[{index:3d}] nb_threads {n} kill {mode:5s} at {kp.kill_at:5.2f}s: the run had already "
                         f"exited ({kp.killed_rc}); drawing again")
                shutil.rmtree(trial, ignore_errors=True)
                continue
            done += 1
            result.points.append(kp)
            status = "equal" if not kp.failed else "FAILED"
            extra = f", orphans {kp.orphans}" if kp.orphans else ""
            extra += f", lock refused x{kp.lock_refusals} (waited {kp.orphan_wait_s:.1f}s)" if kp.lock_refusals else ""
            print_fn(f"[{index:3d}] nb_threads {n} kill {mode:5s} at {kp.kill_at:5.2f}s in {kp.phase}{extra}: "
                     f"{' -> '.join(kp.steps)}: {status}")
            if not kp.failed and not keep:
                shutil.rmtree(trial, ignore_errors=True)
    if own_work and not keep and not result.failed and not result.errors:
        shutil.rmtree(work, ignore_errors=True)
    elif result.failed or result.errors or keep:
        print_fn(f"work dir kept: {work}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=50, help="kill points in all, split evenly over --nb-threads")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill times")
    p.add_argument("--nb-threads", type=int, nargs="+", default=[0, 2], help="dataset.nb_threads settings")
    p.add_argument("--epochs", type=int, default=Config.nb_epochs)
    p.add_argument("--items", type=int, default=Config.nb_items, help="dataset.nb_items (per split)")
    p.add_argument("--work", type=Path, help="work dir (default: a new temporary dir, removed when all passed)")
    p.add_argument("--keep", action="store_true", help="keep every trial's dir")
    p.add_argument("--no-reference-check", action="store_true",
                   help="skip the second uninterrupted run that checks the reference is reproducible")
    p.add_argument("--live-code", action="store_true",
                   help="run the working tree's bootstrap_repro as it is at each run (default: a copy taken at start)")
    p.add_argument("--orphan-wait", type=float, default=30, help="max seconds to wait for orphaned workers")
    p.add_argument("--json", type=Path, help="write every kill point's details to this file")
    args = p.parse_args(argv)
    cfg = Config(nb_epochs=args.epochs, nb_items=args.items)
    t0 = time.monotonic()
    result = soak(args.kills, args.seed, args.nb_threads, cfg, args.work, check_reference=not args.no_reference_check,
                  frozen=not args.live_code, keep=args.keep, orphan_wait=args.orphan_wait, print_fn=lambda s: print(s, flush=True))
    print()
    print("\n".join(result.report()))
    print(f"  ({time.monotonic() - t0:.0f} s; seed {args.seed}; {cfg})")
    if args.json:
        args.json.write_text(json.dumps({"summary": result.summary(), "config": asdict(cfg), "seed": args.seed,
                                         "reference_wall": result.reference_wall, "missed": result.missed,
                                         "errors": result.errors, "points": [asdict(k) for k in result.points]},
                                        indent=1))
    return 1 if result.failed or result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
