"""The sweep driver: asynchronous workers that run one experiment per trial, each in its own process.

A worker thread loops: under the study lock it recovers lost trials, counts the study's
trials and asks Optuna for the next one (a retry first); it then runs

    python -m bootstrap_repro run -o <options> <sweep overrides> <trial params> --exp.dir <dir>/trials/<number>

with :mod:`bootstrap_repro.sweep._pruning` loaded as a hook plugin, and tells the study how it
ended.  A free worker takes the next trial at once: no batches.

**Counting.** A trial *counts* when it is COMPLETE, PRUNED, RUNNING, or FAIL on its own (its
run failed: it raised, or crashed).  A trial is *lost* when its process did not end on its own:
it was killed by a signal from outside (SIGKILL of the OOM killer or of a user, SIGTERM of a
scheduler; ``killed_by_signal``), its driver died (``kill -9``; detected from the driver's pid
and start time recorded in the trial, or by PostgreSQL heartbeats for other machines), it was
interrupted, or its dir already existed.  A lost trial is marked FAIL, does not count, and is
retried once with the same params in a new trial (a new number), up to ``sweep.max_retries``
times (:data:`MAX_ATTEMPTS` attempts by default); on its last attempt it counts as a failure.
Workers start trials while fewer than ``n_trials`` count, so every process of the study together
ends with exactly ``n_trials`` trials COMPLETE, PRUNED or failed on their own.

**Resuming a retry.** When the lost trial's process was seen to end (killed or interrupted: its
``returncode`` is recorded) and its experiment dir holds a ``last`` checkpoint saved from the very
options the retry would run with, the retry runs in that dir with ``--exp.resume last`` (its
``dir`` user attr says so) and gets the lost trial's intermediate values; otherwise it starts from
scratch in its own dir ``trials/<number>``.

**Outcome of a trial process.** exit 0 with ``state: PRUNED`` in its ``sweep_trial.json`` →
PRUNED; exit 0 → COMPLETE with the *best* value of the objective over its epochs (max or min
by direction) read from ``logs.json`` (the per-epoch values are the trial's intermediate
values); exit 130, SIGINT, or any exit while the driver stops → lost (interrupted); ended by a
signal (``-N``, ``128+N`` from Docker, torchrun's report) other than a crash (SIGSEGV, SIGABRT,
...) → lost (killed); anything else → FAIL.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import site
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import bootstrap_repro
from bootstrap_repro.errors import ReproError
from bootstrap_repro.fileio import atomic_write_json
from bootstrap_repro.options import Options, check_resume_options
from bootstrap_repro.record import sanitize_url
from bootstrap_repro.run import HOOKS_ENV
from bootstrap_repro.sweep._algorithms import make_pruner, make_sampler
from bootstrap_repro.sweep._errors import ObjectiveNotLoggedError, SearchSpaceChangedError, StorageError
from bootstrap_repro.sweep._gpus import gpus_for, visible_gpus
from bootstrap_repro.sweep._report import MARKER, build_report, read_marker
from bootstrap_repro.sweep._spec import SweepSpec
from bootstrap_repro.sweep._storage import StudyStorage, quiet_optuna, storage_for, url_without_password
from bootstrap_repro.sweep._trial import (
    CRASH_SIGNALS,
    HOOK_MODULE,
    MAX_ATTEMPTS,
    TRIAL_ENV,
    TRIAL_FILE,
    TrialContext,
    attempt_of,
    best_value,
    counts_toward_n_trials,
    ended_by_signal,
    is_lost,
    lost_reason,
    objective_series,
    read_trial_file,
    update_trial_file,
)

if TYPE_CHECKING:
    import optuna

__all__ = ["Sweep", "SweepResult", "MAX_ATTEMPTS", "SPACE_ATTR", "space_diff"]

#: The study user attribute holding the search space (compared when resuming).
SPACE_ATTR = "bootstrap_repro.space"
_WAIT = object()  # the budget is full but trials of other processes still run


@dataclass
class SweepResult:
    """How a sweep ended."""

    exit_code: int  #: 0 done, 1 no trial completed, 130 interrupted
    counts: dict[str, int]  #: trials per state (``lost`` counted apart from ``FAIL``; ``killed``: those of them killed)
    best: Any  #: the best :class:`optuna.trial.FrozenTrial`, or None
    report: Path | None  #: ``<sweep.dir>/view.html``


@dataclass
class _Claim:
    trial: Any  # optuna.trial.Trial
    params: dict[str, Any]
    dir: Path
    resume: str | None = None  #: the checkpoint the retry resumes from, in ``dir`` (the lost trial's)
    retry_of: int | None = None


#: A checkpoint's files (as :func:`bootstrap_repro.engines.checkpoint_names` has them, without importing torch).
_CKPT_PARTS = ("engine", "model", "optimizer")


def _has_checkpoint(exp_dir: Path, name: str) -> bool:
    """Whether ``exp_dir`` holds the complete checkpoint ``name`` (final, or staged by a commit in flight)."""
    def present(part: str) -> bool:
        f = exp_dir / f"ckpt_{name}_{part}.pth.tar"
        return f.exists() or f.with_name(f.name + ".staged").exists()

    return all(present(part) for part in _CKPT_PARTS)


# --------------------------------------------------------------------------- processes
def _proc_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot), to tell a reused pid apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    now = _proc_start(pid)
    return start is None or now is None or now == start


def space_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """One line listing what differs between two search spaces (``a.b: high 0.1 -> 0.2; +c``)."""
    parts = [f"{k}: {old.get(k)} -> {new.get(k)}" for k in ("objective", "direction") if old.get(k) != new.get(k)]
    op, np_ = old.get("params", {}), new.get("params", {})
    for key in [*op, *(k for k in np_ if k not in op)]:
        if key not in np_:
            parts.append(f"-{key}")
        elif key not in op:
            parts.append(f"+{key} {json.dumps(np_[key])}")
        elif op[key] != np_[key]:
            fields = [f for f in [*op[key], *(f for f in np_[key] if f not in op[key])] if op[key].get(f) != np_[key].get(f)]
            parts += [f"{key}.{f}: {json.dumps(op[key].get(f))} -> {json.dumps(np_[key].get(f))}" for f in fields]
    return "; ".join(parts)


def _package_root() -> str | None:
    """The dir to put on the trials' PYTHONPATH so that they import this very package (None if installed)."""
    root = str(Path(bootstrap_repro.__file__).resolve().parents[1])
    installed = {str(Path(p).resolve()) for p in [*site.getsitepackages(), site.getusersitepackages()]}
    return None if root in installed else root


