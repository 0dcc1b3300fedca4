"""Running an experiment as a Slurm job, through submitit.

``bootstrap-repro run -o cfg.yaml --runtime.name slurm`` checks what can be checked here (Slurm's
commands, the partition, the options), then submits *the same command* as a Slurm job: the job's
callable (:class:`SlurmRun`) runs ``python -m bootstrap_repro run ...`` on the node with
:data:`SLURM_ENV` set, so the run inside does not submit again and its record gains a ``scheduler``
section.  The client prints the job id, streams the job's log and ends with the job's status and
the run's exit code (0, 1, 130), or with ``--detach`` returns at once.

Preemption and time limits: submitit asks Slurm for ``--signal=USR2@<signal_delay_s>``; on that
signal submitit calls :meth:`SlurmRun.checkpoint`, which stops the run (SIGTERM: the Engine stops
at the next batch and commits its checkpoint), and returns the same job with ``--exp.resume last``;
submitit requeues it (``scontrol requeue``) and the resumed run is bitwise equal to an
uninterrupted one.  ``scancel`` by the user sends SIGTERM (submitit's own process ignores it, the run
does not): the run ends INTERRUPTED, the job is not requeued, and the client prints the resume command.
Before it stops the run at the warning signal, the job writes its id into :func:`requeue_flag`, so that
the run says it is requeued (:func:`~bootstrap_repro.record._env.requeue_note`) and prints no resume command.

``runtime.slurm.inner: docker``: the ``runtime.docker`` options are checked here (not the Docker engine:
it is on the node), then the run on the node goes through the Docker runtime (``launch_docker``: the
image is found or built on the node, the exp dir mounted, ...), whose client stops the container on
SIGTERM as above.  The container gets the job's scheduler facts, measured on the node (in
:data:`SLURM_ENV`), and the job's GPUs (``runtime.docker.gpus: all``, narrowed to the node's
``CUDA_VISIBLE_DEVICES``, when ``gpus_per_node`` is set).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from bootstrap_repro.errors import OptionsError, ReproError
from bootstrap_repro.record._env import SLURM_ENV, requeue_note, scheduler_facts

__all__ = [
    "SLURM_ENV",
    "SlurmError",
    "SlurmJobError",
    "SlurmRun",
    "SlurmUnavailableError",
    "launch_slurm",
    "requeue_flag",
    "requeue_note",
    "scheduler_facts",
    "slurm_settings",
    "wants_slurm",
]

#: slurmctld looks at time limits every 30 s: the warning can come this much earlier than ``signal_delay_s``.
SLURM_TIMER_S = 30
#: Seconds between two looks at the job's state (sacct/squeue) while following it.
POLL_S = 1.0
_SBATCH_KEYS = ("partition", "time", "nodes", "gpus_per_node", "cpus_per_task", "mem_gb", "account", "qos",
                "constraint")


class SlurmError(ReproError, RuntimeError):
    """A Slurm runtime problem the user can fix (exit code 2)."""


class SlurmUnavailableError(SlurmError, FileNotFoundError):
    """Slurm's commands are not on PATH (or submitit is not installed)."""


class SlurmJobError(SlurmError):
    """The job failed on the node before or outside the run (its log's last lines are in the message)."""


def wants_slurm(options: Any) -> bool:
    """Whether this command must be submitted to Slurm (and is not already running in a Slurm job of ours)."""
    return options.get("runtime.name", "local") == "slurm" and SLURM_ENV not in os.environ


