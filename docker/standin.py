"""Offline stand-ins for what a real Docker user pulls from registries (used by tests, CI, benchmarks).

Where no registry is reachable, the project image is built on

* a stand-in base image: Debian bookworm (minbase) with ``python3``, ``git`` and a venv at
  ``/opt/venv`` made by ``mmdebstrap`` and ``docker import``-ed.  It is labelled with a hash of
  its recipe and rebuilt only when the recipe changes;
* a local wheelhouse: the project's dependencies (torch pinned to the version installed here)
  downloaded with ``pip download`` from this machine's local wheel dirs and indexes (``pip
  config list``), served on 127.0.0.1 while the image builds (``docker build --network host``).

As a script (as root, with the Docker engine running)::

    python docker/standin.py            # builds both stand-ins and the project image, prints the options

As a module: :func:`build_base`, :func:`build_wheelhouse`, :func:`serve`, :func:`build_args`,
:func:`frozen_context`, :func:`prepare_project_image`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

REPO = Path(__file__).resolve().parents[1]
#: The stand-in base image (tag) and the label holding its recipe hash.
STANDIN_IMAGE = "bootstrap-repro-standin:bookworm"
RECIPE_LABEL = "bootstrap-repro.standin-recipe"
#: Fixed, so that the project image's build args (and so its tag hash) stay the same between sessions.
WHEELHOUSE_PORT = 47613
MMDEBSTRAP_ARGS: tuple[str, ...] = (
    "--variant=minbase",
    "--hook-dir=/usr/share/mmdebstrap/hooks/merged-usr",
    "--include=python3,python3-venv,git",
    "--customize-hook=chroot \"$1\" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin /usr/bin/python3 -m venv /opt/venv",
    "bookworm",
)
IMPORT_CHANGES: tuple[str, ...] = (
    "ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "ENV LANG=C.UTF-8",
)
#: Optional dependency groups installed in the project image (the Dockerfile's EXTRAS default).
EXTRAS: tuple[str, ...] = ("examples", "postgres")
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bootstrap-repro"


def _client() -> Any:
    import docker

    client = docker.from_env(timeout=600)
    client.ping()
    return client


def recipe_hash() -> str:
    """sha256 of the stand-in base image's recipe."""
    return hashlib.sha256(json.dumps([MMDEBSTRAP_ARGS, IMPORT_CHANGES]).encode()).hexdigest()


def build_base(log: IO[str] = sys.stderr, client: Any = None) -> str:
    """Build (or find) the stand-in base image; returns its id."""
    client = client or _client()
    recipe = recipe_hash()
    # By tag and label: images built FROM the stand-in inherit its label.
    found = client.images.list(name=STANDIN_IMAGE, filters={"label": f"{RECIPE_LABEL}={recipe}"})
    if found:
        return found[0].id
    if shutil.which("mmdebstrap") is None:
        raise RuntimeError("mmdebstrap is not installed (apt-get install -y mmdebstrap)")
    print(f"standin: building {STANDIN_IMAGE} with mmdebstrap (~25 s)", file=log, flush=True)
    with tempfile.TemporaryDirectory(prefix="standin-") as tmp:
        tar = Path(tmp) / "rootfs.tar"
        # A file first, then import: a truncated stream piped into `docker import` can still succeed.
        subprocess.run(["mmdebstrap", "--quiet", *MMDEBSTRAP_ARGS, str(tar)], check=True, stdout=log, stderr=log)
        with tarfile.open(tar) as t:  # reads it to the end: a damaged tar fails here
            if not any(m.name.endswith("opt/venv/bin/python") for m in t):
                raise RuntimeError(f"{tar}: no /opt/venv/bin/python in the stand-in root fs")
        repository, tag = STANDIN_IMAGE.split(":")
        client.api.import_image_from_file(str(tar), repository=repository, tag=tag,
                                          changes=[*IMPORT_CHANGES, f"LABEL {RECIPE_LABEL}={recipe}"])
    return client.images.get(STANDIN_IMAGE).id


def _local_sources() -> list[str]:
    """pip arguments naming this machine's local wheel dirs and indexes (from ``pip config list``)."""
    out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True).stdout
    args: list[str] = []
    for line in out.splitlines():
        key, _, value = line.partition("=")
        option = key.rsplit(".", 1)[-1]
        for item in value.strip().strip("'\"").split():
            local = item.startswith("file://") or item.startswith("/")
            if not local:
                continue
            if option == "find-links" and ["--find-links", item] not in [args[i:i + 2] for i in range(len(args))]:
                args += ["--find-links", item]
            elif option in ("index-url", "extra-index-url"):
                args += ["--extra-index-url" if "--index-url" in args else "--index-url", item]
    return args if "--index-url" in args else ["--no-index", *args]


