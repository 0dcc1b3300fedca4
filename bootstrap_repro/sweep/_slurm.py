"""Sweeps on Slurm: ``bootstrap-repro sweep sweeps/lr.yaml --runtime.name slurm --jobs K``.

The driver (on the login node) checks what it can, creates the study, then submits **K workers as
one submitit job array**.  Each array task (:class:`SweepWorker`) runs the local driver's worker
loop (:class:`bootstrap_repro.sweep.Sweep` with ``jobs 1``) on its node: under the study lock it
recovers lost trials, counts the study's trials and asks for the next one, runs it as
``bootstrap-repro run`` in its own process in ``<sweep.dir>/trials/<number>`` (pruned from inside
the job as locally), tells the study, and takes the next, until the study has ``n_trials``.  The
count is the local one, so several workers (and several arrays) together end with exactly
``n_trials``.

The driver follows the array: it polls the study and ``squeue``, prints each trial's line from the
workers' logs and a progress line, fails the RUNNING trials of dead workers (the local driver's
"lost trial" logic, with a worker counted dead when its pid is gone on this host or its Slurm job
is no longer in ``squeue``) so that a surviving worker retries them, and builds the aggregated
report when the workers have ended.  ``--detach`` returns after submitting; the array's ids are
in ``sweep.json`` (``slurm``), so the same command later re-attaches to the running array instead
of submitting another; when no task of it is left, it submits new workers for what the study
still needs (a resume).  Ctrl-C detaches (the workers go on; ``scancel`` stops them).

Storage: the journal file must be seen by every worker: :func:`check_shared_journal` refuses a
journal on a local filesystem when the partition's nodes are on several hosts (one line, exit 2,
suggesting PostgreSQL).  The test cluster's virtual nodes n1/n2 share one host, so a local disk is
shared there.
"""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from bootstrap_repro.fileio import atomic_write_json
from bootstrap_repro.runtimes._slurm import (
    SLURM_ENV,
    SlurmError,
    _executor,
    check_cluster,
    slurm_settings,
)
from bootstrap_repro.sweep._driver import Sweep, _optuna_warnings_only
from bootstrap_repro.sweep._report import MARKER, read_marker
from bootstrap_repro.sweep._spec import SweepSpec, load_sweep
from bootstrap_repro.sweep._storage import url_without_password

__all__ = ["SlurmSweep", "SweepWorker", "check_shared_journal", "run_on_slurm", "wants_slurm_sweep"]

_SBATCH_KEYS = ("partition", "time", "nodes", "gpus_per_node", "cpus_per_task", "mem_gb", "account", "qos",
                "constraint")
#: Filesystems that one host sees alone (a journal there is not shared between hosts).
LOCAL_FS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "tmpfs", "ramfs", "overlay", "vfat",
                      "exfat", "ntfs", "ntfs3", "jfs", "reiserfs"})
#: Seconds between two looks at the study and at ``squeue`` while following the array.
POLL_S = 1.0


def wants_slurm_sweep(spec: SweepSpec) -> bool:
    """Whether this sweep's trials go to Slurm workers (and this is not already one of them)."""
    return spec.base is not None and spec.base.get("runtime.name", "local") == "slurm" and SLURM_ENV not in os.environ