def slurm_settings(options: Any, nproc_given: bool | None = None, *, docker_ok: bool = False) -> dict[str, Any]:
    """``runtime.slurm`` as a plain dict, with the checks the schema cannot do.

    ``nproc_given``: whether the user set ``runtime.nproc_per_node`` (``--nproc-per-node 1`` with 2 nodes is
    2 x 1 processes); None: only a value > 1 counts as given.  ``docker_ok``: the caller runs
    ``inner: docker`` (``run`` does; a sweep's workers do not yet).
    """
    raw = options.get("runtime.slurm") or {}
    s = {k: raw.get(k) for k in raw}
    s = {k: (v.to_dict() if hasattr(v, "to_dict") else v) for k, v in s.items()}
    inner = s["inner"] = s.get("inner") or "local"
    nodes = int(s.get("nodes") or 1)
    if inner == "docker" and not docker_ok:
        raise OptionsError("runtime.slurm.inner: docker runs `bootstrap-repro run` jobs, not sweep workers yet; "
                           "use inner local")
    if inner == "docker" and nodes > 1:
        raise OptionsError(f"runtime.slurm.inner: docker runs one container on one node; nodes {nodes} needs "
                           f"inner local (multi-node DDP in containers is not supported)")
    minutes, delay = s.get("time"), s.get("signal_delay_s", 90)
    if minutes is not None and delay is not None and float(minutes) * 60 <= int(delay) + SLURM_TIMER_S:
        raise OptionsError(
            f"runtime.slurm.time: {minutes:g} min leaves no time to train before Slurm's warning "
            f"(signal_delay_s {delay} + up to {SLURM_TIMER_S} s of Slurm's timer): every attempt would be "
            f"stopped and requeued at once; set time above {(int(delay) + SLURM_TIMER_S) / 60:g} min or a "
            f"smaller runtime.slurm.signal_delay_s")
    if nproc_given is None:
        nproc_given = int(options.get("runtime.nproc_per_node", 1) or 1) > 1
    if nodes > 1 and not nproc_given:
        raise OptionsError(f"runtime.slurm.nodes: {nodes} nodes need --nproc-per-node N (processes per node); "
                           f"one process on one node is runtime.slurm.nodes 1")
    return s


def _run(cmd: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def check_cluster(settings: dict[str, Any]) -> None:
    """Slurm's commands are there, the partition exists (asks ``sinfo``) and the account (asks ``sacctmgr``)."""
    missing = [c for c in ("sbatch", "sinfo", "squeue", "scancel") if shutil.which(c) is None]
    if missing:
        raise SlurmUnavailableError(
            f"runtime.name: slurm, but Slurm's commands are not found ({', '.join(missing)} not on PATH); "
            f"run on a Slurm login node, or try it locally with scripts/slurm-local.sh up")
    try:
        import submitit  # noqa: F401
    except ImportError:
        raise SlurmUnavailableError("runtime.name: slurm needs submitit; pip install 'bootstrap-repro[slurm]'") from None
    out = _run(["sinfo", "-h", "-o", "%R"])
    if out.returncode != 0:
        raise SlurmUnavailableError(f"runtime.name: slurm, but sinfo failed: {_last(out.stderr, 1)}")
    partitions = sorted(set(out.stdout.split()))
    part = settings.get("partition")
    if part and part not in partitions:
        raise OptionsError(f"runtime.slurm.partition: unknown partition {part!r}; sinfo lists "
                           f"{', '.join(partitions) or 'none'}")
    account = settings.get("account")
    if account and shutil.which("sacctmgr"):  # without accounting (no slurmdbd) sbatch is the judge
        accounts = _run(["sacctmgr", "-n", "-P", "show", "account", "format=Account"])
        known = sorted({ln.strip() for ln in accounts.stdout.splitlines() if ln.strip()})
        if accounts.returncode == 0 and known and account not in known:
            raise OptionsError(f"runtime.slurm.account: unknown account {account!r}; sacctmgr lists "
                               f"{', '.join(known[:20])}{' ...' if len(known) > 20 else ''}")


def _last(text: str, n: int) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:])


def _ignore_usr2() -> None:  # in the run's process: Slurm's warning signal is for submitit, not for it
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def requeue_flag(exp_dir: Path) -> Path:
    """The file a job writes before it stops its run to be requeued: beside the exp dir (mounted in a container)."""
    return exp_dir.parent / f".{exp_dir.name}.slurm-requeue"


