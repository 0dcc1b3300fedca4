"""The environment of a run: Python, platform, packages, torch/CUDA, GPUs, allowlisted variables.

Everything here works without importing torch (its version file is read as
text; GPU models come from ``/proc/driver/nvidia``), so the cache key of a run
is computed in a fraction of a second.  When torch is already loaded (a run
that trains), the record also gets the cuDNN version and the CUDA device names.
Environment variables are recorded from :data:`ENV_ALLOWLIST` only: never a
secret.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "CONTAINER_ENV",
    "ENV_ALLOWLIST",
    "PACKAGES_FILE",
    "RESULT_ENV",
    "cpu_threads",
    "cuda_devices",
    "current_runtime",
    "environment",
    "environment_fingerprint",
    "framework_sha256",
    "gpu_models",
    "installed_packages",
    "packages_text",
    "torch_facts",
]

PACKAGES_FILE = "packages.txt"
#: Set by the Docker runtime in its containers: JSON of the container facts (``kind``, ``image``, ``run``).
CONTAINER_ENV = "BOOTSTRAP_REPRO_CONTAINER"
#: Set in a Slurm job of the Slurm runtime (JSON: the requested resources): the run inside does not submit again.
SLURM_ENV = "BOOTSTRAP_REPRO_SLURM"
#: The only environment variables a record holds: those that change numerics or device choice.
ENV_ALLOWLIST: tuple[str, ...] = (
    "CUDA_VISIBLE_DEVICES",
    "NVIDIA_VISIBLE_DEVICES",
    "CUDA_DEVICE_ORDER",
    "CUDA_LAUNCH_BLOCKING",
    "CUBLAS_WORKSPACE_CONFIG",
    "NVIDIA_TF32_OVERRIDE",
    "PYTHONHASHSEED",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NCCL_ALGO",
    "NCCL_PROTO",
)


#: Of :data:`ENV_ALLOWLIST`, those that change numerics (the others choose a device): in the cache key.
RESULT_ENV: tuple[str, ...] = tuple(k for k in ENV_ALLOWLIST if k not in (
    "CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "CUDA_LAUNCH_BLOCKING"))


def cpu_threads() -> int:
    """CPUs this process may use (torch's default intra-op thread count without OMP_NUM_THREADS)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_packages() -> list[tuple[str, str]]:
    """``[(name, version)]`` of the distributions importable now, sorted, first on ``sys.path`` wins."""
    seen: dict[str, tuple[str, str]] = {}
    for dist in importlib.metadata.distributions():
        found = _name_version(dist)
        if found is None:
            continue
        name, version = found
        seen.setdefault(_normalize(name), (name, version or "unknown"))
    return [seen[k] for k in sorted(seen)]


#: A metadata header line (RFC 822: printable ASCII but ':', then ':').
_HEADER_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")


def _name_version(dist: importlib.metadata.Distribution) -> tuple[str, str | None] | None:
    """``(Name, Version)`` of a distribution as ``dist.metadata["Name"]`` and ``dist.version`` give them.

    Those parse the whole metadata file, long description included, with the ``email`` package
    (twice: ``version`` parses it again), which is most of a run's snapshot (~50 ms for 50
    distributions).  Here only the header lines are read; anything a plain header scan might read
    differently from the email parser (a folded Name or Version, a line that is not a header, a
    lone CR) falls back to importlib's own parse.  None: no metadata or no name (skipped, as before).
    """
    text = dist.read_text("METADATA") or dist.read_text("PKG-INFO") or dist.read_text("")
    if not text:
        return None
    fields: dict[str, str] = {}
    last = None
    pos = 0
    while True:
        end = text.find("\n", pos)
        line = text[pos:] if end < 0 else text[pos:end]
        if line.endswith("\r"):
            line = line[:-1]
        if not line:
            break  # the end of the headers
        if "\r" in line:
            return _slow_name_version(dist)
        if line[0] in " \t":  # a continuation line
            if last in ("name", "version"):
                return _slow_name_version(dist)
        else:
            key, sep, value = line.partition(":")
            if not sep or not _HEADER_NAME.fullmatch(key):
                return _slow_name_version(dist)  # not a header: the email parser ends the headers its own way
            last = key.lower()
            if last in ("name", "version"):
                fields.setdefault(last, value.lstrip(" \t"))
        if end < 0:
            break
        pos = end + 1
    name = fields.get("name")
    return (name, fields.get("version")) if name else None


def _slow_name_version(dist: importlib.metadata.Distribution) -> tuple[str, str | None] | None:
    name = dist.metadata["Name"] if dist.metadata else None
    return (name, dist.version) if name else None


def packages_text(packages: list[tuple[str, str]]) -> str:
    """pip-freeze format: ``name==version`` per line."""
    return "".join(f"{name}=={version}\n" for name, version in packages)


def _read_torch_version_file() -> dict[str, Any]:
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return {}
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / "version.py"
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return {}
    values: dict[str, Any] = {}
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else (
            node.target if isinstance(node, ast.AnnAssign) else None)
        value = getattr(node, "value", None)
        if isinstance(target, ast.Name) and isinstance(value, ast.Constant):
            values[target.id] = value.value
    return values


def torch_facts() -> dict[str, Any]:
    """torch version, CUDA/HIP build versions, and cuDNN when torch is loaded; ``{}`` without torch."""
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "version"):
        facts: dict[str, Any] = {"version": str(torch.__version__), "cuda": torch.version.cuda,
                                 "hip": getattr(torch.version, "hip", None)}
        try:
            facts["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        except (RuntimeError, AttributeError):
            facts["cudnn"] = None
        return facts
    values = _read_torch_version_file()
    if not values:
        return {}
    return {"version": values.get("__version__"), "cuda": values.get("cuda"), "hip": values.get("hip"),
            "cudnn": None}


def gpu_models() -> list[str]:
    """Models of the NVIDIA GPUs of this host (from ``/proc/driver/nvidia``; no CUDA initialisation)."""
    models = []
    for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
        try:
            for line in info.read_text().splitlines():
                if line.startswith("Model:"):
                    models.append(line.split(":", 1)[1].strip())
        except OSError:
            continue
    return models


def cuda_devices() -> list[str] | None:
    """Names of the CUDA devices torch sees, when torch is loaded and CUDA initialised (else None)."""
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "cuda"):
        return None
    try:
        if not torch.cuda.is_initialized():
            return None
        return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except (RuntimeError, AssertionError):
        return None