# --------------------------------------------------------------------------- checks
def fs_type(path: Path) -> str:
    """The filesystem type holding ``path`` (the longest mount point of /proc/mounts above it)."""
    p = os.path.realpath(path)
    while not os.path.exists(p):
        p = os.path.dirname(p)
    best, kind = "", "unknown"
    try:
        lines = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return kind
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        mnt = parts[1].replace("\\040", " ")
        if (p == mnt or p.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
            best, kind = mnt, parts[2]
    return kind


def partition_hosts(partition: str | None) -> list[str]:
    """The distinct hostnames (``NodeHostname``) of the partition's nodes, as ``sinfo`` lists them."""
    cmd = ["sinfo", "-h", "-N", "-o", "%n"] + (["-p", partition] if partition else [])
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    return sorted(set(out.stdout.split())) if out.returncode == 0 else []


def check_shared_journal(spec: SweepSpec, settings: dict[str, Any]) -> None:
    """A journal on a local filesystem with workers that may run on several hosts: one line, exit 2."""
    if spec.storage is not None:  # PostgreSQL: reachable from every node
        return
    kind = fs_type(spec.dir)
    if kind not in LOCAL_FS:
        return
    hosts = partition_hosts(settings.get("partition"))
    if len(hosts) <= 1:
        return
    part = f"partition {settings['partition']}" if settings.get("partition") else "the default partition"
    raise SlurmError(
        f"sweep.storage: the journal {spec.dir / 'study.journal'} is on a local filesystem ({kind}) but {part} has "
        f"nodes on {len(hosts)} hosts ({', '.join(hosts[:4])}{', ...' if len(hosts) > 4 else ''}): workers on "
        f"other hosts cannot share it; put sweep.dir on a shared filesystem, or use PostgreSQL "
        f"(--storage postgresql://user:password@host/db)")


# --------------------------------------------------------------------------- squeue
def running_jobs() -> set[str] | None:
    """Ids (``%A``: one per array task) of this user's jobs that are pending or running; None if unknown."""
    try:
        out = subprocess.run(["squeue", "-h", "-u", getpass.getuser(), "-o", "%A %i %T"], capture_output=True, check=False,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    ids: set[str] = set()
    for line in out.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and (len(parts) < 3 or parts[2] not in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")):
            ids.update(parts[:2])  # the task's own id and ARRAY_TASK form (123_1; 123_[2-3] while pending)
    return ids


def _array_tasks_alive(array_id: str, tasks: Sequence[str], alive: set[str]) -> list[str]:
    left = [t for t in tasks if t in alive]
    pending = [a for a in alive if a.startswith(f"{array_id}_[")]
    return left + pending


# --------------------------------------------------------------------------- the sweep (both sides)
class SlurmSweep(Sweep):
    """:class:`Sweep` whose trials' drivers may be Slurm workers on other hosts (dead when gone from squeue)."""

    _squeue_at = 0.0
    _squeue: set[str] | None = None

    def _running_jobs(self) -> set[str] | None:
        if time.monotonic() - self._squeue_at > POLL_S:
            self._squeue, self._squeue_at = running_jobs(), time.monotonic()
        return self._squeue

    def _write_marker(self) -> None:
        """The marker, keeping its ``slurm`` section (the worker array to re-attach to)."""
        kept = read_marker(self.spec.dir).get("slurm") if (self.spec.dir / MARKER).is_file() else None
        super()._write_marker()
        if kept:
            _save_slurm_state(self.spec, kept)

    def _dead(self, t: Any) -> bool:
        if super()._dead(t):
            return True
        job = (t.user_attrs.get("driver") or {}).get("slurm_job")
        if not job:
            return False
        alive = self._running_jobs()
        return alive is not None and job not in alive


class _JobSweep(SlurmSweep):
    """The worker loop inside an array task: no marker rewrite, the report only at its end."""

    def __init__(self, spec: SweepSpec, **kw: Any) -> None:
        super().__init__(spec, **kw)
        job = os.environ.get("SLURM_JOB_ID")
        if job:
            self.identity["slurm_job"] = job

    def _write_marker(self) -> None:
        if not (self.spec.dir / MARKER).is_file():
            super()._write_marker()

    def _reporter(self) -> None:  # the driver (or the last worker's final write) builds it
        self._done.wait()


class SweepWorker:
    """The callable of one array task: the local worker loop on the study until it has ``n_trials``."""

    def __init__(self, sweep_file: str, overrides: Sequence[str], n_trials: int, storage: str | None, cwd: str,
                 requested: dict[str, Any]) -> None:
        self.sweep_file, self.overrides, self.n_trials = sweep_file, list(overrides), n_trials
        self.storage, self.cwd, self.requested = storage, cwd, requested
        self._sweep: _JobSweep | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "_sweep"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._sweep = None

    def __call__(self) -> int:
        os.chdir(self.cwd)
        if self.storage is not None and self.storage.startswith("file:"):  # a URL with a password: kept 0600
            self.storage = Path(self.storage[len("file:"):]).read_text().strip()
        os.environ[SLURM_ENV] = json.dumps({"requested": self.requested})  # trials run here, and record the job
        spec = load_sweep(self.sweep_file, self.overrides, n_trials=self.n_trials, jobs=1, storage=self.storage)
        self._sweep = _JobSweep(spec, stream=sys.stdout)
        self._sweep.say(f"worker: job {os.environ.get('SLURM_JOB_ID')} (array task "
                        f"{os.environ.get('SLURM_ARRAY_TASK_ID')}) on {os.environ.get('SLURMD_NODENAME')}")
        return self._sweep.run(handle_signals=True).exit_code  # scancel (SIGTERM): its trial is lost, retried

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Slurm's warning signal (time limit, preemption): interrupt the trial (retried), requeue the worker."""
        import submitit

        sweep = self._sweep
        if sweep is not None:
            sweep.stop("time limit or preemption")
            deadline = time.monotonic() + 60
            while sweep._procs and time.monotonic() < deadline:
                time.sleep(0.2)
        return submitit.helpers.DelayedSubmission(
            SweepWorker(self.sweep_file, self.overrides, self.n_trials, self.storage, self.cwd, self.requested))


# --------------------------------------------------------------------------- the driver
class _LineTail:
    """The new complete lines of a growing file."""

    def __init__(self, path: Path) -> None:
        self.path, self.pos, self.rest = path, 0, b""

    def lines(self) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
        except OSError:
            return []
        self.pos += len(data)
        data = self.rest + data
        *done, self.rest = data.split(b"\n")
        return [d.decode(errors="replace") for d in done]


def _slurm_state(spec: SweepSpec) -> dict[str, Any]:
    return read_marker(spec.dir).get("slurm") or {}


def _save_slurm_state(spec: SweepSpec, state: dict[str, Any]) -> None:
    marker = read_marker(spec.dir)
    marker["slurm"] = state
    atomic_write_json(spec.dir / MARKER, marker, indent=1)


def _attach_hint(spec: SweepSpec, state: dict[str, Any]) -> str:
    src = spec.source or "SWEEP.yaml"
    return (f"re-attach with: bootstrap-repro sweep {src} (the same overrides); stop the workers with: "
            f"scancel {state['array_job_id']}")


def run_on_slurm(spec: SweepSpec, overrides: Sequence[str], *, storage: str | None, detach: bool = False,
                 stream: IO[str] | None = None) -> int:
    """Submit (or re-attach to) the sweep's worker array and follow it; the sweep's exit code."""
    stream = stream if stream is not None else sys.stdout
    settings = slurm_settings(spec.base)
    check_cluster(settings)
    check_shared_journal(spec, settings)
    sweep = SlurmSweep(spec, stream=stream)
    with _optuna_warnings_only():
        sweep.prepare()
        state = _slurm_state(spec)
        alive = running_jobs() or set()
        live = _array_tasks_alive(state["array_job_id"], state["tasks"], alive) if state else []
        if live:
            sweep.say(f"re-attaching to job array {state['array_job_id']} ({len(live)} worker(s) pending or running; "
                      f"no new worker submitted)")
        else:
            with sweep.storage.lock():
                trials = sweep._recover()
            need = sweep.n_trials - sum(1 for t in trials if sweep._counts(t))
            if need > 0:
                state = _submit(sweep, overrides, storage, settings, min(spec.jobs, need))
            elif state:
                sweep.say(f"the study already has its {sweep.n_trials} trials; no worker submitted")
        if detach:
            if state and (live or state.get("submitted_now")):
                sweep.say(f"detached; {_attach_hint(spec, state)}")
                return 0
            detach = False  # nothing runs: the report and the summary now
        return _follow(sweep, state)


def _storage_handoff(storage: str | None, folder: Path) -> str | None:
    """What the workers' pickle holds for ``--storage``: the URL, or ``file:PATH`` of a 0600 copy when it has a password.

    submitit pickles the worker into ``folder``, readable like the sweep dir; a password given on
    the command line must not land there (a URL in the sweep file is read from it by each worker).
    """
    if storage is None or url_without_password(storage) == storage:
        return storage
    secret = folder / "storage.url"
    tmp = folder / f".storage.url.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, storage.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, secret)
    return f"file:{secret}"


def _submit(sweep: SlurmSweep, overrides: Sequence[str], storage: str | None, settings: dict[str, Any],
            k: int) -> dict[str, Any]:
    spec = sweep.spec
    folder = Path(os.path.abspath(str(settings.get("folder") or spec.dir / "slurm")))
    folder.mkdir(parents=True, exist_ok=True)
    executor = _executor(settings, folder, f"bootstrap-repro-sweep:{spec.name}")
    executor.update_parameters(array_parallelism=k)
    requested = {key: settings.get(key) for key in _SBATCH_KEYS if settings.get(key) is not None}
    worker = SweepWorker(str(Path(spec.source).resolve()) if spec.source else "", list(overrides), spec.n_trials,
                         _storage_handoff(storage, folder), os.getcwd(), requested)
    try:
        with executor.batch():
            jobs = [executor.submit(worker) for _ in range(k)]
    except Exception as exc:  # noqa: BLE001 - sbatch refused: one line
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        raise SlurmError(f"sbatch refused the sweep's workers: {' | '.join(lines[-2:])}") from None
    array_id = str(jobs[0].job_id).split("_")[0]
    state = {"array_job_id": array_id, "tasks": [str(j.job_id) for j in jobs], "folder": str(folder),
             "logs": [str(j.paths.stdout) for j in jobs], "submitted": time.time(), "requested": requested}
    _save_slurm_state(spec, state)
    sweep.say(f"submitted {k} worker(s) as job array {array_id} "
              f"({', '.join(f'{a}={b}' for a, b in requested.items()) or 'defaults'}); logs in {folder}")
    return {**state, "submitted_now": True}


def _progress(sweep: SlurmSweep, trials: Sequence[Any], workers: int) -> str:
    from optuna.trial import TrialState

    done = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            or (t.state == TrialState.FAIL and sweep._counts(t))]
    running = sum(1 for t in trials if t.state == TrialState.RUNNING)
    c = sum(1 for t in trials if t.state == TrialState.COMPLETE)
    p = sum(1 for t in trials if t.state == TrialState.PRUNED)
    return (f"progress: {len(done)}/{sweep.n_trials} done ({c} complete, {p} pruned, {len(done) - c - p} failed), "
            f"{running} running; {workers} worker(s) in squeue")


def _study_done(sweep: SlurmSweep, trials: Sequence[Any]) -> bool:
    """The study has its ``n_trials`` and none of them runs (nothing left for a worker to do or to report)."""
    from optuna.trial import TrialState

    return (not any(t.state == TrialState.RUNNING for t in trials)
            and sum(1 for t in trials if sweep._counts(t)) >= sweep.n_trials)


def _follow(sweep: SlurmSweep, state: dict[str, Any]) -> int:
    """Poll the study and the array until no worker is left; then the report and the summary."""
    spec = sweep.spec
    tails = [(i, _LineTail(Path(p))) for i, p in enumerate(state.get("logs") or [])]
    prefix = f"[sweep {spec.name}] "
    last_line = ""
    gone_since: float | None = None
    try:
        while True:
            for i, tail in tails:
                for line in tail.lines():
                    if line.startswith(prefix) and " trial " in line and "(n_trials " not in line:
                        sweep.say(f"w{i}: {line[len(prefix):]}")
            alive = sweep._running_jobs()
            live = _array_tasks_alive(state["array_job_id"], state["tasks"], alive) if state and alive is not None \
                else ([] if alive is not None else ["?"])
            with sweep.storage.lock():
                trials = sweep._recover()  # RUNNING trials of dead workers: failed, retried by the others
            line = _progress(sweep, trials, len(live))
            if line != last_line:
                sweep.say(line)
                sweep.write_report()
                last_line = line
            if not live:
                # every worker has left squeue: its log is complete.  With the study done, that is the end; else
                # one more look (squeue may miss a task for a moment, e.g. while it is requeued)
                gone_since = gone_since or time.monotonic()
                if _study_done(sweep, trials) or time.monotonic() - gone_since > 2 * POLL_S:
                    break
            else:
                gone_since = None
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        sweep.say(f"interrupted; the workers keep running; {_attach_hint(spec, state)}")
        return 130
    for i, tail in tails:
        for line in tail.lines():
            if line.startswith(prefix) and " trial " in line and "(n_trials " not in line:
                sweep.say(f"w{i}: {line[len(prefix):]}")
    with sweep.storage.lock():
        trials = sweep._recover()
    used = sum(1 for t in trials if sweep._counts(t))
    report = sweep.write_report()
    result = sweep._summary(report)
    sweep.storage.close()
    if used < sweep.n_trials:
        sweep.say(f"the workers ended with {used} of {sweep.n_trials} trials (cancelled, time limit or node failure; "
                  f"see their logs in {state.get('folder')}); run the same command again to submit new workers")
        return 1
    return result.exit_code
