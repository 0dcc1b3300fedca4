"""Running an experiment inside a Docker container (``runtime.name: docker``).

``bootstrap-repro run -o cfg.yaml --runtime.name docker`` checks the options and
the experiment dir here, on the host, then:

1. finds or builds the image.  With ``runtime.docker.image`` set, that image is
   used as is (pulled when missing).  Otherwise the image is built from
   ``runtime.docker.dockerfile`` (default: the project's top-level ``Dockerfile``)
   with its directory as the build context, filtered by its ``.dockerignore``.
   The image is tagged ``bootstrap-repro:<hash>`` and labelled with a hash of
   its inputs (the context files, the build args, the base images' ids), so an
   unchanged image is found by that label and never rebuilt;
2. runs ``python -m bootstrap_repro run -o <options> <overrides>`` in a
   container through the Docker SDK: same absolute paths inside and outside
   (the code read-only, the experiment dir's parent read-write), ``--init``,
   the invoking user's uid:gid, ``HOME=/tmp``, GPUs through device requests,
   logs streamed live, the container's exit code returned;
3. SIGINT/SIGTERM stop the container (the run inside saves and exits 130, so
   the experiment resumes); a second signal kills it.  Every container carries
   the labels :data:`LABEL` and :data:`EXP_LABEL` and is removed after any exit.
   A detached watcher process, started before the container is created, stops
   and removes it when this process dies without doing so itself (``kill -9``,
   SIGHUP): see :func:`_watch`.

The container facts (image id, repo digest, base images, run arguments) reach
the run inside through the :data:`CONTAINER_ENV` variable (JSON), which also
tells the command inside not to start another container.  The Docker SDK is
imported only when a Docker run starts.
"""

from __future__ import annotations

import codecs
import contextlib
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, BinaryIO

from bootstrap_repro.errors import OptionsError, ReproError
from bootstrap_repro.record import CACHE_DIR_ENV, CODE_ROOT_ENV, CONTAINER_ENV, NO_CACHE_ENV, cache_root
from bootstrap_repro.record._env import SLURM_ENV
from bootstrap_repro.runtimes._docker_context import BuildContext, base_images
from bootstrap_repro.runtimes._process import die_with_parent

__all__ = [
    "CONTAINER_ENV",
    "LABEL",
    "EXP_LABEL",
    "INPUTS_LABEL",
    "DockerError",
    "DockerUnavailableError",
    "ImageBuildError",
    "ImageNotFoundError",
    "GPURuntimeError",
    "ExpDirNotWritableError",
    "DockerSettings",
    "BuildContext",
    "ImageInfo",
    "wants_docker",
    "connect",
    "ensure_image",
    "launch_docker",
    "visible_gpus",
    "default_dockerfile",
    "base_images",
]

#: Label on every container and image this module makes.
LABEL = "bootstrap-repro"
#: Label of a container: the absolute experiment dir it runs.
EXP_LABEL = "bootstrap-repro.exp"
#: Label of a built image: the hash of its build inputs.
INPUTS_LABEL = "bootstrap-repro.inputs"
#: Label of a built image: JSON list of its base images (name, id, repo digest).
BASES_LABEL = "bootstrap-repro.base-images"
IMAGE_REPO = "bootstrap-repro"
#: Host variables passed into the container when set (they change numerics, threads or hooks).
PASS_ENV: tuple[str, ...] = (
    "PYTHONHASHSEED", "CUBLAS_WORKSPACE_CONFIG", "NVIDIA_TF32_OVERRIDE", "CUDA_LAUNCH_BLOCKING",
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NCCL_ALGO", "NCCL_PROTO",
    "BOOTSTRAP_REPRO_HOOKS", NO_CACHE_ENV, CODE_ROOT_ENV, "PYTHONPATH", "BOOTSTRAP_REPRO_TRIAL", SLURM_ENV,
)
#: A sweep trial's context (``bootstrap_repro.sweep.TRIAL_ENV``): the trial inside reports to its study.
TRIAL_ENV = "BOOTSTRAP_REPRO_TRIAL"

#: Seconds ``docker stop`` waits for the run to save and exit before it kills the container.
STOP_TIMEOUT_S = 60
#: Seconds a run waits for its watcher (:func:`_watch`) to reach the engine; then it runs unwatched, with a warning.
WATCH_READY_TIMEOUT_S = 30
#: Pauses of a watcher that finds no container after its client died: a create still in flight shows up late.
WATCH_RETRIES_S = (0.5, 1.0, 2.0)
_SHM_SIZE = re.compile(r"^\d+[bkmg]?$", re.I)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# --------------------------------------------------------------------------- errors
class DockerError(ReproError, RuntimeError):
    """A Docker problem the user can fix (exit code 2)."""