class Sweep:
    """Run a checked :class:`SweepSpec`: ``Sweep(spec).run()``.

    :meth:`prepare` does every check that needs the storage (reachability, the dir's owner, a
    changed search space) before anything is created; :meth:`run` calls it when needed.
    """

    #: Seconds between two looks at the study while trials of other processes still run.
    poll_s = 1.0

    def __init__(self, spec: SweepSpec, *, stream: IO[str] | None = None, python: str | None = None) -> None:
        self.spec = spec
        self.stream = stream if stream is not None else sys.stdout
        self.python = python or sys.executable
        self.storage: StudyStorage = storage_for(spec.storage, spec.dir, spec.name)
        self.study: optuna.Study | None = None
        self.identity = {"host": socket.gethostname(), "pid": os.getpid(), "start": _proc_start(os.getpid())}
        self._tlock = threading.Lock()  # claims of this process
        self._plock = threading.Lock()  # running processes
        self._print_lock = threading.RLock()  # the signal handler may print from the main thread
        self._report_lock = threading.Lock()
        self._stopping = threading.Event()
        self._done = threading.Event()
        self._dirty = threading.Event()
        self._mine: dict[int, Any] = {}
        self._procs: dict[int, subprocess.Popen[str]] = {}
        self._errors: list[BaseException] = []
        self._fatal: ReproError | None = None
        self._interrupted = False
        self._gpus = visible_gpus()
        self._runtime_args: list[str] = []  # options every trial gets for its runtime (see _prepare_runtime)
        self.n_trials = self._budget()
        #: a lost or killed trial runs at most this many times (``sweep.max_retries`` + 1)
        self.max_attempts = spec.max_retries + 1

    # ------------------------------------------------------------------ output
    def say(self, line: str) -> None:
        with self._print_lock:
            print(f"[sweep {self.spec.name}] {line}", file=self.stream, flush=True)

    # ------------------------------------------------------------------ checks and setup
    def _budget(self) -> int:
        """``n_trials``, capped at the number of grid points for the grid sampler."""
        if self.spec.sampler.name != "grid":
            return self.spec.n_trials
        size = 1
        for p in self.spec.params:
            size *= len(p.grid_values() or [])
        return min(self.spec.n_trials, size)

    def _check_dir(self, study_exists: bool) -> None:
        d = self.spec.dir
        if (d / MARKER).is_file():
            marker = read_marker(d)
            if marker.get("study") != self.spec.name or marker.get("storage") != self.storage.describe():
                raise StorageError(
                    f"sweep.dir: {d} holds study {marker.get('study')!r} in {marker.get('storage')}, not "
                    f"{self.spec.name!r} in {self.storage.describe()}; choose another sweep.dir")
        elif d.is_dir() and any(p.name != ".sweep.lock" for p in d.iterdir()):
            raise StorageError(f"sweep.dir: {d} exists and is not a sweep dir (no {MARKER}); choose another sweep.dir")
        trials = d / "trials"
        if not study_exists and trials.is_dir() and any(trials.iterdir()):
            raise StorageError(
                f"sweep.dir: {trials} holds trial dirs but study {self.spec.name!r} is not in "
                f"{self.storage.describe()}; point sweep.storage at the original study or choose another sweep.dir")

    def _existing_space(self) -> tuple[bool, dict[str, Any] | None, Any]:
        """``(study exists, stored space, study)`` without creating anything."""
        import optuna

        if not self.storage.exists():
            return False, None, None
        with quiet_optuna():
            try:
                study = optuna.load_study(study_name=self.spec.name, storage=self.storage.open(),
                                          sampler=optuna.samplers.RandomSampler())
            except KeyError:
                return False, None, None
        return True, study.user_attrs.get(SPACE_ATTR), study

    def _check_space(self, stored: Mapping[str, Any] | None, study: Any) -> bool:
        """Raise when the study's space differs; True when the stored one must be replaced."""
        new = self.spec.space()
        if stored is None or stored == new:
            return stored is None
        diff = space_diff(stored, new)
        params_same = stored.get("params") == new["params"] and stored.get("direction") == new["direction"]
        if params_same and study is not None:
            from optuna.trial import TrialState

            if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
                return True  # nothing finished yet: the objective may still be fixed
        raise SearchSpaceChangedError(
            f"sweep: study {self.spec.name!r} in {self.storage.describe()} was created with another search space "
            f"({diff}); restore the sweep file, or set a new sweep.name or sweep.dir to start a new study")

    def prepare(self) -> None:
        """Check the storage, the dir and the search space, then create the dir, the study and the marker."""
        if self.study is not None:
            return
        with _optuna_warnings_only():
            self._prepare()

    def _prepare(self) -> None:
        import optuna

        self.storage.check()
        exists, stored, study = self._existing_space()
        self._check_dir(exists)
        self._check_space(stored, study)
        self._prepare_runtime()
        self.spec.dir.mkdir(parents=True, exist_ok=True)
        with self.storage.lock(), quiet_optuna():
            self.study = optuna.create_study(
                study_name=self.spec.name, storage=self.storage.open(), direction=self.spec.direction,
                load_if_exists=True, sampler=make_sampler(self.spec.sampler, self.spec.params),
                pruner=make_pruner(self.spec.pruner))
            stored = self.study.user_attrs.get(SPACE_ATTR)
            if self._check_space(stored, self.study):
                if stored is None:
                    for point in self.spec.enqueue:
                        self.study.enqueue_trial(point)
                self.study.set_user_attr(SPACE_ATTR, self.spec.space())
        self._write_marker()

    def _prepare_runtime(self) -> None:
        """Trials in Docker (``runtime.name: docker``): the image, and the study reachable from inside.

        The image is found or built once here (bad Docker input stops the sweep before any trial;
        parallel trials never build it twice).  Each trial's container then gets the journal's dir
        mounted read-write (``runtime.docker.mounts``), or the host's network for a database URL
        (``runtime.docker.network: host``, unless set), so that its run reports to the study and
        is pruned as a local trial is.  Neither option is part of the cache key.
        """
        base = self.spec.base
        if base is None:
            return
        from bootstrap_repro.runtimes import DockerSettings, wants_docker

        if not wants_docker(base):
            return
        from bootstrap_repro.runtimes._docker import connect, ensure_image

        settings = DockerSettings.from_options(base)
        client = connect()
        try:
            image = ensure_image(client, settings, self.stream)
        finally:
            client.close()
        self.say(f"trials run in Docker image {image.tag or image.id} ({image.id})")
        info = self.storage.trial_info()
        if "journal" in info:
            mounts = [str(m) for m in base.get("runtime.docker.mounts") or []]
            self._runtime_args = ["--runtime.docker.mounts", *mounts, f"{Path(info['journal']).parent}:rw"]
        elif not base.get("runtime.docker.network"):
            self._runtime_args = ["--runtime.docker.network", "host"]

    def _write_marker(self) -> None:
        url = None if self.spec.storage is None else url_without_password(self.spec.storage)
        atomic_write_json(self.spec.dir / MARKER, {
            "kind": "bootstrap-repro sweep", "schema": 1, "study": self.spec.name,
            "storage": self.storage.describe(), "storage_url": url,
            "objective": self.spec.objective, "direction": self.spec.direction, "n_trials": self.spec.n_trials,
            "max_retries": self.spec.max_retries, "params": [p.key for p in self.spec.params],
            "sweep_file": str(self.spec.source.resolve()) if self.spec.source else None,
        }, indent=1)

    # ------------------------------------------------------------------ study bookkeeping
    @staticmethod
    def counts_toward_n_trials(t: Any, max_attempts: int = MAX_ATTEMPTS) -> bool:
        """Whether trial ``t`` uses one of the ``n_trials``: COMPLETE, PRUNED, RUNNING, or FAIL on its own
        (or lost or killed on its last attempt).  A WAITING trial (a retry, an enqueued point) counts once it runs."""
        return counts_toward_n_trials(t, max_attempts)

    def _counts(self, t: Any) -> bool:
        return counts_toward_n_trials(t, self.max_attempts)

    def _dead(self, t: Any) -> bool:
        """Whether running trial ``t`` belongs to a driver that is gone (checked under the study lock)."""
        driver = t.user_attrs.get("driver")
        if not driver:
            return True  # asked but never claimed: its driver died while holding the lock
        if driver.get("host") != self.identity["host"]:
            return False  # another machine: its heartbeats tell (PostgreSQL storage)
        return not _alive(int(driver["pid"]), driver.get("start"))

    def _recover(self) -> list[Any]:
        """Fail the running trials of dead drivers, retry lost trials; returns the study's trials."""
        import optuna
        from optuna.trial import TrialState

        study = self.study
        assert study is not None
        trials = study.get_trials(deepcopy=False)
        for t in trials:
            if t.state == TrialState.RUNNING and t.number not in self._mine and self._dead(t):
                reason = "its driver died"
                try:
                    optuna.trial.Trial(study, t._trial_id).set_user_attr("lost", reason)
                    study.tell(t.number, state=TrialState.FAIL)
                except optuna.exceptions.UpdateFinishedTrialError:
                    continue  # it ended meanwhile
                trial_dir = self.spec.trial_dir(t.number)
                if trial_dir.is_dir():
                    update_trial_file(trial_dir, state="FAIL", lost=reason)
                self.say(f"trial {t.number:04d} was left RUNNING by a driver that is gone: failed, will be retried")
        if self.storage.heartbeat:
            optuna.storages.fail_stale_trials(study)
        trials = study.get_trials(deepcopy=False)
        retried = {t.user_attrs.get("retry_of") for t in trials}
        for t in trials:
            if is_lost(t) and t.number not in retried and attempt_of(t) < self.max_attempts:
                attrs = {"retry_of": t.number, "attempt": attempt_of(t) + 1}
                if "returncode" in t.user_attrs and t.user_attrs.get("dir"):  # its process ended: its dir is free
                    attrs["resume_dir"] = t.user_attrs["dir"]
                study.enqueue_trial(t.params, user_attrs=attrs)
        return study.get_trials(deepcopy=False)

    def _resumable(self, rel: str | None, params: Mapping[str, Any]) -> Path | None:
        """The lost trial's dir ``rel`` when a retry with ``params`` can resume it from its ``last`` checkpoint.

        Only when the experiment's saved options are those the retry would run with (a changed sweep
        override, base file or runtime would make the resume refuse, or continue another experiment).
        """
        if not rel:
            return None
        exp_dir = self.spec.dir / rel
        if not _has_checkpoint(exp_dir, "last"):
            return None
        try:
            options = Options.load(self.spec.options_path, self._run_args(params, exp_dir))
            if check_resume_options(options, exp_dir):  # an explicit value differs from the saved one
                return None
        except (ReproError, OSError, ValueError):
            return None
        return exp_dir

    def _claim(self) -> _Claim | object | None:
        """The next trial of this worker, ``_WAIT``, or None when the study needs no more trials."""
        from optuna.trial import TrialState

        study = self.study
        assert study is not None
        with self._tlock, self.storage.lock(), quiet_optuna():
            while True:
                if self._stopping.is_set():
                    return None
                trials = self._recover()
                used = sum(1 for t in trials if self._counts(t))
                if used >= self.n_trials:
                    others = any(t.state == TrialState.RUNNING and t.number not in self._mine for t in trials)
                    return _WAIT if others else None
                study.sampler = make_sampler(self.spec.sampler, self.spec.params, len(trials))
                trial = study.ask()
                params = {p.key: p.suggest(trial) for p in self.spec.params}
                trial.set_user_attr("driver", self.identity)
                asked = trial.user_attrs
                resume_dir = self._resumable(asked.get("resume_dir"), params) if "retry_of" in asked else None
                trial_dir = resume_dir or self.spec.trial_dir(trial.number)
                if resume_dir is None and (trial.number in self._mine or trial_dir.exists()):
                    trial.set_user_attr("lost", f"{trial_dir} already existed")
                    study.tell(trial, state=TrialState.FAIL)
                    self.say(f"trial {trial.number:04d}: {trial_dir} already exists; retrying in a new trial")
                    continue
                rel = str(trial_dir.relative_to(self.spec.dir))
                trial.set_user_attr("dir", rel)
                claim = _Claim(trial, params, trial_dir, retry_of=asked.get("retry_of"))
                if "retry_of" in asked:
                    previous = next((t for t in trials if t.number == asked["retry_of"]), None)
                    if resume_dir is not None:
                        claim.resume = "last"
                        trial.set_user_attr("resumed_from", "last")
                        for step, value in sorted((previous.intermediate_values if previous else {}).items()):
                            trial.report(value, step)  # the curve so far (the resumed run reports the next epochs)
                    how = (f"resuming {rel} from its last checkpoint" if resume_dir is not None
                           else f"from scratch in {rel}")
                    why = lost_reason(previous) if previous is not None else "lost"
                    self.say(f"trial {asked['retry_of']:04d} {why}, retried as trial {trial.number:04d} "
                             f"(attempt {attempt_of(trial)} of {self.max_attempts}, {how})")
                if self.storage.heartbeat:
                    self.storage.open().record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]
                self._mine[trial.number] = trial
                return claim

    # ------------------------------------------------------------------ one trial
    def _env(self, slot: int, ctx: TrialContext) -> dict[str, str]:
        env = dict(os.environ)
        hooks = [h.strip() for h in env.get(HOOKS_ENV, "").split(",") if h.strip()]
        env[HOOKS_ENV] = ",".join([*hooks, HOOK_MODULE] if HOOK_MODULE not in hooks else hooks)
        env[TRIAL_ENV] = ctx.to_env()
        root = _package_root()
        if root is not None:
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        per_trial = int(self.spec.base.get("runtime.nproc_per_node", 1) or 1) if self.spec.base is not None else 1
        gpus = gpus_for(slot, self._gpus, per_trial)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        if self.spec.jobs > 1 and "OMP_NUM_THREADS" not in os.environ:
            env["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // self.spec.jobs))
        return env

    def _run_args(self, params: Mapping[str, Any], exp_dir: Path) -> list[str]:
        """The options of a trial's run after ``-o <base options>`` (every one explicit)."""
        journal = self.storage.trial_info().get("journal")  # the study's own file: read and appended, not an input
        ignore = ["--exp.inputs_ignore", journal, f"{journal}.*"] if journal else []
        return [*self.spec.trial_overrides(params), *self._runtime_args, *ignore, "--exp.dir", str(exp_dir)]

    def _start_resume(self, claim: _Claim) -> None:
        """Before a retry resumes the lost trial's dir: its ``sweep_trial.json`` starts afresh, with the attempts before."""
        old = read_trial_file(claim.dir)
        attempts = list(old.pop("previous_attempts", None) or [])
        if old:
            keep = ("number", "state", "lost", "killed_by_signal", "returncode", "duration_s", "value")
            attempts.append({k: old[k] for k in keep if k in old})
        atomic_write_json(claim.dir / TRIAL_FILE, {"retry_of": claim.retry_of, "resumed_from": claim.resume,
                                                   "previous_attempts": attempts}, indent=1)

    def _run_trial(self, slot: int, claim: _Claim) -> None:
        trial, spec = claim.trial, self.spec
        ctx = TrialContext(storage=self.storage.trial_info(), storage_desc=self.storage.describe(), study=spec.name,
                           number=trial.number, trial_id=trial._trial_id, objective=spec.objective,
                           direction=spec.direction, pruner=spec.pruner.as_dict(), driver_pid=os.getpid(),
                           params=claim.params)
        resume = ["--exp.resume", claim.resume] if claim.resume else []
        cmd = [self.python, "-m", "bootstrap_repro", "run", "-o", str(spec.options_path.resolve()),
               *self._run_args(claim.params, claim.dir), *resume]
        if claim.resume:
            self._start_resume(claim)
        tail: collections.deque[str] = collections.deque(maxlen=30)
        start = time.time()
        with self._plock:
            proc = None if self._stopping.is_set() else subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                text=True, errors="replace", env=self._env(slot, ctx))
            if proc is not None:
                self._procs[trial.number] = proc
        if proc is None:
            self._finish(claim, None, tail, 0.0)
            return
        assert proc.stderr is not None
        for line in proc.stderr:
            tail.append(line.rstrip("\n"))
        rc = proc.wait()
        with self._plock:
            self._procs.pop(trial.number, None)
        self._finish(claim, rc, tail, time.time() - start)

    def _outcome(self, claim: _Claim, rc: int | None, tail: collections.deque[str]) -> tuple[str, Any, dict[str, Any]]:
        """``(state, value, user attrs)`` of a trial whose process ended with ``rc`` (None: never started)."""
        spec = self.spec
        marker = read_trial_file(claim.dir)
        ours = marker.get("study") == spec.name and marker.get("number") == claim.trial.number
        state = marker.get("state") if ours else None
        if rc is None:
            return "FAIL", None, {"lost": "the driver stopped before it started"}
        sig = ended_by_signal(rc, tail)
        if rc == 130 or sig == signal.SIGINT or (rc != 0 and self._stopping.is_set()) or state == "ORPHANED":
            return "FAIL", None, {"lost": "interrupted"}  # the user's Ctrl-C (or the driver's stop): not a kill
        if sig is not None and sig not in CRASH_SIGNALS:  # killed from outside (OOM killer, kill -9, preemption)
            return "FAIL", None, {"lost": f"killed by {sig.name}", "killed_by_signal": sig.name}
        if rc != 0:
            errors = [line for line in tail if line.startswith("error:")]
            if errors or sig is None:
                last = (errors or [line for line in tail if line.strip()] or [f"exit code {rc}"])[-1]
            else:  # a crash of its own code (CRASH_SIGNALS): a failure, as an exception
                last = f"crashed with {sig.name} (exit code {rc})"
            return "FAIL", None, {"error": sanitize_url(last.removeprefix("error: "))[:500]}  # no credentials
        if state == "PRUNED":
            return "PRUNED", None, {}
        from bootstrap_repro.views import read_log

        logs = read_log(claim.dir / "logs.json")
        series = objective_series(logs, spec.objective)
        if state == "OBJECTIVE_MISSING" or series is None:
            logged = marker.get("logged") if state == "OBJECTIVE_MISSING" else sorted(
                k for k in logs if k.startswith(f"{spec.mode}_epoch.") and k != f"{spec.mode}_epoch.epoch")
            self._fatal = ObjectiveNotLoggedError(
                f"sweep.objective: {spec.objective} is not logged by trial {claim.trial.number} "
                f"(it logged: {', '.join(logged or []) or 'nothing'}); set sweep.objective to one of those")
            return "FAIL", None, {"lost": "objective not logged"}
        best = best_value(series, spec.direction)
        if best is None:
            return "FAIL", None, {"error": f"{spec.objective} was never finite"}
        return "COMPLETE", best[1], {"best_epoch": best[0], "_series": series, "_report": not ours}

    def _finish(self, claim: _Claim, rc: int | None, tail: collections.deque[str], duration: float) -> None:
        import optuna
        from optuna.trial import TrialState

        study, trial, number = self.study, claim.trial, claim.trial.number
        assert study is not None
        state, value, attrs = self._outcome(claim, rc, tail)
        series = attrs.pop("_series", None)
        report_series = attrs.pop("_report", False)
        attrs.update({"returncode": rc, "duration_s": round(duration, 3)})
        try:
            with quiet_optuna():
                for k, v in attrs.items():
                    trial.set_user_attr(k, v)
                if state == "COMPLETE" and report_series:  # a cached run reported nothing itself
                    for epoch, v in series or ():
                        if v is not None:
                            trial.report(v, epoch)
                study.tell(trial, value if state == "COMPLETE" else None, state=TrialState[state])
        except optuna.exceptions.UpdateFinishedTrialError:
            self.say(f"trial {number:04d} was failed by another driver meanwhile (no heartbeat); its result is dropped")
        except RuntimeError as exc:  # the grid sampler calls study.stop() once the grid is covered:
            if "Study.stop" not in str(exc):  # the trial is told by then, and the budget ends the sweep
                raise
        finally:
            with self._tlock:
                self._mine.pop(number, None)
        if rc is not None or claim.dir.exists():
            claim.dir.mkdir(parents=True, exist_ok=True)
            update_trial_file(claim.dir, study=self.spec.name, number=number, storage=self.storage.describe(),
                              params=claim.params, state=state, value=value, **attrs,
                              **({"stderr_tail": list(tail)} if state == "FAIL" and tail else {}))
            self._ensure_view(claim.dir)
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in claim.params.items())
        what = f"{self.spec.objective}={value:.6g}" if state == "COMPLETE" else (attrs.get("lost") or attrs.get("error") or "")
        if attrs.get("lost") and attempt_of(trial) >= self.max_attempts:
            what += f" (not retried: attempt {attempt_of(trial)} of {self.max_attempts}, sweep.max_retries " \
                    f"{self.spec.max_retries}; counts as a failure)"
        self.say(f"trial {number:04d} {state} {what} in {duration:.1f} s ({shown})")
        if self._fatal is not None:
            self.stop("objective not logged")
        self._dirty.set()

    @staticmethod
    def _ensure_view(trial_dir: Path) -> None:
        """Each trial dir gets a ``view.html`` (built from its logs when its run made none)."""
        if (trial_dir / "view.html").exists() or not (trial_dir / "logs.json").exists():
            return
        from bootstrap_repro import views

        try:
            views.rebuild(trial_dir)
        except (ReproError, OSError):
            pass  # the sweep report still links the dir

    # ------------------------------------------------------------------ threads
    def _worker(self, slot: int) -> None:
        try:
            while not self._stopping.is_set():
                claim = self._claim()
                if claim is None:
                    return
                if isinstance(claim, _Claim):
                    self._run_trial(slot, claim)
                else:  # _WAIT
                    self._stopping.wait(self.poll_s)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread by run()
            self._errors.append(exc)
            self.stop("driver error")

    def _heartbeats(self) -> None:
        import sqlalchemy

        from bootstrap_repro.sweep._storage import HEARTBEAT_INTERVAL_S

        storage = self.storage.open()
        while not self._done.wait(HEARTBEAT_INTERVAL_S):
            for trial in list(self._mine.values()):
                try:
                    storage.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]
                except sqlalchemy.exc.SQLAlchemyError as exc:
                    self.say(f"warning: heartbeat of trial {trial.number} failed ({str(exc).splitlines()[0]})")

    def _reporter(self) -> None:
        while not self._done.is_set():
            if self._dirty.wait(0.5):
                self._dirty.clear()
                self.write_report()

    def write_report(self) -> Path | None:
        """Rebuild ``<sweep.dir>/view.html`` from the study; a failure is a warning, not a sweep failure."""
        assert self.study is not None
        with self._report_lock:
            try:
                meta = read_marker(self.spec.dir)
                return build_report(self.spec.dir, self.study.get_trials(deepcopy=False), meta,
                                    params=[p.key for p in self.spec.params])
            except (OSError, ReproError, ValueError) as exc:
                self.say(f"warning: the report could not be written ({exc})")
                return None

    # ------------------------------------------------------------------ control
    def stop(self, reason: str, *, kill: bool = False) -> None:
        """Start no new trial; send SIGTERM (SIGKILL with ``kill``) to the running ones (they are retried later)."""
        self._stopping.set()
        with self._plock:
            for proc in self._procs.values():
                if proc.poll() is None:
                    proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)

    @contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, frame: Any) -> None:
            again = self._interrupted
            self._interrupted = True
            if not again:
                self.say(f"{signal.Signals(signum).name}: stopping; running trials are interrupted and retried "
                         f"when the sweep is run again (again to kill them)")
            self.stop("interrupted", kill=again)

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def run(self, *, handle_signals: bool = True) -> SweepResult:
        """Run the sweep to ``n_trials``; raises :class:`ReproError` for bad input."""
        with _optuna_warnings_only():
            return self._run(handle_signals)

    def _run(self, handle_signals: bool) -> SweepResult:
        self.prepare()
        threads = [threading.Thread(target=self._reporter, name="sweep-report", daemon=True)]
        if self.storage.heartbeat:
            threads.append(threading.Thread(target=self._heartbeats, name="sweep-heartbeat", daemon=True))
        workers = [threading.Thread(target=self._worker, args=(i,), name=f"sweep-worker-{i}")
                   for i in range(self.spec.jobs)]
        self.say(f"{self.n_trials} trials, {self.spec.jobs} worker(s), storage {self.storage.describe()}"
                 + (f", GPUs {','.join(self._gpus)}" if self._gpus else ""))
        try:
            with self._signals() if handle_signals else _nothing():
                for t in [*threads, *workers]:
                    t.start()
                for w in workers:
                    while w.is_alive():
                        w.join(0.2)
        finally:
            self._done.set()
            for t in threads:
                t.join()
        if self._errors:
            raise _storage_error(self._errors[0], self.storage.describe())
        report = self.write_report()
        self.storage.close()
        if self._fatal is not None:
            raise self._fatal
        return self._summary(report)

    def _summary(self, report: Path | None) -> SweepResult:
        from optuna.trial import TrialState

        assert self.study is not None
        trials = self.study.get_trials(deepcopy=False)
        counts = collections.Counter(t.state.name for t in trials)
        lost = [t for t in trials if is_lost(t) and not self._counts(t)]  # on their last attempt, they count: FAIL
        counts["lost"] = len(lost)
        counts["FAIL"] -= counts["lost"]
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        pick = max if self.spec.direction == "maximize" else min
        best = pick(complete, key=lambda t: t.value) if complete else None
        retried = {t.user_attrs.get("retry_of") for t in trials}
        pending = sum(1 for t in lost if t.number not in retried)
        counts["killed"] = killed = sum(1 for t in lost if t.number in retried and t.user_attrs.get("killed_by_signal"))
        line = (f"{counts['COMPLETE']} complete, {counts['PRUNED']} pruned, {counts['FAIL']} failed"
                + (f", {killed} killed and retried" if killed else "")
                + (f", {len(lost) - pending - killed} lost and retried" if len(lost) - pending - killed else "")
                + (f", {pending} lost (retried when the sweep runs again)" if pending else "")
                + f" (n_trials {self.n_trials})")
        if best is not None:
            line += f"; best {self.spec.objective}={best.value:.6g} in trial {best.number:04d} {best.params}"
        if report is not None:
            line += f"; report: {report}"
        self.say(line)
        if self._interrupted:
            code = 130
        elif not complete and counts["FAIL"]:
            code = 1
        else:
            code = 0
        return SweepResult(code, dict(counts), best, report)


def _storage_error(exc: BaseException, where: str) -> BaseException:
    """A database error in a worker as one line (the trials it interrupted are retried on the next run)."""
    import optuna
    from sqlalchemy.exc import SQLAlchemyError  # an Optuna dependency

    if not isinstance(exc, (SQLAlchemyError, optuna.exceptions.StorageInternalError)):
        return exc
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return StorageError(f"sweep.storage: {where} failed during the sweep ({text[0] if text else type(exc).__name__}); "
                        f"running trials were stopped; run the same command again to resume")


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@contextmanager
def _optuna_warnings_only() -> Iterator[None]:
    """No INFO line from Optuna per study or trial: the driver prints its own."""
    import optuna

    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(verbosity)
