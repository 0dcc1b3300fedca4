"""Where a run executes: in this process, several processes launched by torchrun, or a Docker container."""

from bootstrap_repro.runtimes._distributed import launch_distributed, wants_distributed
from bootstrap_repro.runtimes._process import die_with_parent
from bootstrap_repro.runtimes._docker import (
    CONTAINER_ENV,
    DockerError,
    DockerSettings,
    DockerUnavailableError,
    ExpDirNotWritableError,
    GPURuntimeError,
    ImageBuildError,
    ImageInfo,
    ImageNotFoundError,
    ensure_image,
    launch_docker,
    wants_docker,
)

__all__ = [
    "die_with_parent",
    "launch_distributed",
    "wants_distributed",
    "CONTAINER_ENV",
    "DockerError",
    "DockerSettings",
    "DockerUnavailableError",
    "ExpDirNotWritableError",
    "GPURuntimeError",
    "ImageBuildError",
    "ImageInfo",
    "ImageNotFoundError",
    "ensure_image",
    "launch_docker",
    "wants_docker",
]