def _requirements() -> list[str]:
    sys.path.insert(0, str(REPO / "docker"))
    try:
        from install_deps import requirements
    finally:
        sys.path.pop(0)
    return requirements(str(REPO / "pyproject.toml"), list(EXTRAS))


def _pins() -> list[str]:
    """``torch==<the version installed here>``: the same torch build makes a container's numerics match
    a local run (other packages take the newest local wheel: this machine's venv may hold versions
    that its local indexes do not)."""
    try:
        return [f"torch=={importlib.metadata.version('torch')}"]
    except importlib.metadata.PackageNotFoundError:
        return []


def build_wheelhouse(log: IO[str] = sys.stderr) -> Path:
    """Download the project's dependencies into a cached wheelhouse; returns its dir."""
    reqs, pins = _requirements(), _pins()
    key = hashlib.sha256(json.dumps([reqs, pins, sys.version_info[:2]]).encode()).hexdigest()[:16]
    dest = CACHE_DIR / f"wheelhouse-{key}"
    if (dest / ".complete").is_file():
        return dest
    print(f"standin: downloading {len(reqs)} requirements into {dest}", file=log, flush=True)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".wheelhouse-", dir=CACHE_DIR))
    try:
        (tmp / "constraints.txt").write_text("\n".join(pins) + "\n")
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--isolated", *_local_sources(),
                        "--only-binary=:all:", "-c", str(tmp / "constraints.txt"), "-d", str(tmp), *reqs],
                       check=True, stdout=log, stderr=log)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    (tmp / ".complete").write_text("\n".join(reqs) + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


@contextlib.contextmanager
def serve(directory: Path, port: int = WHEELHOUSE_PORT) -> Iterator[str]:
    """Serve ``directory`` on ``http://127.0.0.1:port/`` while the block runs.

    When another session already serves the same wheelhouse there, that server is used.
    """
    url = f"http://127.0.0.1:{port}/"
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        try:
            with urllib.request.urlopen(url + ".complete", timeout=5) as answer:
                same = answer.read() == (directory / ".complete").read_bytes()
        except (OSError, ValueError):
            same = False
        if not same:
            raise RuntimeError(f"127.0.0.1:{port} is in use by something else than this wheelhouse; stop it first")
        yield url
        return
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                             "--directory", str(directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the wheelhouse server could not start on 127.0.0.1:{port} (port in use?)")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the wheelhouse server did not answer on 127.0.0.1:{port}")
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def build_args(port: int = WHEELHOUSE_PORT) -> dict[str, str]:
    """The project image's build args for an offline build on the stand-ins."""
    return {"BASE_IMAGE": STANDIN_IMAGE, "PIP_ARGS": f"--no-index --find-links http://127.0.0.1:{port}/"}


def frozen_context(dest: Path) -> Path:
    """A copy of the project's build context in ``dest`` (edits to this checkout then change nothing);
    returns its Dockerfile.  Same files, so the same image hash as the checkout's own context."""
    sys.path.insert(0, str(REPO))
    from bootstrap_repro.runtimes._docker_context import BuildContext

    for rel in BuildContext.collect(REPO / "Dockerfile").files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, target)
    return dest / "Dockerfile"


def prepare_project_image(log: IO[str] = sys.stderr, dockerfile: Path | None = None) -> tuple[Any, float]:
    """Stand-in base, wheelhouse, then the project image (found or built by the Docker runtime) from
    ``dockerfile`` (default: this checkout's).

    Returns the runtime's ``ImageInfo`` and the seconds it took to find or build it.
    """
    sys.path.insert(0, str(REPO))
    from bootstrap_repro.runtimes import DockerSettings, ensure_image
    from bootstrap_repro.runtimes._docker import connect

    client = connect()
    build_base(log, client)
    settings = DockerSettings(image=None, dockerfile=dockerfile or REPO / "Dockerfile",
                              build_args=build_args(), gpus=None, shm_size="2g", env={}, mounts=())
    with serve(build_wheelhouse(log)):
        start = time.perf_counter()
        info = ensure_image(client, settings, log)
        return info, time.perf_counter() - start


def options_text() -> str:
    """The options a user passes to run on the stand-in image."""
    args = build_args()
    return (f"--runtime.name docker --runtime.docker.build_args BASE_IMAGE={args['BASE_IMAGE']} "
            f"'PIP_ARGS={args['PIP_ARGS']}'")


if __name__ == "__main__":
    image, seconds = prepare_project_image()
    print(f"{image.tag} {image.id} ({'built' if image.built else 'found'} in {seconds:.1f} s)")
    print(f"run with: bootstrap-repro run -o OPTIONS.yaml {options_text()}")