class DockerUnavailableError(DockerError, ConnectionError):
    """No Docker engine reachable, or no permission on its socket."""


class ImageBuildError(DockerError):
    """``docker build`` of the experiment image failed."""


class ImageNotFoundError(DockerError, LookupError):
    """An image (or base image) that is not on this engine and cannot be pulled."""


class GPURuntimeError(DockerError):
    """GPUs were asked but the engine has no NVIDIA runtime."""


class ExpDirNotWritableError(ReproError, PermissionError):
    """The experiment dir cannot be created or written by the invoking user."""


# --------------------------------------------------------------------------- options
def wants_docker(options: Any) -> bool:
    """Whether this command must run in a container (and is not already running in one).

    Also in a Slurm job of ``runtime.name: slurm`` with ``runtime.slurm.inner: docker`` (on the node).
    """
    name = options.get("runtime.name", "local")
    if name not in ("local", "docker", "slurm"):
        raise OptionsError(f"runtime.name: expected local, docker or slurm, got {name!r}")
    in_slurm_job = name == "slurm" and SLURM_ENV in os.environ and options.get("runtime.slurm.inner") == "docker"
    return (name == "docker" or in_slurm_job) and CONTAINER_ENV not in os.environ


def _pairs(key: str, value: Any, *, from_host: bool = False) -> dict[str, str]:
    """``{K: V}`` or ``['K=V', ...]`` → ``{'K': 'V'}``.

    With ``from_host``, a bare ``K`` (or ``K: null``) takes the host's ``$K`` when the run
    starts, so a secret never lands in ``options.yaml`` or the record.
    """
    if value is None:
        return {}
    if isinstance(value, dict):
        items = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, list):
        items = []
        for item in value:
            name, eq, val = str(item).partition("=")
            if not eq and not from_host:
                raise OptionsError(f"{key}: expected NAME=VALUE items, got {item!r}")
            items.append((name, val if eq else None))
    else:
        raise OptionsError(f"{key}: expected a mapping or a list of NAME=VALUE, got {value!r}")
    out = {}
    for name, val in items:
        if not _ENV_NAME.match(name):
            raise OptionsError(f"{key}: {name!r} is not a valid variable name (letters, digits, _)")
        if val is None and from_host:
            if name not in os.environ:
                raise OptionsError(f"{key}: {name} is to be passed from the host, but it is not set here; "
                                   f"export it or give {name}=VALUE")
            val = os.environ[name]
        out[name] = "" if val is None else str(val).lower() if isinstance(val, bool) else str(val)
    return out


def _gpus(value: Any) -> int | list[str] | None:
    """``none`` → None; ``all`` → -1; ``2`` → 2 (a count); ``device=0,1`` or ``[0, 1]`` → ids."""
    if value is None or value is False or str(value).lower() == "none":
        return None
    if value is True or str(value).lower() == "all":
        return -1
    if isinstance(value, list) and value:
        return [str(v) for v in value]
    text = str(value)
    if text.startswith("device="):
        ids = [v.strip() for v in text[len("device="):].split(",") if v.strip()]
        if ids:
            return ids
    elif text.isdigit() and int(text) >= 1:
        return int(text)
    raise OptionsError(
        f"runtime.docker.gpus: expected none, all, a count (e.g. 2) or device=ID[,ID] (e.g. device=0,1), got {value!r}"
    )


def default_dockerfile() -> Path | None:
    """The project's top-level ``Dockerfile``, when bootstrap-repro runs from its source tree."""
    import bootstrap_repro

    path = Path(bootstrap_repro.__file__).resolve().parents[1] / "Dockerfile"
    return path if path.is_file() else None


@dataclass(frozen=True)
class DockerSettings:
    """The validated ``runtime.docker`` options."""

    image: str | None
    dockerfile: Path
    build_args: dict[str, str]
    gpus: int | list[str] | None  #: None: no GPU; -1: all; N: a count; list: device ids
    shm_size: str
    env: dict[str, str]
    mounts: tuple[tuple[Path, bool], ...]  #: extra (host path, read_only)
    network: str | None = None  #: None: Docker's default (bridge); host, none or a network's name

    @classmethod
    def from_options(cls, options: Any) -> DockerSettings:
        """Read and check ``runtime.docker.*``; raises :class:`OptionsError` naming the key."""
        image = options.get("runtime.docker.image") or None
        if image is not None and not isinstance(image, str):
            raise OptionsError(f"runtime.docker.image: expected an image name or id, got {image!r}")
        raw = options.get("runtime.docker.dockerfile") or None
        if raw is None:
            dockerfile = default_dockerfile()
            if dockerfile is None and image is None:
                raise OptionsError(
                    "runtime.docker.dockerfile: bootstrap-repro is installed without its source tree, so there is "
                    "no default Dockerfile; set runtime.docker.dockerfile to your Dockerfile or runtime.docker.image"
                )
        else:
            dockerfile = Path(str(raw)).expanduser().absolute()
            if not dockerfile.is_file():
                raise OptionsError(f"runtime.docker.dockerfile: {raw} is not a file; give the path of a Dockerfile")
        shm = options.get("runtime.docker.shm_size", "2g")
        if not _SHM_SIZE.match(str(shm)):
            raise OptionsError(f"runtime.docker.shm_size: expected a size like 512m or 2g, got {shm!r}")
        return cls(
            image=image,
            dockerfile=dockerfile or Path("Dockerfile"),
            build_args=_pairs("runtime.docker.build_args", options.get("runtime.docker.build_args")),
            gpus=_gpus(options.get("runtime.docker.gpus", "none")),
            shm_size=str(shm),
            env=_pairs("runtime.docker.env", options.get("runtime.docker.env"), from_host=True),
            mounts=tuple(_mounts(options.get("runtime.docker.mounts"))),
            network=_network(options.get("runtime.docker.network")),
        )