class SlurmRun:
    """The job's callable: ``bootstrap-repro run ARGV`` on the node; checkpointable (requeue + resume).

    ``flag``: see :func:`requeue_flag`.  ``inner``: ``runtime.slurm.inner``; with ``docker`` the scheduler
    facts are measured here, on the node, and handed to the run in its container through :data:`SLURM_ENV`.
    """

    flag: str | None = None  # class defaults: a job pickled before these existed still unpickles
    inner: str = "local"

    def __init__(self, argv: Sequence[str], requested: dict[str, Any], resume: bool = False, *,
                 flag: str | None = None, inner: str = "local") -> None:
        self.argv = list(argv)
        self.requested = requested
        self.resume = resume
        self.flag = flag
        self.inner = inner
        self._proc: subprocess.Popen[bytes] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_proc", "_ended")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._proc = None

    def command(self) -> list[str]:
        argv = [*self.argv, "--exp.resume", "last"] if self.resume else self.argv
        return [sys.executable, "-m", "bootstrap_repro", "run", *argv, *multinode_argv()]

    def payload(self) -> dict[str, Any]:
        """What the run gets in :data:`SLURM_ENV`."""
        payload: dict[str, Any] = {"requested": self.requested, "requeue_flag": self.flag}
        if self.inner == "docker":  # no Slurm variables nor scontrol in the container
            payload["facts"] = scheduler_facts(payload)
        return payload

    def __call__(self) -> int:
        self._unflag()
        env = {**os.environ, SLURM_ENV: json.dumps(self.payload()), "PYTHONUNBUFFERED": "1"}
        self._ended = threading.Event()
        proc = self._proc = subprocess.Popen(self.command(), env=env, preexec_fn=_ignore_usr2)  # noqa: PLW1509
        # A thread waits for the run, the main thread only sleeps: submitit's USR2 handler (checkpoint) runs in
        # the main thread, and a Popen.wait() it interrupted holds the Popen's (non-reentrant) waitpid lock,
        # so a second wait() from the handler would deadlock (the job then hung until its time limit).
        threading.Thread(target=lambda: (proc.wait(), self._ended.set()), daemon=True).start()
        while not self._ended.is_set():
            time.sleep(0.1)
        return int(proc.returncode)

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Slurm's warning signal (time limit, preemption): stop the run at its checkpoint, requeue resuming it."""
        import submitit

        proc = self._proc
        if proc is not None and proc.poll() is None:
            print("slurm: warning signal; stopping the run at its next batch to requeue it", file=sys.stderr,
                  flush=True)
            if self.flag:  # the run then says it is requeued, not how to resume it (requeue_note)
                job = os.environ.get("SLURM_ARRAY_JOB_ID") or os.environ.get("SLURM_JOB_ID", "")
                with contextlib.suppress(OSError):
                    Path(self.flag).write_text(job)
            proc.send_signal(signal.SIGTERM)
            while not self._ended.is_set():  # the waiting thread reaps it (see __call__)
                time.sleep(0.1)
            self._unflag()
        if proc is not None and proc.returncode == 0:
            return None  # it finished meanwhile: nothing to resume
        return submitit.helpers.DelayedSubmission(
            SlurmRun(self.argv, self.requested, resume=True, flag=self.flag, inner=self.inner))

    def _unflag(self) -> None:
        if self.flag:
            with contextlib.suppress(OSError):
                os.unlink(self.flag)


def rendezvous_host(hostnames: Sequence[str]) -> str:
    """The first node of the allocation, or 127.0.0.1 when its name does not resolve (virtual nodes on one host)."""
    import socket

    first = hostnames[0]
    try:
        socket.getaddrinfo(first, None)
    except OSError:
        return "127.0.0.1"
    return first


def _hostnames(nodelist: str) -> list[str]:
    out = _run(["scontrol", "show", "hostnames", nodelist])
    names = out.stdout.split()
    if out.returncode != 0 or not names:
        raise SlurmJobError(f"slurm: scontrol show hostnames {nodelist} failed: {_last(out.stderr, 1)}")
    return names


def multinode_argv() -> list[str]:
    """In one task of a multi-node job (one task per node): torchrun's node rank and c10d rendezvous on node 0."""
    env = os.environ
    nnodes = int(env.get("SLURM_JOB_NUM_NODES") or env.get("SLURM_NNODES") or 1)
    if nnodes <= 1:
        return []
    job = env.get("SLURM_JOB_ID", "0")
    host = rendezvous_host(_hostnames(env["SLURM_JOB_NODELIST"]))
    port = 20000 + int(job) % 20000  # the same on every node, different for concurrent jobs
    return ["--runtime.nnodes", str(nnodes), "--runtime.node_rank", env.get("SLURM_NODEID", "0"),
            "--runtime.rdzv_endpoint", f"{host}:{port}", "--runtime.rdzv_id", f"slurm-{job}"]