def framework_sha256() -> str:
    """Hash of bootstrap-repro's own source (an editable install changes without a version bump)."""
    import bootstrap_repro

    pkg = Path(bootstrap_repro.__file__).resolve().parent
    h = hashlib.sha256()
    for p in sorted(pkg.rglob("*")):
        if p.suffix in (".py", ".html", ".js") and "__pycache__" not in p.parts and p.is_file():
            h.update(f"{p.relative_to(pkg).as_posix()}\0{hashlib.sha256(p.read_bytes()).hexdigest()}\n".encode())
    return h.hexdigest()


def current_runtime() -> dict[str, Any]:
    """Where this process runs: the Docker runtime's facts (:data:`CONTAINER_ENV`) or ``{"kind": "local"}``."""
    try:
        facts = json.loads(os.environ.get(CONTAINER_ENV) or "null")
    except ValueError:
        facts = None
    return facts if isinstance(facts, dict) and facts.get("kind") else {"kind": "local"}


def environment(packages: list[tuple[str, str]] | None = None, runtime: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``environment`` section of ``record.json`` (see :func:`environment_fingerprint`)."""
    import bootstrap_repro

    packages = installed_packages() if packages is None else packages
    text = packages_text(packages)
    env = {
        "python": {"version": platform.python_version(), "implementation": platform.python_implementation(),
                   "executable": sys.executable},
        "platform": platform.platform(),
        "system": platform.system(),
        "machine": platform.machine(),
        "host": socket.gethostname(),
        "torch": torch_facts(),
        "gpus": gpu_models(),
        "cuda_devices": cuda_devices(),
        "framework": {"version": bootstrap_repro.__version__,
                      "root": str(Path(bootstrap_repro.__file__).resolve().parents[1]),
                      "sha256": framework_sha256()},
        "packages": {"file": PACKAGES_FILE, "count": len(packages),
                     "sha256": hashlib.sha256(text.encode()).hexdigest()},
        "env_vars": {k: os.environ[k] for k in ENV_ALLOWLIST if k in os.environ},
        "cpu_threads": cpu_threads(),
    }
    env["fingerprint"] = environment_fingerprint(env, runtime or current_runtime())
    return env


def environment_fingerprint(env: dict[str, Any], runtime: dict[str, Any]) -> str:
    """sha256 of what changes results: packages, Python, platform, torch/CUDA, GPU models, framework, runtime.

    Also the variables of :data:`RESULT_ENV` that are set (``PYTHONHASHSEED``,
    thread counts, ...) and the CPU thread count when ``OMP_NUM_THREADS`` is unset.
    Not in it: host name, paths, other variables, CPU model, cuDNN (its wheel is
    in the package set); of the runtime, only its kind and the image id.
    """
    torch = env.get("torch") or {}
    payload = {
        "python": [env["python"]["implementation"], env["python"]["version"]],
        "system": env["system"], "machine": env["machine"],
        "torch": [torch.get("version"), torch.get("cuda"), torch.get("hip")],
        "gpus": sorted(set(env.get("gpus") or [])),
        "framework": env["framework"]["sha256"],
        "packages": env["packages"]["sha256"],
        "runtime": [runtime.get("kind"), (runtime.get("image") or {}).get("id")],
        # variables that change numerics; CPU threads (reductions split by thread) when OMP_NUM_THREADS is unset
        "env_vars": {k: v for k, v in (env.get("env_vars") or {}).items() if k in RESULT_ENV},
        "threads": None if (env.get("env_vars") or {}).get("OMP_NUM_THREADS") else env.get("cpu_threads"),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def slurm_payload() -> dict[str, Any] | None:
    """The JSON of :data:`SLURM_ENV` (``requested``, and from the Slurm runtime ``requeue_flag``, ``facts``)."""
    raw = os.environ.get(SLURM_ENV)
    if raw is None:
        return None
    try:
        payload = json.loads(raw)
    except ValueError:
        payload = None
    return payload if isinstance(payload, dict) else {}


def scheduler_facts(payload: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Inside one of our Slurm jobs: the ``scheduler`` section of the record (None elsewhere).

    Read from Slurm's variables and ``scontrol`` here, unless ``payload`` (default: :func:`slurm_payload`)
    holds ``facts`` measured on the node before a container was started (no Slurm variables in there).
    """
    payload = slurm_payload() if payload is None else payload
    if payload is None:
        return None
    if isinstance(payload.get("facts"), dict):
        return dict(payload["facts"])
    env = os.environ
    facts: dict[str, Any] = {
        "kind": "slurm",
        "cluster": env.get("SLURM_CLUSTER_NAME"),
        "job_id": env.get("SLURM_ARRAY_JOB_ID") or env.get("SLURM_JOB_ID"),
        "array_task_id": env.get("SLURM_ARRAY_TASK_ID"),
        "node_list": env.get("SLURM_JOB_NODELIST"),
        "partition": env.get("SLURM_JOB_PARTITION"),
        "requested": payload.get("requested") or {},
        "requeue_count": int(env.get("SLURM_RESTART_COUNT") or 0),
        "submitted": None, "started": None, "ended": None,
    }
    job = env.get("SLURM_JOB_ID")
    if job and shutil.which("scontrol"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(["scontrol", "show", "job", "-o", job], capture_output=True, text=True, timeout=10).stdout
            fields = dict(tok.split("=", 1) for tok in out.split() if "=" in tok)
            facts["submitted"] = fields.get("SubmitTime")
            facts["started"] = fields.get("StartTime")
            facts["time_limit"] = fields.get("TimeLimit")
    return facts


def requeue_note() -> str | None:
    """In a Slurm job whose run is being stopped to be requeued: the line that says so (else None).

    The Slurm runtime's job writes its job id into the file ``requeue_flag`` of :data:`SLURM_ENV`
    before it stops the run at Slurm's warning signal (time limit, preemption); the run then says
    that it resumes by itself rather than how to resume it by hand.
    """
    flag = (slurm_payload() or {}).get("requeue_flag")
    try:
        job = Path(flag).read_text().strip() if flag else None
    except OSError:
        return None
    if job is None:
        return None
    return (f"slurm: job {job or '?'} stopped at its warning signal (time limit or preemption); saved, requeued: "
            f"it resumes from its last checkpoint")
