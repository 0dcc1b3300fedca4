"""Docker runtime cost: whole-run time in a container vs locally, and image build times.

Needs a running Docker engine, mmdebstrap and root (the offline stand-ins of ``docker/standin.py``).
The build context (Dockerfile, package, pyproject, README, docker/) is copied into a temporary
dir first, so edits to this checkout during the benchmark change nothing, and the image is
built from that copy (``--runtime.docker.dockerfile``) on the stand-in base with a local wheelhouse.

1. image build times: cold (``docker build --no-cache``: every layer, torch included), after a
   code change (one package file edited: only the package layers rebuild), all layers cached
   (what a tool that builds on every run pays), and the runtime's lookup of an unchanged image
   (what ``runtime.name: docker`` pays: it never rebuilds);
2. the same experiment (digits, ``--epochs`` epochs, CPU) run ``--repeats`` times locally and in
   Docker, alternating, each as its own ``bootstrap-repro run`` process; prints the medians and
   their difference (goal: <= 3 s), and in Docker the median time until the container started.

    python benchmarks/docker_overhead.py [--repeats 5] [--epochs 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "docker"))

import standin  # noqa: E402

from bootstrap_repro.runtimes import DockerSettings, ensure_image  # noqa: E402
from bootstrap_repro.runtimes._docker import _build, connect  # noqa: E402
from bootstrap_repro.runtimes._docker_context import BuildContext  # noqa: E402


def timed_build(client, dockerfile: Path, tag: str, nocache: bool) -> float:
    """Seconds of one ``docker build`` of ``dockerfile``'s context (log discarded)."""
    context = BuildContext.collect(dockerfile)
    start = time.perf_counter()
    with open(os.devnull, "w") as log:
        if nocache:
            with tempfile.TemporaryFile() as tar:
                context.write_tar(tar)
                for chunk in client.api.build(fileobj=tar, custom_context=True, tag=tag, nocache=True, rm=True,
                                              forcerm=True, network_mode="host", decode=True,
                                              buildargs=standin.build_args()):
                    if "error" in chunk:
                        sys.exit(f"cold build failed: {chunk['error']}")
        else:
            _build(client, context, standin.build_args(), tag, {"bootstrap-repro": "1"}, log)
    return time.perf_counter() - start


def run_once(cmd: list[str], env: dict[str, str]) -> tuple[float, float | None]:
    """Whole-process seconds of ``cmd``, and seconds until the container started (Docker runs)."""
    start = time.perf_counter()
    started = None
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    tail = []
    for line in proc.stderr:
        if started is None and line.startswith("docker: container "):
            started = time.perf_counter() - start
        tail = (tail + [line])[-20:]
    if proc.wait() != 0:
        sys.exit(f"run failed ({proc.returncode}): {' '.join(cmd)}\n{''.join(tail)}")
    return time.perf_counter() - start, started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    client = connect()
    standin.build_base(sys.stderr, client)
    tmp = Path(tempfile.mkdtemp(prefix="docker-bench-"))
    tags = []
    try:
        dockerfile = standin.frozen_context(tmp / "context")
        with standin.serve(standin.build_wheelhouse(sys.stderr)):
            cold = timed_build(client, dockerfile, "bootstrap-repro-bench:cold", nocache=True)
            tags.append("bootstrap-repro-bench:cold")
            settings = DockerSettings(image=None, dockerfile=dockerfile, build_args=standin.build_args(), gpus=None,
                                      shm_size="2g", env={}, mounts=())
            image = ensure_image(client, settings, open(os.devnull, "w"))  # noqa: SIM115 - the runtime's image
            init = dockerfile.parent / "bootstrap_repro" / "__init__.py"
            init.write_text(init.read_text() + "\n# benchmark: a code change\n")
            changed = timed_build(client, dockerfile, "bootstrap-repro-bench:changed", nocache=False)
            tags.append("bootstrap-repro-bench:changed")
            cached = timed_build(client, dockerfile, "bootstrap-repro-bench:changed", nocache=False)
            init.write_text(init.read_text().replace("\n# benchmark: a code change\n", ""))
            lookups = []
            for _ in range(5):
                t0 = time.perf_counter()
                again = ensure_image(client, settings, sys.stderr)
                lookups.append(time.perf_counter() - t0)
                assert again.id == image.id and not again.built
        env = {**os.environ, "PYTHONPATH": str(ROOT), "BOOTSTRAP_REPRO_NO_CACHE": "1",
               "BOOTSTRAP_REPRO_CACHE_DIR": str(tmp / "cache")}
        base = [sys.executable, "-m", "bootstrap_repro", "run", "-o", "examples/digits/options.yaml",
                "--engine.nb_epochs", str(args.epochs), "--engine.progress_bar", "false"]
        docker_args = ["--runtime.name", "docker", "--runtime.docker.dockerfile", str(dockerfile),
                       "--runtime.docker.build_args", *(f"{k}={v}" for k, v in standin.build_args().items())]
        local, in_docker, until_start = [], [], []
        run_once([*base, "--exp.dir", str(tmp / "warmup"), *docker_args], env)  # page cache, image layers
        for i in range(args.repeats):
            local.append(run_once([*base, "--exp.dir", str(tmp / f"local{i}")], env)[0])
            total, started = run_once([*base, "--exp.dir", str(tmp / f"docker{i}"), *docker_args], env)
            in_docker.append(total)
            until_start.append(started)
    finally:
        for tag in tags:
            subprocess.run(["/usr/bin/docker", "rmi", "-f", tag], capture_output=True, check=False)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"image {image.tag} ({image.id[:19]}), digits {args.epochs} epochs, {args.repeats} alternating runs each")
    print("\nimage build (stand-in base, local wheelhouse):")
    print(f"  cold (--no-cache, all layers)           {cold:8.2f} s")
    print(f"  after a code change (package layers)    {changed:8.2f} s")
    print(f"  all layers cached (docker build again)  {cached:8.2f} s")
    print(f"  runtime lookup of the unchanged image   {statistics.median(lookups):8.3f} s  (median of 5; no build)")
    med_local, med_docker = statistics.median(local), statistics.median(in_docker)
    print("\nwhole run (median):")
    print(f"  local                                   {med_local:8.2f} s   {', '.join(f'{t:.2f}' for t in local)}")
    print(f"  docker                                  {med_docker:8.2f} s   {', '.join(f'{t:.2f}' for t in in_docker)}")
    print(f"  difference (goal <= 3 s)                {med_docker - med_local:8.2f} s")
    print(f"  docker: until the container started     {statistics.median(until_start):8.2f} s")


if __name__ == "__main__":
    main()