def _executor(settings: dict[str, Any], folder: Path, name: str) -> Any:
    import submitit

    ex = submitit.SlurmExecutor(folder=folder / "%j", max_num_timeout=int(settings.get("max_requeues") or 3))
    params: dict[str, Any] = {"job_name": name, "nodes": int(settings.get("nodes") or 1), "ntasks_per_node": 1}
    if settings.get("partition"):
        params["partition"] = settings["partition"]
    if settings.get("time") is not None:
        params["time"] = max(1, int(-(-float(settings["time"]) // 1)))  # whole minutes, rounded up
    if settings.get("gpus_per_node"):
        params["gpus_per_node"] = int(settings["gpus_per_node"])
    if settings.get("cpus_per_task"):
        params["cpus_per_task"] = int(settings["cpus_per_task"])
    if settings.get("mem_gb"):
        params["mem"] = f"{int(float(settings['mem_gb']) * 1024)}M"
    for key in ("account", "qos", "constraint"):
        if settings.get(key):
            params[key] = settings[key]
    if settings.get("setup"):
        params["setup"] = list(settings["setup"])
    if settings.get("signal_delay_s") is not None:
        params["signal_delay_s"] = int(settings["signal_delay_s"])
    if settings.get("additional"):
        params["additional_parameters"] = dict(settings["additional"])
    ex.update_parameters(**params)
    return ex


class _Tail:
    """Copies what a growing file gains to a stream."""

    def __init__(self, path: Path, out: IO[str]) -> None:
        self.path, self.out, self.pos = path, out, 0

    def pump(self) -> None:
        with contextlib.suppress(OSError):
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
            if data:
                self.pos += len(data)
                self.out.write(data.decode(errors="replace"))
                self.out.flush()


def docker_argv(options: Any, settings: dict[str, Any]) -> list[str]:
    """``inner: docker``: check ``runtime.docker`` here (not the engine, which is on the node); the extra argv.

    The container gets the job's GPUs: with ``gpus_per_node`` and ``runtime.docker.gpus`` unset (none),
    ``--runtime.docker.gpus all`` (narrowed on the node to Slurm's ``CUDA_VISIBLE_DEVICES``).
    """
    from bootstrap_repro.runtimes._docker import DockerSettings

    gpus = DockerSettings.from_options(options).gpus
    per_node = int(settings.get("gpus_per_node") or 0)
    if gpus is None:
        return ["--runtime.docker.gpus", "all"] if per_node else []
    asked = options.get("runtime.docker.gpus")
    if isinstance(gpus, list):
        raise OptionsError(f"runtime.docker.gpus: {asked!r}: device ids cannot be chosen in a Slurm job (Slurm "
                           f"picks the job's GPUs); use all or a count, with runtime.slurm.gpus_per_node")
    if per_node == 0:
        raise OptionsError(f"runtime.docker.gpus: {asked} asks for GPUs but runtime.slurm.gpus_per_node is 0; "
                           f"set --runtime.slurm.gpus_per_node N (the container gets the job's GPUs)")
    if gpus > per_node:
        raise OptionsError(f"runtime.docker.gpus: {gpus} GPUs asked but the job has runtime.slurm.gpus_per_node "
                           f"{per_node}; lower runtime.docker.gpus or raise runtime.slurm.gpus_per_node")
    return []


def _resume_line(exp_dir: Path) -> str:
    return f"bootstrap-repro run -o {exp_dir / 'options.yaml'} --exp.resume last"


def _nproc_given(options_path: str, overrides: Sequence[str]) -> bool:
    """Whether ``runtime.nproc_per_node`` is set in the file (or a file it includes) or on the command line."""
    from bootstrap_repro.options import flatten, load_yaml

    if any(str(o).lstrip("-").split("=", 1)[0] == "runtime.nproc_per_node" for o in overrides):
        return True
    try:
        return "runtime.nproc_per_node" in flatten(load_yaml(options_path))
    except Exception:  # noqa: BLE001 - the file was loaded once already; be lenient here
        return False


def launch_slurm(options: Any, options_path: str, overrides: Sequence[str], *, cache: bool = True,
                 detach: bool = False, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """Check, submit ``run -o options_path overrides`` as a Slurm job, follow it; returns the run's exit code."""
    from bootstrap_repro.run import check_exp_dir

    out, err = out or sys.stdout, err or sys.stderr
    settings = slurm_settings(options, nproc_given=_nproc_given(options_path, overrides), docker_ok=True)
    docker_args = docker_argv(options, settings) if settings["inner"] == "docker" else []
    check_cluster(settings)
    exp_path, _ = check_exp_dir(options)
    exp_dir = Path(os.path.abspath(exp_path))
    folder = Path(os.path.abspath(str(settings.get("folder") or f"{exp_dir}.slurm")))
    folder.mkdir(parents=True, exist_ok=True)
    argv = ["-o", os.path.abspath(options_path), *overrides, *docker_args]
    if not cache:
        argv.append("--no-cache")
    requested = {k: settings.get(k) for k in _SBATCH_KEYS if settings.get(k) is not None}
    executor = _executor(settings, folder, f"bootstrap-repro:{exp_dir.name}")
    try:
        job = executor.submit(SlurmRun(argv, requested, flag=str(requeue_flag(exp_dir)), inner=settings["inner"]))
    except Exception as exc:  # noqa: BLE001 - sbatch refused the job: say why in one line
        raise SlurmError(f"sbatch refused the job: {_last(str(exc), 2)}") from None
    print(f"slurm: submitted job {job.job_id} ({', '.join(f'{k}={v}' for k, v in requested.items()) or 'defaults'}); "
          f"log: {job.paths.stdout}", file=err, flush=True)
    if detach:
        print(f"slurm: detached; follow it with: tail -f {job.paths.stdout}  (squeue -j {job.job_id}; "
              f"scancel {job.job_id} to stop it)", file=err, flush=True)
        return 0
    return follow(job, exp_dir, out, err)


def follow(job: Any, exp_dir: Path, out: IO[str], err: IO[str]) -> int:
    """Stream the job's log until it ends; its status and the run's exit code."""
    tails = [_Tail(job.paths.stdout, out), _Tail(job.paths.stderr, err)]
    cancelled = False
    last_check = 0.0
    try:
        while True:
            for t in tails:
                t.pump()
            if job.paths.result_pickle.exists():
                break
            now = time.monotonic()
            if now - last_check > 2 * POLL_S:
                last_check = now
                if job.done(force_check=True):
                    break
            time.sleep(POLL_S / 4)
    except KeyboardInterrupt:
        cancelled = True
        print(f"slurm: interrupted; cancelling job {job.job_id} (the run stops at its next batch)", file=err,
              flush=True)
        job.cancel(check=False)
        deadline = time.monotonic() + 120
        while not job.paths.result_pickle.exists() and time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if job.done(force_check=True):
                    break
            time.sleep(POLL_S)
    for t in tails:
        t.pump()
    try:
        codes = job.results()  # multi-node: one exit code per node's task; the first non-zero one counts
        code = next((c for c in codes if c != 0), codes[0])
    except Exception as exc:
        if cancelled:
            print(f"slurm: job {job.job_id} cancelled; resume with: {_resume_line(exp_dir)}", file=err)
            return 130
        state = job.get_info(mode="force").get("State", "UNKNOWN") if hasattr(job, "get_info") else "UNKNOWN"
        log = _last(_read(job.paths.stderr) + "\n" + _read(job.paths.stdout), 3)
        raise SlurmJobError(f"slurm: job {job.job_id} ended {state} on the node without the run's result; "
                            f"last log lines: {log or '(empty)'} (log: {job.paths.stdout})") from exc
    code = int(code) if isinstance(code, int) else 1
    status = {0: "COMPLETED", 130: "INTERRUPTED"}.get(code, "FAILED")
    print(f"slurm: job {job.job_id} {status} (exit code {code})", file=err, flush=True)
    if status == "INTERRUPTED":
        print(f"interrupted; resume with: {_resume_line(exp_dir)}", file=err, flush=True)
    return code


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