def _network(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or not re.match(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", value):
        raise OptionsError(f"runtime.docker.network: expected host, bridge, none or a Docker network's name, "
                           f"got {value!r}")
    return value


def _mounts(value: Any) -> Iterator[tuple[Path, bool]]:
    if value is None:
        return
    if not isinstance(value, list):
        raise OptionsError(f"runtime.docker.mounts: expected a list of PATH or PATH:rw, got {value!r}")
    for item in value:
        text = str(item)
        path, mode = (text[:-3], text[-2:]) if text.endswith((":rw", ":ro")) else (text, "ro")
        host = Path(path).expanduser().absolute()
        if not host.exists():
            raise OptionsError(f"runtime.docker.mounts: {path} does not exist; mounts are host paths (PATH or PATH:rw)")
        yield host, mode == "ro"


# --------------------------------------------------------------------------- engine access
def _docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"


def connect() -> Any:
    """A ``docker.DockerClient`` for ``$DOCKER_HOST`` (default: the local socket), checked with a ping."""
    try:
        import docker
    except ImportError:
        raise DockerError("runtime.name: docker needs the Docker SDK; pip install 'docker>=7'") from None
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except (docker.errors.DockerException, OSError) as exc:
        text = str(exc)
        if "PermissionError" in text or "Permission denied" in text:
            raise DockerUnavailableError(
                f"runtime.name: docker: permission denied on the Docker socket {_docker_host()}; add your user to the "
                f"docker group (sudo usermod -aG docker $USER, then log in again) or use rootless Docker"
            ) from None
        raise DockerUnavailableError(
            f"runtime.name: docker: no Docker engine reachable at {_docker_host()} ({_one_line(text, 160)}); "
            f"start it (sudo systemctl start docker, or dockerd) or set DOCKER_HOST"
        ) from None
    client.api.timeout = None  # builds and runs stream for as long as they take
    return client


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _api_text(exc: Exception) -> str:
    return _one_line(getattr(exc, "explanation", None) or str(exc))


# --------------------------------------------------------------------------- images
@dataclass(frozen=True)
class ImageInfo:
    """The image a run uses."""

    id: str
    tag: str | None
    repo_digest: str | None  #: ``repo@sha256:...`` when the image came from a registry; local builds have none
    base_images: list[dict[str, str | None]]  #: ``{name, id, repo_digest}`` of each ``FROM`` image
    inputs: str | None  #: hash of the build inputs (images built here)
    built: bool  #: built by this call

    def record(self) -> dict[str, Any]:
        return {"id": self.id, "tag": self.tag, "repo_digest": self.repo_digest,
                "base_images": self.base_images, "inputs_sha256": self.inputs}


def _info(image: Any, built: bool) -> ImageInfo:
    labels = image.labels or {}
    digests = image.attrs.get("RepoDigests") or []
    try:
        bases = json.loads(labels.get(BASES_LABEL, "[]"))
    except ValueError:
        bases = []
    return ImageInfo(image.id, image.tags[0] if image.tags else None, digests[0] if digests else None,
                     bases, labels.get(INPUTS_LABEL), built)


def _get_or_pull(client: Any, name: str, key: str, log: IO[str], hint: str) -> Any:
    import docker

    try:
        return client.images.get(name)
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.APIError as exc:
        raise DockerError(f"{key}: cannot inspect image {name!r} ({_api_text(exc)})") from None
    if name.startswith("sha256:"):  # an id (a recorded image): nothing to pull
        raise ImageNotFoundError(
            f"{key}: image {name} is not on this Docker engine; docker load it from a machine that has it "
            f"(docker save), or rebuild it by running the options with runtime.docker.image unset "
            f"(a rebuilt image gets a new id)"
        )
    import threading

    # Said only when the pull takes a while: a pull that fails at once (no registry) is the error line alone.
    note = threading.Timer(2.0, lambda: print(f"docker: pulling {name} ...", file=log, flush=True))
    note.daemon = True
    note.start()
    try:
        return client.images.pull(name)
    except (docker.errors.APIError, docker.errors.ImageNotFound) as exc:
        raise ImageNotFoundError(
            f"{key}: image {name!r} is not on this Docker engine and pulling it failed ({_api_text(exc)}); {hint}"
        ) from None
    finally:
        note.cancel()


def ensure_image(client: Any, settings: DockerSettings, log: IO[str]) -> ImageInfo:
    """The image of ``settings``: ``runtime.docker.image``, or the built one (built only when missing)."""
    if settings.image is not None:
        image = _get_or_pull(client, settings.image, "runtime.docker.image", log,
                             "docker pull / docker load it, or unset runtime.docker.image to build from the Dockerfile")
        return _info(image, built=False)
    context = BuildContext.collect(settings.dockerfile)
    bases = base_images(settings.dockerfile.read_text(encoding="utf-8"), settings.build_args)
    hint = "docker pull / docker load it, or pass --runtime.docker.build_args BASE_IMAGE=<an image on this engine>"
    base_info = []
    for name in bases:
        base = _get_or_pull(client, name, "runtime.docker.dockerfile: base image", log, hint)
        base_info.append({"name": name, "id": base.id, "repo_digest": (base.attrs.get("RepoDigests") or [None])[0]})
    inputs = context.digest(settings.build_args, {b["name"]: b["id"] for b in base_info})
    tag = f"{IMAGE_REPO}:{inputs[:16]}"
    # By tag and label: images built FROM this one inherit its label.
    found = client.images.list(name=tag, filters={"label": f"{INPUTS_LABEL}={inputs}"})
    if found:
        return _info(found[0], built=False)
    print(f"docker: building image {tag} from {settings.dockerfile} ({len(context.files)} context files)",
          file=log, flush=True)
    image_id = _build(client, context, settings.build_args, tag,
                      {LABEL: "1", INPUTS_LABEL: inputs, BASES_LABEL: json.dumps(base_info)}, log)
    return _info(client.images.get(image_id), built=True)


def _build(client: Any, context: BuildContext, build_args: dict[str, str], tag: str,
           labels: dict[str, str], log: IO[str]) -> str:
    """Run ``docker build`` with the log streamed to ``log``; returns the image id."""
    import docker

    step, tail, image_id = "the start", deque(maxlen=20), None
    with tempfile.TemporaryFile() as tar:
        context.write_tar(tar)
        try:
            for chunk in client.api.build(
                fileobj=tar, custom_context=True, dockerfile=context.dockerfile, tag=tag, buildargs=build_args,
                labels=labels, network_mode="host", rm=True, forcerm=True, pull=False, decode=True,
            ):
                if "stream" in chunk:
                    text = chunk["stream"]
                    log.write(text)
                    log.flush()
                    for line in text.splitlines():
                        if line.startswith("Step "):
                            step = line.strip()
                        if line.strip():
                            tail.append(line)
                elif "error" in chunk:
                    detail = (chunk.get("errorDetail") or {}).get("message") or chunk["error"]
                    raise ImageBuildError(
                        f"runtime.docker: image build failed at {step}: {_one_line(detail)}; its log is above"
                    )
                elif "aux" in chunk and isinstance(chunk["aux"], dict):
                    image_id = chunk["aux"].get("ID", image_id)
        except docker.errors.APIError as exc:
            raise ImageBuildError(f"runtime.docker: image build failed at {step}: {_api_text(exc)}") from None
    if image_id is None:
        last = tail[-1] if tail else "no output"
        raise ImageBuildError(f"runtime.docker: image build ended without an image ({_one_line(last)})")
    return image_id


# --------------------------------------------------------------------------- container
def check_writable(exp_dir: Path) -> None:
    """``exp_dir`` (or the nearest existing parent, where it will be made) must be a writable dir."""
    for path in (exp_dir, *exp_dir.parents):
        try:
            path.stat()
        except (FileNotFoundError, NotADirectoryError, PermissionError):  # PermissionError: a parent is closed
            continue
        break
    if not (path.is_dir() and os.access(path, os.W_OK | os.X_OK)):
        raise ExpDirNotWritableError(
            f"exp.dir: {exp_dir} cannot be written by uid {os.getuid()} ({path} is not a writable directory); "
            f"choose another --exp.dir or fix its permissions"
        )


def _code_root(path: Path) -> Path:
    """The git repo holding ``path`` (its root), else ``path`` itself."""
    for candidate in (path, *path.parents):
        if (candidate / ".git").exists():
            return candidate
    return path


def _worktree_git_dirs(paths: Iterable[Path]) -> list[Path]:
    """The main ``.git`` dirs of the git worktrees holding ``paths`` (git inside the container needs them)."""
    found = []
    for path in paths:
        dot_git = _code_root(path) / ".git"
        if not dot_git.is_file():
            continue
        text = dot_git.read_text(encoding="utf-8", errors="replace").strip()
        if not text.startswith("gitdir:"):
            continue
        gitdir = (dot_git.parent / text[len("gitdir:"):].strip()).resolve()
        common = gitdir / "commondir"
        found.append((gitdir / common.read_text().strip()).resolve() if common.is_file() else gitdir)
    return found


def _under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


@dataclass
class RunSpec:
    """Everything ``docker create`` gets for one run."""

    image: ImageInfo
    command: list[str]
    working_dir: str
    user: str
    mounts: list[tuple[str, bool]]  #: (absolute path, read_only); same path inside and outside
    env: dict[str, str]
    shm_size: str
    gpus: int | list[str] | None
    labels: dict[str, str]
    exp_dir: Path
    passed_env: list[str] = field(default_factory=list)
    network: str | None = None  #: None: Docker's default network

    def record(self) -> dict[str, Any]:
        """The effective run arguments (environment: names only)."""
        return {"command": self.command, "working_dir": self.working_dir, "user": self.user, "init": True,
                "mounts": [{"path": p, "read_only": ro} for p, ro in self.mounts], "shm_size": self.shm_size,
                "gpus": self.gpus, "network": self.network, "env": sorted(self.passed_env), "labels": self.labels}

    def create_kwargs(self) -> dict[str, Any]:
        from docker.types import DeviceRequest, Mount

        gpus = []
        if isinstance(self.gpus, int):
            gpus = [DeviceRequest(count=self.gpus, capabilities=[["gpu"]])]
        elif self.gpus:
            gpus = [DeviceRequest(device_ids=list(self.gpus), capabilities=[["gpu"]])]
        return dict(
            image=self.image.id, command=self.command, working_dir=self.working_dir, user=self.user,
            environment=self.env, labels=self.labels, init=True, shm_size=self.shm_size, device_requests=gpus,
            mounts=[Mount(target=p, source=p, type="bind", read_only=ro) for p, ro in self.mounts],
            privileged=False, tty=False, stdin_open=False, detach=True,
            **({"network_mode": self.network} if self.network else {}),
        )


def _plan_mounts(wanted: Iterable[tuple[Path, bool]]) -> list[tuple[str, bool]]:
    """One bind mount per path; a read-only path already under a mount of the same kind is dropped."""
    by_path: dict[Path, bool] = {}
    for path, read_only in wanted:
        by_path[path] = by_path.get(path, True) and read_only  # read-write wins
    keep = []
    for path, read_only in sorted(by_path.items(), key=lambda kv: len(kv[0].parts)):
        covering = [ro for p, ro in keep if _under(path, p)]
        if covering and covering[-1] == read_only:
            continue
        keep.append((path, read_only))
    return [(str(p), ro) for p, ro in keep]


def run_spec(options: Any, options_path: str, overrides: Sequence[str], settings: DockerSettings,
             image: ImageInfo, exp_dir: Path, *, cache: bool = True) -> RunSpec:
    """The container of ``bootstrap-repro run -o options_path overrides`` (``cache=False``: ``--no-cache``)."""
    options_file = Path(os.path.abspath(options_path))
    cwd = Path.cwd()
    wanted: list[tuple[Path, bool]] = [(_code_root(options_file.parent), True), (exp_dir.parent, False)]
    if cwd != Path("/"):
        wanted.append((cwd, True))
    declared = [k for k in (options.get("exp.env_keys") or []) if isinstance(k, str)]  # inputs: in the key
    passed = [k for k in dict.fromkeys([*PASS_ENV, *declared]) if k in os.environ]
    code_dirs = [*os.environ.get("PYTHONPATH", "").split(os.pathsep), os.environ.get(CODE_ROOT_ENV, "")]
    wanted += [(Path(os.path.abspath(d)), True) for d in code_dirs if d and Path(d).is_dir()]
    wanted += [(d, True) for d in _worktree_git_dirs([p for p, _ in wanted])]
    wanted += list(settings.mounts)
    # The exp dir stays writable: no read-only mount between it and its parent's (e.g. `-o <exp>/options.yaml`).
    wanted = [(p, ro) for p, ro in wanted
              if not (ro and _under(p, exp_dir.parent) and (_under(exp_dir, p) or _under(p, exp_dir)))]
    uid, gid = os.getuid(), os.getgid()
    try:
        import pwd

        user_name = pwd.getpwuid(uid).pw_name
    except (ImportError, KeyError):
        user_name = f"uid{uid}"
    env = {k: os.environ[k] for k in passed}
    env.update(settings.env)
    cache_dir = _cache_base()
    if cache_dir is not None:  # the run inside shares the host's result cache
        wanted.append((cache_dir, False))
        env[CACHE_DIR_ENV] = str(cache_dir)
    if not cache:
        env[NO_CACHE_ENV] = "1"
    env.update({"HOME": "/tmp", "USER": user_name, "LOGNAME": user_name,
                "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"})
    labels = {LABEL: "1", EXP_LABEL: str(exp_dir), INPUTS_LABEL: image.inputs or ""}
    command = ["python", "-m", "bootstrap_repro", "run", "-o", str(options_file), *overrides]
    spec = RunSpec(image, command, str(cwd), f"{uid}:{gid}", _plan_mounts(wanted), env, settings.shm_size,
                   visible_gpus(settings.gpus), labels, exp_dir, passed + sorted(settings.env), settings.network)
    spec.env[CONTAINER_ENV] = json.dumps({"kind": "docker", "image": image.record(), "run": spec.record()},
                                         sort_keys=True)
    return spec


def visible_gpus(gpus: int | list[str] | None, environ: dict[str, str] | None = None) -> int | list[str] | None:
    """The container's GPUs, narrowed to the host's ``$CUDA_VISIBLE_DEVICES`` when it is set.

    ``all`` becomes the visible devices and a count their first N, so that a process given
    ``CUDA_VISIBLE_DEVICES=1`` (e.g. a sweep trial: one trial per GPU) trains on GPU 1 in its
    container as it would locally.  Explicit device ids are kept; an empty list means no GPU.
    """
    env = os.environ if environ is None else environ
    if gpus is None or isinstance(gpus, list) or "CUDA_VISIBLE_DEVICES" not in env:
        return gpus
    ids = [g.strip() for g in env["CUDA_VISIBLE_DEVICES"].split(",") if g.strip()]
    ids = ids[:ids.index("-1")] if "-1" in ids else ids  # CUDA stops at the first invalid id
    if not ids:
        return None
    if gpus == -1:
        return ids
    if gpus > len(ids):
        raise OptionsError(f"runtime.docker.gpus: {gpus} GPUs asked but CUDA_VISIBLE_DEVICES shows "
                           f"{len(ids)} ({','.join(ids)}); lower runtime.docker.gpus or widen CUDA_VISIBLE_DEVICES")
    return ids[:gpus]


def _cache_base() -> Path | None:
    """The host's result-cache dir (made if missing), or None when it cannot be made."""
    base = Path(os.path.abspath(cache_root().parent))
    try:
        base.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return base


def _clean_leftovers(client: Any, exp_dir: Path) -> None:
    """Remove stopped containers of this experiment; refuse while one still runs it."""
    import docker

    # ignore_removed: a container listed, then removed before it is inspected (its client's watcher
    # removing it as this run starts) is gone, not an error
    found = client.containers.list(all=True, filters={"label": [f"{LABEL}=1", f"{EXP_LABEL}={exp_dir}"]},
                                   ignore_removed=True)
    for container in found:
        if container.status in ("running", "restarting", "paused", "removing"):
            raise DockerError(
                f"exp.dir: container {container.short_id} is still running {exp_dir}; "
                f"wait for it or stop it (docker stop {container.short_id})"
            )
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)


class _Stopper:
    """SIGINT/SIGTERM handler: the first signal stops the container, a second one kills it."""

    def __init__(self, log: IO[str]) -> None:
        self.container: Any = None
        self.signals = 0
        self.log = log

    def __call__(self, signum: int, frame: Any) -> None:
        self.signals += 1
        if self.container is None:
            return
        if self.signals == 1:
            print(f"docker: {signal.Signals(signum).name}: stopping the container (the run saves and can be resumed; "
                  f"again to kill it)", file=self.log, flush=True)
            self._in_thread(lambda: self.container.stop(timeout=STOP_TIMEOUT_S))
        else:
            self._in_thread(self.container.kill)

    @staticmethod
    def _in_thread(fn: Callable[[], Any]) -> None:
        """Call ``fn`` in a thread (the main one keeps streaming the logs), ignoring Docker errors."""
        import docker

        def call() -> None:
            with contextlib.suppress(docker.errors.DockerException, OSError):
                fn()

        threading.Thread(target=call, daemon=True).start()

    @contextlib.contextmanager
    def installed(self) -> Iterator[_Stopper]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {sig: signal.signal(sig, self) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def _pump(stream: Iterable[tuple[bytes | None, bytes | None]], out: IO[str], err: IO[str]) -> None:
    """Copy the container's demultiplexed output to ``out``/``err`` as it comes."""
    decoders = (codecs.getincrementaldecoder("utf-8")("replace"), codecs.getincrementaldecoder("utf-8")("replace"))
    for chunks in stream:
        for data, target, decoder in zip(chunks, (out, err), decoders):
            if data:
                target.write(decoder.decode(data))
                target.flush()


def _make_parents(path: Path) -> list[Path]:
    """``mkdir -p path``; returns the dirs it created, deepest first."""
    made = []
    for candidate in (path, *path.parents):
        if candidate.exists():
            break
        made.append(candidate)
    path.mkdir(parents=True, exist_ok=True)
    return made


def _start_error(exc: Exception, spec: RunSpec) -> DockerError:
    text = _api_text(exc)
    if "could not select device driver" in text:
        return GPURuntimeError(
            f"runtime.docker.gpus: {spec.gpus if spec.gpus != -1 else 'all'} asked but this Docker engine has no "
            f"NVIDIA runtime ({text}); install the NVIDIA container toolkit, or set --runtime.docker.gpus none"
        )
    return DockerError(f"runtime.docker: the container did not start ({text})")


def _run_container(client: Any, spec: RunSpec, out: IO[str], err: IO[str]) -> int:
    import docker

    made = _make_parents(spec.exp_dir.parent)
    container, started = None, False
    stopper = _Stopper(err)
    # Named before it exists, so that the watcher finds it whenever this process dies.
    name = f"{IMAGE_REPO}-{uuid.uuid4().hex[:16]}"
    watcher = None
    try:
        with stopper.installed():
            watcher = _watcher_ready(_start_watcher(name, err), name, err)
            if stopper.signals:
                return 130
            try:
                container = client.containers.create(name=name, **spec.create_kwargs())
            except docker.errors.APIError as exc:
                raise DockerError(f"runtime.docker: cannot create the container ({_api_text(exc)})") from None
            stopper.container = container
            if stopper.signals:
                return 130
            stream = client.api.attach(container.id, stdout=True, stderr=True, stream=True, logs=True, demux=True)
            try:
                container.start()
            except docker.errors.APIError as exc:
                raise _start_error(exc, spec) from None
            started = True
            print(f"docker: container {container.short_id} of image {spec.image.tag or spec.image.id} "
                  f"({spec.image.id}) started", file=err, flush=True)
            _pump(stream, out, err)
            return int(container.wait()["StatusCode"])
    finally:
        if container is not None:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
        _end_watcher(watcher)
        if not started:
            for path in made:
                with contextlib.suppress(OSError):
                    path.rmdir()


# --------------------------------------------------------------------------- the watcher
_WATCH_CODE = ("import sys\nfrom bootstrap_repro.runtimes._docker import _watch_main\n"
               "sys.exit(_watch_main(sys.argv[1:]))\n")


def _start_watcher(name: str, log: IO[str]) -> subprocess.Popen[bytes] | None:
    """Start the watcher of the container ``name`` (see :func:`_watch`); None where it cannot run."""
    if os.name != "posix":
        return None
    import bootstrap_repro

    root = str(Path(bootstrap_repro.__file__).resolve().parents[1])  # the watcher imports this same code
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    try:
        # Its own session: not in this process group, so a signal to the group (Ctrl-C, a job's
        # kill) does not reach it.  Its stdin: a pipe whose write end only this process holds.
        return subprocess.Popen([sys.executable, "-c", _WATCH_CODE, name, str(STOP_TIMEOUT_S)], cwd="/", env=env,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
    except OSError as exc:
        _unwatched(name, f"cannot start it: {exc}", log)
        return None


def _watcher_ready(watcher: subprocess.Popen[bytes] | None, name: str,
                   log: IO[str]) -> subprocess.Popen[bytes] | None:
    """Wait for the watcher's ``ready`` line; a watcher that fails is ended and the run goes on unwatched."""
    if watcher is None:
        return None
    assert watcher.stdout is not None
    readable, _, _ = select.select([watcher.stdout], [], [], WATCH_READY_TIMEOUT_S)
    line = watcher.stdout.readline() if readable else b""
    if line == b"ready\n":
        watcher.stdout.close()
        return watcher
    with contextlib.suppress(OSError):
        watcher.kill()
    rest = watcher.stdout.read() if readable else b""
    watcher.wait()
    watcher.stdout.close()
    lines = (line + rest).decode(errors="replace").strip().splitlines()
    _unwatched(name, lines[-1] if lines else f"not ready after {WATCH_READY_TIMEOUT_S} s", log)
    with contextlib.suppress(OSError):
        assert watcher.stdin is not None
        watcher.stdin.close()
    return None


def _unwatched(name: str, why: str, log: IO[str]) -> None:
    print(f"docker: warning: no watcher for container {name} ({_one_line(why, 200)}); if bootstrap-repro is killed, "
          f"stop the container with: docker stop {name}", file=log, flush=True)


def _end_watcher(watcher: subprocess.Popen[bytes] | None) -> None:
    """The run ended here (its container is removed): tell the watcher, which exits."""
    if watcher is None:
        return
    assert watcher.stdin is not None
    with contextlib.suppress(OSError):  # BrokenPipeError: the watcher is gone already
        watcher.stdin.write(b"done\n")
    with contextlib.suppress(OSError):
        watcher.stdin.close()
    try:
        watcher.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass  # still busy: it exits by itself; reaped by init after this process


def _watch_main(argv: Sequence[str]) -> int:
    """The watcher process (``python -c _WATCH_CODE NAME STOP_TIMEOUT``): connect, say ``ready``, watch."""
    for sig in (signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    name, stop_timeout = argv[0], int(argv[1])
    try:
        import docker

        client = docker.from_env(timeout=30)
        client.ping()
    except Exception as exc:  # noqa: BLE001 - reported to the client, which runs unwatched
        print(f"cannot reach the Docker engine: {_one_line(str(exc), 160)}", flush=True)
        return 1
    print("ready", flush=True)
    devnull = os.open(os.devnull, os.O_WRONLY)  # the client no longer reads; nothing must hold its pipes
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    return _watch(client, name, stop_timeout, sys.stdin.buffer)


def _watch(client: Any, name: str, stop_timeout: float, pipe: BinaryIO, retries: Sequence[float] = WATCH_RETRIES_S,
           sleep: Callable[[float], None] = time.sleep) -> int:
    """Block until the client is gone; then stop and remove its container ``name``.

    ``pipe`` is the read end of a pipe whose write end only the client holds.  The client writes
    ``done`` once it has removed the container itself; when it dies in any way (``kill -9``
    included) the kernel closes its end and the read returns without it.  The container is then
    stopped as by Ctrl-C (the run inside saves and exits 130: resumable) and removed.  Returns 0
    when the client ended the run, 2 when a container was stopped here, 1 when there was none.

    No container yet (the client died before or while creating it): looked up again after each
    of ``retries`` seconds, since a create in flight can still land; one landing later stays in
    state ``created`` (never started) and the next run of its experiment removes it.
    """
    import docker

    message = b""
    with contextlib.suppress(OSError):
        message = pipe.read()
    if message.startswith(b"done"):
        return 0
    for delay in (0.0, *retries):
        sleep(delay)
        try:
            container = client.containers.get(name)
        except (docker.errors.DockerException, OSError):  # NotFound, or the engine busy: look again
            continue
        with contextlib.suppress(docker.errors.DockerException, OSError):
            container.stop(timeout=stop_timeout)
        with contextlib.suppress(docker.errors.DockerException, OSError):
            container.remove(force=True)
        return 2
    return 1


def _stop_with_sweep_driver() -> None:
    """In a sweep trial, get SIGTERM when the driver dies (the container is then stopped, resumable).

    The trial's run inside the container cannot watch the driver (another pid namespace);
    its launcher here can (``PR_SET_PDEATHSIG``, Linux).
    """
    raw = os.environ.get(TRIAL_ENV)
    if not raw:
        return
    try:
        driver_pid = int(json.loads(raw).get("driver_pid") or 0)
    except (ValueError, TypeError, AttributeError):
        return
    if not die_with_parent(driver_pid):  # the driver died before the signal was armed
        os.kill(os.getpid(), signal.SIGTERM)


def launch_docker(options: Any, options_path: str, overrides: Sequence[str], *, cache: bool = True,
                  out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """Check everything, find or build the image, run the experiment in a container; returns its exit code.

    ``cache=False`` is ``run --no-cache`` (the run inside neither reads nor fills the result cache).
    """
    from bootstrap_repro.run import check_exp_dir

    out, err = out or sys.stdout, err or sys.stderr
    _stop_with_sweep_driver()
    settings = DockerSettings.from_options(options)
    exp_value = options.get("exp.dir")
    if exp_value:
        check_writable(Path(os.path.abspath(str(exp_value))))
    exp_path, _ = check_exp_dir(options)
    exp_dir = Path(os.path.abspath(exp_path))
    client = connect()
    try:
        _clean_leftovers(client, exp_dir)
        try:
            image = ensure_image(client, settings, err)
        except KeyboardInterrupt:
            print("docker: interrupted while preparing the image; nothing ran", file=err, flush=True)
            return 130
        spec = run_spec(options, options_path, overrides, settings, image, exp_dir, cache=cache)
        return _run_container(client, spec, out, err)
    finally:
        client.close()
